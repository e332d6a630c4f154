//! A small real HTTP service for the demo, the tests and users' rehearsals
//! (`cutover demo-service`). It answers `/` (text), `/api/*` (JSON naming service and
//! revision) and `/healthz`, names its revision in the `x-cutover-revision` header, and
//! injects the faults it is asked for: latency with jitter, a 5xx rate, failing health
//! (always or during a slow start), a crash after some time, and a dependency call
//! (`downstream`) whose failure turns into a 502. With `print_env` it prints the named
//! environment variables at start and answers `/env` with them: what a careless service
//! does with the secrets it was given (cutover's secret tests check they are scrubbed).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::platform::TEST_ROUTE_HEADER;

/// Header naming the port of the replica that answered (tells replicas apart).
pub const PORT_HEADER: &str = "x-demo-port";
/// Timeout of one downstream call.
const DOWNSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// What the demo service does; see `cutover demo-service --help`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Name reported in `/api/*` bodies.
    pub service: String,
    pub revision: String,
    /// Fraction (0..=1) of `/` and `/api/*` requests answered 500.
    pub error_rate: f64,
    /// Added to every `/` and `/api/*` request.
    pub latency: Duration,
    /// Uniform jitter around `latency` (±), never below zero.
    pub latency_jitter: Duration,
    /// Stop abruptly (dropping every connection) this long after starting.
    pub crash_after: Option<Duration>,
    /// `/healthz` always answers 503.
    pub unhealthy: bool,
    /// `/healthz` answers 503 for this long after starting.
    pub slow_start: Option<Duration>,
    /// Called (GET) once per `/` or `/api/*` request; a failure or non-2xx answer → 502.
    pub downstream: Option<Uri>,
    /// Environment variables printed at start (stdout) and answered on `/env`.
    pub print_env: Vec<String>,
}

impl DemoConfig {
    pub fn new(revision: &str) -> Self {
        DemoConfig {
            service: "demo".to_string(),
            revision: revision.to_string(),
            error_rate: 0.0,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            crash_after: None,
            unhealthy: false,
            slow_start: None,
            downstream: None,
            print_env: Vec::new(),
        }
    }

