//! A crash at every journal write: `cutover deploy --headless` of a release with every kind
//! of step (tests/fixtures/crash-points-release.toml: canary with a gate, blue-green,
//! rolling, a SQLite expand/contract migration and a canary rolled back) runs once with
//! the crash hooks counting (`CUTOVER_CRASH_TRACE`), then again aborted right after the
//! N-th journal append (`CUTOVER_CRASH_AFTER_APPEND=N`) or right before the N-th acting
//! platform call (`CUTOVER_CRASH_BEFORE_PLATFORM_CALL=N`), and `cutover resume --headless`
//! finishes it. Each point must converge to the uncrashed run's statuses and exit code,
//! leave no orphan process, keep `cutover audit verify` passing and apply each migration
//! stage once; an outside load on the services not rolled back (a, b, c) must see zero
//! failed requests while the uncrashed run and each resume serve.
//!
//! The same body runs on both journal backends (`tests/support/backend.rs`): the file
//! journal under the run's state directory, and PostgreSQL (`--journal postgres://…` of a
//! server the test starts, a database per run, a 3 s lease; after each crash the test waits
//! for the dead engine's lease to expire before `resume`, which is refused while it holds).
//! The two tests take turns (one lock), so neither's load shares the CPU with the other.
//!
//! `CUTOVER_CRASH_SAMPLE`: how many points of each kind, evenly spread (default 6);
//! `all` runs every point (`scripts/crash-sweep`, `CUTOVER_CRASH_BACKEND` choosing the
//! backend).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::backend::{Backend, Journal};
use support::local::{LoadReport, client, get, processes_with, start_load};
use support::net::free_listen_port;

const RELEASE: &str = include_str!("fixtures/crash-points-release.toml");
const EXPAND: &str = "ALTER TABLE customers ADD COLUMN first_name TEXT;\n";
const CONTRACT: &str = "ALTER TABLE customers DROP COLUMN full_name;\n";
const UNDO: &str = "ALTER TABLE customers DROP COLUMN first_name;\n";
/// The services whose traffic must never fail (d is rolled back by design).
const LOADED: [&str; 3] = ["a", "b", "c"];
const HOOK_VARS: [&str; 6] = [
    "CUTOVER_CRASH_AFTER_APPEND",
    "CUTOVER_CRASH_BEFORE_PLATFORM_CALL",
    "CUTOVER_FAIL_APPEND_AT",
    "CUTOVER_FAIL_APPEND_ERRNO",
    "CUTOVER_SLOW_FSYNC_MS",
    "CUTOVER_CRASH_TRACE",
];

/// One release directory: SQL files, a SQLite database, the release with fresh ports, and
/// the run's journal (files under `state/`, or a database of its own).
struct Fx {
    dir: PathBuf,
    marker: String,
    ports: Vec<(String, u16)>,
    journal: Journal,
}

impl Fx {
    fn new(root: &Path, name: &str, backend: &Backend) -> Fx {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("migrations/expand.sql"), EXPAND).unwrap();
        std::fs::write(dir.join("migrations/contract.sql"), CONTRACT).unwrap();
        std::fs::write(dir.join("migrations/undo.sql"), UNDO).unwrap();
        rusqlite::Connection::open(dir.join("data/customers.db"))
            .unwrap()
            .execute_batch(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL DEFAULT '');
                 INSERT INTO customers (full_name) VALUES ('Ada Lovelace');",
            )
            .unwrap();
        let marker = format!("crashpt{}x{}{name}", std::process::id(), backend.name());
        let mut text = RELEASE.replace("MARKER", &marker);
        let mut ports = Vec::new();
        for s in ["a", "b", "c", "d"] {
            let port = free_listen_port();
            text = text.replace(&format!("PORT_{}", s.to_uppercase()), &port.to_string());
            ports.push((s.to_string(), port));
        }
        std::fs::write(dir.join("release.toml"), text).unwrap();
        Fx {
            dir,
            marker,
            ports,
            journal: backend.journal(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::CUTOVER);
        c.args(args)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .env_remove("CUTOVER_STATE_DIR");
        self.journal.select(&mut c);
        for v in HOOK_VARS {
            c.env_remove(v);
        }
        c
    }

    fn history(&self) -> Vec<String> {
        support::sqlite_migration_history(&self.dir.join("data/customers.db"))
    }
}

/// What one headless run printed and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Outside load on a, b, c from when they answered until the summary line.
    load: LoadReport,
}

