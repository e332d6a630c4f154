//! Proxy efficiency: cutover's proxy vs nginx, both doing a 90/10 split between two
//! demo-service backends on loopback, measured side by side in one run.
//!
//! Per target (direct to one backend, nginx, cutover): 1 s warm-up, a closed-loop
//! saturation run (throughput, proxy CPU per request from procfs utime+stime), then a
//! fixed-rate run (p50/p99). Targets are interleaved, `BENCH_REPS` times (default 2).
//!
//! Needs nginx (`benches/proxy-vs-nginx.sh` installs it; or set `NGINX_BIN`). Fails when
//! nginx is missing. Run: `cargo bench --bench proxy_efficiency`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::split::{ROLE_ENV, nginx_args, nginx_bin, proxy_role, write_nginx_conf};
use common::*;
use cutover::loadgen::{self, LoadConfig, LoadReport};

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Processes whose CPU is the proxy's (empty for direct).
    pids: Vec<u32>,
}

#[derive(Default, Clone)]
struct Sample {
    rps: f64,
    cpu_us_per_req: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    green_share: f64,
    busy_before: f64,
}

fn run_load(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    conns: usize,
) -> LoadReport {
    let uri = format!("http://{addr}/")
        .parse()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let mut c = LoadConfig::new(vec![uri], rate, Duration::from_secs_f64(secs));
    c.connections = conns;
    rt.block_on(loadgen::run(c))
        .unwrap_or_else(|e| fail(&e.to_string()))
}

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("proxy") {
        proxy_role();
        return;
    }
    let reps = env_num("BENCH_REPS", 2.0) as usize;
    let secs = env_num("BENCH_SECS", 8.0);
    let fixed_rate = env_num("BENCH_RATE", 3000.0);
    let conns = env_num("BENCH_CONNECTIONS", 50.0) as usize;
    let nginx_bin = nginx_bin("benches/proxy-vs-nginx.sh");

    let mut children = Children::default();
    let (_, blue) = children.demo_service("blue", 0);
    let (_, green) = children.demo_service("green", 0);

    // cutover proxy process (this binary in proxy role)
    let proxy_port = free_port();
    let proxy_addr: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current exe: {e}")));
    let proxy_pid = children.spawn(
        Command::new(exe)
            .env(ROLE_ENV, "proxy")
            .env("CUTOVER_BENCH_LISTEN", proxy_addr.to_string())
            .env("CUTOVER_BENCH_BLUE", blue.to_string())
            .env("CUTOVER_BENCH_GREEN", green.to_string()),
    );
    wait_listening(proxy_addr, Duration::from_secs(10));

    // nginx with the same split, 2 workers, upstream keep-alive
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    let nginx_port = free_port();
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    let conf_path = write_nginx_conf(dir.path(), nginx_addr, blue, green);
    let nginx_pid =
        children.spawn(Command::new(&nginx_bin).args(nginx_args(dir.path(), &conf_path)));
    wait_listening(nginx_addr, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let nginx_pids = with_children(nginx_pid);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));

    let targets = [
        Target {
            name: "direct (one backend)",
            addr: blue,
            pids: vec![],
        },
        Target {
            name: "nginx 90/10",
            addr: nginx_addr,
            pids: nginx_pids,
        },
        Target {
            name: "cutover proxy 90/10",
            addr: proxy_addr,
            pids: vec![proxy_pid],
        },
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
    eprintln!(
        "proxy efficiency: {reps} rep(s), {secs} s saturation with {conns} connections + {secs} s at {fixed_rate} req/s per target"
    );
    for rep in 0..reps {
        for (i, t) in targets.iter().enumerate() {
            let busy = machine_busy(Duration::from_millis(500));
            run_load(&rt, t.addr, 0.0, 1.0, conns);
            let cpu0: f64 = t.pids.iter().map(|p| cpu_seconds(*p)).sum();
            let sat = run_load(&rt, t.addr, 0.0, secs, conns);
            let cpu1: f64 = t.pids.iter().map(|p| cpu_seconds(*p)).sum();
            let fixed = run_load(&rt, t.addr, fixed_rate, secs, conns);
            let served = &sat.urls[0].revisions;
            let green_n = served.get("green").copied().unwrap_or(0) as f64;
            let s = Sample {
                rps: sat.achieved_rate,
                cpu_us_per_req: if t.pids.is_empty() {
                    f64::NAN
                } else {
                    (cpu1 - cpu0) * 1e6 / sat.requests.max(1) as f64
                },
                p50_ms: fixed.latency.p50_ms,
                p99_ms: fixed.latency.p99_ms,
                failed: sat.failed + fixed.failed,
                green_share: 100.0 * green_n / sat.requests.max(1) as f64,
                busy_before: busy,
            };
            eprintln!(
                "rep {rep} {:<22} {:>8.0} req/s  cpu {:>6.1} µs/req  p50 {:.3} ms  p99 {:.3} ms  failed {}  green {:.1} %  (machine {:.0} % busy before)",
                t.name,
                s.rps,
                s.cpu_us_per_req,
                s.p50_ms,
                s.p99_ms,
                s.failed,
                s.green_share,
                s.busy_before
            );
            samples[i].push(s);
        }
    }

    let med =
        |i: usize, f: fn(&Sample) -> f64| median(&mut samples[i].iter().map(f).collect::<Vec<_>>());
    let direct_rps = med(0, |s| s.rps);
    let direct_p50 = med(0, |s| s.p50_ms);
    let direct_p99 = med(0, |s| s.p99_ms);
    println!();
    println!(
        "| target | saturation req/s (median) | vs direct | proxy CPU µs/req | p50 ms @{fixed_rate:.0}/s | p99 ms @{fixed_rate:.0}/s | added p50 / p99 ms | green share | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, t) in targets.iter().enumerate() {
        let failed: u64 = samples[i].iter().map(|s| s.failed).sum();
        println!(
            "| {} | {:.0} | {:.2} | {} | {:.3} | {:.3} | {} | {:.1} % | {} |",
            t.name,
            med(i, |s| s.rps),
            med(i, |s| s.rps) / direct_rps,
            if i == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", med(i, |s| s.cpu_us_per_req))
            },
            med(i, |s| s.p50_ms),
            med(i, |s| s.p99_ms),
            if i == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:+.3} / {:+.3}",
                    med(i, |s| s.p50_ms) - direct_p50,
                    med(i, |s| s.p99_ms) - direct_p99
                )
            },
            med(i, |s| s.green_share),
            failed
        );
    }
    println!();
    println!(
        "cutover/nginx: throughput ratio {:.2} (>= 1 is at least equal), CPU per request ratio {:.2} (<= 1 is at least equal)",
        med(2, |s| s.rps) / med(1, |s| s.rps),
        med(2, |s| s.cpu_us_per_req) / med(1, |s| s.cpu_us_per_req)
    );
    let busy: Vec<String> = samples
        .iter()
        .flatten()
        .map(|s| format!("{:.0}", s.busy_before))
        .collect();
    println!("machine busy % before each run: {}", busy.join(" "));

    children.signal(nginx_pid, libc::SIGQUIT);
    children.wait(nginx_pid, Duration::from_secs(10));
    children.stop_all();
    drop(rt);
    let left = children.pids_left();
    if !left.is_empty() {
        fail(&format!("processes left running: {left:?}"));
    }
}
