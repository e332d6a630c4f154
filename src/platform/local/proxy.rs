//! The weighted reverse proxy in front of one service: the route table, the split, pins,
//! drains and shutdown. The bytes themselves are moved by `proxy_h1.rs` (one task per client
//! connection parses each request head, routes it here and relays it over a pooled
//! keep-alive backend connection from `backend_pool.rs`, with no task or channel between).
//!
//! - The route table (revisions, their backends, the split) lives behind
//!   `RwLock<Arc<Table>>`: a request routes under the read lock (no clone of the table),
//!   a change builds a new table and swaps the pointer under the write lock. A request
//!   therefore starts under the old split or the new one, never a mix.
//! - The split is applied with a counter over 100 slots visited in a scrambled order
//!   (`n * 37 mod 100`), so every 100 consecutive requests follow the weights exactly and
//!   the revisions are interleaved rather than served in bursts.
//! - `x-cutover-revision: R` on a request routes it to revision R whatever its weight;
//!   every response carries `x-cutover-revision` naming the revision that served it. The
//!   header is honoured from clients on this machine (the engine's smoke tests), and from
//!   elsewhere only with the release's pin secret in `x-cutover-pin-secret` (`pin.rs`);
//!   otherwise it is refused with 403. The secret header is never forwarded. Pinned
//!   requests are not counted in the revision's statistics, so they never weigh in the
//!   judge's verdict.
//! - In flight is counted per revision and per backend; the count is released when the
//!   response body has been sent (or the exchange failed), so draining covers streamed
//!   bodies.
//! - A request that cannot reach its revision (no backend, refused, reset) is answered
//!   502 and counted as a connection error of that revision; a backend failing mid-body
//!   closes the client's connection and counts the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use hyper::header::HeaderValue;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::backend_pool::Backend;
use super::pin::{PinSecret, from_this_machine};
use super::stats::{ProxyStats, RevisionStats};
use crate::platform::{TEST_ROUTE_HEADER, Weights};

/// How long `shutdown` waits for in-flight requests before closing connections.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Number of slots the split is expressed in (weights are percentages).
const SLOTS: u64 = 100;
/// Multiplier coprime with `SLOTS` that scrambles the slot order.
const SLOT_STRIDE: u64 = 37;

/// Why a proxy call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "service `{service}`: cannot listen on {addr}: {source}; choose a free address for the service's `listen`"
    )]
    Bind {
        service: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("service `{service}`: invalid weights {weights}: {reason}")]
    InvalidWeights {
        service: String,
        weights: String,
        reason: String,
    },
    #[error("admin endpoint: cannot listen on {addr}: {source}; choose a free admin address")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Whether a drain finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum DrainOutcome {
    /// Nothing is in flight any more.
    Drained,
    /// The timeout passed with requests still in flight.
    TimedOut { in_flight: u64 },
}
/// One revision as the route table sees it (immutable; rebuilt on change).
pub(super) struct Revision {
    pub(super) name: String,
    /// Its name as the `x-cutover-revision` value of responses (`None`: not a valid value).
    pub(super) header: Option<HeaderValue>,
    pub(super) stats: Arc<RevisionStats>,
    backends: Vec<Arc<Backend>>,
    /// Round-robin position, shared by every table generation of this revision.
    next: Arc<AtomicUsize>,
}

