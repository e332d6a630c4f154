//! The control API server: HTTP/1.1 on the Unix socket (trusted by file mode: 0600, the
//! state directory's owner only) and optionally on loopback TCP (bearer tokens).
//! See `PROTOCOL.md`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::hub::{Hub, Item, ItemBody, StreamError};
use super::limits::{
    ConnectionCap, ConnectionSlot, Denial, DenialSampler, HEADER_READ_TIMEOUT, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_ADDRESS, RateLimiter,
};
use super::request::{self, EventsQuery};
use super::tokens::{Role, Tokens};
use super::{
    CommandAnswer, CommandBody, ErrorBody, ErrorDetail, OPERATOR_HEADER, PROTOCOL_HEADER,
    ROLE_HEADER, check_version, protocol_version,
};
use crate::engine::CommandRequest;

/// The largest command body accepted.
const MAX_BODY: usize = 64 * 1024;
/// A comment line on idle event streams, so dead clients are noticed.
const KEEPALIVE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "{path}: another cutover serve is answering on this socket; attach to it, or stop it first"
    )]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; move it away")]
    NotASocket { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--listen {addr}: only loopback addresses are served without TLS (tokens would travel in clear text); use 127.0.0.1:PORT, or give --tls-cert and --tls-key"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("{what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A certificate chain and its private key (PEM files) for serving TCP over TLS.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

impl ServerTls {
    /// Load `cert` (PEM, the server's certificate first, then its chain) and `key` (PEM,
    /// PKCS#8, PKCS#1 or SEC1). Errors name the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, ServerError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls_err = |what: &'static str, path: &Path, reason: String| ServerError::Tls {
            what,
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_err("--tls-cert", cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err("--tls-cert", cert, format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(tls_err(
                "--tls-cert",
                cert,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            tls_err(
                "--tls-key",
                key,
                format!("no PEM private key could be read: {e}"),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("--tls-cert", cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                tls_err(
                    "--tls-key",
                    key,
                    format!("does not go with the certificate: {e}"),
                )
            })?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

/// Where to listen.
pub struct ServerConfig {
    /// The Unix socket path (usually `STATE_DIR/cutover.sock`).
    pub socket: PathBuf,
    /// Loopback TCP and the tokens it requires.
    pub tcp: Option<(SocketAddr, Tokens)>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { what, path, source }
}

/// Bind a Unix socket at `path` that only its owner can use: it is bound inside a fresh
/// 0700 directory, set to 0600 there, then renamed into place, so it is never reachable
/// with a wider mode. An existing socket is removed only if nothing answers on it.
pub fn bind_unix_socket(path: &Path) -> Result<UnixListener, ServerError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ServerError::InUse {
                    path: path.to_path_buf(),
                });
            }
            Err(_) => {
                tracing::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(io_err("cannot remove stale socket", path))?;
            }
        }
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let private = parent.join(format!(
        ".cutover-sock-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io_err("cannot create", &private))?;
    let tmp = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&tmp).map_err(io_err("cannot bind", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("cannot set the mode of", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("cannot move the socket to", path))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    result
}

/// The bound sockets, before anything is served (bind early: a busy socket or port is
/// found before the release starts).
pub struct Listeners {
    unix: UnixListener,
    socket: PathBuf,
    tcp: Option<(TcpListener, Tokens)>,
    tls: Option<ServerTls>,
}

impl Listeners {
    /// Bind the socket and, when asked, plain TCP on loopback.
    pub async fn bind(config: ServerConfig) -> Result<Listeners, ServerError> {
        Listeners::bind_tls(config, None).await
    }

    /// Bind the socket and TCP; with `tls`, TCP speaks only TLS and may listen on any
    /// address (remote pairing). Without it, only loopback.
    pub async fn bind_tls(
        config: ServerConfig,
        tls: Option<ServerTls>,
    ) -> Result<Listeners, ServerError> {
        let tcp = match config.tcp {
            Some((addr, tokens)) => {
                if !addr.ip().is_loopback() && tls.is_none() {
                    return Err(ServerError::NotLoopback { addr });
                }
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Listen { addr, source })?;
                Some((l, tokens))
            }
            None => None,
        };
        let unix = bind_unix_socket(&config.socket)?;
        Ok(Listeners {
            unix,
            socket: config.socket,
            tcp,
            tls,
        })
    }

    /// Whether TCP is served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some() && self.tcp.is_some()
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

/// A running control server.
pub struct ControlServer {
    hub: Arc<Hub>,
    socket: PathBuf,
    tcp_addr: Option<SocketAddr>,
    tls: bool,
    tasks: Vec<JoinHandle<()>>,
}

struct Ctx {
    hub: Arc<Hub>,
    commands: mpsc::Sender<CommandRequest>,
    tokens: Option<Tokens>,
    rate: RateLimiter,
    denials: DenialSampler,
}

#[derive(Debug, Clone)]
enum Peer {
    /// The socket's owner; the pid the kernel reports, when it does.
    Unix(Option<i32>),
    Tcp(SocketAddr),
}

impl Peer {
    /// Who a request counts against in the rate limit before it is authenticated.
    fn client_key(&self) -> String {
        match self {
            Peer::Unix(Some(pid)) => format!("unix:{pid}"),
            Peer::Unix(None) => "unix".into(),
            Peer::Tcp(a) => format!("tcp:{}", a.ip()),
        }
    }
}

/// Who is calling, as established by the transport.
struct Caller {
    operator: String,
    role: Role,
    via: &'static str,
}

type Body = BoxBody<Bytes, Infallible>;

impl ControlServer {
    /// Serve `hub` and `commands` on listeners bound by [`Listeners::bind`].
    pub fn start(
        listeners: Listeners,
        hub: Arc<Hub>,
        commands: mpsc::Sender<CommandRequest>,
    ) -> ControlServer {
        let Listeners {
            unix,
            socket,
            tcp,
            tls,
        } = listeners;
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
        let tls = acceptor.is_some();
        let (tcp_listener, tokens) = match tcp {
            Some((l, t)) => (Some(l), Some(t)),
            None => (None, None),
        };
        let tcp_addr = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
        let ctx = Arc::new(Ctx {
            hub: hub.clone(),
            commands,
            tokens,
            rate: RateLimiter::default(),
            denials: DenialSampler::default(),
        });
        let mut tasks = Vec::new();
        let c = ctx.clone();
        let unix_cap = Arc::new(ConnectionCap::new(MAX_CONNECTIONS, MAX_CONNECTIONS));
        tasks.push(tokio::spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((stream, _)) => {
                        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
                        let peer = Peer::Unix(pid);
                        match unix_cap.open(&peer.client_key()) {
                            Some(slot) => serve_connection(stream, c.clone(), peer, slot),
                            None => tracing::debug!(
                                "control socket: connection cap reached; closed a connection"
                            ),
                        }
                    }
                    Err(e) => {
                        tracing::warn!("control socket accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        if let Some(l) = tcp_listener {
            let c = ctx.clone();
            let tcp_cap = Arc::new(ConnectionCap::new(
                MAX_CONNECTIONS,
                MAX_CONNECTIONS_PER_ADDRESS,
            ));
            tasks.push(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, addr)) => {
                            let _ = stream.set_nodelay(true);
                            match (tcp_cap.open(&addr.ip().to_string()), &acceptor) {
                                (Some(slot), None) => {
                                    serve_connection(stream, c.clone(), Peer::Tcp(addr), slot)
                                }
                                (Some(slot), Some(acceptor)) => {
                                    let (c, acceptor) = (c.clone(), acceptor.clone());
                                    tokio::spawn(async move {
                                        let handshake = tokio::time::timeout(
                                            HEADER_READ_TIMEOUT,
                                            acceptor.accept(stream),
                                        )
                                        .await;
                                        match handshake {
                                            Ok(Ok(tls)) => {
                                                serve_connection(tls, c, Peer::Tcp(addr), slot)
                                            }
                                            Ok(Err(e)) => tracing::debug!(
                                                "control TLS: handshake with {addr} failed: {e}"
                                            ),
                                            Err(_) => tracing::debug!(
                                                "control TLS: {addr} did not finish its handshake in time"
                                            ),
                                        }
                                    });
                                }
                                (None, _) => tracing::debug!(
                                    "control TCP: connection cap reached; closed a connection from {addr}"
                                ),
                            }
                        }
                        Err(e) => {
                            tracing::warn!("control TCP accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        ControlServer {
            hub,
            socket,
            tcp_addr,
            tls,
            tasks,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// The bound TCP address (with the real port when asked for port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }
    /// `http://ADDR` or, served over TLS, `https://ADDR`: what `attach --url` takes.
    pub fn tcp_url(&self) -> Option<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.tcp_addr.map(|a| format!("{scheme}://{a}"))
    }
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Tell every client why the server stops, stop accepting, remove the socket.
    pub async fn shutdown(self, reason: &str) {
        self.hub.end(reason.to_string());
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
        // Let the streams write their `end` item.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn serve_connection<S>(stream: S, ctx: Arc<Ctx>, peer: Peer, slot: ConnectionSlot)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _slot = slot;
        let service = hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(handle(req, ctx, peer).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!("control connection: {e}");
        }
    });
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
            },
        },
    )
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>, peer: Peer) -> Response<Body> {
    let mut resp = route(req, &ctx, &peer).await;
    if let Ok(v) = HeaderValue::from_str(&protocol_version()) {
        resp.headers_mut().insert(PROTOCOL_HEADER, v);
    }
    resp
}

/// Authenticate by transport: the socket's owner is trusted and names themselves; TCP
/// callers are who their token says.
fn authenticate(req: &Request<Incoming>, ctx: &Ctx, peer: &Peer) -> Result<Caller, String> {
    match peer {
        Peer::Unix(_) => {
            let operator = request::unix_operator(header(req, OPERATOR_HEADER));
            let role = request::unix_role(header(req, ROLE_HEADER));
            Ok(Caller {
                operator,
                role,
                via: "unix",
            })
        }
        Peer::Tcp(addr) => {
            let Some(tokens) = &ctx.tokens else {
                return Err(format!("TCP caller {addr}: this server has no tokens"));
            };
            let presented = request::bearer(header(req, AUTHORIZATION.as_str()));
            match presented.and_then(|t| tokens.check(t)) {
                Some((operator, role)) => Ok(Caller {
                    operator,
                    role,
                    via: "tcp",
                }),
                None if presented.is_none() => Err(
                    "no token: send `Authorization: Bearer TOKEN` (cutover --token-file F)".into(),
                ),
                None => Err("the token is not valid for this server".into()),
            }
        }
    }
}

async fn route(req: Request<Incoming>, ctx: &Ctx, peer: &Peer) -> Response<Body> {
    if !ctx.rate.allow(&peer.client_key()) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this client; slow down and retry in a second",
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    // A Prometheus scrape sends no protocol header: `/metrics` is plain text, unversioned.
    let scrape = req.uri().path() == "/metrics";
    if !scrape && let Err(msg) = check_version(header(&req, PROTOCOL_HEADER), "client") {
        tracing::warn!("control API: refused a request: {msg}");
        return error(StatusCode::BAD_REQUEST, "protocol_mismatch", msg);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let caller = match authenticate(&req, ctx, peer) {
        Ok(c) => c,
        Err(msg) => {
            if method == Method::POST && path == "/v1/commands" {
                let who = match peer {
                    Peer::Tcp(a) => format!("unauthenticated ({a})"),
                    Peer::Unix(_) => "unauthenticated".into(),
                };
                audit_denied(req, ctx, &who, "refused: no valid token").await;
            }
            return error(StatusCode::UNAUTHORIZED, "unauthorized", msg);
        }
    };
    match (method, path.as_str()) {
        (Method::GET, "/v1/snapshot") => json_response(StatusCode::OK, &ctx.hub.snapshot()),
        (Method::GET, "/v1/presence") => json_response(
            StatusCode::OK,
            &serde_json::json!({ "attached": ctx.hub.attached() }),
        ),
        (Method::GET, "/v1/events") => events(&req, ctx, caller),
        (Method::POST, "/v1/commands") => command(req, ctx, caller).await,
        (Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(ctx.hub.prometheus_text())).boxed());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (_, "/v1/snapshot" | "/v1/presence" | "/v1/events" | "/v1/commands" | "/metrics") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} {path}: wrong method; see PROTOCOL.md", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{path}: no such endpoint; this server speaks /v1/snapshot, /v1/events, /v1/commands, /v1/presence, /metrics"
            ),
        ),
    }
}

async fn read_command(req: Request<Incoming>) -> Result<CommandBody, String> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body (at most {MAX_BODY} bytes): {e}"))?
        .to_bytes();
    request::parse_command_body(&bytes)
}

/// Journal a command the server refused itself, so the attempt shows in the audit: a
/// bounded sample (see [`DenialSampler`]); the others are counted, and the next journaled
/// refusal says how many were passed over.
async fn audit_denied(req: Request<Incoming>, ctx: &Ctx, who: &str, why: &str) {
    let Denial::Journal { passed_over } = ctx.denials.admit() else {
        return;
    };
    let command = read_command(req).await.ok().map(|b| b.command);
    journal_denied(command, ctx, who, why, passed_over).await;
}

async fn journal_denied(
    command: Option<crate::engine::Command>,
    ctx: &Ctx,
    who: &str,
    why: &str,
    passed_over: u64,
) {
    let why = if passed_over > 0 {
        format!(
            "{why} ({passed_over} more refused command(s) since the last one journaled were counted, not journaled)"
        )
    } else {
        why.to_string()
    };
    // Only a well-formed command can be journaled as one; anything else is logged.
    match command {
        Some(c) => {
            let (req, rx) = CommandRequest::new(c, who);
            if ctx.commands.send(req.denied(&why)).await.is_ok() {
                let _ = rx.await;
            }
        }
        None => tracing::warn!("control API: {who}: {why} (body was not a command)"),
    }
}

async fn command(req: Request<Incoming>, ctx: &Ctx, caller: Caller) -> Response<Body> {
    let body = match read_command(req).await {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", msg),
    };
    let Caller { operator, role, .. } = caller;
    if role == Role::ReadOnly {
        let why = "refused: read-only access cannot act";
        if let Denial::Journal { passed_over } = ctx.denials.admit() {
            journal_denied(Some(body.command.clone()), ctx, &operator, why, passed_over).await;
        }
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{operator} is read-only: `{}` was not sent to the engine (refused attempts are journaled; under a flood, a bounded sample)",
                body.command
            ),
        );
    }
    let (r, rx) = CommandRequest::new(body.command.clone(), &operator);
    if ctx.commands.send(r.with_note(body.reason)).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            "the engine has stopped (the release finished); it takes no more commands",
        );
    }
    match rx.await {
        Ok(Ok(message)) => json_response(
            StatusCode::OK,
            &CommandAnswer {
                accepted: true,
                message: Some(message),
                refusal: None,
                operator,
            },
        ),
        Ok(Err(refusal)) => json_response(
            StatusCode::CONFLICT,
            &CommandAnswer {
                accepted: false,
                message: None,
                refusal: Some(refusal),
                operator,
            },
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            format!("the engine stopped before answering `{}`", body.command),
        ),
    }
}

