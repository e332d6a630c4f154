//! A release with tenants on the local platform, end to end through the binary: five
//! tenants' instances (real `cutover demo-service` processes), one of them broken; rings,
//! the failure budget, the flags file, and `kill -9` mid-ring then `cutover resume`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cutover::flagd::{FlagFile, declared};
use cutover::release::tenants::FlagValue;
use support::flagd::evaluate;
use support::local::processes_with;
use support::net::free_port;

/// Five tenants `t1..t5` in two rings (`first`: t1 and t2 two at once, a 1 s bake;
/// `rest`: t3..t5 two at once), budget 1; `broken` tenants' candidates crash.
fn release(dir: &Path, marker: &str, broken: &[&str]) -> PathBuf {
    let mut text = String::from(
        r#"[release]
name = "fleet-local"
platform = "local"
progress_deadline = "30s"
failure_budget = 1

[flags]
file = "flags.json"

[vars]
port = 1
crash = "1h"
"#,
    );
    for i in 1..=5 {
        let name = format!("t{i}");
        let crash = if broken.contains(&name.as_str()) {
            "300ms"
        } else {
            "1h"
        };
        text.push_str(&format!(
            "\n[[tenant]]\nname = \"{name}\"\ntags = [\"{}\"]\nvars = {{ port = {}, crash = \"{crash}\" }}\nflags = {{ new_checkout = true }}\n",
            if i <= 2 { "first" } else { "rest" },
            free_port()
        ));
    }
    text.push_str(&format!(
        r#"
[[ring]]
name = "first"
select = ["tag:first"]
max_parallel = 2
bake = "1s"

[[ring]]
name = "rest"
select = ["tag:rest"]
max_parallel = 2

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "2s" }} ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:${{port}}"
drain_timeout = "300ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "{marker}-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2", args = ["--crash-after", "${{crash}}"] }}
"#
    ));
    let file = dir.join("fleet.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn summary(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no summary ({e}):\n{text}"))
}

/// The flag's value for each tenant, as cutover's own reader and a real flagd evaluator
/// (`support::flagd`) read the file cutover wrote: the two must agree for every tenant.
fn flags(dir: &Path, file: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(dir.join("flags.json")).unwrap();
    let loaded = cutover::release::load(file, &Default::default()).unwrap();
    let ff = FlagFile::read(Some(&text), &declared(&loaded.release)).unwrap();
    (1..=5)
        .map(|i| {
            let t = format!("t{i}");
            let on = evaluate(&text, "new_checkout", &t) == serde_json::Value::Bool(true);
            let ours = ff.value(&t, "new_checkout") == Some(&FlagValue::Bool(true));
            assert_eq!(on, ours, "{t}: flagd and cutover read the file differently");
            (t, on)
        })
        .collect()
}

/// The engine events of a journal's text.
fn events(journal: &str) -> Vec<serde_json::Value> {
    journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["payload"].get("event").cloned())
        .collect()
}

/// Fleet events `what` about `key` = `value`.
fn fleet(journal: &str, what: &str, key: &str, value: &str) -> usize {
    events(journal)
        .iter()
        .filter(|e| e["type"] == "fleet" && e["event"]["what"] == what && e["event"][key] == value)
        .count()
}

fn journal_of(state: &Path) -> String {
    journal_text(state).expect("a run's journal")
}

fn journal_text(state: &Path) -> Option<String> {
    let run = std::fs::read_dir(state.join("runs"))
        .ok()?
        .flatten()
        .find(|e| e.path().join("journal.jsonl").exists())?;
    std::fs::read_to_string(run.path().join("journal.jsonl")).ok()
}

#[test]
fn one_broken_tenant_is_absorbed_by_the_budget_and_the_others_promote() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("fleetlocal{}", std::process::id());
    let file = release(dir.path(), &marker, &["t4"]);
    let state = dir.path().join("state");
    let out = Command::new(support::CUTOVER)
        .args(["deploy", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&file)
        .output()
        .unwrap();
    let s = summary(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{s}");
    for t in ["t1", "t2", "t3", "t5"] {
        assert_eq!(s["tenants"][t], "promoted", "{s}");
        assert_eq!(s["services"][format!("{t}/api")], "promoted", "{s}");
    }
    assert_eq!(s["tenants"]["t4"], "rolled_back", "{s}");
    assert_eq!(s["services"]["t4/api"], "rolled_back", "{s}");
    assert_eq!(s["failure_budget"]["failures"], 1, "{s}");
    let on = flags(dir.path(), &file);
    assert_eq!(
        on,
        vec![
            ("t1".into(), true),
            ("t2".into(), true),
            ("t3".into(), true),
            ("t4".into(), false),
            ("t5".into(), true)
        ]
    );
    // The journal holds the flags file before and after each write.
    let journal = journal_of(&state);
    let written: Vec<serde_json::Value> = events(&journal)
        .into_iter()
        .filter(|e| e["event"]["what"] == "flags_written")
        .collect();
    assert_eq!(written.len(), 4);
    assert!(written.iter().all(|e| {
        e["event"]["after"]
            .as_str()
            .is_some_and(|a| a.contains("new_checkout"))
    }));
    support::wait_for("the replicas to stop", Duration::from_secs(10), || {
        processes_with(&marker).is_empty()
    });
}

#[test]
fn kill_9_mid_ring_then_resume_keeps_promoted_tenants_and_the_budget_count() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("fleetcrash{}", std::process::id());
    let file = release(dir.path(), &marker, &["t2"]);
    let state = dir.path().join("state");
    let mut child = Command::new(support::CUTOVER)
        .args(["deploy", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first ring is done (t1 promoted, t2 failed) and the second ring's
    // first tenants are under way.
    support::wait_for("the second ring to start", Duration::from_secs(60), || {
        journal_text(&state).is_some_and(|j| fleet(&j, "ring_started", "ring", "rest") == 1)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = journal_of(&state);
    assert_eq!(fleet(&before, "tenant_promoted", "tenant", "t1"), 1);
    let out = Command::new(support::CUTOVER)
        .args(["resume", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let s = summary(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{s}");
    for t in ["t1", "t3", "t4", "t5"] {
        assert_eq!(s["tenants"][t], "promoted", "{s}");
    }
    assert_eq!(s["tenants"]["t2"], "rolled_back", "{s}");
    assert_eq!(s["failure_budget"]["failures"], 1, "{s}");
    // t1 was not deployed again: its service started once, in the first process.
    let journal = journal_of(&state);
    let started = events(&journal)
        .iter()
        .filter(|e| e["type"] == "service_started" && e["service"] == "t1/api")
        .count();
    assert_eq!(started, 1);
    assert_eq!(fleet(&journal, "tenant_started", "tenant", "t1"), 1);
    assert_eq!(fleet(&journal, "tenant_failed", "tenant", "t2"), 1);
    let on = flags(dir.path(), &file);
    assert_eq!(
        on.iter()
            .filter(|(_, v)| *v)
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>(),
        vec!["t1", "t3", "t4", "t5"]
    );
    support::wait_for("the replicas to stop", Duration::from_secs(10), || {
        processes_with(&marker).is_empty()
    });
}
