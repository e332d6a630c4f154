//! Pairing fan-out: a `cutover serve` of a two-service release on the local platform
//! (tests/fixtures/pairing-release.toml, both services held at a `pause forever` gate),
//! with 10 consoles attached over the Unix socket.
//!
//! 1. Latency: one client sends `pause search` (accepted and journaled each time, so one
//!    engine event per command); every attached client records when the matching
//!    `CommandAccepted` reaches it. Reported: command sent -> visible in a client (p50,
//!    p99 over all clients and commands) and -> visible in the slowest of the 10.
//! 2. CPU: the server's user+system CPU time (/proc/PID/stat) over equal windows of the
//!    same command rate, with 0 and with 10 attached clients; the difference / 10 is the
//!    cost per attached client.
//!
//! Run: `cargo bench --bench pairing_fanout`. Knobs: BENCH_PF_COMMANDS (300),
//! BENCH_PF_RATE (25 commands/s), BENCH_PF_WINDOW (8 s).

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover::control::{Client, Endpoint, ItemBody};
use cutover::engine::{Command as EngineCommand, EventKind, ServiceStatus};

use common::{CUTOVER, Server, fail, free_port};

const RELEASE: &str = include_str!("../tests/fixtures/pairing-release.toml");
const CLIENTS: usize = 10;

fn knob(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| fail(&format!("/proc/{pid}/stat: {e}")));
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Received (command number -> instant) per client.
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

async fn attach_recorder(client: Client, seen: Seen) -> tokio::task::JoinHandle<()> {
    let (_snap, mut stream) = client
        .attach()
        .await
        .unwrap_or_else(|e| fail(&format!("attach: {e}")));
    tokio::spawn(async move {
        while let Ok(Some(item)) = stream.next().await {
            if let ItemBody::Event { event } = &item.body
                && let EventKind::CommandAccepted {
                    note: Some(n),
                    operator,
                    ..
                } = &event.kind
                && operator == "driver"
                && let Some(k) = n.strip_prefix("bench ").and_then(|x| x.parse::<u64>().ok())
            {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((k, Instant::now()));
            }
        }
    })
}

async fn drive(driver: &Client, n: u64, first: u64, rate: f64) -> Vec<(u64, Instant)> {
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut sent = Vec::new();
    let start = Instant::now();
    for i in 0..n {
        let k = first + i;
        let due = start + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let t0 = Instant::now();
        match driver
            .command(
                EngineCommand::Pause {
                    service: Some("search".into()),
                },
                Some(format!("bench {k}")),
            )
            .await
        {
            Ok(_) => sent.push((k, t0)),
            Err(e) => fail(&format!("command: {e}")),
        }
    }
    sent
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let commands = knob("BENCH_PF_COMMANDS", 300.0) as u64;
    let rate = knob("BENCH_PF_RATE", 25.0);
    let window = knob("BENCH_PF_WINDOW", 8.0);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let text = RELEASE
        .replace("MARKER", &format!("pfbench{}", std::process::id()))
        .replace("PORT_A", &free_port().to_string())
        .replace("PORT_B", &free_port().to_string());
    let file = dir.path().join("release.toml");
    std::fs::write(&file, text).unwrap_or_else(|e| fail(&e.to_string()));
    let state = dir.path().join("state");
    let socket = state.join("cutover.sock");
    let child = Command::new(CUTOVER)
        .arg("serve")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .args(["--operator", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start serve: {e}")));
    let pid = child.id();
    let _server = Server(child);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = Client::new(Endpoint::Unix(socket.clone()), "probe");
        loop {
            if let Ok(s) = probe.snapshot().await
                && s.state
                    .services
                    .iter()
                    .all(|x| x.status == ServiceStatus::Paused)
            {
                break;
            }
            if Instant::now() > deadline {
                fail("the release never reached its gates");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let driver = Client::new(Endpoint::Unix(socket.clone()), "driver");

        // CPU with no attached client.
        let c0 = cpu_seconds(pid);
        let n_window = (rate * window) as u64;
        let t = Instant::now();
        drive(&driver, n_window, 1_000_000, rate).await;
        let idle_cpu = (cpu_seconds(pid) - c0) / t.elapsed().as_secs_f64();

        // Attach 10 clients.
        let mut seen: Vec<Seen> = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let s: Seen = Arc::new(Mutex::new(Vec::new()));
            let c = Client::new(Endpoint::Unix(socket.clone()), &format!("console{i}"));
            tasks.push(attach_recorder(c, s.clone()).await);
            seen.push(s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        // CPU with 10 attached clients (same rate, same window).
        let c1 = cpu_seconds(pid);
        let t = Instant::now();
        drive(&driver, n_window, 2_000_000, rate).await;
        let busy_cpu = (cpu_seconds(pid) - c1) / t.elapsed().as_secs_f64();

        // Latency.
        for s in &seen {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        let sent = drive(&driver, commands, 1, rate).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut per_client = Vec::new();
        let mut slowest = Vec::new();
        let mut missing = 0usize;
        for (k, t0) in &sent {
            let mut worst: f64 = 0.0;
            for s in &seen {
                let got = s
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|(x, _)| x == k)
                    .map(|(_, t)| *t);
                match got {
                    Some(t) => {
                        let ms = t.saturating_duration_since(*t0).as_secs_f64() * 1000.0;
                        per_client.push(ms);
                        worst = worst.max(ms);
                    }
                    None => missing += 1,
                }
            }
            slowest.push(worst);
        }
        for t in tasks {
            t.abort();
        }
        per_client.sort_by(f64::total_cmp);
        slowest.sort_by(f64::total_cmp);
        println!("pairing fan-out: {CLIENTS} attached clients over the Unix socket, {commands} commands at {rate}/s");
        println!("| measure | p50 | p99 | max |");
        println!("|---|---|---|---|");
        println!(
            "| command sent -> event visible in one client (ms) | {:.2} | {:.2} | {:.2} |",
            pct(&per_client, 50.0),
            pct(&per_client, 99.0),
            per_client.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "| command sent -> visible in all {CLIENTS} clients (ms) | {:.2} | {:.2} | {:.2} |",
            pct(&slowest, 50.0),
            pct(&slowest, 99.0),
            slowest.last().copied().unwrap_or(f64::NAN)
        );
        println!("missing deliveries: {missing} (must be 0)");
        println!();
        println!("server CPU at {rate} commands/s over {window} s windows:");
        println!("| attached clients | server CPU (% of one core) |");
        println!("|---|---|");
        println!("| 0 | {:.2} |", idle_cpu * 100.0);
        println!("| {CLIENTS} | {:.2} |", busy_cpu * 100.0);
        println!(
            "per attached client: {:.3} % of one core ({:.1} µs CPU per delivered event)",
            (busy_cpu - idle_cpu) * 100.0 / CLIENTS as f64,
            (busy_cpu - idle_cpu) * 1e6 / (CLIENTS as f64 * rate)
        );
        if missing > 0 {
            fail("some clients missed events");
        }
    });
}
