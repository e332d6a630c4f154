//! Rollback latency through the path users run: a `cutover serve` child (the fsync'd
//! journal, the engine, the control API on its Unix socket, the real local proxy and
//! `demo-service` replicas), measured from outside by the requests the proxy answers.
//!
//! Two paths, ≥ 100 rollbacks each:
//!
//! 1. **Command**: the service waits at a `pause forever` gate with 50 % on the candidate;
//!    the bench sends `rollback api` over the control socket. Latency: from just before the
//!    request is written to the socket (the command's arrival, give or take the socket's
//!    microseconds) to the start of the last request the candidate answered.
//! 2. **Verdict**: the candidate fails half its requests during an analysis; the judge
//!    fails it and the engine rolls back by itself. Latency: from the end of the failing
//!    window (the verdict's `at_ms` in the journal, the engine's wall clock when it read the
//!    sample that closed the window; milliseconds, so up to 1 ms is added) to the start of
//!    the last request the candidate answered.
//!
//! Between those two instants the engine journals (write + fdatasync) the command or the
//! verdict, `RollbackStarted` and `WeightsSet`, then swaps the proxy's routing table. The
//! bench prints the fsync cost of the same disk beside the figures (a bare 200-byte write +
//! fdatasync, 200 times) and how many journal entries each rollback wrote before traffic moved.
//!
//! Load: two threads, each a keep-alive connection sending `GET /api/x` with a 200 µs pause,
//! every response's start time and revision recorded (the resolution of "last candidate
//! request" is one request interval, ~0.3 ms here).
//!
//! cargo bench --bench rollback_latency   (CUTOVER_ROLLBACKS, default 100 per path;
//! CUTOVER_BENCH_ONLY=command or =fail for one path)
//! CUTOVER_BENCH_TRACE=1 also prints, for each round slower than 10 ms, which revision
//! answered the requests the clients started after the instant (`c` candidate, `b`
//! baseline, with the offset in ms): a split still in force shows as c and b interleaved.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cutover::control::{Client, CommandOutcome, Endpoint};
use cutover::engine::{Command as EngineCommand, ServiceStatus};

use common::{CUTOVER, Server, fail, free_port};

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn release(port: u16, verdict: bool) -> String {
    let (steps, args) = if verdict {
        (
            r#"[ { set_weight = 50 }, { analysis = "20s" } ]"#,
            r#"args = ["--error-rate", "0.5"]"#,
        )
    } else {
        (r#"[ { set_weight = 50 }, { pause = "forever" } ]"#, "")
    };
    format!(
        r#"[release]
name = "rollback-bench"
platform = "local"
progress_deadline = "10m"
max_parallel = 2

[[service]]
name = "api"
strategy = "canary"
steps = {steps}
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.analysis]
min_requests = 50
min_duration = "1s"
[service.local]
listen = "127.0.0.1:{port}"
drain_timeout = "300ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "rbbench{pid}-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2", {args} }}

# Keeps the release unfinished (a gate nobody answers), so the engine takes `retry api`
# after each rollback.
[[service]]
name = "hold"
strategy = "canary"
steps = [ {{ set_weight = 10 }}, {{ pause = "forever" }} ]
[service.health]
interval = "500ms"
timeout = "400ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:{hold}"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "rbbench{pid}-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#,
        pid = std::process::id(),
        hold = free_port()
    )
}

/// One answered request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seen1 {
    /// When the request was written (unix µs).
    start: u64,
    /// Answered by the candidate (`x-cutover-revision: v2`).
    candidate: bool,
    /// When its answer's last byte was read (unix µs).
    end: u64,
    status: u16,
    /// The replica's port (`x-demo-port`, 0 if absent).
    port: u16,
    /// Which loader thread and connection sent it.
    conn: u32,
}

type Seen = Arc<Mutex<Vec<Seen1>>>;

/// Answers that do not echo their request's path: (request start in unix µs, what came).
static MISPAIRED: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

