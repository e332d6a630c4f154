//! Zero downtime through the control plane: the same rollout as `zero_downtime`, but driven
//! only through the `Platform` trait on a `LocalPlatform` (supervisor + health checks +
//! proxy), with `cutover demo-service --latency-ms 20` replicas:
//!
//! 1. graceful run under constant load: blue-green v1 -> v2 (retire v1), canary ramp
//!    v2 -> v3 (3 replicas) 1 -> 100 % (retire v2), rolling replace of v3's 3 replicas by v4
//!    (scale v4 up by one, weight proportional to replicas, scale v3 down by one; retire v3).
//!    Target: 0 failed requests.
//! 2. control run: flip v1 -> v2 and SIGKILL v1's replicas at once instead of `retire`.
//!    It must show failures.
//!
//! Also prints how long the control-plane calls took (launch -> healthy, retire, scale down).
//!
//! Run: `cargo bench --bench local_rollout`. Knobs: BENCH_LR_RATE (4500), BENCH_LR_REQUESTS
//! (210000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cutover::loadgen::{self, LoadConfig, LoadReport};
use cutover::platform::Platform;
use cutover::platform::local::{
    HealthCheck, LocalConfig, LocalPlatform, LocalServiceConfig, RevisionRun,
};

const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

fn fail(msg: &str) -> ! {
    eprintln!("bench error: {msg}");
    std::process::exit(1);
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn service(revisions: &[&str]) -> LocalServiceConfig {
    let command = [
        CUTOVER,
        "demo-service",
        "--port",
        "{port}",
        "--revision",
        "{revision}",
        "--latency-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut s = LocalServiceConfig::new(
        "zd",
        "127.0.0.1:0"
            .parse()
            .unwrap_or_else(|e| fail(&format!("{e}"))),
        command,
    );
    for r in revisions {
        let mut env = BTreeMap::new();
        env.insert("TOKIO_WORKER_THREADS".to_string(), "1".to_string());
        env.insert("RUST_LOG".to_string(), "warn".to_string());
        s = s.with_revision(
            r,
            RevisionRun {
                args: Vec::new(),
                env,
            },
        );
    }
    s.health = HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        healthy_after: 2,
        unhealthy_after: 3,
    };
    s.drain_timeout = Duration::from_secs(10);
    s.stop_timeout = Duration::from_secs(10);
    s
}

async fn platform(state: &std::path::Path, revisions: &[&str]) -> LocalPlatform {
    LocalPlatform::start(LocalConfig {
        state_dir: state.to_path_buf(),
        admin: None,
        services: vec![service(revisions)],
        secrets: Default::default(),
        pin_secret: None,
    })
    .await
    .unwrap_or_else(|e| fail(&e.to_string()))
}

fn check<T>(r: Result<T, cutover::platform::PlatformError>) -> T {
    r.unwrap_or_else(|e| fail(&e.to_string()))
}

