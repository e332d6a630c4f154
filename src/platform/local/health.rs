//! HTTP health checks per replica and the instance state machine:
//! `Starting → Healthy ↔ Unhealthy`, and `Exited` once the process ends.
//!
//! `Starting` becomes `Healthy` after `healthy_after` passing checks in a row. It becomes
//! `Unhealthy` only after `unhealthy_after` failing *answers* in a row (a replica that does
//! not listen yet is still starting). `Healthy` becomes `Unhealthy` after `unhealthy_after`
//! failed checks of any kind, and back after `healthy_after` passes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::supervisor::ProcessStatus;
use crate::platform::InstanceState;

/// How to check one replica (the release's `[service.health]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path to GET, starting with `/`; any 2xx passes.
    pub path: String,
    pub interval: Duration,
    /// For the whole check: connect, request, response headers.
    pub timeout: Duration,
    /// Passing checks in a row to become healthy.
    pub healthy_after: u32,
    /// Failing checks in a row to become unhealthy.
    pub unhealthy_after: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_after: 2,
            unhealthy_after: 3,
        }
    }
}

impl HealthCheck {
    /// Describes the first invalid setting, naming the field.
    pub fn problem(&self) -> Option<String> {
        if !self.path.starts_with('/') {
            return Some(format!("health path {:?} must start with `/`", self.path));
        }
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Some("health `interval` and `timeout` must be above zero".into());
        }
        if self.healthy_after == 0 || self.unhealthy_after == 0 {
            return Some("health `healthy_after` and `unhealthy_after` must be at least 1".into());
        }
        None
    }
}

/// Result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Pass,
    /// The replica answered, but not with 2xx.
    BadAnswer(String),
    /// No answer: refused, reset, timed out.
    NoAnswer(String),
}

/// One GET of `path` on `addr`, on a fresh connection, bounded by `timeout`.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, probe_inner(addr, path)).await {
        Ok(p) => p,
        Err(_) => Probe::NoAnswer(format!("GET {path} timed out after {timeout:?}")),
    }
}

async fn probe_inner(addr: SocketAddr, path: &str) -> Probe {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Probe::NoAnswer(format!("GET {path}: connect to {addr}: {e}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return Probe::NoAnswer(format!("GET {path}: {e}")),
    };
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "cutover-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => return Probe::BadAnswer(format!("GET {path}: invalid request: {e}")),
    };
    let result = match sender.send_request(req).await {
        Ok(resp) => {
            let status = resp.status();
            // Read the (small) body so the server sees a complete exchange.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Probe::Pass
            } else {
                Probe::BadAnswer(format!("GET {path} answered {status}"))
            }
        }
        Err(e) => Probe::NoAnswer(format!("GET {path}: {e}")),
    };
    conn.abort();
    result
}

/// The state machine, without timers or I/O.
#[derive(Debug, Clone)]
pub struct Tracker {
    healthy_after: u32,
    unhealthy_after: u32,
    state: InstanceState,
    passes: u32,
    fails: u32,
}

impl Tracker {
    pub fn new(check: &HealthCheck) -> Tracker {
        Tracker {
            healthy_after: check.healthy_after.max(1),
            unhealthy_after: check.unhealthy_after.max(1),
            state: InstanceState::Starting,
            passes: 0,
            fails: 0,
        }
    }

    pub fn state(&self) -> &InstanceState {
        &self.state
    }