impl Revision {
    fn pick(&self) -> Option<&Arc<Backend>> {
        match self.backends.len() {
            0 => None,
            1 => self.backends.first(),
            n => self
                .backends
                .get(self.next.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

#[derive(Default)]
struct Table {
    revisions: HashMap<String, Arc<Revision>>,
    weights: Weights,
    /// `SLOTS` entries naming the revision that serves each slot; empty = no split set.
    slots: Vec<Arc<Revision>>,
}

impl Table {
    fn build_slots(&self, weights: &Weights) -> Vec<Arc<Revision>> {
        let mut slots = Vec::with_capacity(SLOTS as usize);
        for (name, w) in weights {
            if let Some(rev) = self.revisions.get(name) {
                for _ in 0..*w {
                    slots.push(rev.clone());
                }
            }
        }
        slots
    }
}

pub(super) struct Inner {
    service: String,
    local_addr: SocketAddr,
    stats: Arc<ProxyStats>,
    table: RwLock<Arc<Table>>,
    /// Serializes writers so a read-modify-write of the table is never lost.
    write: Mutex<()>,
    /// Route tables replaced by an update and maybe still held by a request that is
    /// choosing its backend (see `wait_snapshots`).
    replaced: Mutex<Vec<Weak<Table>>>,
    /// Every backend that is listed or still has requests in flight.
    backends: Mutex<HashMap<SocketAddr, Arc<Backend>>>,
    counter: AtomicU64,
    /// Lets a client on another machine pin requests (see `pin.rs`).
    pin_secret: Option<PinSecret>,
    /// `Some(grace)` once shutdown was asked for.
    stop: watch::Sender<Option<Duration>>,
    stopped: watch::Sender<bool>,
}

/// A weighted reverse proxy for one service. Cheap to clone (all clones drive one proxy).
#[derive(Clone)]
pub struct ServiceProxy {
    inner: Arc<Inner>,
}

/// A revision's routing state, for `/weights` and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionRoute {
    pub revision: String,
    pub weight: u8,
    pub backends: Vec<SocketAddr>,
    pub in_flight: u64,
}

impl ServiceProxy {
    /// Bind `listen` (port 0 allowed) and serve until [`ServiceProxy::shutdown`]. Must be
    /// called inside a tokio runtime; the proxy's tasks run on it.
    pub async fn bind(
        service: &str,
        listen: SocketAddr,
        stats: Arc<ProxyStats>,
    ) -> Result<ServiceProxy, ProxyError> {
        Self::bind_with_pin_secret(service, listen, stats, None).await
    }

    /// [`ServiceProxy::bind`], and a client on another machine may pin a request to a
    /// revision when it sends `pin_secret` in `x-cutover-pin-secret`.
    pub async fn bind_with_pin_secret(
        service: &str,
        listen: SocketAddr,
        stats: Arc<ProxyStats>,
        pin_secret: Option<PinSecret>,
    ) -> Result<ServiceProxy, ProxyError> {
        let bind_err = |source| ProxyError::Bind {
            service: service.to_string(),
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;

        let (stop, stop_rx) = watch::channel(None);
        let (stopped, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            service: service.to_string(),
            local_addr,
            stats,
            table: RwLock::new(Arc::new(Table::default())),
            write: Mutex::new(()),
            replaced: Mutex::new(Vec::new()),
            backends: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            pin_secret,
            stop,
            stopped,
        });
        tokio::spawn(accept_loop(inner.clone(), listener, stop_rx));
        tracing::info!(service, %local_addr, "proxy listening");
        Ok(ServiceProxy { inner })
    }

    pub fn service(&self) -> &str {
        &self.inner.service
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    fn table(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Run `f` on a copy of the table and install the result atomically.
    fn update<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        let _w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.table();
        let mut next = Table {
            revisions: current.revisions.clone(),
            weights: current.weights.clone(),
            slots: Vec::new(),
        };
        let out = f(&mut next);
        next.slots = next.build_slots(&next.weights);
        *self.inner.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        let mut replaced = self
            .inner
            .replaced
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        replaced.retain(|w| w.strong_count() > 0);
        replaced.push(Arc::downgrade(&current));
        out
    }

    /// Wait until no request still routes on a replaced table (they let go right after
    /// counting themselves in flight, so this takes microseconds). False at `deadline`.
    async fn wait_snapshots(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let pending = {
                let mut replaced = self
                    .inner
                    .replaced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                replaced.retain(|w| w.strong_count() > 0);
                !replaced.is_empty()
            };
            if !pending {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The replicas of a revision that may take traffic. Creates the revision if new;
    /// an empty list keeps it known with no backend (its requests are answered 502).
    pub fn set_backends(&self, revision: &str, addrs: Vec<SocketAddr>) {
        let stats = self.inner.stats.revision(&self.inner.service, revision);
        let backends: Vec<Arc<Backend>> = {
            let mut reg = self
                .inner
                .backends
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            addrs
                .iter()
                .map(|a| {
                    reg.entry(*a)
                        .or_insert_with(|| Arc::new(Backend::new(*a)))
                        .clone()
                })
                .collect()
        };
        let header = HeaderValue::from_str(revision).ok();
        if header.is_none() {
            tracing::warn!(
                service = %self.inner.service,
                revision,
                "revision name is not a valid header value; responses will not name it"
            );
        }
        self.update(|t| {
            let next = t
                .revisions
                .get(revision)
                .map(|r| r.next.clone())
                .unwrap_or_else(|| Arc::new(AtomicUsize::new(0)));
            t.revisions.insert(
                revision.to_string(),
                Arc::new(Revision {
                    name: revision.to_string(),
                    header,
                    stats,
                    backends,
                    next,
                }),
            );
        });
        self.prune_backends();
        tracing::debug!(service = %self.inner.service, revision, ?addrs, "backends set");
    }

    /// Forget a revision (after it was drained and stopped). If it still had weight, its
    /// share of requests is answered 503 until new weights are set.
    pub fn remove_revision(&self, revision: &str) {
        self.update(|t| {
            t.revisions.remove(revision);
            if let Some(pos) = t.weights.iter().position(|(r, _)| r == revision) {
                let (_, w) = t.weights.remove(pos);
                if w > 0 {
                    tracing::warn!(
                        service = %self.inner.service,
                        revision,
                        weight = w,
                        "removed a revision that still had weight; set new weights"
                    );
                }
            }
        });
        self.prune_backends();
    }

    fn prune_backends(&self) {
        let table = self.table();
        let mut reg = self
            .inner
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reg.retain(|addr, b| {
            b.in_flight.get() > 0
                || table
                    .revisions
                    .values()
                    .any(|r| r.backends.iter().any(|x| x.addr == *addr))
        });
    }

    /// Swap the split atomically. Percentages must sum to 100, name known revisions (see
    /// [`ServiceProxy::set_backends`]) and name each at most once; unnamed revisions get 0.
    pub fn set_weights(&self, weights: &Weights) -> Result<(), ProxyError> {
        let invalid = |reason: String| ProxyError::InvalidWeights {
            service: self.inner.service.clone(),
            weights: format_weights(weights),
            reason,
        };
        let sum: u32 = weights.iter().map(|(_, w)| u32::from(*w)).sum();
        if sum != 100 {
            return Err(invalid(format!(
                "they add up to {sum}; percentages must add up to 100"
            )));
        }
        for (i, (name, _)) in weights.iter().enumerate() {
            if weights[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid(format!("revision `{name}` is named twice")));
            }
        }
        self.update(|t| {
            let unknown: Vec<&str> = weights
                .iter()
                .filter(|(n, _)| !t.revisions.contains_key(n))
                .map(|(n, _)| n.as_str())
                .collect();
            if !unknown.is_empty() {
                let mut known: Vec<&str> = t.revisions.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(invalid(format!(
                    "unknown revision(s) {}; known: {} (launch a revision before giving it weight)",
                    unknown.join(", "),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            t.weights = weights.clone();
            Ok(())
        })?;
        tracing::info!(service = %self.inner.service, weights = %format_weights(weights), "weights set");
        Ok(())
    }

    /// The split in force now, as last set (empty before any split was set).
    pub fn weights(&self) -> Weights {
        self.table().weights.clone()
    }

    /// Every known revision with its weight, backends and in-flight count (sorted by name).
    pub fn routes(&self) -> Vec<RevisionRoute> {
        let table = self.table();
        let mut routes: Vec<RevisionRoute> = table
            .revisions
            .values()
            .map(|r| RevisionRoute {
                revision: r.name.clone(),
                weight: table
                    .weights
                    .iter()
                    .find(|(n, _)| *n == r.name)
                    .map(|(_, w)| *w)
                    .unwrap_or(0),
                backends: r.backends.iter().map(|b| b.addr).collect(),
                in_flight: r.stats.in_flight(),
            })
            .collect();
        routes.sort_by(|a, b| a.revision.cmp(&b.revision));
        routes
    }

    /// Requests in flight to a revision (0 for an unknown one).
    pub fn in_flight(&self, revision: &str) -> u64 {
        self.inner
            .stats
            .get(&self.inner.service, revision)
            .map(|s| s.in_flight())
            .unwrap_or(0)
    }

    /// Requests in flight to one replica address (0 for an unknown one).
    pub fn backend_in_flight(&self, addr: SocketAddr) -> u64 {
        let reg = self
            .inner
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reg.get(&addr).map(|b| b.in_flight.get()).unwrap_or(0)
    }

    /// Wait until the revision has nothing in flight, or `timeout`.
    pub async fn drain(&self, revision: &str, timeout: Duration) -> DrainOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_snapshots(deadline).await;
        let Some(stats) = self.inner.stats.get(&self.inner.service, revision) else {
            return DrainOutcome::Drained;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        outcome(stats.in_flight_gauge().wait_idle(left).await)
    }

    /// Wait until one replica has nothing in flight, or `timeout` (remove it from its
    /// revision's backends first, so it gets no new requests).
    pub async fn drain_backend(&self, addr: SocketAddr, timeout: Duration) -> DrainOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_snapshots(deadline).await;
        let backend = {
            let reg = self
                .inner
                .backends
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            reg.get(&addr).cloned()
        };
        let Some(backend) = backend else {
            return DrainOutcome::Drained;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = outcome(backend.in_flight.wait_idle(left).await);
        self.prune_backends();
        result
    }

    /// Stop accepting, let in-flight requests finish (up to [`DEFAULT_SHUTDOWN_GRACE`]),
    /// close every connection.
    pub async fn shutdown(&self) {
        self.shutdown_within(DEFAULT_SHUTDOWN_GRACE).await;
    }

    /// [`ServiceProxy::shutdown`] with an explicit grace period.
    pub async fn shutdown_within(&self, grace: Duration) {
        self.inner.stop.send_if_modified(|g| {
            if g.is_none() {
                *g = Some(grace);
                true
            } else {
                false
            }
        });
        let mut rx = self.inner.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn outcome(in_flight: u64) -> DrainOutcome {
    if in_flight == 0 {
        DrainOutcome::Drained
    } else {
        DrainOutcome::TimedOut { in_flight }
    }
}

fn format_weights(w: &Weights) -> String {
    let parts: Vec<String> = w.iter().map(|(n, p)| format!("{n}={p}")).collect();
    format!("[{}]", parts.join(", "))
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut conns = JoinSet::new();
    let grace = loop {
        let asked = *stop.borrow_and_update();
        if let Some(grace) = asked {
            break grace;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break DEFAULT_SHUTDOWN_GRACE;
                }
            }
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let this_machine = from_this_machine(peer, stream.local_addr().ok());
                    conns.spawn(super::proxy_h1::serve_connection(
                        inner.clone(),
                        stream,
                        this_machine,
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(service = %inner.service, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    drop(listener);
    // Idle connections close at once; busy ones after their exchange.
    let all_closed = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        tracing::warn!(service = %inner.service, ?grace, "proxy shutdown grace passed; closing remaining connections");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    tracing::info!(service = %inner.service, "proxy stopped");
    inner.stopped.send_replace(true);
}

/// Counts a routed request in flight (its revision and its replica) until dropped, when
/// the exchange ended whichever way.
pub(super) struct InFlightGuard {
    revision: Arc<Revision>,
    backend: Arc<Backend>,
}

impl InFlightGuard {
    fn new(revision: Arc<Revision>, backend: Arc<Backend>) -> Self {
        revision.stats.in_flight_gauge().begin();
        backend.in_flight.begin();
        InFlightGuard { revision, backend }
    }

    pub(super) fn revision(&self) -> &Arc<Revision> {
        &self.revision
    }

    pub(super) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.backend.in_flight.end();
        self.revision.stats.in_flight_gauge().end();
    }
}

/// An answer the proxy writes itself instead of relaying one.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    /// The revision it concerns, named in `x-cutover-revision`.
    pub(super) revision: Option<HeaderValue>,
    pub(super) text: String,
}

impl Refusal {
    pub(super) fn text(status: u16, text: String) -> Self {
        Refusal {
            status,
            revision: None,
            text,
        }
    }
}

impl Inner {
    pub(super) fn service(&self) -> &str {
        &self.service
    }

    pub(super) fn pin_secret(&self) -> Option<&PinSecret> {
        self.pin_secret.as_ref()
    }

    /// Choose the revision and replica of one request: the one `wanted` names (a pinned
    /// request, already allowed), else the split's next slot. Routes under the table's read
    /// lock and counts the request in flight before letting go of it: a change swaps the
    /// table under the write lock, so once a change returned every request that routed on
    /// the old table is counted, and a drain that follows cannot miss one that picked a
    /// drained revision or replica.
    pub(super) fn route(&self, wanted: Option<&[u8]>) -> Result<InFlightGuard, Refusal> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let revision = match wanted {
            Some(wanted) => {
                let wanted = std::str::from_utf8(wanted).unwrap_or("").trim();
                match table.revisions.get(wanted) {
                    Some(r) => r,
                    None => {
                        return Err(Refusal::text(
                            502,
                            format!(
                                "cutover proxy: service `{}` has no revision `{wanted}` (asked for by the {TEST_ROUTE_HEADER} header)\n",
                                self.service
                            ),
                        ));
                    }
                }
            }
            None => {
                if table.slots.is_empty() {
                    return Err(Refusal::text(
                        503,
                        format!(
                            "cutover proxy: service `{}` has no traffic split set yet\n",
                            self.service
                        ),
                    ));
                }
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let slot = ((n % SLOTS) * SLOT_STRIDE % SLOTS) as usize;
                match table.slots.get(slot) {
                    Some(r) => r,
                    // A removed revision left a gap in the split.
                    None => {
                        return Err(Refusal::text(
                            503,
                            format!(
                                "cutover proxy: service `{}` has no revision for this share of traffic (split {})\n",
                                self.service,
                                format_weights(&table.weights)
                            ),
                        ));
                    }
                }
            }
        };
        let Some(backend) = revision.pick() else {
            if wanted.is_none() {
                revision.stats.record_connection_error();
            }
            return Err(Refusal {
                status: 502,
                revision: revision.header.clone(),
                text: format!(
                    "cutover proxy: revision `{}` of service `{}` has no backend taking traffic\n",
                    revision.name, self.service
                ),
            });
        };
        Ok(InFlightGuard::new(revision.clone(), backend.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_order_visits_every_slot_once_per_hundred_and_interleaves() {
        let slots: Vec<u64> = (0..SLOTS).map(|n| n * SLOT_STRIDE % SLOTS).collect();
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..SLOTS).collect::<Vec<_>>());
        // A 10 % revision (slots 90..100) is hit about every 10 requests, not in a burst.
        let hits: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s >= 90)
            .map(|(i, _)| i)
            .collect();
        let max_gap = hits.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(max_gap <= 20, "{hits:?}");
    }
}