/// One keep-alive connection's loop; reconnects when the proxy closes it. Every request
/// has its own path (`/api/<thread>-<n>`), and every 200 answer must echo it (demo-service
/// answers `"path":…`): an answer paired with the wrong request stops the bench.
fn load(port: u16, thread: u32, seen: Seen, stop: Arc<AtomicBool>) {
    let mut seq = 0u64;
    let mut conn = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        conn += 1;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut w = match s.try_clone() {
            Ok(w) => w,
            Err(_) => continue,
        };
        let mut r = BufReader::new(s);
        let mut batch = Vec::with_capacity(256);
        let mut on_conn = 0u64;
        let opened = unix_us();
        let mut head = String::new();
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            on_conn += 1;
            head.clear();
            let path = format!("/api/{thread}-{seq}");
            let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
            let t = unix_us();
            if w.write_all(req.as_bytes()).is_err() {
                break;
            }
            let mut len = None;
            let mut candidate = false;
            let mut status = 0u16;
            let mut backend = 0u16;
            let mut line = String::new();
            let mut ok = true;
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        ok = false;
                        break;
                    }
                    Ok(_) => {}
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                head.push_str(l);
                head.push_str(" | ");
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("http/1.1 ") {
                    status = v.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                } else if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse::<usize>().ok();
                } else if let Some(v) = lower.strip_prefix("x-cutover-revision:") {
                    candidate = v.trim() == "v2";
                } else if let Some(v) = lower.strip_prefix("x-demo-port:") {
                    backend = v.trim().parse().unwrap_or(0);
                }
            }
            if !ok {
                break;
            }
            let Some(n) = len else {
                fail("a response without content-length");
            };
            let mut body = vec![0u8; n];
            if r.read_exact(&mut body).is_err() {
                break;
            }
            if on_conn == 1 && std::env::var_os("CUTOVER_BENCH_TRACE").is_some() {
                eprintln!(
                    "first answer on connection {conn} of thread {thread} (GET {path}, at {} unix ms): {head}{}",
                    t / 1000,
                    String::from_utf8_lossy(&body)
                );
            }
            if status == 200 {
                let want = format!("\"path\":\"{path}\"");
                if !String::from_utf8_lossy(&body).contains(&want) {
                    let why = format!(
                        "the answer to GET {path} (request {on_conn} on connection {conn} of thread {thread}, opened {:.1} ms before) does not echo its path: {head}{}",
                        (t - opened) as f64 / 1000.0,
                        String::from_utf8_lossy(&body)
                    );
                    MISPAIRED
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((t, why));
                }
            }
            batch.push(Seen1 {
                start: t,
                candidate,
                end: unix_us(),
                status,
                port: backend,
                conn: thread * 100_000 + conn,
            });
            if batch.len() == batch.capacity() {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut batch);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut batch);
    }
}

async fn wait_status(client: &Client, ok: impl Fn(&cutover::engine::ServiceState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(s) = client.snapshot().await
            && s.state.service("api").is_some_and(&ok)
        {
            return;
        }
        if Instant::now() > deadline {
            fail("the service never reached the awaited state");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(client: &Client, cmd: EngineCommand) {
    match client.command(cmd.clone(), None).await {
        Ok(CommandOutcome::Accepted { .. }) => {}
        Ok(CommandOutcome::Refused(r)) => fail(&format!("{cmd} refused: {}", r.reason)),
        Err(e) => fail(&format!("{cmd}: {e}")),
    }
}

struct Round {
    /// The instant measured from (unix µs).
    from_us: u64,
    /// When the next candidate was asked for (unix µs): candidate requests after it belong
    /// to the next round.
    until_us: u64,
}

struct Run {
    rounds: Vec<Round>,
    seen: Vec<Seen1>,
    journal: PathBuf,
    _dir: tempfile::TempDir,
}

fn run_path(rt: &tokio::runtime::Runtime, n: usize, verdict: bool) -> Run {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let port = free_port();
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(port, verdict)).unwrap_or_else(|e| fail(&e.to_string()));
    let state = dir.path().join("state");
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
    let server = Server(child);
    let client = Client::new(Endpoint::Unix(state.join("cutover.sock")), "bench");
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..2)
        .map(|i| {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || load(port, i, seen, stop))
        })
        .collect();
    let mut rounds = Vec::new();
    rt.block_on(async {
        for i in 0..n {
            if i > 0 {
                let until = unix_us();
                if let Some(r) = rounds.last_mut() {
                    let r: &mut Round = r;
                    r.until_us = until;
                }
                send(
                    &client,
                    EngineCommand::Retry {
                        service: "api".into(),
                    },
                )
                .await;
            }
            let from_us = if verdict {
                // The judge fails the candidate; the engine rolls back by itself. The
                // verdict's time is read from the journal afterwards.
                if i > 0 {
                    wait_status(&client, |s| s.status != ServiceStatus::RolledBack).await;
                }
                wait_status(&client, |s| s.status == ServiceStatus::RolledBack).await;
                0
            } else {
                wait_status(&client, |s| {
                    s.status == ServiceStatus::Paused
                        && s.weights.iter().any(|(r, w)| r == "v2" && *w == 50)
                })
                .await;
                // Let some requests reach the candidate first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let t = unix_us();
                send(
                    &client,
                    EngineCommand::Rollback {
                        service: Some("api".into()),
                    },
                )
                .await;
                t
            };
            rounds.push(Round {
                from_us,
                until_us: u64::MAX,
            });
            // The candidate drained and stopped before the next one is asked for.
            wait_status(&client, |s| {
                s.status == ServiceStatus::RolledBack && !s.candidate_running
            })
            .await;
        }
    });
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.join();
    }
    drop(server);
    let journal = std::fs::read_dir(state.join("runs"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path().join("journal.jsonl"))
        .unwrap_or_else(|| fail("no run directory"));
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    Run {
        rounds,
        seen,
        journal,
        _dir: dir,
    }
}

