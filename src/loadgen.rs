//! An HTTP load generator with exact per-request accounting (`cutover load`), used by the
//! tests and the benchmarks.
//!
//! `connections` workers each keep one keep-alive connection per URL and take request
//! tickets from a shared counter. With a rate, ticket `i` is due at `start + i / rate`
//! (open loop: a slow server does not slow the schedule down, requests queue up to the
//! worker count); with rate 0 every worker sends as fast as it can (closed loop). URLs
//! are used in turn. Latency is measured from sending a request to the end of its body.
//! Nothing is retried: a request that was sent and got no answer counts as a connection
//! error. Only a connection found closed *before* sending is silently replaced.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::platform::TEST_ROUTE_HEADER;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub urls: Vec<Uri>,
    /// Total requests per second over all URLs; 0 = as fast as possible.
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    /// Stop after this many requests even if time is left.
    pub max_requests: Option<u64>,
    /// Per-request timeout (counted as a timeout, not a status).
    pub timeout: Duration,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl LoadConfig {
    pub fn new(urls: Vec<Uri>, rate: f64, duration: Duration) -> Self {
        LoadConfig {
            urls,
            rate,
            duration,
            connections: 16,
            max_requests: None,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Invalid(String),
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyReport {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Results for one URL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UrlReport {
    pub url: String,
    /// Requests sent (answered + connection errors + timeouts).
    pub requests: u64,
    /// Answers by status code.
    pub status: BTreeMap<u16, u64>,
    pub connection_errors: u64,
    pub timeouts: u64,
    /// Connection errors by message.
    pub errors: BTreeMap<String, u64>,
    /// Answers by the `x-cutover-revision` response header (absent header = "-").
    pub revisions: BTreeMap<String, u64>,
    pub latency: LatencyReport,
}

impl UrlReport {
    /// Requests that did not get a 2xx/3xx answer.
    pub fn failed(&self) -> u64 {
        let bad_status: u64 = self
            .status
            .iter()
            .filter(|(s, _)| **s >= 400)
            .map(|(_, n)| n)
            .sum();
        bad_status + self.connection_errors + self.timeouts
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub urls: Vec<UrlReport>,
    pub requests: u64,
    pub failed: u64,
    pub duration_s: f64,
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// Latency over all URLs.
    pub latency: LatencyReport,
}

struct Target {
    uri: Uri,
    addr: String,
    host: HeaderValue,
    path: Uri,
}

#[derive(Default)]
struct Acc {
    requests: u64,
    status: HashMap<u16, u64>,
    connection_errors: u64,
    timeouts: u64,
    errors: HashMap<String, u64>,
    revisions: HashMap<HeaderValue, u64>,
    hist: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Acc {
    fn hist(&mut self) -> &mut Histogram<u64> {
        self.hist.get_or_insert_with(histogram)
    }
}

fn latency_of(h: &Histogram<u64>) -> LatencyReport {
    if h.is_empty() {
        return LatencyReport::default();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    LatencyReport {
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

fn targets(config: &LoadConfig) -> Result<Vec<Target>, LoadError> {
    if config.urls.is_empty() {
        return Err(LoadError::Invalid(
            "no URL given; pass at least one http:// URL".into(),
        ));
    }
    if config.connections == 0 {
        return Err(LoadError::Invalid(
            "--connections must be at least 1".into(),
        ));
    }
    if !config.rate.is_finite() || config.rate < 0.0 {
        return Err(LoadError::Invalid(format!(
            "--rate {} must be a number of requests per second >= 0 (0 = as fast as possible)",
            config.rate
        )));
    }
    config
        .urls
        .iter()
        .map(|u| {
            if u.scheme_str() != Some("http") {
                return Err(LoadError::Invalid(format!(
                    "`{u}` is not an http:// URL (https is not supported); write e.g. http://127.0.0.1:8080/"
                )));
            }
            let Some(auth) = u.authority() else {
                return Err(LoadError::Invalid(format!("`{u}` has no host; write e.g. http://127.0.0.1:8080/")));
            };
            let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
            let host = HeaderValue::from_str(auth.as_str())
                .map_err(|_| LoadError::Invalid(format!("`{u}` has an invalid host")))?;
            let path: Uri = u
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .parse()
                .map_err(|e| LoadError::Invalid(format!("`{u}`: {e}")))?;
            Ok(Target { uri: u.clone(), addr, host, path })
        })
        .collect()
}

/// Run the load and report. Bounded by `duration` (plus one request timeout for the
/// requests still in flight at the end) and by `max_requests`.
pub async fn run(config: LoadConfig) -> Result<LoadReport, LoadError> {
    let targets = Arc::new(targets(&config)?);
    let config = Arc::new(config);
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let mut workers = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        workers.push(tokio::spawn(worker(
            config.clone(),
            targets.clone(),
            next.clone(),
            start,
        )));
    }
    let mut accs: Vec<Acc> = (0..targets.len()).map(|_| Acc::default()).collect();
    for w in workers {
        // A panicking worker loses its counts; there is no panic path in `worker`.
        if let Ok(part) = w.await {
            for (acc, p) in accs.iter_mut().zip(part) {
                merge(acc, p);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = histogram();
    let urls: Vec<UrlReport> = accs
        .into_iter()
        .zip(targets.iter())
        .map(|(mut acc, t)| {
            let h = acc.hist().clone();
            let _ = all.add(&h);
            UrlReport {
                url: t.uri.to_string(),
                requests: acc.requests,
                status: acc.status.into_iter().collect(),
                connection_errors: acc.connection_errors,
                timeouts: acc.timeouts,
                errors: acc.errors.into_iter().collect(),
                revisions: revision_names(acc.revisions),
                latency: latency_of(&h),
            }
        })
        .collect();
    let requests: u64 = urls.iter().map(|u| u.requests).sum();
    let failed: u64 = urls.iter().map(UrlReport::failed).sum();
    Ok(LoadReport {
        requests,
        failed,
        duration_s: elapsed,
        target_rate: config.rate,
        achieved_rate: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        latency: latency_of(&all),
        urls,
    })
}

fn revision_names(counts: HashMap<HeaderValue, u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in counts {
        let name = String::from_utf8_lossy(k.as_bytes()).into_owned();
        *out.entry(name).or_default() += v;
    }
    out
}

fn merge(into: &mut Acc, from: Acc) {
    into.requests += from.requests;
    into.connection_errors += from.connection_errors;
    into.timeouts += from.timeouts;
    for (k, v) in from.status {
        *into.status.entry(k).or_default() += v;
    }
    for (k, v) in from.errors {
        *into.errors.entry(k).or_default() += v;
    }
    for (k, v) in from.revisions {
        *into.revisions.entry(k).or_default() += v;
    }
    if let Some(h) = from.hist {
        let _ = into.hist().add(&h);
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

enum Outcome {
    Answer {
        status: u16,
        revision: Option<HeaderValue>,
    },
    Error(String),
}

async fn worker(
    config: Arc<LoadConfig>,
    targets: Arc<Vec<Target>>,
    next: Arc<AtomicU64>,
    start: tokio::time::Instant,
) -> Vec<Acc> {
    let mut accs: Vec<Acc> = (0..targets.len()).map(|_| Acc::default()).collect();
    let mut conns: Vec<Option<SendRequest<Empty<Bytes>>>> =
        (0..targets.len()).map(|_| None).collect();
    let end = start + config.duration;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if config.max_requests.is_some_and(|m| i >= m) {
            break;
        }
        if config.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / config.rate);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due).await;
        } else if tokio::time::Instant::now() >= end {
            break;
        }
        let t = (i % targets.len() as u64) as usize;
        let target = &targets[t];
        let sent = Instant::now();
        let outcome =
            tokio::time::timeout(config.timeout, send(&config, target, &mut conns[t])).await;
        let micros = sent.elapsed().as_micros() as u64;
        let acc = &mut accs[t];
        acc.requests += 1;
        match outcome {
            Ok(Outcome::Answer { status, revision }) => {
                *acc.status.entry(status).or_default() += 1;
                let revision = revision.unwrap_or_else(|| HeaderValue::from_static("-"));
                *acc.revisions.entry(revision).or_default() += 1;
                acc.hist().saturating_record(micros.max(1));
            }
            Ok(Outcome::Error(e)) => {
                acc.connection_errors += 1;
                *acc.errors.entry(e).or_default() += 1;
                conns[t] = None;
            }
            Err(_) => {
                acc.timeouts += 1;
                conns[t] = None;
            }
        }
    }
    accs
}

async fn send(
    config: &LoadConfig,
    target: &Target,
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
) -> Outcome {
    // Replace a connection the server closed while idle: nothing was sent on it yet.
    let usable = match conn.as_mut() {
        Some(c) if !c.is_closed() => c.ready().await.is_ok(),
        _ => false,
    };
    if !usable {
        match connect(&target.addr).await {
            Ok(c) => *conn = Some(c),
            Err(e) => return Outcome::Error(e),
        }
    }
    let Some(sender) = conn.as_mut() else {
        return Outcome::Error("no connection".into());
    };
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = target.path.clone();
    req.headers_mut().insert(header::HOST, target.host.clone());
    for (k, v) in &config.headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            let mut msg = e.to_string();
            if let Some(src) = std::error::Error::source(&e) {
                msg.push_str(&format!(": {src}"));
            }
            return Outcome::Error(msg);
        }
    };
    let status = resp.status().as_u16();
    let revision = resp.headers().get(TEST_ROUTE_HEADER).cloned();
    match resp.into_body().collect().await {
        Ok(_) => Outcome::Answer { status, revision },
        Err(e) => Outcome::Error(format!("reading body: {e}")),
    }
}
