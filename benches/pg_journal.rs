//! The journal in PostgreSQL, measured (issue 19, item 6), against a server started here
//! on loopback as the tests start one (tests/support/pg.rs):
//!
//! 1. Journal append latency, PostgreSQL and the file journal side by side: one entry to
//!    each in turn (interleaved, so both see the same machine), each append durable when
//!    it returns (`synchronous_commit = on` and the lease check in one transaction; write
//!    plus fdatasync).
//! 2. Takeover time: a `cutover deploy` of tests/fixtures/crash-release.toml is killed
//!    (SIGKILL) once service a shifted traffic, and one `cutover serve --standby` on the
//!    same journal takes the run over: from the kill to the standby's first journal write
//!    (its `takeover` entry, `at_ms`), per round; the standby finishes each run and keeps
//!    watching for the next.
//!
//! cargo bench --bench pg_journal
//! Env: CUTOVER_BENCH_N (appends per backend, default 500), CUTOVER_BENCH_ROUNDS (takeovers,
//! default 5), CUTOVER_BENCH_LEASE (default 2s), CUTOVER_BENCH_DIR (the file journal's
//! directory, default under target/).

#[path = "../tests/support/lines.rs"]
mod lines;
#[path = "../tests/support/net.rs"]
mod net;
#[path = "../tests/support/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover::journal::pg::PgStore;
use cutover::journal::{Journal, JournalStore, NewEntry};
use hdrhistogram::Histogram;
use lines::{Lines, collect};

const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");
const RELEASE: &str = include_str!("../tests/fixtures/crash-release.toml");

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn entry(i: u64) -> NewEntry {
    NewEntry {
        at_ms: 1_795_749_300_000 + i,
        operator: None,
        kind: "decision".into(),
        service: Some("checkout-api".into()),
        payload: serde_json::json!({
            "summary": format!("set canary weight to {}%", i % 100),
            "weights": { "stable": 100 - i % 100, "canary": i % 100 },
        }),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn print_us(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<36} p50 {:>7} us   p99 {:>7} us   max {:>7} us   ({} appends)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    );
}

fn appends(url: &str, state: &Path, n: u64) {
    let store = JournalStore::Postgres(PgStore::parse(url, state).expect("journal URL"));
    let mut in_pg = Journal::create(&store, "bench", "0").expect("create in PostgreSQL");
    let mut in_file = Journal::create(state, "bench", "0").expect("create in files");
    let (mut h_pg, mut h_file) = (hist(), hist());
    for i in 0..n {
        let t = Instant::now();
        in_pg.append(entry(i)).expect("append to PostgreSQL");
        h_pg.saturating_record(t.elapsed().as_micros().max(1) as u64);
        let t = Instant::now();
        in_file.append(entry(i)).expect("append to the file");
        h_file.saturating_record(t.elapsed().as_micros().max(1) as u64);
    }
    print_us("Journal::append, PostgreSQL", &h_pg);
    print_us("Journal::append, file (fdatasync)", &h_file);
    println!(
        "PostgreSQL / file (p50): {:.1}x",
        h_pg.value_at_quantile(0.5) as f64 / h_file.value_at_quantile(0.5).max(1) as f64
    );
}

fn wait_line(lines: &Lines, what: &str, nth: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.contains(what))
        .count()
        < nth
    {
        assert!(
            Instant::now() < deadline && child.try_wait().expect("wait").is_none(),
            "never saw {what:?}: {:?}",
            lines.lock().expect("lines")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cutover(state: &Path, url: &str, lease: &str, args: &[&str]) -> (Child, Lines, Lines) {
    let mut child = Command::new(CUTOVER)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CUTOVER_STATE_DIR")
        .env("CUTOVER_JOURNAL", url)
        .env("CUTOVER_JOURNAL_LEASE", lease)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cutover");
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    (child, out, err)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn takeovers(url: &str, dir: &Path, rounds: usize, lease: &str) {
    let (mut standby, _sb_out, sb_err) = cutover(
        &dir.join("standby"),
        url,
        lease,
        &["serve", "--standby", "--output", "json", "--linger", "0s"],
    );
    wait_line(&sb_err, "standby watching", 1, &mut standby);
    let mut db = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut took = Vec::new();
    for round in 1..=rounds {
        let mut text = RELEASE.replace("MARKER", &format!("pgbench{}", std::process::id()));
        for s in ["A", "B", "C"] {
            text = text.replace(&format!("PORT_{s}"), &net::free_port().to_string());
        }
        let file = dir.join(format!("release-{round}.toml"));
        std::fs::write(&file, text).expect("release");
        let file = file.to_string_lossy().into_owned();
        let (mut leader, out, _err) = cutover(
            &dir.join("leader"),
            url,
            lease,
            &["deploy", "--headless", "--output", "json", &file],
        );
        wait_line(&out, "\"v2\",30]", 1, &mut leader);
        let killed = now_ms();
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
        unsafe { libc::kill(leader.id() as i32, libc::SIGKILL) };
        let _ = leader.wait();
        let deadline = Instant::now() + Duration::from_secs(60);
        let at = loop {
            let row = db
                .query_opt(
                    "SELECT e.line FROM cutover_journal_entries e
                      WHERE e.run_id = (SELECT run_id FROM cutover_journal_runs
                                         ORDER BY started_ms DESC LIMIT 1)
                        AND e.epoch = 2 ORDER BY e.seq LIMIT 1",
                    &[],
                )
                .expect("query");
            if let Some(r) = row {
                let line: serde_json::Value =
                    serde_json::from_str(r.get::<_, &str>(0)).expect("entry");
                break line["at_ms"].as_u64().unwrap_or(0);
            }
            assert!(Instant::now() < deadline, "no takeover in round {round}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let d = at.saturating_sub(killed);
        println!("round {round}: takeover {d} ms after the kill");
        took.push(d);
        // The standby finishes the run before the next round (it serves one at a time).
        wait_line(&sb_err, "ended here", round, &mut standby);
    }
    // SAFETY: as above.
    unsafe { libc::kill(standby.id() as i32, libc::SIGTERM) };
    let _ = standby.wait();
    took.sort_unstable();
    println!(
        "takeover (kill -9 -> standby's first journal write), lease {lease}: p50 {} ms, max {} ms over {} rounds",
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
}

fn main() {
    let n: u64 = env_or("CUTOVER_BENCH_N", 500);
    let rounds: usize = env_or("CUTOVER_BENCH_ROUNDS", 5);
    let lease: String = env_or("CUTOVER_BENCH_LEASE", "2s".to_string());
    let base: PathBuf = std::env::var_os("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let server = pg::PgServer::start();
    // Two databases: the standby must not find the append benchmark's run (no release).
    server.create_db("appends");
    server.create_db("takeovers");
    let url = |db: &str| format!("postgres://postgres@127.0.0.1:{}/{db}", server.port);
    println!(
        "PostgreSQL on loopback (a server of its own); file journal under {}",
        base.display()
    );
    println!();
    appends(&url("appends"), dir.path(), n);
    println!();
    takeovers(&url("takeovers"), dir.path(), rounds, &lease);
}
