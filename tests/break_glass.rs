//! Break-glass from the command line, end to end on the local platform: a headless
//! `cutover deploy --break-glass REASON` inside a freeze window waits, before anything
//! launches, for the approvals the policy's `[break_glass]` names; `cutover ctl
//! approve-break-glass` from the starter (four eyes) or from someone outside the roster
//! is refused with the reason and exit 4; two allowed operators let it proceed; the
//! journal records who approved.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::CUTOVER;
use support::net::free_port;
use support::output_text as text;
use support::served::Served;

fn release(port: u16) -> String {
    format!(
        r#"
[release]
name = "pay"
platform = "local"
environment = "production"

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "1s" }} ]
[service.local]
listen = "127.0.0.1:{port}"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
    )
}

/// A window that opens every minute for two hours is open now, whenever now is; a
/// break-glass needs two of sre, not the starter.
const POLICY: &str = r#"
[[freeze]]
name = "always"
cron = "* * * * *"
duration = "2h"
timezone = "Europe/Berlin"
environments = ["production"]

[roster]
groups = { sre = ["alice", "bob", "carol"] }

[break_glass]
approvers = ["group:sre"]
required = 2
four_eyes = true
"#;

fn ctl(dir: &Path, state: &Path, operator: &str, args: &[&str]) -> Output {
    Command::new(CUTOVER)
        .arg("ctl")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .args(["--operator", operator])
        .env("CUTOVER_CONFIG_DIR", dir.join("config"))
        .env_remove("CUTOVER_POLICY")
        .output()
        .expect("run cutover ctl")
}

/// The run's journal entries (one run under `state`).
fn journal(state: &Path) -> Vec<serde_json::Value> {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .expect("runs")
        .map(|d| d.expect("run").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    std::fs::read_to_string(runs[0].join("journal.jsonl"))
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry"))
        .collect()
}

#[test]
fn a_headless_break_glass_waits_for_two_other_operators_and_journals_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(port)).expect("write release");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write policy");
    let state = dir.path().join("state");
    let log_path = dir.path().join("deploy.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(CUTOVER)
        .arg("deploy")
        .arg(&file)
        .arg("--headless")
        .arg("--state-dir")
        .arg(&state)
        .arg("--policy")
        .arg(&policy)
        .args(["--break-glass", "incident 42: payments down"])
        .env("USER", "alice")
        .env("CUTOVER_CONFIG_DIR", dir.path().join("config"))
        .env_remove("CUTOVER_POLICY")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn deploy");
    let mut deploy = Served(child);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let snap = deploy.wait_status(
        Duration::from_secs(60),
        || ctl(dir.path(), &state, "alice", &["status"]),
        read_log,
    );
    assert_eq!(
        snap["state"]["change_control"]["break_glass"]["pending"], true,
        "{snap:#}"
    );
    assert!(
        read_log().contains(
            "BREAK-GLASS REQUESTED: alice asks to start inside the freeze window `always`"
        ),
        "{}",
        read_log()
    );
    // Waiting: nothing launched (the journal below shows no platform action before the
    // grant).
    assert!(
        snap["state"]["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|x| x["status"] == "pending")),
        "{snap:#}"
    );

    // The starter may not approve her own break-glass (four eyes).
    let own = ctl(dir.path(), &state, "alice", &["approve-break-glass"]);
    assert_eq!(own.status.code(), Some(4), "{}", text(&own));
    assert!(
        text(&own).contains("alice started this release; four eyes: someone else must approve"),
        "{}",
        text(&own)
    );
    // Someone outside the roster is told why.
    let stranger = ctl(dir.path(), &state, "mallory", &["approve-break-glass"]);
    assert_eq!(stranger.status.code(), Some(4), "{}", text(&stranger));
    assert!(
        text(&stranger).contains("mallory is not in group:sre"),
        "{}",
        text(&stranger)
    );
    // One of two: still waiting; the same person twice does not count.
    let bob = ctl(dir.path(), &state, "bob", &["approve-break-glass"]);
    assert_eq!(bob.status.code(), Some(0), "{}", text(&bob));
    assert!(
        text(&bob).contains("break-glass approval 1 of 2 recorded (bob)"),
        "{}",
        text(&bob)
    );
    let again = ctl(dir.path(), &state, "bob", &["approve-break-glass"]);
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    assert!(
        text(&again).contains("bob already approved"),
        "{}",
        text(&again)
    );
    let carol = ctl(dir.path(), &state, "carol", &["approve-break-glass"]);
    assert_eq!(carol.status.code(), Some(0), "{}", text(&carol));
    assert!(
        text(&carol).contains("break-glass approved (2 of 2: bob, carol); the release goes on"),
        "{}",
        text(&carol)
    );

    // The release proceeds and is promoted.
    deploy.wait_exit(Duration::from_secs(120), read_log);
    let code = deploy.0.wait().expect("wait").code();
    assert_eq!(code, Some(0), "{}", read_log());

    // The journal: the refusals with their reasons, the approvals by name, and the grant.
    let entries = journal(&state);
    let commands: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["kind"] == "command")
        .filter(|e| e.to_string().contains("approve_break_glass"))
        .map(|e| {
            (
                e["operator"].as_str().unwrap_or_default().to_string(),
                e["payload"]["event"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("alice".to_string(), "command_refused".to_string()),
            ("mallory".into(), "command_refused".into()),
            ("bob".into(), "command_accepted".into()),
            ("bob".into(), "command_refused".into()),
            ("carol".into(), "command_accepted".into()),
        ]
    );
    let granted: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["payload"]["event"]["type"] == "break_glass_granted")
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(
        granted[0]["payload"]["event"]["approvers"],
        serde_json::json!(["bob", "carol"])
    );
    let first_platform = entries
        .iter()
        .position(|e| e["kind"] == "platform")
        .expect("the release ran");
    let grant = entries
        .iter()
        .position(|e| e["payload"]["event"]["type"] == "break_glass_granted")
        .expect("granted");
    assert!(
        grant < first_platform,
        "no platform action before the grant"
    );
    let out = Command::new(CUTOVER)
        .args(["audit", "verify", "--state-dir"])
        .arg(&state)
        .output()
        .expect("audit verify");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
