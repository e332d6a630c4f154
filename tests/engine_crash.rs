//! Crash test: `cutover deploy --headless` is killed with SIGKILL at random points, then
//! `cutover resume` must converge (every service promoted), leave no orphan process and
//! keep a valid audit chain. `CUTOVER_CRASH_POINTS` sets how many points (default 5).
//!
//! The same body runs on both journal backends (`tests/support/backend.rs`): the file
//! journal, and PostgreSQL (`--journal postgres://…`, a database per point, a 3 s lease;
//! after the kill the test waits for the dead engine's lease to expire, then resumes).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use support::backend::Backend;
use support::local::processes_with;
use support::net::free_listen_port;

const RELEASE: &str = include_str!("fixtures/crash-release.toml");

fn bin() -> &'static str {
    support::CUTOVER
}

/// One crash point: whether the kill left a run that resume finished.
pub fn crash_once(dir: &Path, backend: &Backend, i: usize, kill_after: Duration) -> bool {
    let journal = backend.journal();
    let cmd = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--state-dir")
            .arg(dir.join(format!("state-{i}")))
            .env_remove("CUTOVER_STATE_DIR");
        journal.select(&mut c);
        c
    };
    let name = backend.name();
    let marker = format!("crashmark{}x{name}{i}", std::process::id());
    let text = RELEASE
        .replace("MARKER", &marker)
        .replace("PORT_A", &free_listen_port().to_string())
        .replace("PORT_B", &free_listen_port().to_string())
        .replace("PORT_C", &free_listen_port().to_string());
    let file = dir.join(format!("release-{i}.toml"));
    std::fs::write(&file, text).unwrap();
    let mut child = cmd(&["deploy", "--headless", "--output", "json"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(kill_after);
    let finished_before_kill = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    journal.after_crash();
    let resume = cmd(&["resume", "--headless", "--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resume.stdout);
    let code = resume.status.code();
    let resumed = if code == Some(2) && stdout.is_empty() {
        // Nothing to resume: the deploy had not journaled a run yet, or had finished.
        let runs = cmd(&["history", "--output", "json"]).output().unwrap();
        let text = String::from_utf8_lossy(&runs.stdout);
        let listed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let unfinished = listed
            .as_array()
            .map(|a| a.iter().filter(|r| r["state"] != "finished").count())
            .unwrap_or(0);
        assert!(
            finished_before_kill || unfinished == 0,
            "{name} journal, point {i}: resume found nothing but history shows an unfinished run: {text}"
        );
        false
    } else {
        assert_eq!(
            code,
            Some(0),
            "{name} journal, point {i} (killed after {kill_after:?}): resume failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&resume.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        let summary: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(summary["type"], "summary");
        for s in ["a", "b", "c"] {
            assert_eq!(
                summary["services"][s], "promoted",
                "{name} journal, point {i}: {last}"
            );
        }
        true
    };
    let verify = cmd(&["audit", "verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "{name} journal, point {i}: audit verify failed: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} journal, point {i}: orphan processes: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    resumed
}

#[test]
fn kill_9_anywhere_is_survived_by_resume() {
    let _turn = support::backend::one_at_a_time();
    kill_9_anywhere(&Backend::file());
}

#[test]
fn kill_9_anywhere_is_survived_by_resume_with_the_journal_in_postgres() {
    let _turn = support::backend::one_at_a_time();
    kill_9_anywhere(&Backend::postgres());
}

fn kill_9_anywhere(backend: &Backend) {
    let t0 = std::time::Instant::now();
    let points: usize = std::env::var("CUTOVER_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut resumed = 0;
    for i in 0..points {
        // Spread the kills over the whole rollout (it takes about 5 s), jittered.
        let base = 300 + (i as u64 * 5200) / points.max(1) as u64;
        let jitter = rand::random_range(0..400u64);
        if crash_once(dir.path(), backend, i, Duration::from_millis(base + jitter)) {
            resumed += 1;
        }
    }
    println!(
        "{} journal: {points} kill -9 points, {resumed} resumed to the end; {:.1} s",
        backend.name(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        resumed >= points / 2,
        "only {resumed} of {points} kills left something to resume"
    );
}