    /// Feed one check; returns true when the state changed.
    pub fn observe(&mut self, probe: Probe) -> bool {
        if matches!(self.state, InstanceState::Exited { .. }) {
            return false;
        }
        let next = match probe {
            Probe::Pass => {
                self.fails = 0;
                self.passes += 1;
                (self.passes >= self.healthy_after).then_some(InstanceState::Healthy)
            }
            Probe::BadAnswer(reason) | Probe::NoAnswer(reason)
                if !matches!(self.state, InstanceState::Starting) =>
            {
                self.passes = 0;
                self.fails += 1;
                (self.fails >= self.unhealthy_after).then_some(InstanceState::Unhealthy { reason })
            }
            Probe::BadAnswer(reason) => {
                self.passes = 0;
                self.fails += 1;
                (self.fails >= self.unhealthy_after).then_some(InstanceState::Unhealthy { reason })
            }
            Probe::NoAnswer(_) => {
                self.passes = 0;
                None
            }
        };
        match next {
            Some(s) if s != self.state => {
                self.state = s;
                true
            }
            // Keep the newest reason while unhealthy, without reporting a change.
            Some(s) => {
                self.state = s;
                false
            }
            None => false,
        }
    }

    /// The process ended: final state.
    pub fn exited(&mut self, reason: String) -> bool {
        let next = InstanceState::Exited { reason };
        let changed = self.state != next;
        self.state = next;
        changed
    }

    /// The process was started again (new port): back to `Starting`.
    pub fn restarted(&mut self) -> bool {
        self.passes = 0;
        self.fails = 0;
        let changed = self.state != InstanceState::Starting;
        self.state = InstanceState::Starting;
        changed
    }
}

/// Health checks of one replica, running until dropped.
pub struct HealthWatch {
    state: watch::Receiver<InstanceState>,
    task: JoinHandle<()>,
}

