//! The weighted reverse proxy in front of one service: hyper 1.x server connections (with
//! graceful shutdown) on the service's stable address, and per replica a pool of
//! keep-alive HTTP/1.1 client connections (a connection returns to its pool when the
//! response body it carried has been read to the end).
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
//!   response body has been sent (or dropped), so draining covers streamed bodies.
//! - A request that cannot reach its revision (no backend, refused, reset) is answered
//!   502 and counted as a connection error of that revision.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::pin::{PIN_SECRET_HEADER, PinSecret, from_this_machine, may_pin};
use super::stats::{InFlight, ProxyStats, RevisionStats};
use crate::platform::{TEST_ROUTE_HEADER, Weights};

/// How long `shutdown` waits for in-flight requests before closing connections.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connect timeout to a backend; a refused connection fails at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle keep-alive connections kept per backend; more are closed when they free up.
const MAX_IDLE_PER_BACKEND: usize = 512;
/// Number of slots the split is expressed in (weights are percentages).
const SLOTS: u64 = 100;
/// Multiplier coprime with `SLOTS` that scrambles the slot order.
const SLOT_STRIDE: u64 = 37;
/// The pinning header as a parsed name (a `&str` key is parsed again at every lookup).
const ROUTE_HEADER: HeaderName = HeaderName::from_static(TEST_ROUTE_HEADER);
/// The pin secret header as a parsed name.
const SECRET_HEADER: HeaderName = HeaderName::from_static(PIN_SECRET_HEADER);

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

/// One replica address, with its own in-flight gauge (for per-replica draining) and its
/// pool of idle keep-alive connections.
struct Backend {
    addr: SocketAddr,
    host: HeaderValue,
    in_flight: InFlight,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

/// Why a request could not be delivered to a backend.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect: no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Http(String),
}

impl Backend {
    fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            // A socket address always formats as a valid header value.
            host: HeaderValue::from_str(&addr.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            in_flight: InFlight::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_PER_BACKEND {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, SendError> {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await
                .map_err(|_| SendError::ConnectTimeout(CONNECT_TIMEOUT))?
                .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Http(error_chain(&e)))?;
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Send on an idle keep-alive connection, or a new one. A request that was not
    /// written because a pooled connection had just closed is retried on another one;
    /// a request that was written is never sent twice.
    async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, SendRequest<Incoming>), SendError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(SendError::Http(error_chain(&e.into_error()))),
                },
            }
        }
        // Boxed: the connect path is rare, and inlined it would make every request's
        // future (moved into place per request) several times larger.
        let mut sender = Box::pin(self.connect()).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, sender)),
            Err(e) => Err(SendError::Http(error_chain(&e))),
        }
    }
}

/// One revision as the route table sees it (immutable; rebuilt on change).
struct Revision {
    name: String,
    header: Option<HeaderValue>,
    stats: Arc<RevisionStats>,
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

struct Inner {
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
    let graceful = GracefulShutdown::new();
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
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn_inner = inner.clone();
                    let this_machine = from_this_machine(peer, stream.local_addr().ok());
                    let service = hyper::service::service_fn(move |req| {
                        handle(conn_inner.clone(), req, this_machine)
                    });
                    // No timer: hyper would arm a header-read timeout per request,
                    // a measurable cost; clients are local and trusted.
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "client connection ended with an error");
                        }
                    });
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
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(service = %inner.service, ?grace, "proxy shutdown grace passed; closing remaining connections");
        }
    }
    tracing::info!(service = %inner.service, "proxy stopped");
    inner.stopped.send_replace(true);
}

/// Released when the response body ends or is dropped. Holds the backend connection
/// until then: it goes back to the pool only if the body was read to its end.
struct InFlightGuard {
    revision: Arc<Revision>,
    backend: Arc<Backend>,
    sender: Option<SendRequest<Incoming>>,
    complete: bool,
}

