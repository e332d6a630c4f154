//! Every answer the local proxy relays belongs to the request it answers, and is labelled
//! by a revision that had weight while that request was in the proxy: many keep-alive
//! clients, each request with its own path, through refusals (no split yet, pins to a
//! revision that does not exist or has no backend), weight changes, candidates that fail
//! half their requests, drains, `remove_revision`, and candidate backends stopped and
//! started again on the same port while the proxy holds pooled connections to them.
//!
//! This is the test that found the rollback-latency anomaly (docs/reliability.md): a
//! refusal on a keep-alive connection that was repeated, after which every answer on the
//! connection was paired with an earlier request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::platform::Weights;
use cutover::platform::local::proxy::{DrainOutcome, ServiceProxy};
use cutover::platform::local::stats::ProxyStats;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Keep-alive clients sending back to back.
const CLIENTS: usize = 12;
/// Candidate rounds (launch, 50 %, failing, back to 0, drain, remove, stop).
const ROUNDS: usize = 6;

/// A backend process stand-in: answers `<name> <path>` (its own name, so the label can be
/// checked against who really answered), with 500 for every other request when failing.
/// Stopping it closes its listener and every connection, as a killed process would.
struct Backend {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

async fn backend(name: String, addr: SocketAddr, failing: bool) -> Backend {
    // The port of a stopped backend may be taken again at once (SO_REUSEADDR, as tokio
    // sets it); connections to the old one may still sit in the proxy's pool.
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tasks = JoinSet::new();
    let name: Arc<str> = name.into();
    let counter = Arc::new(AtomicU64::new(0));
    tasks.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let (name, counter) = (name.clone(), counter.clone());
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let body = format!("{} {}", name, req.uri().path());
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            if failing && n % 2 == 0 {
                                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Backend { addr, tasks }
}

impl Backend {
    /// Like a killed process: the listener and every connection close at once.
    async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One weight change: the call began at `begin` and returned at `end`.
struct Change {
    begin: Instant,
    end: Instant,
    weights: Weights,
}

#[derive(Default)]
struct History {
    changes: Vec<Change>,
}

impl History {
    fn record(&mut self, begin: Instant, weights: &Weights) {
        self.changes.push(Change {
            begin,
            end: Instant::now(),
            weights: weights.clone(),
        });
    }

    /// Did `revision` have weight in some split that may have been in force while a
    /// request was in the proxy (`sent`..`answered`)? A split may be in force from the
    /// moment its call began until the next change's call returned.
    fn had_weight(&self, revision: &str, sent: Instant, answered: Instant) -> bool {
        self.changes.iter().enumerate().any(|(i, c)| {
            let until = self.changes.get(i + 1).map(|n| n.end);
            let overlaps = c.begin <= answered && until.is_none_or(|u| u >= sent);
            overlaps && c.weights.iter().any(|(r, w)| r == revision && *w > 0)
        })
    }

    /// When the first split was in force for sure.
    fn first_split(&self) -> Option<Instant> {
        self.changes.first().map(|c| c.end)
    }
}

/// One answer as a client saw it.
struct Seen {
    path: String,
    pinned: Option<&'static str>,
    sent: Instant,
    answered: Instant,
    status: u16,
    label: Option<String>,
    body: String,
}

/// Read one response (Content-Length bodies only, as the proxy and these backends send;
/// parsed by hand so that the test runs on either data path's dependencies).
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(u16, Option<String>, String)> {
    loop {
        if let Some(i) = buf.windows(4).position(|x| x == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or("");
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("a malformed status line: {status_line:?}"));
            let mut len = 0usize;
            let mut label = None;
            for line in lines {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                if name.eq_ignore_ascii_case("content-length") {
                    len = value.trim().parse().unwrap();
                } else if name.eq_ignore_ascii_case("x-cutover-revision") {
                    label = Some(value.trim().to_string());
                }
            }
            let n = i + 4;
            while buf.len() < n + len {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let body = String::from_utf8_lossy(&buf[n..n + len]).into_owned();
            buf.drain(..n + len);
            return Some((status, label, body));
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// One keep-alive client: requests back to back, each with its own path; every 40th is
/// pinned to a revision that does not exist, every 40th (offset) to one with no backend.
/// Ends with a `connection: close` request, after which nothing more may arrive.
/// `refused` counts the clients that got their first 503 (no split yet).
async fn client(
    addr: SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
) -> Vec<Seen> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut n = 0u64;
    loop {
        let last = stop.load(Ordering::Relaxed);
        n += 1;
        let path = format!("/c{id}/{n}");
        let pinned = match n % 40 {
            7 => Some("nope"),
            27 => Some("empty"),
            _ => None,
        };
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: t\r\n");
        if let Some(p) = pinned {
            req.push_str(&format!("x-cutover-revision: {p}\r\n"));
        }
        if last {
            req.push_str("connection: close\r\n");
        }
        req.push_str("\r\n");
        let sent = Instant::now();
        stream.write_all(req.as_bytes()).await.unwrap();
        let (status, label, body) = tokio::time::timeout(
            Duration::from_secs(10),
            read_response(&mut stream, &mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("client {id}: no answer to {path} within 10 s"))
        .unwrap_or_else(|| panic!("client {id}: the connection ended before the answer to {path}"));
        if status == 503 && !seen.iter().any(|s: &Seen| s.status == 503) {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        seen.push(Seen {
            path,
            pinned,
            sent,
            answered: Instant::now(),
            status,
            label,
            body,
        });
        if last {
            break;
        }
    }
    // Nothing after the last answer: the proxy closes the connection.
    let mut rest = [0u8; 1024];
    let k = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut rest))
        .await
        .expect("the proxy closes the connection after a `connection: close` answer")
        .unwrap_or(0);
    assert!(
        buf.is_empty() && k == 0,
        "client {id}: bytes after its last answer: {:?}",
        String::from_utf8_lossy(&[&buf[..], &rest[..k]].concat())
            .chars()
            .take(300)
            .collect::<String>()
    );
    seen
}

fn w(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_its_requests_and_labelled_by_a_revision_with_weight() {
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("svc", "127.0.0.1:0".parse().unwrap(), stats)
        .await
        .unwrap();
    let history = Arc::new(Mutex::new(History::default()));
    let set = |weights: Weights| {
        let begin = Instant::now();
        proxy.set_weights(&weights).unwrap();
        history.lock().unwrap().record(begin, &weights);
    };

    // Clients start before any split: their first requests are refused (503) on
    // keep-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let first_refusals = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        clients.spawn(client(
            proxy.local_addr(),
            id,
            stop.clone(),
            first_refusals.clone(),
        ));
    }
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let b1 = backend("v1".into(), any, false).await;
    let b2 = backend("v1".into(), any, false).await;
    // Every client has been refused on its keep-alive connection before the split is set.
    let deadline = Instant::now() + Duration::from_secs(10);
    while first_refusals.load(Ordering::SeqCst) < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "the clients got no 503 within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.set_backends("v1", vec![b1.addr, b2.addr]);
    proxy.set_backends("empty", vec![]);
    set(w(&[("v1", 100), ("empty", 0)]));

    let mut port = any;
    for round in 0..ROUNDS {
        // The candidate, on the port of the last one after the first round. Every other
        // round's candidate fails half its requests.
        let cand = backend("v2".into(), port, round % 2 == 1).await;
        port = cand.addr;
        proxy.set_backends("v2", vec![cand.addr]);
        set(w(&[("v1", 50), ("v2", 50), ("empty", 0)]));
        tokio::time::sleep(Duration::from_millis(120)).await;
        if round == ROUNDS - 1 {
            // A full flip and back.
            set(w(&[("v2", 100), ("v1", 0), ("empty", 0)]));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        set(w(&[("v1", 100), ("v2", 0), ("empty", 0)]));
        let drained = proxy.drain("v2", Duration::from_secs(5)).await;
        assert_eq!(
            drained,
            DrainOutcome::Drained,
            "round {round}: requests stayed in flight on the candidate at weight 0"
        );
        proxy.remove_revision("v2");
        // Pooled connections to it stay open in the proxy until it is stopped.
        tokio::time::sleep(Duration::from_millis(30)).await;
        cand.stop().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut all = Vec::new();
    while let Some(r) = clients.join_next().await {
        all.extend(r.unwrap());
    }
    b1.stop().await;
    b2.stop().await;
    proxy.shutdown().await;

    let history = history.lock().unwrap();
    let first_split = history.first_split().unwrap();
    let (mut refused, mut failed, mut by_v2) = (0, 0, 0);
    for s in &all {
        let ctx = || {
            format!(
                "answer to {} (pinned {:?}): {} {:?} {:?}",
                s.path, s.pinned, s.status, s.label, s.body
            )
        };
        match (s.pinned, s.status) {
            (Some("nope"), 502) => assert_eq!(s.label, None, "{}", ctx()),
            // Known (labelled, no backend) once the split is set; unknown before.
            (Some("empty"), 502) if s.sent > first_split => {
                assert_eq!(s.label.as_deref(), Some("empty"), "{}", ctx())
            }
            (Some("empty"), 502) => {}
            (None, 503) => {
                // Only before the first split was in force.
                assert!(
                    s.sent <= first_split,
                    "a 503 after a split was set: {}",
                    ctx()
                );
                refused += 1;
            }
            (None, 200 | 500) => {
                let label = s
                    .label
                    .as_deref()
                    .unwrap_or_else(|| panic!("no label: {}", ctx()));
                // The backend that answered names itself and the path it was asked for.
                assert_eq!(s.body, format!("{label} {}", s.path), "{}", ctx());
                assert!(
                    history.had_weight(label, s.sent, s.answered),
                    "labelled by a revision that had no weight while the request was in the proxy: {}",
                    ctx()
                );
                if s.status == 500 {
                    assert_eq!(label, "v2", "{}", ctx());
                    failed += 1;
                }
                if label == "v2" {
                    by_v2 += 1;
                }
            }
            _ => panic!("unexpected answer: {}", ctx()),
        }
    }
    // The scenario happened: refusals on keep-alive connections, candidate answers and
    // failures, and enough traffic for pooled connections to be reused.
    assert!(
        refused >= CLIENTS,
        "{refused} requests refused before the split"
    );
    assert!(
        by_v2 > 100 && failed > 20,
        "{by_v2} candidate answers, {failed} of them 500"
    );
    assert!(all.len() > 2000, "only {} requests", all.len());
    println!(
        "{} requests on {CLIENTS} connections: {refused} refused before the split, {by_v2} answered by candidates ({failed} failing)",
        all.len()
    );
}