/// Journal events, in order, as JSON.
fn events(journal: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(journal).unwrap_or_else(|e| fail(&e.to_string()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["payload"]["event"].clone())
        .collect()
}

/// Per round: the start of the last candidate-served request in [from, until) minus from.
fn latencies(run: &mut Run) -> (Vec<f64>, usize) {
    run.seen.sort_unstable();
    let trace = std::env::var_os("CUTOVER_BENCH_TRACE").is_some();
    let evs = if trace {
        timed_events(&run.journal)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let mut none = 0;
    for r in &run.rounds {
        let last = run
            .seen
            .iter()
            .filter(|s| s.candidate && s.start >= r.from_us && s.start < r.until_us)
            .map(|s| s.start)
            .max();
        if trace
            && let Some(t) = last
            && t - r.from_us > 10_000
        {
            trace_round(run, &evs, r, t);
        }
        match last {
            Some(t) => out.push((t - r.from_us) as f64 / 1000.0),
            None => {
                // No candidate request started after the instant: the switch came within
                // one request interval.
                none += 1;
                out.push(0.0);
            }
        }
    }
    (out, none)
}

/// A slow round (CUTOVER_BENCH_TRACE): the journal entries from 50 ms before the instant
/// to 20 ms after the last candidate request, and every candidate answer to a request
/// started after the instant (offsets in ms from the instant, journal clock in ms).
fn trace_round(run: &Run, evs: &[(u64, serde_json::Value)], r: &Round, last: u64) {
    let from_ms = r.from_us / 1000;
    let off = |us: u64| (us as f64 - r.from_us as f64) / 1000.0;
    println!(
        "  slow round: instant {} (unix ms), last candidate request started {:.1} ms after",
        from_ms,
        off(last)
    );
    for (at, e) in evs
        .iter()
        .filter(|(at, _)| *at + 50 >= from_ms && *at <= last / 1000 + 20)
    {
        let mut e = e.clone();
        if let Some(o) = e.as_object_mut() {
            o.remove("verdict");
            o.remove("sample");
            o.remove("samples");
        }
        println!("    journal {:+.0} ms: {}", *at as f64 - from_ms as f64, e);
    }
    let after: Vec<&Seen1> = run
        .seen
        .iter()
        .filter(|s| s.start >= r.from_us && s.start <= last)
        .collect();
    let cands: Vec<&&Seen1> = after.iter().filter(|s| s.candidate).collect();
    println!(
        "    {} requests started after the instant up to the last candidate one, {} answered by the candidate:",
        after.len(),
        cands.len()
    );
    for s in cands.iter().take(40) {
        println!(
            "    c start {:+.2} end {:+.2} status {} port {} conn {}",
            off(s.start),
            off(s.end),
            s.status,
            s.port,
            s.conn
        );
    }
}

/// Each journal entry's time (`at_ms`) and event, in order.
fn timed_events(journal: &Path) -> Vec<(u64, serde_json::Value)> {
    let text = std::fs::read_to_string(journal).unwrap_or_else(|e| fail(&e.to_string()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| {
            (
                e["at_ms"].as_u64().unwrap_or(0),
                e["payload"]["event"].clone(),
            )
        })
        .collect()
}

/// Where each round's time went, from the journal's clock (milliseconds): from the instant
/// (the command's send, or the failing window's end) to the trigger's entry
/// (`command_accepted`, or the fail `verdict`), from there to the `weights_set` that moved
/// `api`'s traffic back, and from that entry to the last candidate request. Prints the
/// percentiles of each segment and the slowest rounds: a late candidate answer shows
/// either before `weights_set` (the engine, the journal's fsyncs) or after it (the proxy,
/// or the bench).
fn breakdown(run: &Run, lat: &[f64], verdict: bool) {
    let evs = timed_events(&run.journal);
    let mut rows = Vec::new();
    for (i, r) in run.rounds.iter().enumerate() {
        let from_ms = r.from_us / 1000;
        let trigger = evs.iter().find(|(at, e)| {
            if verdict {
                e["type"] == "verdict"
                    && e["verdict"]["outcome"] == "fail"
                    && e["verdict"]["at_ms"].as_u64() == Some(from_ms)
            } else {
                *at >= from_ms
                    && e["type"] == "command_accepted"
                    && e["command"]["command"] == "rollback"
            }
        });
        let Some((acc, _)) = trigger else { continue };
        let Some((moved, _)) = evs
            .iter()
            .find(|(at, e)| *at >= *acc && e["type"] == "weights_set" && e["service"] == "api")
        else {
            continue;
        };
        let to_accept = *acc as f64 - r.from_us as f64 / 1000.0;
        let to_move = (*moved - *acc) as f64;
        let after = lat[i] - to_accept - to_move;
        // `rolled_back` is journaled once the platform's `set_weights` returned (after the
        // `weights_set` entry was written and synced): how long that took.
        let swapped = evs
            .iter()
            .find(|(at, e)| *at >= *moved && e["type"] == "rolled_back")
            .map_or(f64::NAN, |(at, _)| (*at - *moved) as f64);
        rows.push((lat[i], to_accept, to_move, after, swapped));
    }
    let col = |k: usize| -> Vec<f64> {
        rows.iter()
            .map(|r| [r.0, r.1, r.2, r.3, r.4][k])
            .filter(|x| !x.is_nan())
            .collect()
    };
    let (a, m, t, w) = (col(1), col(2), col(3), col(4));
    let (what, trigger) = if verdict {
        ("the verdict's", "window end -> verdict entry")
    } else {
        ("the command's", "send -> command_accepted")
    };
    println!(
        "  where {what} time went (journal clock, ms resolution; n={}): {trigger} p50 {:.1} p99 {:.1} ms; \
         trigger -> weights_set p50 {:.1} p99 {:.1} ms; weights_set -> last candidate request p50 {:.1} p99 {:.1} ms; \
         weights_set -> rolled_back (entry synced and set_weights returned) p50 {:.1} p99 {:.1} ms",
        rows.len(),
        pct(&a, 0.5),
        pct(&a, 0.99),
        pct(&m, 0.5),
        pct(&m, 0.99),
        pct(&t, 0.5),
        pct(&t, 0.99),
        pct(&w, 0.5),
        pct(&w, 0.99),
    );
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    for r in rows.iter().take(3) {
        println!(
            "  slow round: {:.2} ms = {:.1} to the trigger's entry + {:.1} to weights_set + {:.1} after (weights_set -> rolled_back {:.1} ms)",
            r.0, r.1, r.2, r.3, r.4
        );
    }
}

/// Journal entries written from the trigger (command accepted or fail verdict) up to and
/// including the `weights_set` that moved traffic back, per rollback.
fn entries_before_traffic(evs: &[serde_json::Value], verdict: bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = None;
    for (i, e) in evs.iter().enumerate() {
        let trigger = if verdict {
            e["type"] == "verdict" && e["verdict"]["outcome"] == "fail"
        } else {
            e["type"] == "command_accepted" && e["command"]["command"] == "rollback"
        };
        if trigger && from.is_none() {
            from = Some(i);
        }
        if let Some(f) = from
            && e["type"] == "weights_set"
        {
            out.push(i - f + 1);
            from = None;
        }
    }
    out
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() as f64 - 1.0) * q).round() as usize]
}