impl InFlightGuard {
    fn new(revision: Arc<Revision>, backend: Arc<Backend>) -> Self {
        revision.stats.in_flight_gauge().begin();
        backend.in_flight.begin();
        InFlightGuard {
            revision,
            backend,
            sender: None,
            complete: false,
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.complete
            && let Some(sender) = self.sender.take()
        {
            self.backend.put_idle(sender);
        }
        self.backend.in_flight.end();
        self.revision.stats.in_flight_gauge().end();
    }
}

/// The body the proxy answers with: a backend's body (carrying the in-flight guard) or a
/// short body the proxy wrote itself.
pub struct ProxyBody {
    kind: BodyKind,
}

enum BodyKind {
    Upstream {
        body: Incoming,
        guard: Option<InFlightGuard>,
    },
    Full(Option<Bytes>),
}

impl ProxyBody {
    fn full(text: impl Into<Bytes>) -> Self {
        ProxyBody {
            kind: BodyKind::Full(Some(text.into())),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            BodyKind::Upstream { body, guard } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let done = match &polled {
                    Poll::Ready(None) => Some(true),
                    Poll::Ready(Some(Err(_))) => Some(false),
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => Some(true),
                    _ => None,
                };
                if let Some(complete) = done
                    && let Some(mut g) = guard.take()
                {
                    g.complete = complete;
                }
                polled
            }
            BodyKind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Upstream { body, .. } => body.is_end_stream(),
            BodyKind::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Upstream { body, .. } => body.size_hint(),
            BodyKind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            BodyKind::Full(None) => SizeHint::with_exact(0),
        }
    }
}

fn proxy_answer(
    status: StatusCode,
    revision: Option<&HeaderValue>,
    text: String,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(rev) = revision {
        h.insert(ROUTE_HEADER, rev.clone());
    }
    resp
}

/// What one pass over a request's header names found.
#[derive(Default)]
struct RequestHeaders {
    pinned: bool,
    secret: bool,
    host: bool,
    hop_by_hop: bool,
}

impl RequestHeaders {
    /// One scan of the names instead of a hash lookup per header the proxy cares about.
    fn scan(headers: &HeaderMap) -> Self {
        let mut seen = RequestHeaders::default();
        for name in headers.keys() {
            if name == header::HOST {
                seen.host = true;
            } else if name == ROUTE_HEADER {
                seen.pinned = true;
            } else if name == SECRET_HEADER {
                seen.secret = true;
            } else if is_hop_by_hop(name) {
                seen.hop_by_hop = true;
            }
        }
        seen
    }
}