fn sse_frame(item: &Item) -> Bytes {
    let kind = match &item.body {
        ItemBody::Event { .. } => "event",
        ItemBody::Presence { .. } => "presence",
        ItemBody::End { .. } => "end",
    };
    let data = serde_json::to_string(item).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: {kind}\ndata: {data}\n\n", item.seq))
}

fn events(req: &Request<Incoming>, ctx: &Ctx, caller: Caller) -> Response<Body> {
    let EventsQuery { from, attach } = match EventsQuery::parse(req.uri().query()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", msg),
    };
    let who = attach.then(|| (caller.operator.clone(), caller.role, caller.via));
    let (sub, guard) = match ctx.hub.subscribe(from, who) {
        Ok(x) => x,
        Err(e @ StreamError::Gone { .. }) => return error(StatusCode::GONE, "gone", e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let _presence = guard;
        let mut live = sub.live;
        let mut last = from;
        for item in sub.backlog {
            last = item.seq;
            if tx.send(sse_frame(&item)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(item) => {
                        if item.seq <= last {
                            continue;
                        }
                        last = item.seq;
                        let end = matches!(item.body, ItemBody::End { .. });
                        if tx.send(sse_frame(&item)).await.is_err() || end {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let msg = serde_json::json!({"code": "lagged", "message": format!("this client fell {n} items behind; take a new snapshot"), "seq": last});
                        let _ = tx.send(Bytes::from(format!("event: error\ndata: {msg}\n\n"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let mut r = Response::new(ChannelBody { rx }.boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A response body fed by a channel (the event stream).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
