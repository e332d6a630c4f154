//! Zero downtime under constant load, through cutover's proxy, with real backend processes
//! (`cutover demo-service --latency-ms 20`):
//!
//! 1. graceful run (>= 200,000 requests at a constant rate): blue-green flip v1 -> v2 with
//!    drain, canary ramp v2 -> v3 (3 replicas) 1 -> 100 %, rolling replace of v3's 3
//!    replicas by v4 (add a new replica, shift weight, take an old one out, drain it,
//!    SIGTERM it). Target: 0 failed requests.
//! 2. control run: flip v1 -> v2 and SIGKILL v1 at once, without draining. It must show
//!    failures, proving the measurement can see them.
//! 3. weight-change latency: the `set_weights` call under load, and the time from the
//!    call to the first response from the newly weighted revision on a busy client.
//!
//! Run: `cargo bench --bench zero_downtime`. Knobs: BENCH_ZD_RATE (4500), BENCH_ZD_REQUESTS
//! (210000).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use cutover::loadgen::{self, LoadConfig, LoadReport};
use cutover::platform::Weights;
use cutover::platform::local::proxy::ServiceProxy;
use cutover::platform::local::stats::ProxyStats;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::runtime::Handle;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn w(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

fn set(proxy: &ServiceProxy, weights: &Weights) {
    proxy
        .set_weights(weights)
        .unwrap_or_else(|e| fail(&e.to_string()));
}

fn start_load(
    h: &Handle,
    addr: SocketAddr,
    rate: f64,
    max: u64,
    cap: Duration,
) -> tokio::task::JoinHandle<LoadReport> {
    let uri = format!("http://{addr}/api/zd")
        .parse()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let mut c = LoadConfig::new(vec![uri], rate, cap);
    c.connections = 256;
    c.max_requests = Some(max);
    c.timeout = Duration::from_secs(5);
    h.spawn(async move {
        loadgen::run(c)
            .await
            .unwrap_or_else(|e| fail(&e.to_string()))
    })
}

/// Drain a revision, SIGTERM its processes, check they exit 0, forget the revision.
fn retire(
    h: &Handle,
    kids: &mut Children,
    proxy: &ServiceProxy,
    rev: &str,
    pids: &[u32],
    log: &mut Vec<String>,
) {
    let t = Instant::now();
    let outcome = h.block_on(proxy.drain(rev, Duration::from_secs(10)));
    for pid in pids {
        kids.signal(*pid, libc::SIGTERM);
    }
    for pid in pids {
        let st = kids.wait(*pid, Duration::from_secs(10));
        if st.and_then(|s| s.code()) != Some(0) {
            log.push(format!(
                "{rev} pid {pid} did not exit 0 after SIGTERM: {st:?}"
            ));
        }
    }
    proxy.remove_revision(rev);
    log.push(format!(
        "retired {rev}: drain {outcome:?} in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));
}

fn row(name: &str, r: &LoadReport, extra: &str) {
    let u = &r.urls[0];
    let non_2xx: u64 = u
        .status
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let revs: Vec<String> = u
        .revisions
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    println!(
        "| {name} | {} | {:.0} | {} | {} | {} | {} | {:.1} / {:.1} | {} | {extra} |",
        r.requests,
        r.achieved_rate,
        r.failed,
        non_2xx,
        u.connection_errors,
        u.timeouts,
        u.latency.p50_ms,
        u.latency.p99_ms,
        revs.join(" ")
    );
}

fn graceful_run(h: &Handle, rate: f64, total: u64) -> (LoadReport, Vec<String>, Children) {
    let mut kids = Children::default();
    let mut log = Vec::new();
    let proxy = h
        .block_on(ServiceProxy::bind(
            "zd",
            ([127, 0, 0, 1], 0).into(),
            ProxyStats::new(),
        ))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let (v1_pid, v1) = kids.demo_service("v1", 20);
    let (v2_pid, v2) = kids.demo_service("v2", 20);
    proxy.set_backends("v1", vec![v1]);
    proxy.set_backends("v2", vec![v2]);
    set(&proxy, &w(&[("v1", 100)]));
    let cap = Duration::from_secs_f64(total as f64 / rate * 1.6 + 10.0);
    let load = start_load(h, proxy.local_addr(), rate, total, cap);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));

    // 1. blue-green v1 -> v2, drain v1, stop it
    set(&proxy, &w(&[("v1", 0), ("v2", 100)]));
    log.push(format!(
        "t={:.1}s blue-green v1 -> v2",
        started.elapsed().as_secs_f64()
    ));
    retire(h, &mut kids, &proxy, "v1", &[v1_pid], &mut log);

    // 2. canary ramp v2 -> v3 (3 replicas)
    let v3: Vec<(u32, SocketAddr)> = (0..3).map(|_| kids.demo_service("v3", 20)).collect();
    proxy.set_backends("v3", v3.iter().map(|(_, a)| *a).collect());
    log.push(format!(
        "t={:.1}s canary ramp v3",
        started.elapsed().as_secs_f64()
    ));
    for pct in [1u8, 5, 10, 25, 50, 75, 100] {
        set(&proxy, &w(&[("v2", 100 - pct), ("v3", pct)]));
        std::thread::sleep(Duration::from_secs(2));
    }
    retire(h, &mut kids, &proxy, "v2", &[v2_pid], &mut log);

    // 3. rolling replace of v3's 3 replicas by v4, one at a time
    log.push(format!(
        "t={:.1}s rolling replace v3 -> v4",
        started.elapsed().as_secs_f64()
    ));
    let mut new = Vec::new();
    for i in 0..3 {
        let (_, addr) = kids.demo_service("v4", 20);
        new.push(addr);
        proxy.set_backends("v4", new.clone());
        let w4 = ((i + 1) * 100 / 3) as u8;
        let w4 = if i == 2 { 100 } else { w4 };
        set(&proxy, &w(&[("v3", 100 - w4), ("v4", w4)]));
        // Take old replica i out of rotation, drain it, stop it.
        let (old_pid, old_addr) = v3[i];
        proxy.set_backends("v3", v3[i + 1..].iter().map(|(_, a)| *a).collect());
        let t = Instant::now();
        let outcome = h.block_on(proxy.drain_backend(old_addr, Duration::from_secs(10)));
        kids.signal(old_pid, libc::SIGTERM);
        let st = kids.wait(old_pid, Duration::from_secs(10));
        log.push(format!(
            "replaced v3 replica {i} ({old_addr}): drain {outcome:?} in {:.0} ms, exit {:?}",
            t.elapsed().as_secs_f64() * 1e3,
            st.and_then(|s| s.code())
        ));
        std::thread::sleep(Duration::from_secs(2));
    }
    proxy.remove_revision("v3");
    log.push(format!(
        "t={:.1}s all phases done; load continues on v4",
        started.elapsed().as_secs_f64()
    ));
    let report = h
        .block_on(load)
        .unwrap_or_else(|e| fail(&format!("load task: {e}")));
    h.block_on(proxy.shutdown());
    (report, log, kids)
}

fn control_run(h: &Handle) -> (LoadReport, Children) {
    let mut kids = Children::default();
    let proxy = h
        .block_on(ServiceProxy::bind(
            "zd-control",
            ([127, 0, 0, 1], 0).into(),
            ProxyStats::new(),
        ))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let (v1_pid, v1) = kids.demo_service("v1", 20);
    let (_, v2) = kids.demo_service("v2", 20);
    proxy.set_backends("v1", vec![v1]);
    proxy.set_backends("v2", vec![v2]);
    set(&proxy, &w(&[("v1", 100)]));
    let load = start_load(
        h,
        proxy.local_addr(),
        2000.0,
        12_000,
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    set(&proxy, &w(&[("v1", 0), ("v2", 100)]));
    kids.signal(v1_pid, libc::SIGKILL);
    kids.wait(v1_pid, Duration::from_secs(5));
    let report = h
        .block_on(load)
        .unwrap_or_else(|e| fail(&format!("load task: {e}")));
    h.block_on(proxy.shutdown());
    (report, kids)
}

struct Flip {
    at: Instant,
    target: &'static str,
}

fn weight_change_latency(h: &Handle) -> (Histogram<u64>, Histogram<u64>, Children) {
    let mut kids = Children::default();
    let proxy = h
        .block_on(ServiceProxy::bind(
            "zd-weights",
            ([127, 0, 0, 1], 0).into(),
            ProxyStats::new(),
        ))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let (_, a) = kids.demo_service("a", 0);
    let (_, b) = kids.demo_service("b", 0);
    proxy.set_backends("a", vec![a]);
    proxy.set_backends("b", vec![b]);
    set(&proxy, &w(&[("a", 100)]));
    let background = start_load(
        h,
        proxy.local_addr(),
        2000.0,
        1_000_000,
        Duration::from_secs(8),
    );
    std::thread::sleep(Duration::from_millis(300));

    // (a) the call itself, under load
    let mut call = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let splits = [w(&[("a", 90), ("b", 10)]), w(&[("a", 10), ("b", 90)])];
    for i in 0..5000 {
        let t = Instant::now();
        set(&proxy, &splits[i % 2]);
        call.saturating_record(t.elapsed().as_nanos() as u64);
    }

    // (b) call -> first response from the newly weighted revision on a busy client
    let flip: Arc<Mutex<Option<Flip>>> = Arc::new(Mutex::new(None));
    let seen = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .unwrap_or_else(|e| fail(&e.to_string())),
    ));
    let addr = proxy.local_addr();
    let (probe_flip, probe_seen) = (flip.clone(), seen.clone());
    let probe = h.spawn(async move {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return;
        };
        tokio::spawn(conn);
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            let Ok(req) = hyper::Request::get("/")
                .header("host", "bench")
                .body(Empty::<Bytes>::new())
            else {
                return;
            };
            let Ok(resp) = sender.send_request(req).await else {
                return;
            };
            let rev = resp
                .headers()
                .get("x-cutover-revision")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let _ = resp.into_body().collect().await;
            let mut f = probe_flip.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(fl), Some(rev)) = (f.as_ref(), rev)
                && rev == fl.target
            {
                let ns = fl.at.elapsed().as_nanos() as u64;
                probe_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(ns);
                *f = None;
            }
        }
    });
    for i in 0..200 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        {
            let mut f = flip.lock().unwrap_or_else(|p| p.into_inner());
            *f = Some(Flip {
                at: Instant::now(),
                target,
            });
            set(&proxy, &w(&[(target, 100)]));
        }
        let wait_until = Instant::now() + Duration::from_secs(1);
        while flip.lock().unwrap_or_else(|p| p.into_inner()).is_some()
            && Instant::now() < wait_until
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(5 + (i % 10)));
    }
    let _ = h.block_on(probe);
    let _ = h.block_on(background);
    h.block_on(proxy.shutdown());
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (call, seen, kids)
}

