//! Zero downtime through the engine: `cutover deploy --headless` of a one-service release on
//! the local platform, once per strategy (canary, blue-green, linear, rolling), each under a
//! constant outside load of at least 200,000 requests through the service's proxy
//! (`cutover demo-service --latency-ms 20` replicas). The engine chooses every weight,
//! launch, drain and stop; the bench only sends requests and counts answers. Target: 0
//! failed requests in every strategy.
//!
//! Control: the canary release again, and when the candidate takes 50 % of the traffic the
//! bench SIGKILLs the candidate's replicas (no drain). That run must show failed requests,
//! proving the load sees failures.
//!
//! The load runs in chunks of 5 s (`cutover::loadgen`, open loop at the given rate) from the
//! moment the service answers through its proxy until the deploy printed its summary and at
//! least BENCH_ZDE_REQUESTS were sent; "during the deploy" counts the chunks that started
//! before the summary. The deploy runs with `--keep-running` (the final state stays served)
//! and is stopped with SIGTERM after the load.
//!
//! Run: `cargo bench --bench zero_downtime_engine`. Knobs: BENCH_ZDE_RATE (4500 req/s),
//! BENCH_ZDE_REQUESTS (200000), BENCH_ZDE_STRATEGIES (all four, comma-separated).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{CUTOVER, fail, free_port, wait_listening};
use cutover::loadgen::{self, LoadConfig, LoadReport};

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A release of `strategy` whose rollout lasts about `secs` seconds on this machine.
fn release(strategy: &str, port: u16, marker: &str, secs: u64) -> String {
    let (strategy_lines, replicas) = match strategy {
        "canary" => {
            let hold = secs / 4;
            (
                format!(
                    "strategy = \"canary\"\nsteps = [ {{ set_weight = 10 }}, {{ pause = \"{hold}s\" }}, {{ set_weight = 30 }}, {{ pause = \"{hold}s\" }}, {{ set_weight = 50 }}, {{ pause = \"{hold}s\" }}, {{ set_weight = 80 }}, {{ pause = \"{hold}s\" }} ]"
                ),
                2,
            )
        }
        "blue_green" => (
            format!("strategy = \"blue_green\"\nblue_green = {{ keep_old_for = \"{secs}s\" }}"),
            2,
        ),
        "linear" => (
            format!(
                "strategy = \"linear\"\nlinear = {{ step = 10, every = \"{}s\" }}",
                (secs / 10).max(1)
            ),
            2,
        ),
        // No holds in a rolling update: many replicas, one at a time, make it last.
        _ => (
            "strategy = \"rolling\"\nrolling = { batch = 1 }".to_string(),
            8,
        ),
    };
    format!(
        r#"[release]
name = "zde-{strategy}"
platform = "local"
progress_deadline = "5m"

[[service]]
name = "api"
{strategy_lines}
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 2
[[service.smoke]]
name = "root"
request = "GET /"
[service.local]
listen = "127.0.0.1:{port}"
replicas = {replicas}
drain_timeout = "5s"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--latency-ms", "20", "--service", "{marker}-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
    )
}

/// Wait until a plain GET through the proxy gets a 200.
fn wait_serving(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ok = std::net::TcpStream::connect(addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /api/zde HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).ok()?;
            Some(buf.starts_with("HTTP/1.1 200"))
        });
        if ok == Some(true) {
            return;
        }
        if Instant::now() > deadline {
            fail("the service never answered 200 through its proxy");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of the replicas of `revision` (by the marker in their argv).
fn replicas_of(marker: &str, revision: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let has = |w: &str| args.contains(&w.as_bytes());
            if has(&format!("{marker}-api")) && has(revision) && has("demo-service") {
                out.push(pid);
            }
        }
    }
    out
}