/// Timings of control-plane calls, by kind.
#[derive(Default)]
struct Timings(BTreeMap<&'static str, Vec<f64>>);

impl Timings {
    fn add(&mut self, what: &'static str, since: Instant) {
        self.0
            .entry(what)
            .or_default()
            .push(since.elapsed().as_secs_f64() * 1e3);
    }
}

async fn launch_healthy(p: &LocalPlatform, rev: &str, n: u32, t: &mut Timings) {
    let started = Instant::now();
    check(p.launch("zd", rev, n).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while check(p.health("zd", rev).await).healthy() < n {
        if Instant::now() > deadline {
            fail(&format!(
                "{rev} not healthy: {:?}",
                p.health("zd", rev).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.add("launch/scale up -> healthy", started);
}

async fn weights(p: &LocalPlatform, pairs: &[(&str, u8)]) {
    let w = pairs.iter().map(|(r, x)| (r.to_string(), *x)).collect();
    check(p.set_weights("zd", &w).await);
}

async fn retire(p: &LocalPlatform, rev: &str, t: &mut Timings) {
    let started = Instant::now();
    check(p.retire("zd", rev, Duration::from_secs(10)).await);
    t.add("retire (drain + stop)", started);
}

fn start_load(
    addr: std::net::SocketAddr,
    rate: f64,
    max: u64,
) -> tokio::task::JoinHandle<LoadReport> {
    let uri = format!("http://{addr}/api/zd")
        .parse()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let cap = Duration::from_secs_f64(max as f64 / rate * 1.6 + 10.0);
    let mut c = LoadConfig::new(vec![uri], rate, cap);
    c.connections = 256;
    c.max_requests = Some(max);
    c.timeout = Duration::from_secs(5);
    tokio::spawn(async move {
        loadgen::run(c)
            .await
            .unwrap_or_else(|e| fail(&e.to_string()))
    })
}

async fn all_pids(p: &LocalPlatform, revs: &[&str]) -> Vec<u32> {
    let mut v = Vec::new();
    for r in revs {
        v.extend(p.pids("zd", r).await);
    }
    v
}

async fn graceful_run(
    rate: f64,
    total: u64,
    t: &mut Timings,
) -> (LoadReport, Vec<u32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let revs = ["v1", "v2", "v3", "v4"];
    let p = platform(dir.path(), &revs).await;
    let mut seen = Vec::new();
    let mut log = Vec::new();
    launch_healthy(&p, "v1", 1, t).await;
    weights(&p, &[("v1", 100)]).await;
    let addr = p
        .listen_addr("zd")
        .unwrap_or_else(|| fail("no listen address"));
    let load = start_load(addr, rate, total);
    let started = Instant::now();
    let stamp = |log: &mut Vec<String>, what: &str| {
        log.push(format!("t={:.1}s {what}", started.elapsed().as_secs_f64()));
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    stamp(&mut log, "blue-green v1 -> v2");
    launch_healthy(&p, "v2", 1, t).await;
    seen.extend(all_pids(&p, &revs).await);
    weights(&p, &[("v2", 100)]).await;
    retire(&p, "v1", t).await;

    stamp(&mut log, "canary ramp v2 -> v3 (3 replicas)");
    launch_healthy(&p, "v3", 3, t).await;
    seen.extend(all_pids(&p, &revs).await);
    for pct in [1u8, 5, 10, 25, 50, 75, 100] {
        weights(&p, &[("v2", 100 - pct), ("v3", pct)]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    retire(&p, "v2", t).await;

    stamp(&mut log, "rolling replace v3 -> v4, one replica at a time");
    for k in 1..=3u32 {
        launch_healthy(&p, "v4", k, t).await;
        seen.extend(all_pids(&p, &revs).await);
        let w4 = (100 * k / 3) as u8;
        weights(&p, &[("v3", 100 - w4), ("v4", w4)]).await;
        if k < 3 {
            let s = Instant::now();
            check(p.scale("zd", "v3", 3 - k).await);
            t.add("scale down by one (drain + stop)", s);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    retire(&p, "v3", t).await;
    stamp(&mut log, "all phases done; load continues on v4");
    let report = load
        .await
        .unwrap_or_else(|e| fail(&format!("load task: {e}")));
    seen.extend(all_pids(&p, &revs).await);
    p.shutdown().await;
    (report, seen, log)
}

async fn control_run() -> (LoadReport, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let p = platform(dir.path(), &["v1", "v2"]).await;
    let mut t = Timings::default();
    launch_healthy(&p, "v1", 1, &mut t).await;
    launch_healthy(&p, "v2", 1, &mut t).await;
    weights(&p, &[("v1", 100)]).await;
    let seen = all_pids(&p, &["v1", "v2"]).await;
    let addr = p
        .listen_addr("zd")
        .unwrap_or_else(|| fail("no listen address"));
    let load = start_load(addr, 2000.0, 12_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    weights(&p, &[("v2", 100)]).await;
    for pid in p.pids("zd", "v1").await {
        // SAFETY: kill(2) on a replica this platform started and still supervises.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let report = load
        .await
        .unwrap_or_else(|e| fail(&format!("load task: {e}")));
    p.shutdown().await;
    (report, seen)
}

fn row(name: &str, r: &LoadReport, note: &str) {
    let Some(u) = r.urls.first() else {
        fail("load report without URLs")
    };
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
        "| {name} | {} | {:.0} | {} | {} | {} | {} | {:.1} / {:.1} | {} | {note} |",
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

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let i = s.rfind(')')?;
            s[i + 1..].split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

fn main() {
    let rate = env_num("BENCH_LR_RATE", 4500.0);
    let total = env_num("BENCH_LR_REQUESTS", 210_000.0) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    eprintln!("local rollout: graceful run, {total} requests at {rate} req/s, replicas 20 ms");
    let mut timings = Timings::default();
    let (graceful, mut pids, log) = rt.block_on(graceful_run(rate, total, &mut timings));
    for l in &log {
        eprintln!("  {l}");
    }
    eprintln!("local rollout: control run (SIGKILL v1 right after the flip, no retire)");
    let (control, more) = rt.block_on(control_run());
    pids.extend(more);
    drop(rt);

    println!();
    println!(
        "| run (LocalPlatform via the Platform trait) | requests | achieved req/s | failed | non-2xx | connection errors | timeouts | p50 / p99 ms | served by | note |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    row(
        "graceful: blue-green + canary 1→100 % + rolling 3 replicas",
        &graceful,
        "target 0 failed",
    );
    row(
        "control: SIGKILL old replicas, no retire",
        &control,
        "must show failures",
    );
    println!();
    println!("| control-plane call | count | median ms | max ms |");
    println!("|---|---|---|---|");
    for (what, v) in &mut timings.0 {
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let max = v[v.len() - 1];
        println!("| {what} | {} | {median:.0} | {max:.0} |", v.len());
    }
    println!();
    let ok = graceful.failed == 0 && graceful.requests >= 200_000.min(total);
    println!(
        "graceful: {}; control: {}",
        if ok { "PASS" } else { "FAIL" },
        if control.failed > 0 {
            "PASS (failures seen)"
        } else {
            "FAIL (no failures seen)"
        }
    );
    pids.sort_unstable();
    pids.dedup();
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    if !left.is_empty() {
        fail(&format!("processes left running: {left:?}"));
    }
    if !ok || control.failed == 0 {
        std::process::exit(1);
    }
}