    /// `NAME=value` of each `print_env` variable on one line (`lookup` reads the
    /// environment; an unset variable shows as `NAME=`).
    pub fn env_line(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        self.print_env
            .iter()
            .map(|n| format!("{n}={}", lookup(n).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Check values a person typed.
    pub fn validate(&self) -> Result<(), DemoError> {
        if !(0.0..=1.0).contains(&self.error_rate) || self.error_rate.is_nan() {
            return Err(DemoError::Invalid(format!(
                "--error-rate {} is not a fraction; use a number from 0 to 1, e.g. 0.05 for 5 %",
                self.error_rate
            )));
        }
        if self.revision.is_empty() || HeaderValue::from_str(&self.revision).is_err() {
            return Err(DemoError::Invalid(format!(
                "--revision `{}` must be non-empty printable ASCII, e.g. v2",
                self.revision
            )));
        }
        if let Some(d) = &self.downstream
            && (d.scheme_str() != Some("http") || d.authority().is_none())
        {
            return Err(DemoError::Invalid(format!(
                "--downstream `{d}` must be an http:// URL with a host, e.g. http://127.0.0.1:8081/api/x"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}: {source}; choose a free --port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How a demo service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoExit {
    /// Shut down gracefully (in-flight requests finished).
    Stopped,
    /// Crashed on purpose (`crash_after`), dropping its connections.
    Crashed,
}

struct State {
    config: DemoConfig,
    started: Instant,
    revision_header: HeaderValue,
    port_header: HeaderValue,
    client: Client<HttpConnector, Empty<Bytes>>,
    served: AtomicU64,
}

/// A running demo service.
pub struct DemoServer {
    local_addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<DemoExit>,
}

impl DemoServer {
    /// Validate `config`, bind `addr` (port 0 allowed) and serve on the current runtime.
    pub async fn start(addr: SocketAddr, config: DemoConfig) -> Result<DemoServer, DemoError> {
        config.validate()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DemoError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DemoError::Bind { addr, source })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let state = Arc::new(State {
            revision_header: HeaderValue::from_str(&config.revision)
                .map_err(|_| DemoError::Invalid("--revision is not a valid header value".into()))?,
            port_header: HeaderValue::from(local_addr.port()),
            config,
            started: Instant::now(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            served: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, state.clone(), stop_rx));
        tracing::info!(%local_addr, revision = %state.config.revision, "demo service listening");
        if !state.config.print_env.is_empty() {
            println!("{}", state.config.env_line(|n| std::env::var(n).ok()));
        }
        Ok(DemoServer {
            local_addr,
            state,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Requests answered so far (any status, health checks excluded).
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Stop accepting, finish in-flight requests, return.
    pub async fn shutdown(self) -> DemoExit {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(DemoExit::Crashed)
    }

    /// Wait until the server ends by itself (a crash) or `shutdown_signal` resolves
    /// (then shut down gracefully).
    pub async fn run_until(self, shutdown_signal: impl Future<Output = ()>) -> DemoExit {
        let mut task = self.task;
        tokio::select! {
            exit = &mut task => exit.unwrap_or(DemoExit::Crashed),
            _ = shutdown_signal => {
                let _ = self.stop.send(true);
                task.await.unwrap_or(DemoExit::Crashed)
            }
        }
    }

    /// Die now like a killed process: drop every connection without answering.
    pub fn kill(self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) -> DemoExit {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let crash = async {
        match state.config.crash_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(crash);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = &mut crash => {
                tracing::warn!(revision = %state.config.revision, "crashing as asked (--crash-after)");
                conns.abort_all();
                return DemoExit::Crashed;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let st = state.clone();
                let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                conns.spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    // Finish in-flight requests; a crash timer still applies while draining.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = &mut crash => {
            conns.abort_all();
            return DemoExit::Crashed;
        }
    }
    while conns.join_next().await.is_some() {}
    DemoExit::Stopped
}

#[derive(Serialize)]
struct ApiBody<'a> {
    service: &'a str,
    revision: &'a str,
    path: &'a str,
    port: u16,
}

fn respond(
    state: &State,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(TEST_ROUTE_HEADER, state.revision_header.clone());
    h.insert(PORT_HEADER, state.port_header.clone());
    resp
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let cfg = &state.config;
    if path == "/healthz" {
        let starting = cfg.slow_start.is_some_and(|d| state.started.elapsed() < d);
        let (status, body) = if cfg.unhealthy {
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
        } else if starting {
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
        } else {
            (StatusCode::OK, "ok\n")
        };
        return Ok(respond(
            &state,
            status,
            TEXT,
            Bytes::from_static(body.as_bytes()),
        ));
    }
    if path == "/env" && !cfg.print_env.is_empty() {
        let line = cfg.env_line(|n| std::env::var(n).ok());
        return Ok(respond(
            &state,
            StatusCode::OK,
            TEXT,
            Bytes::from(line + "\n"),
        ));
    }
    let is_api = path == "/api" || path.starts_with("/api/");
    if path != "/" && !is_api {
        return Ok(respond(
            &state,
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from(format!("no page `{path}`; try /, /api/… or /healthz\n")),
        ));
    }
    let path = path.to_string();
    // Drain the request body so the connection stays reusable.
    let _ = req.into_body().collect().await;

    let delay = delay(cfg.latency, cfg.latency_jitter);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.served.fetch_add(1, Ordering::Relaxed);
    if cfg.error_rate > 0.0 && rand::random::<f64>() < cfg.error_rate {
        return Ok(respond(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            Bytes::from_static(b"{\"error\":\"injected failure (--error-rate)\"}\n"),
        ));
    }
    if let Some(url) = &cfg.downstream
        && let Err(why) = call_downstream(&state, url).await
    {
        let body = serde_json::json!({ "error": format!("downstream {url}: {why}") });
        return Ok(respond(
            &state,
            StatusCode::BAD_GATEWAY,
            JSON,
            Bytes::from(format!("{body}\n")),
        ));
    }
    if is_api {
        let body = ApiBody {
            service: &cfg.service,
            revision: &cfg.revision,
            path: &path,
            port: state
                .port_header
                .to_str()
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        return Ok(respond(&state, StatusCode::OK, JSON, Bytes::from(json)));
    }
    Ok(respond(
        &state,
        StatusCode::OK,
        TEXT,
        Bytes::from(format!("{} {}\n", cfg.service, cfg.revision)),
    ))
}

/// `latency` ± uniform `jitter`, never negative.
fn delay(latency: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let j = jitter.as_secs_f64();
    let offset = rand::random::<f64>() * 2.0 * j - j;
    Duration::from_secs_f64((latency.as_secs_f64() + offset).max(0.0))
}

async fn call_downstream(state: &State, url: &Uri) -> Result<(), String> {
    let req = Request::get(url.clone())
        .header(header::USER_AGENT, "cutover-demo-service")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(DOWNSTREAM_TIMEOUT, state.client.request(req))
        .await
        .map_err(|_| format!("no answer within {DOWNSTREAM_TIMEOUT:?}"))?
        .map_err(|e| {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(&e) {
                s.push_str(&format!(": {src}"));
            }
            s
        })?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        for _ in 0..1000 {
            let d = delay(Duration::from_millis(20), Duration::from_millis(5));
            assert!(
                d >= Duration::from_millis(15) && d <= Duration::from_millis(25),
                "{d:?}"
            );
        }
        let mut below = 0;
        for _ in 0..1000 {
            if delay(Duration::from_millis(1), Duration::from_millis(50)) < Duration::from_millis(1)
            {
                below += 1;
            }
        }
        assert!(
            below > 0,
            "jitter larger than latency must sometimes shorten it"
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_fix() {
        let mut c = DemoConfig::new("v1");
        c.error_rate = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--error-rate")
        );
        let mut c = DemoConfig::new("v1");
        c.downstream = Some("https://example.com/".parse().unwrap());
        assert!(c.validate().unwrap_err().to_string().contains("http://"));
        assert!(DemoConfig::new("").validate().is_err());
        assert!(DemoConfig::new("v1").validate().is_ok());
    }

    #[test]
    fn env_line_names_each_variable_and_shows_unset_ones_empty() {
        let mut c = DemoConfig::new("v1");
        c.print_env = vec!["API_TOKEN".into(), "MISSING".into()];
        let line = c.env_line(|n| (n == "API_TOKEN").then(|| "tok-123".to_string()));
        assert_eq!(line, "API_TOKEN=tok-123 MISSING=");
        assert_eq!(DemoConfig::new("v1").env_line(|_| None), "");
    }
}