async fn handle(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    this_machine: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    let seen = RequestHeaders::scan(req.headers());
    let pinned = seen.pinned;
    // Taken off every request: the secret never reaches a replica.
    let offered = if seen.secret {
        req.headers_mut().remove(SECRET_HEADER)
    } else {
        None
    };
    if pinned && !may_pin(this_machine, inner.pin_secret.as_ref(), offered.as_ref()) {
        return Ok(proxy_answer(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "cutover proxy: the {TEST_ROUTE_HEADER} header is honoured only from this machine, or with the release's pin secret in {PIN_SECRET_HEADER}; send the request without it\n"
            ),
        ));
    }

    // Route under the table's read lock, and count the request in flight before letting
    // go of it: a change swaps the table under the write lock, so once a change returned
    // every request that routed on the old table is counted, and a drain that follows
    // cannot miss one that picked a drained revision or replica.
    let guard = {
        let table = inner.table.read().unwrap_or_else(|p| p.into_inner());
        let revision = match req.headers().get(ROUTE_HEADER) {
            Some(wanted) => {
                let wanted = wanted.to_str().unwrap_or("");
                match table.revisions.get(wanted) {
                    Some(r) => r,
                    None => {
                        return Ok(proxy_answer(
                            StatusCode::BAD_GATEWAY,
                            None,
                            format!(
                                "cutover proxy: service `{}` has no revision `{wanted}` (asked for by the {TEST_ROUTE_HEADER} header)\n",
                                inner.service
                            ),
                        ));
                    }
                }
            }
            None => {
                if table.slots.is_empty() {
                    return Ok(proxy_answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        None,
                        format!(
                            "cutover proxy: service `{}` has no traffic split set yet\n",
                            inner.service
                        ),
                    ));
                }
                let n = inner.counter.fetch_add(1, Ordering::Relaxed);
                let slot = ((n % SLOTS) * SLOT_STRIDE % SLOTS) as usize;
                match table.slots.get(slot) {
                    Some(r) => r,
                    // A removed revision left a gap in the split.
                    None => {
                        return Ok(proxy_answer(
                            StatusCode::SERVICE_UNAVAILABLE,
                            None,
                            format!(
                                "cutover proxy: service `{}` has no revision for this share of traffic (split {})\n",
                                inner.service,
                                format_weights(&table.weights)
                            ),
                        ));
                    }
                }
            }
        };
        let Some(backend) = revision.pick() else {
            if !pinned {
                revision.stats.record_connection_error();
            }
            return Ok(proxy_answer(
                StatusCode::BAD_GATEWAY,
                revision.header.as_ref(),
                format!(
                    "cutover proxy: revision `{}` of service `{}` has no backend taking traffic\n",
                    revision.name, inner.service
                ),
            ));
        };
        InFlightGuard::new(revision.clone(), backend.clone())
    };

    // Backends get origin-form targets; an absolute-form request (sent as to a forward
    // proxy) is rewritten to its path.
    if req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        match path.parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => {
                return Ok(proxy_answer(
                    StatusCode::BAD_REQUEST,
                    None,
                    format!("cutover proxy: cannot forward this request target: {e}\n"),
                ));
            }
        }
    }
    if !seen.host {
        req.headers_mut()
            .insert(header::HOST, guard.backend.host.clone());
    }
    if seen.hop_by_hop {
        strip_hop_by_hop(req.headers_mut());
    }
    forward(&inner, req, guard, pinned).await
}

/// Send the routed request to its backend and turn the answer into the client's response.
async fn forward(
    inner: &Inner,
    req: Request<Incoming>,
    mut guard: InFlightGuard,
    pinned: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    match guard.backend.send(req).await {
        Ok((resp, sender)) => {
            let now = Instant::now();
            guard.sender = Some(sender);
            let (mut parts, body) = resp.into_parts();
            if !pinned {
                guard
                    .revision
                    .stats
                    .record_response_at(parts.status.as_u16(), now - started, now);
            }
            strip_hop_by_hop(&mut parts.headers);
            if let Some(h) = &guard.revision.header {
                parts.headers.insert(ROUTE_HEADER, h.clone());
            }
            let body = if body.is_end_stream() {
                guard.complete = true;
                drop(guard);
                ProxyBody {
                    kind: BodyKind::Upstream { body, guard: None },
                }
            } else {
                ProxyBody {
                    kind: BodyKind::Upstream {
                        body,
                        guard: Some(guard),
                    },
                }
            };
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            let revision = guard.revision.clone();
            let addr = guard.backend.addr;
            drop(guard);
            if !pinned {
                revision.stats.record_connection_error();
            }
            tracing::debug!(
                service = %inner.service,
                revision = %revision.name,
                backend = %addr,
                error = %e,
                "backend unreachable"
            );
            Ok(proxy_answer(
                StatusCode::BAD_GATEWAY,
                revision.header.as_ref(),
                format!(
                    "cutover proxy: revision `{}` of service `{}` at {} could not be reached: {}\n",
                    revision.name, inner.service, addr, e
                ),
            ))
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || matches!(
            name.as_str(),
            "keep-alive" | "proxy-connection" | "proxy-authenticate"
        )
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fast path: most messages carry none, and a scan of a few keys is cheaper than a
    // dozen hash lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    for name in ["keep-alive", "proxy-connection", "proxy-authenticate"] {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_and_end_to_end_ones_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-session-hint"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-session-hint", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(TEST_ROUTE_HEADER, HeaderValue::from_static("v2"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key(header::CONTENT_TYPE) && h.contains_key(TEST_ROUTE_HEADER));
    }

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
