//! The local platform's admin endpoint: `GET /metrics` (Prometheus text of every
//! revision the proxies saw) and `GET /weights` (JSON: each service's split, revisions,
//! backends and in-flight counts).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::proxy::{ProxyError, RevisionRoute, ServiceProxy};
use super::stats::ProxyStats;

/// The proxies an admin endpoint reports on; the platform adds each proxy it binds.
/// Cheap to clone (clones share one list).
#[derive(Clone, Default)]
pub struct ProxyRegistry {
    proxies: Arc<RwLock<BTreeMap<String, ServiceProxy>>>,
}

impl ProxyRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the proxy of its service.
    pub fn insert(&self, proxy: ServiceProxy) {
        let mut m = self.proxies.write().unwrap_or_else(|p| p.into_inner());
        m.insert(proxy.service().to_string(), proxy);
    }

    pub fn remove(&self, service: &str) -> Option<ServiceProxy> {
        let mut m = self.proxies.write().unwrap_or_else(|p| p.into_inner());
        m.remove(service)
    }

    pub fn get(&self, service: &str) -> Option<ServiceProxy> {
        let m = self.proxies.read().unwrap_or_else(|p| p.into_inner());
        m.get(service).cloned()
    }

    pub fn all(&self) -> Vec<ServiceProxy> {
        let m = self.proxies.read().unwrap_or_else(|p| p.into_inner());
        m.values().cloned().collect()
    }
}

/// One service in the `/weights` document.
#[derive(Debug, Serialize)]
pub struct ServiceWeights {
    pub listen: SocketAddr,
    /// The split as set, revision -> percent.
    pub weights: BTreeMap<String, u8>,
    pub revisions: Vec<RevisionRoute>,
}

/// The `/weights` document: service name -> its routing state.
pub fn weights_document(registry: &ProxyRegistry) -> BTreeMap<String, ServiceWeights> {
    registry
        .all()
        .into_iter()
        .map(|p| {
            let doc = ServiceWeights {
                listen: p.local_addr(),
                weights: p.weights().into_iter().collect(),
                revisions: p.routes(),
            };
            (p.service().to_string(), doc)
        })
        .collect()
}

/// A running admin endpoint; stops on [`AdminHandle::shutdown`] or when dropped.
pub struct AdminHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl AdminHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting and close (in-flight admin requests get one second).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serve `GET /metrics` and `GET /weights` on `addr` (port 0 allowed).
pub async fn serve_admin(
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    registry: ProxyRegistry,
) -> Result<AdminHandle, ProxyError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::AdminBind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ProxyError::AdminBind { addr, source })?;
    let (stop, mut stop_rx) = watch::channel(false);
    let done = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let stats = stats.clone();
                    let registry = registry.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let stats = stats.clone();
                        let registry = registry.clone();
                        async move { Ok::<_, Infallible>(answer(&req, &stats, &registry)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    });
    tracing::info!(%local_addr, "admin endpoint listening");
    Ok(AdminHandle {
        local_addr,
        stop,
        done: Some(done),
    })
}

fn answer(
    req: &Request<Incoming>,
    stats: &ProxyStats,
    registry: &ProxyRegistry,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            stats.prometheus_text(),
        ),
        (&Method::GET, "/weights") => {
            match serde_json::to_string_pretty(&weights_document(registry)) {
                Ok(json) => (StatusCode::OK, "application/json", json),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("cannot encode weights: {e}\n"),
                ),
            }
        }
        (_, "/metrics" | "/weights") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_string(),
        ),
        (_, path) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("no admin page `{path}`; try /metrics or /weights\n"),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