/// Once the journal says the candidate takes 50 %, SIGKILL its replicas; how many.
fn kill_at_half(state: &std::path::Path, marker: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let journal = std::fs::read_dir(state.join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("journal.jsonl"));
        let text = journal
            .and_then(|j| std::fs::read_to_string(j).ok())
            .unwrap_or_default();
        if text.contains("[\"v2\",50]") {
            let pids = replicas_of(marker, "v2");
            for pid in &pids {
                // SAFETY: kill has no memory preconditions; the pid was read from /proc.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            return pids.len();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    0
}

struct Outcome {
    strategy: String,
    exit: Option<i32>,
    summary: String,
    deploy_s: f64,
    total: LoadReport,
    during: u64,
    killed: usize,
}

fn merge(into: &mut Option<LoadReport>, r: LoadReport) {
    match into {
        None => *into = Some(r),
        Some(a) => {
            a.requests += r.requests;
            a.failed += r.failed;
            a.duration_s += r.duration_s;
            let (ua, ur) = (&mut a.urls[0], &r.urls[0]);
            ua.requests += ur.requests;
            ua.connection_errors += ur.connection_errors;
            ua.timeouts += ur.timeouts;
            for (k, v) in &ur.status {
                *ua.status.entry(*k).or_default() += v;
            }
            for (k, v) in &ur.revisions {
                *ua.revisions.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &ur.errors {
                *ua.errors.entry(k.clone()).or_default() += v;
            }
            a.achieved_rate = a.requests as f64 / a.duration_s.max(1e-9);
        }
    }
}

fn deploy_once(
    rt: &tokio::runtime::Runtime,
    strategy: &str,
    rate: f64,
    min_requests: u64,
    kill_candidate: bool,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let port = free_port();
    let marker = format!("zde{}x{port}", std::process::id());
    // Long enough that the deploy itself sees about `min_requests` at `rate`.
    let secs = ((min_requests as f64 / rate) as u64).max(8);
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(strategy, port, &marker, secs))
        .unwrap_or_else(|e| fail(&e.to_string()));
    // `--keep-running`: the final state stays served until SIGTERM, so the load can go on
    // after the summary without hitting a proxy that shut down with the process.
    let mut child: Child = Command::new(CUTOVER)
        .args([
            "deploy",
            "--headless",
            "--output",
            "json",
            "--keep-running",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start deploy: {e}")));
    let summary: Arc<Mutex<Option<String>>> = Arc::default();
    if let Some(out) = child.stdout.take() {
        let summary = summary.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("\"type\":\"summary\"") {
                    *summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
                }
            }
        });
    }
    let done = || summary.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .unwrap_or_else(|_| fail("address"));
    wait_listening(addr, Duration::from_secs(60));
    // The proxy listens before the baseline is up (503 "no traffic split set yet"): the
    // load starts once the service answers, as it would for a service already running.
    wait_serving(addr, Duration::from_secs(60));
    let t0 = Instant::now();
    let uri: hyper::Uri = format!("http://{addr}/api/zde")
        .parse()
        .unwrap_or_else(|_| fail("uri"));
    let mut total: Option<LoadReport> = None;
    let mut during = 0;
    let mut deploy_s = 0.0;
    let killer = kill_candidate.then(|| {
        let (state, marker) = (dir.path().join("state"), marker.clone());
        std::thread::spawn(move || kill_at_half(&state, &marker))
    });
    loop {
        let running = !done();
        let mut c = LoadConfig::new(vec![uri.clone()], rate, Duration::from_secs(5));
        c.connections = 192;
        c.timeout = Duration::from_secs(5);
        let load = rt.spawn(loadgen::run(c));
        let r = rt
            .block_on(load)
            .unwrap_or_else(|e| fail(&e.to_string()))
            .unwrap_or_else(|e| fail(&e.to_string()));
        if running {
            during += r.requests;
        }
        merge(&mut total, r);
        if running && done() {
            deploy_s = t0.elapsed().as_secs_f64();
        }
        let sent = total.as_ref().map_or(0, |t| t.requests);
        if !running && sent >= min_requests {
            break;
        }
        if t0.elapsed() > Duration::from_secs(900) {
            fail("the deploy did not finish within 15 minutes");
        }
    }
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = child.wait().ok().and_then(|s| s.code());
    let killed = killer.map_or(0, |k| k.join().unwrap_or(0));
    let summary = summary
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    Outcome {
        strategy: strategy.to_string(),
        exit,
        summary,
        deploy_s,
        total: total.unwrap_or_else(|| fail("no load ran")),
        during,
        killed,
    }
}

fn row(o: &Outcome, what: &str) {
    let u = &o.total.urls[0];
    let revs: Vec<String> = u
        .revisions
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let statuses: Vec<String> = u.status.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let services = serde_json::from_str::<serde_json::Value>(&o.summary)
        .map(|v| v["services"]["api"].to_string())
        .unwrap_or_else(|_| "?".into());
    println!(
        "| {what} | {} | {:.1} s | {:?} {services} | {} | {} | {:.0} | {} | {} / {} | {} | {} |",
        o.strategy,
        o.deploy_s,
        o.exit,
        o.total.requests,
        o.during,
        o.total.achieved_rate,
        o.total.failed,
        u.connection_errors,
        u.timeouts,
        statuses.join(" "),
        revs.join(" "),
    );
}

fn main() {
    let rate = env_num("BENCH_ZDE_RATE", 4500.0);
    let min = env_num("BENCH_ZDE_REQUESTS", 200_000.0) as u64;
    let strategies: Vec<String> = std::env::var("BENCH_ZDE_STRATEGIES")
        .unwrap_or_else(|_| "canary,blue_green,linear,rolling".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    println!(
        "zero downtime through the engine: `cutover deploy --headless` per strategy, load {rate} req/s, at least {min} requests, replicas answer in 20 ms"
    );
    println!(
        "| run | strategy | deploy | exit, api | requests | during deploy | req/s | failed | conn err / timeouts | statuses | revisions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut all_ok = true;
    for s in &strategies {
        let o = deploy_once(&rt, s, rate, min, false);
        all_ok &= o.total.failed == 0 && o.exit == Some(0);
        row(&o, "graceful");
    }
    let c = deploy_once(&rt, "canary", rate, (min / 4).max(20_000), true);
    if c.killed == 0 {
        fail("control: no candidate replica was found to kill at 50 %");
    }
    row(
        &c,
        &format!("control: SIGKILL {} candidate replica(s) at 50 %", c.killed),
    );
    println!(
        "graceful: {}; control: {}",
        if all_ok {
            "PASS (0 failed in every strategy)"
        } else {
            "FAIL"
        },
        if c.total.failed > 0 {
            format!("PASS ({} failed requests seen)", c.total.failed)
        } else {
            "FAIL (a SIGKILL went unseen: the measurement is blind)".into()
        }
    );
    if !all_ok || c.total.failed == 0 {
        std::process::exit(1);
    }
}
