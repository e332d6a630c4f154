//! The local proxy, demo service and load generator over real loopback sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutover::demo_service::{DemoConfig, DemoExit, DemoServer};
use cutover::loadgen::{self, LoadConfig, LoadReport};
use cutover::metrics::MetricSource;
use cutover::platform::local::admin::{ProxyRegistry, serve_admin};
use cutover::platform::local::proxy::{DrainOutcome, ServiceProxy};
use cutover::platform::local::stats::ProxyStats;
use cutover::platform::{TEST_ROUTE_HEADER, Weights};
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A socket address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn demo(revision: &str, latency_ms: u64) -> DemoServer {
    let mut c = DemoConfig::new(revision);
    c.latency = Duration::from_millis(latency_ms);
    DemoServer::start(any_port(), c).await.unwrap()
}

fn w(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

struct Answer {
    status: u16,
    revision: Option<String>,
    body: String,
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let revision = resp
        .headers()
        .get(TEST_ROUTE_HEADER)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        revision,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn url(addr: SocketAddr, path: &str) -> Uri {
    format!("http://{addr}{path}").parse().unwrap()
}

async fn load(
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    conns: usize,
    max: Option<u64>,
) -> LoadReport {
    let mut c = LoadConfig::new(vec![url(addr, "/")], rate, Duration::from_secs_f64(secs));
    c.connections = conns;
    c.max_requests = max;
    loadgen::run(c).await.unwrap()
}

/// |k - n p| within `z` standard deviations of a binomial(n, p).
fn within_binomial(k: u64, n: u64, p: f64, z: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt().max(0.5);
    (k as f64 - mean).abs() <= z * sd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_honoured_within_binomial_bounds() {
    let (a, b, c) = (
        demo("v1", 0).await,
        demo("v2", 0).await,
        demo("v3", 0).await,
    );
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("api", any_port(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![b.local_addr()]);
    proxy.set_backends("v3", vec![c.local_addr()]);
    let n = 1000;
    for split in [
        w(&[("v1", 90), ("v2", 10)]),
        w(&[("v1", 1), ("v2", 99)]),
        w(&[("v1", 50), ("v2", 25), ("v3", 25)]),
    ] {
        proxy.set_weights(&split).unwrap();
        assert_eq!(proxy.weights(), split);
        let report = load(proxy.local_addr(), 0.0, 30.0, 8, Some(n)).await;
        assert_eq!(report.requests, n);
        assert_eq!(report.failed, 0, "{report:?}");
        let served = &report.urls[0].revisions;
        for (rev, pct) in &split {
            let k = served.get(rev).copied().unwrap_or(0);
            let p = f64::from(*pct) / 100.0;
            // 4.5 standard deviations: a false alarm about once in 150,000 runs.
            assert!(
                within_binomial(k, n, p, 4.5),
                "{rev}: {k} of {n} at {pct} %: {served:?}"
            );
        }
    }
    // The proxy's own counters agree with what the clients saw.
    let c1 = stats
        .counters("api", "v1", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let c2 = stats
        .counters("api", "v2", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let c3 = stats
        .counters("api", "v3", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.requests + c2.requests + c3.requests, 3 * n);
    assert_eq!(c1.errors() + c2.errors() + c3.errors(), 0);
    assert!(
        stats
            .recent_latency("api", "v1", Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
    proxy.shutdown().await;
    for s in [a, b, c] {
        assert_eq!(s.shutdown().await, DemoExit::Stopped);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_weights_are_refused_with_the_reason() {
    let a = demo("v1", 0).await;
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    let e = proxy
        .set_weights(&w(&[("v1", 90)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("add up to 90"), "{e}");
    let e = proxy
        .set_weights(&w(&[("v1", 50), ("v9", 50)]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown revision(s) v9") && e.contains("known: v1"),
        "{e}"
    );
    let e = proxy
        .set_weights(&w(&[("v1", 50), ("v1", 50)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("named twice"), "{e}");
    // Before any split, requests get a clear 503.
    let ans = get(proxy.local_addr(), "/", &[]).await;
    assert_eq!(ans.status, 503);
    assert!(ans.body.contains("no traffic split"), "{}", ans.body);
    proxy.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failed_requests_while_weights_flip_under_load() {
    let (a, b) = (demo("v1", 5).await, demo("v2", 5).await);
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![b.local_addr()]);
    proxy.set_weights(&w(&[("v1", 100), ("v2", 0)])).unwrap();
    let addr = proxy.local_addr();
    let loader = tokio::spawn(async move { load(addr, 1500.0, 3.0, 32, None).await });
    let splits = [
        w(&[("v1", 0), ("v2", 100)]),
        w(&[("v1", 50), ("v2", 50)]),
        w(&[("v1", 99), ("v2", 1)]),
        w(&[("v2", 100)]),
        w(&[("v1", 100)]),
    ];
    let mut flips = 0;
    while !loader.is_finished() {
        proxy.set_weights(&splits[flips % splits.len()]).unwrap();
        flips += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = loader.await.unwrap();
    assert!(flips > 50, "only {flips} flips");
    assert!(report.requests > 2000, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let served = &report.urls[0].revisions;
    assert!(served["v1"] > 100 && served["v2"] > 100, "{served:?}");
    assert_eq!(served.values().sum::<u64>(), report.requests);
    proxy.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_in_flight_request_to_a_drained_revision_completes() {
    let (slow, fresh) = (demo("v1", 1200).await, demo("v2", 0).await);
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![slow.local_addr()]);
    proxy.set_backends("v2", vec![fresh.local_addr()]);
    proxy.set_weights(&w(&[("v1", 100)])).unwrap();
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "/api/slow", &[]).await });
    for _ in 0..200 {
        if proxy.in_flight("v1") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.in_flight("v1"), 1);
    proxy.set_weights(&w(&[("v1", 0), ("v2", 100)])).unwrap();
    // New requests go to v2 while v1 still works on the slow one.
    let ans = get(addr, "/", &[]).await;
    assert_eq!(ans.revision.as_deref(), Some("v2"));
    assert_eq!(
        proxy.drain("v1", Duration::from_millis(50)).await,
        DrainOutcome::TimedOut { in_flight: 1 }
    );
    assert_eq!(
        proxy.drain("v1", Duration::from_secs(10)).await,
        DrainOutcome::Drained
    );
    let slow_answer = pending.await.unwrap();
    assert_eq!(slow_answer.status, 200);
    assert_eq!(slow_answer.revision.as_deref(), Some("v1"));
    assert!(
        slow_answer.body.contains("\"revision\":\"v1\""),
        "{}",
        slow_answer.body
    );
    // Retire: stop it, forget it; the split still works.
    assert_eq!(slow.shutdown().await, DemoExit::Stopped);
    proxy.remove_revision("v1");
    assert_eq!(proxy.in_flight("v1"), 0);
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    proxy.shutdown().await;
    fresh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_of_one_replica_waits_for_its_requests() {
    let (r0, r1) = (demo("v1", 800).await, demo("v1", 0).await);
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![r0.local_addr()]);
    proxy.set_weights(&w(&[("v1", 100)])).unwrap();
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "/", &[]).await });
    for _ in 0..200 {
        if proxy.backend_in_flight(r0.local_addr()) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.set_backends("v1", vec![r1.local_addr()]);
    assert_eq!(proxy.backend_in_flight(r0.local_addr()), 1);
    assert_eq!(
        proxy
            .drain_backend(r0.local_addr(), Duration::from_secs(10))
            .await,
        DrainOutcome::Drained
    );
    assert_eq!(pending.await.unwrap().status, 200);
    r0.shutdown().await;
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    proxy.shutdown().await;
    r1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_route_header_reaches_a_revision_at_weight_zero() {
    let (a, b) = (demo("v1", 0).await, demo("v2", 0).await);
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![b.local_addr()]);
    proxy.set_weights(&w(&[("v1", 100), ("v2", 0)])).unwrap();
    for _ in 0..20 {
        let ans = get(
            proxy.local_addr(),
            "/api/smoke",
            &[(TEST_ROUTE_HEADER, "v2")],
        )
        .await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.revision.as_deref(), Some("v2"));
        assert!(ans.body.contains("\"revision\":\"v2\""), "{}", ans.body);
    }
    assert_eq!(
        get(proxy.local_addr(), "/", &[]).await.revision.as_deref(),
        Some("v1")
    );
    let ans = get(proxy.local_addr(), "/", &[(TEST_ROUTE_HEADER, "v7")]).await;
    assert_eq!(ans.status, 502);
    assert!(ans.body.contains("no revision `v7`"), "{}", ans.body);
    // A known revision without backends: 502 naming it (pinned requests are not counted).
    proxy.set_backends("v3", vec![]);
    let ans = get(proxy.local_addr(), "/", &[(TEST_ROUTE_HEADER, "v3")]).await;
    assert_eq!(ans.status, 502);
    assert!(ans.body.contains("has no backend"), "{}", ans.body);
    proxy.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_counted_against_the_revision() {
    let a = demo("v1", 0).await;
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("api", any_port(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![dead_addr()]);
    proxy.set_weights(&w(&[("v1", 50), ("v2", 50)])).unwrap();
    let report = load(proxy.local_addr(), 0.0, 30.0, 4, Some(200)).await;
    let u = &report.urls[0];
    assert_eq!(u.requests, 200);
    assert_eq!(u.status.get(&200), Some(&100), "{u:?}");
    assert_eq!(u.status.get(&502), Some(&100), "{u:?}");
    assert_eq!(
        u.revisions.get("v2"),
        Some(&100),
        "502s name the revision: {u:?}"
    );
    let c2 = stats
        .counters("api", "v2", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c2.requests, c2.connection_errors, c2.errors_5xx),
        (100, 100, 0)
    );
    let c1 = stats
        .counters("api", "v1", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c1.requests, c1.errors()), (100, 0));
    assert_eq!(proxy.in_flight("v2"), 0);

    // A backend that dies with a request in flight: a connection error, not a hang.
    let mut slow = DemoConfig::new("v3");
    slow.latency = Duration::from_secs(5);
    let dying = DemoServer::start(any_port(), slow).await.unwrap();
    proxy.set_backends("v3", vec![dying.local_addr()]);
    // Routed by weight: pinned requests are not counted in the statistics.
    proxy.set_weights(&w(&[("v3", 100)])).unwrap();
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "/", &[]).await });
    for _ in 0..200 {
        if proxy.in_flight("v3") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dying.kill();
    let ans = pending.await.unwrap();
    assert_eq!(ans.status, 502);
    let c3 = stats
        .counters("api", "v3", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c3.connection_errors, 1);
    assert_eq!(proxy.in_flight("v3"), 0);
    proxy.shutdown().await;
    a.shutdown().await;
}

/// A strict reader of the Prometheus text format (0.0.4) for the subset we emit.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types = std::collections::HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("metric name after # HELP/# TYPE");
            let tail = parts.next().expect("text after the metric name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            match kind {
                "HELP" => {}
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "summary", "histogram", "untyped"].contains(&tail),
                        "{line}"
                    );
                    types.insert(name.to_string(), tail.to_string());
                }
                _ => panic!("unknown comment kind: {line}"),
            }
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match head.split_once('{') {
            None => (head, Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(
                        !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut val = String::new();
                    loop {
                        match chars
                            .next()
                            .unwrap_or_else(|| panic!("unterminated label value: {line}"))
                        {
                            '\\' => val.push(chars.next().unwrap()),
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.push((key, val));
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        Some(c) => panic!("unexpected {c:?} in {line}"),
                    }
                }
                (name, labels)
            }
        };
        // A summary's and a histogram's samples carry suffixes of their family's name.
        let family = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| {
                types
                    .get(*f)
                    .is_some_and(|t| t == "summary" || t == "histogram")
            })
            .or_else(|| {
                name.strip_suffix("_bucket")
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        samples.push((name.to_string(), labels, value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_parseable_prometheus_text_and_weights_json() {
    let (a, b) = (demo("v1", 0).await, demo("v2", 0).await);
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("web \"edge\"", any_port(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![b.local_addr()]);
    proxy.set_weights(&w(&[("v1", 80), ("v2", 20)])).unwrap();
    let registry = ProxyRegistry::new();
    registry.insert(proxy.clone());
    let admin = serve_admin(any_port(), stats.clone(), registry)
        .await
        .unwrap();
    let report = load(proxy.local_addr(), 0.0, 30.0, 4, Some(100)).await;
    assert_eq!(report.failed, 0);

    let metrics = get(admin.local_addr(), "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let samples = parse_prometheus(&metrics.body);
    let find = |name: &str, rev: &str| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.contains(&("revision".to_string(), rev.to_string()))
                    && l.contains(&("service".to_string(), "web \"edge\"".to_string()))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        find("cutover_proxy_requests_total", "v1"),
        Some(80.0),
        "{}",
        metrics.body
    );
    assert_eq!(find("cutover_proxy_requests_total", "v2"), Some(20.0));
    assert_eq!(
        find("cutover_proxy_latency_seconds_count", "v1"),
        Some(80.0)
    );
    assert_eq!(find("cutover_proxy_in_flight", "v1"), Some(0.0));
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "cutover_proxy_latency_seconds"
                && l.iter().any(|(k, v)| k == "quantile" && v == "0.99"))
    );

    let weights = get(admin.local_addr(), "/weights", &[]).await;
    assert_eq!(weights.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&weights.body).unwrap();
    assert_eq!(doc["web \"edge\""]["weights"]["v1"], 80);
    assert_eq!(doc["web \"edge\""]["revisions"][1]["revision"], "v2");
    assert_eq!(get(admin.local_addr(), "/nope", &[]).await.status, 404);
    admin.shutdown().await;
    proxy.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_service_fault_flags_behave() {
    // --error-rate 1 and 0.3
    let mut c = DemoConfig::new("v1");
    c.error_rate = 1.0;
    let s = DemoServer::start(any_port(), c).await.unwrap();
    assert_eq!(get(s.local_addr(), "/", &[]).await.status, 500);
    assert_eq!(
        get(s.local_addr(), "/healthz", &[]).await.status,
        200,
        "health is not an injected error"
    );
    s.shutdown().await;
    let mut c = DemoConfig::new("v1");
    c.error_rate = 0.3;
    let s = DemoServer::start(any_port(), c).await.unwrap();
    let r = load(s.local_addr(), 0.0, 30.0, 4, Some(1000)).await;
    let errors = r.urls[0].status.get(&500).copied().unwrap_or(0);
    assert!(
        within_binomial(errors, 1000, 0.3, 4.5),
        "{errors} errors of 1000 at 30 %"
    );
    s.shutdown().await;

    // --unhealthy, --slow-start
    let mut c = DemoConfig::new("v1");
    c.unhealthy = true;
    let s = DemoServer::start(any_port(), c).await.unwrap();
    assert_eq!(get(s.local_addr(), "/healthz", &[]).await.status, 503);
    assert_eq!(get(s.local_addr(), "/", &[]).await.status, 200);
    s.shutdown().await;
    let mut c = DemoConfig::new("v1");
    c.slow_start = Some(Duration::from_millis(400));
    let s = DemoServer::start(any_port(), c).await.unwrap();
    assert_eq!(
        get(s.local_addr(), "/healthz", &[]).await.body,
        "starting\n"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get(s.local_addr(), "/healthz", &[]).await.status, 200);
    s.shutdown().await;

    // --latency-ms with jitter
    let mut c = DemoConfig::new("v1");
    c.latency = Duration::from_millis(40);
    c.latency_jitter = Duration::from_millis(10);
    let s = DemoServer::start(any_port(), c).await.unwrap();
    let r = load(s.local_addr(), 0.0, 30.0, 4, Some(40)).await;
    assert!(
        r.latency.p50_ms >= 30.0 && r.latency.max_ms >= 40.0,
        "{:?}",
        r.latency
    );
    s.shutdown().await;

    // --downstream: healthy dependency passes, dead one turns into 502
    let dep = demo("dep", 0).await;
    let mut c = DemoConfig::new("v1");
    c.downstream = Some(url(dep.local_addr(), "/api/dep"));
    let s = DemoServer::start(any_port(), c).await.unwrap();
    assert_eq!(get(s.local_addr(), "/api/x", &[]).await.status, 200);
    assert_eq!(dep.served(), 1);
    dep.shutdown().await;
    let ans = get(s.local_addr(), "/api/x", &[]).await;
    assert_eq!(ans.status, 502);
    assert!(ans.body.contains("downstream"), "{}", ans.body);
    s.shutdown().await;

    // --crash-after: ends by itself, connections refused afterwards
    let mut c = DemoConfig::new("v1");
    c.crash_after = Some(Duration::from_millis(300));
    let s = DemoServer::start(any_port(), c).await.unwrap();
    let addr = s.local_addr();
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    let exit = s.run_until(std::future::pending()).await;
    assert_eq!(exit, DemoExit::Crashed);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // graceful shutdown finishes the request in flight
    let s = demo("v1", 500).await;
    let addr = s.local_addr();
    let pending = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.shutdown().await, DemoExit::Stopped);
    assert_eq!(pending.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_report_counts_every_request() {
    let s = demo("v1", 0).await;
    let mut c = LoadConfig::new(
        vec![
            url(s.local_addr(), "/"),
            url(s.local_addr(), "/missing"),
            url(dead_addr(), "/"),
        ],
        600.0,
        Duration::from_millis(500),
    );
    c.connections = 4;
    c.headers = vec![(
        HeaderName::from_static("x-test"),
        HeaderValue::from_static("1"),
    )];
    let r = loadgen::run(c).await.unwrap();
    // Open loop at 600/s for 0.5 s: 300 tickets, 100 per URL.
    assert_eq!(r.requests, 300, "{r:?}");
    assert_eq!(r.urls[0].status.get(&200), Some(&100));
    assert_eq!(r.urls[1].status.get(&404), Some(&100));
    assert_eq!(r.urls[2].connection_errors, 100);
    assert!(
        r.urls[2].errors.keys().all(|e| e.contains("connect")),
        "{:?}",
        r.urls[2].errors
    );
    assert_eq!(r.failed, 200);
    assert!(r.achieved_rate > 300.0, "{}", r.achieved_rate);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["urls"][0]["status"]["200"], 100);
    assert!(json["urls"][0]["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(s.served(), 100, "404s are not served pages");
    s.shutdown().await;
    let bad = LoadConfig::new(
        vec!["https://127.0.0.1/".parse().unwrap()],
        1.0,
        Duration::from_secs(1),
    );
    assert!(
        loadgen::run(bad)
            .await
            .unwrap_err()
            .to_string()
            .contains("http://")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_shutdown_finishes_in_flight_then_refuses() {
    let a = demo("v1", 400).await;
    let proxy = Arc::new(
        ServiceProxy::bind("api", any_port(), ProxyStats::new())
            .await
            .unwrap(),
    );
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_weights(&w(&[("v1", 100)])).unwrap();
    let addr = proxy.local_addr();
    let pending = tokio::spawn(async move { get(addr, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown().await;
    assert_eq!(pending.await.unwrap().status, 200);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_a_restarted_backend_are_replaced_without_errors() {
    let first = demo("v1", 0).await;
    let addr = first.local_addr();
    let proxy = ServiceProxy::bind("api", any_port(), ProxyStats::new())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![addr]);
    proxy.set_weights(&w(&[("v1", 100)])).unwrap();
    // Fill the pool with several idle keep-alive connections.
    let r = load(proxy.local_addr(), 0.0, 30.0, 8, Some(400)).await;
    assert_eq!(r.failed, 0);
    // The backend restarts on the same address: every pooled connection is now dead.
    first.shutdown().await;
    let second = DemoServer::start(addr, DemoConfig::new("v1"))
        .await
        .unwrap();
    let r = load(proxy.local_addr(), 0.0, 30.0, 8, Some(400)).await;
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(second.served(), 400);
    proxy.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_requests_are_never_counted_in_the_judges_statistics() {
    let (a, b) = (demo("v1", 0).await, demo("v2", 0).await);
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("api", any_port(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![a.local_addr()]);
    proxy.set_backends("v2", vec![b.local_addr()]);
    proxy.set_backends("v3", vec![]);
    proxy.set_weights(&w(&[("v1", 90), ("v2", 10)])).unwrap();
    // Unpinned traffic counts: 100 requests follow the 90/10 split exactly.
    for _ in 0..100 {
        assert_eq!(get(proxy.local_addr(), "/", &[]).await.status, 200);
    }
    let counted = |rev: &str| {
        stats
            .get("api", rev)
            .map(|s| s.counters(Duration::from_millis(500)).requests)
            .unwrap_or(0)
    };
    assert_eq!((counted("v1"), counted("v2")), (90, 10));
    // A flood of pinned requests (smoke-test style), answered or not, changes nothing.
    for _ in 0..50 {
        let ans = get(proxy.local_addr(), "/", &[(TEST_ROUTE_HEADER, "v2")]).await;
        assert_eq!(ans.revision.as_deref(), Some("v2"));
        let ans = get(proxy.local_addr(), "/", &[(TEST_ROUTE_HEADER, "v3")]).await;
        assert_eq!(ans.status, 502);
    }
    assert_eq!((counted("v1"), counted("v2"), counted("v3")), (90, 10, 0));
    proxy.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}
