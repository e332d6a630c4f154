//! Instructions per request of cutover's proxy and of nginx, counted by
//! `valgrind --tool=callgrind` (repeatable on a noisy machine, unlike CPU time).
//!
//! Both do the same 90/10 split of two demo-service backends (not under valgrind). Each
//! proxy runs under callgrind twice: serving `CG_WARMUP` requests, then `CG_WARMUP +
//! CG_REQUESTS`; the difference of the two totals over `CG_REQUESTS` is the cost of one
//! request with start-up, connection set-up and shutdown cancelled out. nginx runs with
//! `--trace-children=yes` and the totals of its master and workers are added up.
//! Requests are sent closed-loop over `CG_CONNECTIONS` keep-alive connections by
//! `cutover::loadgen` in this process.
//!
//! Run: `benches/proxy-callgrind.sh` (installs nginx if missing). Knobs: `CG_REQUESTS`
//! (20000), `CG_WARMUP` (2000), `CG_CONNECTIONS` (50), `CG_TARGETS` (`cutover,nginx`),
//! `CG_OUT` (keep the callgrind files of the larger run there, for `callgrind_annotate`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::split::{ROLE_ENV, nginx_args, nginx_bin, proxy_role, write_nginx_conf};
use common::*;
use cutover::loadgen::{self, LoadConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sum of the `totals:`/`summary:` lines (instructions) of every callgrind file in `dir`.
fn callgrind_total(dir: &Path) -> u64 {
    let mut total = 0;
    let mut files = 0;
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("callgrind.out") {
            continue;
        }
        let text = std::fs::read_to_string(e.path())
            .unwrap_or_else(|err| fail(&format!("{}: {err}", e.path().display())));
        let n = text
            .lines()
            .rev()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| fail(&format!("{}: no totals line", e.path().display())));
        total += n;
        files += 1;
    }
    if files == 0 {
        fail(&format!(
            "no callgrind output in {} (see valgrind.log there)",
            dir.display()
        ));
    }
    total
}

fn world_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| fail(&format!("chmod {}: {e}", dir.display())));
}

struct Run {
    instructions: u64,
    requests: u64,
    failed: u64,
    green: u64,
}