fn main() {
    let rate = env_num("BENCH_ZD_RATE", 4500.0);
    let total = env_num("BENCH_ZD_REQUESTS", 210_000.0) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let h = rt.handle().clone();
    let mut all_pids = Vec::new();

    eprintln!("zero downtime: graceful run, {total} requests at {rate} req/s, backends 20 ms");
    let busy = machine_busy(Duration::from_millis(500));
    let (graceful, log, kids) = graceful_run(&h, rate, total);
    all_pids.extend(kids.all_pids.iter().copied());
    drop(kids);
    for l in &log {
        eprintln!("  {l}");
    }
    eprintln!("zero downtime: control run (SIGKILL v1 right after the flip, no drain)");
    let (control, kids) = control_run(&h);
    all_pids.extend(kids.all_pids.iter().copied());
    drop(kids);
    eprintln!("weight-change latency");
    let (call, seen, kids) = weight_change_latency(&h);
    all_pids.extend(kids.all_pids.iter().copied());
    drop(kids);

    println!();
    println!(
        "| run | requests | achieved req/s | failed | non-2xx | connection errors | timeouts | p50 / p99 ms | served by | note |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    row(
        "graceful: blue-green + canary 1→100 % + rolling 3 replicas",
        &graceful,
        &format!("target 0 failed (machine {busy:.0} % busy before)"),
    );
    row(
        "control: SIGKILL old revision, no drain",
        &control,
        "must show failures",
    );
    println!();
    println!("| weight change | samples | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| `set_weights` call under 2000 req/s (applied when it returns) | {} | {:.1} µs | {:.1} µs | {:.1} µs |",
        call.len(),
        call.value_at_quantile(0.5) as f64 / 1e3,
        call.value_at_quantile(0.99) as f64 / 1e3,
        call.max() as f64 / 1e3
    );
    println!(
        "| call → first response from the new revision (back-to-back client) | {} | {:.3} ms | {:.3} ms | {:.3} ms |",
        seen.len(),
        seen.value_at_quantile(0.5) as f64 / 1e6,
        seen.value_at_quantile(0.99) as f64 / 1e6,
        seen.max() as f64 / 1e6
    );
    println!();
    let verdict_graceful = if graceful.failed == 0 && graceful.requests >= 200_000 {
        "PASS"
    } else {
        "FAIL"
    };
    let verdict_control = if control.failed > 0 {
        "PASS (failures seen)"
    } else {
        "FAIL (no failures seen)"
    };
    println!("graceful: {verdict_graceful}; control: {verdict_control}");
    drop(rt);
    let left: Vec<u32> = all_pids
        .into_iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    if !left.is_empty() {
        fail(&format!("processes left running: {left:?}"));
    }
    if verdict_graceful == "FAIL" || control.failed == 0 {
        std::process::exit(1);
    }
}