impl HealthWatch {
    pub fn state(&self) -> InstanceState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<InstanceState> {
        self.state.clone()
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Called from the checking task after each state change, with the new state and the
/// replica's current address.
pub type OnChange = Arc<dyn Fn(&InstanceState, SocketAddr) + Send + Sync>;

/// Check the replica whose process is followed by `process` every `check.interval`.
pub fn watch_replica(
    mut process: watch::Receiver<ProcessStatus>,
    check: HealthCheck,
    on_change: OnChange,
) -> HealthWatch {
    let (tx, rx) = watch::channel(InstanceState::Starting);
    let task = tokio::spawn(async move {
        let mut tracker = Tracker::new(&check);
        let mut generation = process.borrow().generation;
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut process_open = true;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = process.changed(), if process_open => {
                    if changed.is_err() {
                        process_open = false;
                    }
                }
            }
            let status = process.borrow_and_update().clone();
            if let Some(reason) = status.exit {
                if tracker.exited(reason) {
                    tx.send_replace(tracker.state().clone());
                    on_change(tracker.state(), status.addr);
                }
                return;
            }
            if status.generation != generation {
                generation = status.generation;
                if tracker.restarted() {
                    tx.send_replace(tracker.state().clone());
                    on_change(tracker.state(), status.addr);
                }
            }
            let result = probe(status.addr, &check.path, check.timeout).await;
            // A probe racing the process's exit or restart says nothing about the new state.
            let now = process.borrow();
            if now.exit.is_some() || now.generation != generation {
                continue;
            }
            drop(now);
            if let Probe::BadAnswer(r) | Probe::NoAnswer(r) = &result {
                tracing::debug!(addr = %status.addr, "health check failed: {r}");
            }
            if tracker.observe(result) {
                tracing::info!(addr = %status.addr, state = ?tracker.state(), "replica health changed");
                tx.send_replace(tracker.state().clone());
                on_change(tracker.state(), status.addr);
            }
        }
    });
    HealthWatch { state: rx, task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

    use http_body_util::Full;
    use hyper::Response;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            healthy_after: 2,
            unhealthy_after: 3,
        }
    }

    #[test]
    fn state_machine_follows_thresholds() {
        let mut t = Tracker::new(&check());
        // Not listening yet: still starting, however long.
        for _ in 0..10 {
            assert!(!t.observe(Probe::NoAnswer("refused".into())));
        }
        assert_eq!(t.state(), &InstanceState::Starting);
        assert!(!t.observe(Probe::Pass));
        assert!(t.observe(Probe::Pass));
        assert_eq!(t.state(), &InstanceState::Healthy);
        // Two failures then a pass reset the count.
        t.observe(Probe::BadAnswer("503".into()));
        t.observe(Probe::NoAnswer("timeout".into()));
        t.observe(Probe::Pass);
        t.observe(Probe::BadAnswer("503".into()));
        t.observe(Probe::BadAnswer("503".into()));
        assert_eq!(t.state(), &InstanceState::Healthy);
        assert!(t.observe(Probe::NoAnswer("timeout".into())));
        assert_eq!(
            t.state(),
            &InstanceState::Unhealthy {
                reason: "timeout".into()
            }
        );
        assert!(!t.observe(Probe::Pass));
        assert!(t.observe(Probe::Pass));
        assert_eq!(t.state(), &InstanceState::Healthy);
        assert!(t.exited("exited with status 1".into()));
        assert!(!t.observe(Probe::Pass));
        assert!(matches!(t.state(), InstanceState::Exited { .. }));
    }

    #[test]
    fn failing_answers_while_starting_mean_unhealthy() {
        let mut t = Tracker::new(&check());
        t.observe(Probe::BadAnswer("GET /healthz answered 503".into()));
        t.observe(Probe::NoAnswer("refused".into()));
        t.observe(Probe::BadAnswer("GET /healthz answered 503".into()));
        assert_eq!(t.state(), &InstanceState::Starting);
        assert!(t.observe(Probe::BadAnswer("GET /healthz answered 503".into())));
        assert!(matches!(t.state(), InstanceState::Unhealthy { reason } if reason.contains("503")));
    }

    /// A server whose /healthz answers with the status in `status` (0 = hang).
    async fn server(status: Arc<AtomicU16>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let status = status.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let status = status.clone();
                        async move {
                            let code = status.load(Ordering::SeqCst);
                            if code == 0 {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            let code = if req.uri().path() == "/healthz" {
                                code.max(200)
                            } else {
                                404
                            };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn probe_tells_pass_bad_answer_and_no_answer_apart() {
        let status = Arc::new(AtomicU16::new(200));
        let addr = server(status.clone()).await;
        assert_eq!(
            probe(addr, "/healthz", Duration::from_secs(1)).await,
            Probe::Pass
        );
        assert!(
            matches!(probe(addr, "/other", Duration::from_secs(1)).await,
            Probe::BadAnswer(r) if r.contains("404"))
        );
        status.store(0, Ordering::SeqCst);
        assert!(
            matches!(probe(addr, "/healthz", Duration::from_millis(100)).await,
            Probe::NoAnswer(r) if r.contains("timed out"))
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            probe(closed, "/healthz", Duration::from_secs(1)).await,
            Probe::NoAnswer(_)
        ));
    }

    #[tokio::test]
    async fn watch_follows_the_server_and_the_process() {
        let status = Arc::new(AtomicU16::new(200));
        let addr = server(status.clone()).await;
        let (ptx, prx) = watch::channel(ProcessStatus {
            generation: 0,
            addr,
            pid: 1,
            exit: None,
        });
        let changes = Arc::new(AtomicUsize::new(0));
        let c = changes.clone();
        let w = watch_replica(
            prx,
            check(),
            Arc::new(move |_: &InstanceState, a: SocketAddr| {
                assert_eq!(a, addr);
                c.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let mut rx = w.subscribe();
        rx.wait_for(|s| *s == InstanceState::Healthy).await.unwrap();
        status.store(503, Ordering::SeqCst);
        rx.wait_for(|s| matches!(s, InstanceState::Unhealthy { .. }))
            .await
            .unwrap();
        status.store(200, Ordering::SeqCst);
        rx.wait_for(|s| *s == InstanceState::Healthy).await.unwrap();
        ptx.send_modify(|s| s.exit = Some("killed by signal 9 (SIGKILL)".into()));
        rx.wait_for(|s| matches!(s, InstanceState::Exited { .. }))
            .await
            .unwrap();
        assert_eq!(changes.load(Ordering::SeqCst), 4);
        assert!(
            matches!(w.state(), InstanceState::Exited { reason } if reason.contains("SIGKILL"))
        );
    }
}