/// Start `target` under callgrind, send `requests`, stop it, count its instructions.
fn run_once(
    target: &str,
    requests: u64,
    conns: usize,
    blue: SocketAddr,
    green: SocketAddr,
    out: &Path,
    rt: &tokio::runtime::Runtime,
) -> Run {
    std::fs::create_dir_all(out).unwrap_or_else(|e| fail(&format!("{}: {e}", out.display())));
    // nginx's workers run as `nobody` and write their own callgrind files there.
    world_writable(out);
    let mut children = Children::default();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.out.%p",
            out.display()
        ))
        .arg(format!("--log-file={}/valgrind.log.%p", out.display()));
    let nginx_dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    let stop_signal = match target {
        "cutover" => {
            let exe =
                std::env::current_exe().unwrap_or_else(|e| fail(&format!("current exe: {e}")));
            cmd.arg(exe)
                .env(ROLE_ENV, "proxy")
                .env("CUTOVER_BENCH_LISTEN", addr.to_string())
                .env("CUTOVER_BENCH_BLUE", blue.to_string())
                .env("CUTOVER_BENCH_GREEN", green.to_string());
            libc::SIGTERM
        }
        "nginx" => {
            let conf = write_nginx_conf(nginx_dir.path(), addr, blue, green);
            cmd.arg("--trace-children=yes")
                .arg(nginx_bin("benches/proxy-callgrind.sh"))
                .args(nginx_args(nginx_dir.path(), &conf));
            libc::SIGQUIT
        }
        other => fail(&format!(
            "unknown target `{other}` in CG_TARGETS (cutover, nginx)"
        )),
    };
    let pid = children.spawn(&mut cmd);
    wait_listening(addr, Duration::from_secs(120));
    let uri = format!("http://{addr}/")
        .parse()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let mut c = LoadConfig::new(vec![uri], 0.0, Duration::from_secs(3600));
    c.connections = conns;
    c.max_requests = Some(requests);
    c.timeout = Duration::from_secs(60);
    let report = rt
        .block_on(loadgen::run(c))
        .unwrap_or_else(|e| fail(&e.to_string()));
    children.signal(pid, stop_signal);
    if children.wait(pid, Duration::from_secs(120)).is_none() {
        fail(&format!("{target} under valgrind did not exit"));
    }
    let left = children.pids_left();
    if !left.is_empty() {
        fail(&format!("processes left running: {left:?}"));
    }
    // nginx workers write their files as they exit, after the master may have.
    std::thread::sleep(Duration::from_millis(300));
    Run {
        instructions: callgrind_total(out),
        requests: report.requests,
        failed: report.failed,
        green: report.urls[0].revisions.get("green").copied().unwrap_or(0),
    }
}

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("proxy") {
        proxy_role();
        return;
    }
    let requests = env_u64("CG_REQUESTS", 20_000);
    let warmup = env_u64("CG_WARMUP", 2_000);
    let conns = env_u64("CG_CONNECTIONS", 50) as usize;
    let targets: Vec<String> = std::env::var("CG_TARGETS")
        .unwrap_or_else(|_| "cutover,nginx".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if Command::new("valgrind").arg("--version").output().is_err() {
        fail("valgrind is missing: apt-get install valgrind");
    }
    let keep: Option<PathBuf> = std::env::var_os("CG_OUT").map(PathBuf::from);
    let scratch = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temp dir: {e}")));
    world_writable(scratch.path());

    let mut children = Children::default();
    let (_, blue) = children.demo_service("blue", 0);
    let (_, green) = children.demo_service("green", 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));

    eprintln!(
        "proxy callgrind: {requests} requests (after {warmup}) over {conns} keep-alive connections, 90/10 split"
    );
    let mut per_request = Vec::new();
    println!();
    println!("| target | instructions per request | requests | failed | green share |");
    println!("|---|---|---|---|---|");
    for target in &targets {
        let small_dir = scratch.path().join(format!("{target}-warmup"));
        let big_dir = match &keep {
            Some(k) => k.join(target),
            None => scratch.path().join(format!("{target}-measured")),
        };
        if big_dir.exists() {
            let _ = std::fs::remove_dir_all(&big_dir);
        }
        let small = run_once(target, warmup, conns, blue, green, &small_dir, &rt);
        let big = run_once(target, warmup + requests, conns, blue, green, &big_dir, &rt);
        let n = big.requests.saturating_sub(small.requests).max(1);
        let ipr = big.instructions.saturating_sub(small.instructions) as f64 / n as f64;
        eprintln!(
            "{target}: {} instructions for {} requests, {} for {}",
            small.instructions, small.requests, big.instructions, big.requests
        );
        println!(
            "| {target} | {ipr:.0} | {n} | {} | {:.1} % |",
            small.failed + big.failed,
            100.0 * big.green as f64 / big.requests.max(1) as f64
        );
        per_request.push((target.clone(), ipr));
    }
    let get = |name: &str| per_request.iter().find(|(t, _)| t == name).map(|(_, v)| *v);
    if let (Some(c), Some(n)) = (get("cutover"), get("nginx")) {
        println!();
        println!(
            "cutover/nginx: instructions per request {c:.0} vs {n:.0}, ratio {:.2} (<= 1 is at least equal)",
            c / n
        );
    }
    if let Some(k) = &keep {
        println!(
            "callgrind files of the measured runs: {}/<target>/",
            k.display()
        );
    }
    children.stop_all();
    drop(rt);
    let left = children.pids_left();
    if !left.is_empty() {
        fail(&format!("processes left running: {left:?}"));
    }
}