impl Run {
    fn summary(&self) -> Option<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "summary")
    }
    fn statuses(&self) -> Option<serde_json::Value> {
        self.summary().map(|s| s["services"].clone())
    }
    /// The largest `N` of hook trace lines `cutover-crash-hook: KIND N`.
    fn count(&self, kind: &str) -> u64 {
        let prefix = format!("cutover-crash-hook: {kind} ");
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }
}

/// Run `cmd` to the end (at most 120 s), with (if asked) an outside load on a, b and c from the moment
/// each answers 200 until the run prints its summary (after which it stops its proxies).
fn run(rt: &tokio::runtime::Runtime, fx: &Fx, mut cmd: Command, with_load: bool) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let summary_seen = Arc::new(AtomicBool::new(false));
    let out = child.stdout.take().unwrap();
    let seen = summary_seen.clone();
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"type\":\"summary\"") {
                seen.store(true, Ordering::SeqCst);
            }
            text.push_str(&line);
            text.push('\n');
        }
        seen.store(true, Ordering::SeqCst);
        text
    });
    let mut err = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        text
    });
    let mut loads = Vec::new();
    let http = {
        let _g = rt.enter();
        client()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for (s, port) in &fx.ports {
        if !with_load || !LOADED.contains(&s.as_str()) {
            continue;
        }
        let url = format!("http://127.0.0.1:{port}/api/load");
        // Start once the service answers; a run that ends (or crashes) first has no load.
        let answered = loop {
            if summary_seen.load(Ordering::SeqCst) || Instant::now() > deadline {
                break false;
            }
            if let Ok((200, _)) = rt.block_on(get(&http, &url, None)) {
                break true;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if answered {
            let _g = rt.enter();
            loads.push(start_load(
                format!("127.0.0.1:{port}").parse().unwrap(),
                2,
                u64::MAX / 4,
                summary_seen.clone(),
            ));
        }
    }
    // With a load the run was started with --keep-running: once its summary is out, the
    // load stops, then SIGTERM ends the run (its proxies close after the last request).
    let mut load = LoadReport::default();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if with_load && summary_seen.load(Ordering::SeqCst) {
            for l in loads.drain(..) {
                add(&mut load, rt.block_on(l).unwrap());
            }
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            break child.wait().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{:?} did not finish within 120 s", cmd.get_args());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout_reader.join().unwrap();
    let stderr = stderr_reader.join().unwrap();
    summary_seen.store(true, Ordering::SeqCst);
    for l in loads {
        add(&mut load, rt.block_on(l).unwrap());
    }
    Run {
        status,
        stdout,
        stderr,
        load,
    }
}

fn add(total: &mut LoadReport, r: LoadReport) {
    total.ok += r.ok;
    total.errors += r.errors;
    total.error_samples.extend(r.error_samples);
    for (k, v) in r.bad_status {
        *total.bad_status.entry(k).or_default() += v;
    }
}

/// `k` points evenly spread over 1..=n (every point when `k` is None or ≥ n).
fn spread(n: u64, k: Option<u64>) -> Vec<u64> {
    match k {
        Some(k) if k < n => (0..k).map(|i| 1 + i * (n - 1) / (k - 1).max(1)).collect(),
        _ => (1..=n).collect(),
    }
}

struct Reference {
    statuses: serde_json::Value,
    code: Option<i32>,
    history: Vec<String>,
}

/// Crash at one point, resume, check everything; false if the point was not reached.
fn crash_at(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    backend: &Backend,
    reference: &Reference,
    var: &str,
    n: u64,
) -> bool {
    let name = format!("{}-{n}", var.to_lowercase());
    let fx = Fx::new(root, &name, backend);
    let where_ = format!("{} journal, {var}={n}", backend.name());
    let mut deploy = fx.cmd(&["deploy", "--headless", "--output", "json"]);
    deploy
        .arg(fx.dir.join("release.toml"))
        .env(var, n.to_string())
        .stdin(Stdio::null());
    let crashed = run(rt, &fx, deploy, false);
    use std::os::unix::process::ExitStatusExt;
    let reached = crashed.status.signal() == Some(libc::SIGABRT);
    if reached {
        if var == "CUTOVER_CRASH_AFTER_APPEND" {
            // The hook fired once the N-th append was durable (fdatasync'd, or its
            // transaction committed): at least N entries are there (a batch holds several).
            let held = fx.journal.entries(&fx.dir.join("state")).len() as u64;
            assert!(
                held >= n,
                "{where_}: the journal holds {held} entries after the crash"
            );
        }
        fx.journal.after_crash();
    }
    let resumed = run(
        rt,
        &fx,
        fx.cmd(&["resume", "--headless", "--output", "json", "--keep-running"]),
        true,
    );
    if reached {
        assert_eq!(
            resumed.status.code(),
            reference.code,
            "{where_}: resume ended differently from the uncrashed run:\n{}\n{}",
            resumed.stdout,
            resumed.stderr
        );
        assert_eq!(
            resumed.statuses().as_ref(),
            Some(&reference.statuses),
            "{where_}: resume did not converge:\n{}",
            resumed.stdout
        );
        if let Backend::Postgres(_) = backend {
            // The resume wrote under a lease it took over, not the dead engine's.
            let epochs = fx.journal.epochs();
            assert!(
                epochs.last().is_some_and(|e| *e >= 2),
                "{where_}: the resume's entries carry epochs {epochs:?}"
            );
        }
    } else {
        // The run took another path and ended before this point: it must have finished.
        assert_eq!(crashed.statuses().as_ref(), Some(&reference.statuses));
    }
    assert_eq!(
        resumed.load.failed(),
        0,
        "{where_}: failed requests on a, b, c during resume: {:?}",
        resumed.load
    );
    let verify = fx.cmd(&["audit", "verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "{where_}: audit verify failed: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        fx.history(),
        reference.history,
        "{where_}: migration history differs from the uncrashed run"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(&fx.marker);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{where_}: orphan processes: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reached
}

#[test]
fn a_crash_at_every_journal_write_and_platform_call_is_resumed() {
    let _turn = support::backend::one_at_a_time();
    sweep(&Backend::file());
}

#[test]
fn a_crash_at_every_journal_write_and_platform_call_is_resumed_with_the_journal_in_postgres() {
    let _turn = support::backend::one_at_a_time();
    sweep(&Backend::postgres());
}

/// The uncrashed reference run, then a crash at each sampled point, each resumed and checked.
fn sweep(backend: &Backend) {
    let t0 = Instant::now();
    let sample = match std::env::var("CUTOVER_CRASH_SAMPLE").ok().as_deref() {
        Some("all") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .expect("CUTOVER_CRASH_SAMPLE: a number or `all`"),
        ),
        None => Some(6),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = tempfile::tempdir().unwrap();

    // The uncrashed run: its statuses, exit code and migration history are the reference.
    let fx = Fx::new(root.path(), "reference", backend);
    let mut deploy = fx.cmd(&["deploy", "--headless", "--output", "json", "--keep-running"]);
    deploy
        .arg(fx.dir.join("release.toml"))
        .env("CUTOVER_CRASH_TRACE", "1")
        .stdin(Stdio::null());
    let first = run(&rt, &fx, deploy, true);
    let statuses = first.statuses().unwrap_or_else(|| {
        panic!(
            "the uncrashed run printed no summary:\n{}\n{}",
            first.stdout, first.stderr
        )
    });
    assert_eq!(
        statuses,
        serde_json::json!({"a": "promoted", "b": "promoted", "c": "promoted", "d": "rolled_back"}),
        "{}",
        first.stdout
    );
    assert!(first.load.ok > 0, "no outside request was served");
    assert_eq!(first.load.failed(), 0, "{:?}", first.load);
    let history = fx.history();
    let mut stages = history.clone();
    stages.sort();
    stages.dedup();
    assert_eq!(
        stages.len(),
        history.len(),
        "a stage ran twice: {history:?}"
    );
    assert!(
        history.iter().any(|h| h.starts_with("expand")),
        "{history:?}"
    );
    let reference = Reference {
        statuses,
        code: first.status.code(),
        history,
    };
    let appends = first.count("append");
    let calls = first.count("platform");
    assert!(appends > 10 && calls > 5, "{}", first.stderr);
    let entries = fx.journal.entries(&fx.dir.join("state")).len();

    let mut points = 0;
    let mut not_reached = 0;
    for (var, total) in [
        ("CUTOVER_CRASH_AFTER_APPEND", appends),
        ("CUTOVER_CRASH_BEFORE_PLATFORM_CALL", calls),
    ] {
        for n in spread(total, sample) {
            points += 1;
            if !crash_at(&rt, root.path(), backend, &reference, var, n) {
                not_reached += 1;
            }
        }
    }
    println!(
        "{} journal: {appends} appends ({entries} entries), {calls} platform calls; \
         crash points: {points} ({} appends, {} platform calls), \
         {not_reached} not reached; every one converged, no orphan, chain valid, each \
         migration stage once, 0 failed requests on a, b, c; {:.1} s",
        backend.name(),
        spread(appends, sample).len(),
        spread(calls, sample).len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        not_reached * 10 <= points,
        "{not_reached} of {points} points were not reached: the run is not repeatable enough"
    );
}