/// A bare write + fdatasync of one 200-byte line, as the journal does, on the same disk.
fn fsync_cost(dir: &Path, n: usize) -> Vec<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let line = [b'x'; 200];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&line).unwrap_or_else(|e| fail(&e.to_string()));
        f.sync_data().unwrap_or_else(|e| fail(&e.to_string()));
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    out
}

fn main() {
    let n: usize = std::env::var("CUTOVER_ROLLBACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let tmp = std::env::temp_dir();
    let fs = fsync_cost(&tmp, 200);
    println!(
        "fsync cost on this disk ({}): write + fdatasync of 200 bytes, n=200: p50 {:.2} ms p99 {:.2} ms",
        tmp.display(),
        pct(&fs, 0.5),
        pct(&fs, 0.99)
    );
    let only = std::env::var("CUTOVER_BENCH_ONLY").unwrap_or_default();
    let mut mispaired_total = 0;
    for (verdict, name) in [(false, "command"), (true, "fail verdict")] {
        if !only.is_empty() && !name.starts_with(only.as_str()) {
            continue;
        }
        let mut run = run_path(&rt, n, verdict);
        let evs = events(&run.journal);
        if verdict {
            // Measured from each failing window's end: the fail verdicts' `at_ms`, in order.
            let ends: Vec<u64> = evs
                .iter()
                .filter(|e| e["type"] == "verdict" && e["verdict"]["outcome"] == "fail")
                .filter_map(|e| e["verdict"]["at_ms"].as_u64())
                .collect();
            if ends.len() != run.rounds.len() {
                fail(&format!(
                    "{} rounds but {} fail verdicts in the journal",
                    run.rounds.len(),
                    ends.len()
                ));
            }
            for (r, at) in run.rounds.iter_mut().zip(ends) {
                r.from_us = at * 1000;
            }
        }
        let (lat, none) = latencies(&mut run);
        let mispaired = std::mem::take(&mut *MISPAIRED.lock().unwrap_or_else(|p| p.into_inner()));
        mispaired_total += mispaired.len();
        if !mispaired.is_empty() {
            println!(
                "{} answers did not echo their request's path ({name} path); the first ones:",
                mispaired.len()
            );
            for (t, why) in mispaired.iter().take(5) {
                println!("  at {} unix ms: {why}", t / 1000);
            }
            if std::env::var_os("CUTOVER_BENCH_TRACE").is_some() {
                let first = mispaired[0].0 / 1000;
                for (at, e) in timed_events(&run.journal)
                    .iter()
                    .filter(|(at, _)| *at + 3000 >= first && *at <= first + 300)
                {
                    let mut e = e.clone();
                    if let Some(o) = e.as_object_mut() {
                        o.remove("verdict");
                    }
                    println!("    journal {:+} ms: {}", *at as i64 - first as i64, e);
                }
            }
        }
        let writes = entries_before_traffic(&evs, verdict);
        let mut w: Vec<f64> = writes.iter().map(|x| *x as f64).collect();
        w.sort_by(f64::total_cmp);
        let requests = run.seen.len();
        println!(
            "rollback latency, {name} -> last request served by the candidate (serve + fsync'd journal + real proxy): \
             n={} p50 {:.2} ms p99 {:.2} ms max {:.2} ms (target p99 <= 10 ms); \
             journal entries from {name} to weights_set: median {:.0}, max {:.0}; \
             rounds with no candidate request after the instant: {none}; requests observed {requests}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
            pct(&w, 0.5),
            pct(&w, 1.0),
        );
        breakdown(&run, &lat, verdict);
    }
    if mispaired_total > 0 {
        fail(&format!(
            "{mispaired_total} answers did not echo their request's path: requests and answers are mispaired, so the figures above mean nothing"
        ));
    }
}
