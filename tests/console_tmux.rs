//! The console in a real terminal: `cutover demo` in tmux, the rollback key pressed on a
//! service mid-canary, then the screen (capture-pane) and the proxy's actual routing
//! checked. Needs tmux (Debian package `tmux`); fails without it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

mod support;

use support::tmux::Tmux;

/// The revision that answers a request through the service's stable address.
fn revision_behind(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /api/demo HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.lines().find_map(|l| {
        l.strip_prefix("x-cutover-revision: ")
            .map(|v| v.trim().to_string())
    })
}

fn service_row<'a>(screen: &'a str, service: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!(" {service} ")) && l.starts_with('┃'))
        .unwrap_or("")
}

#[test]
fn rollback_key_in_a_real_terminal_moves_the_proxy_back() {
    let bin = env!("CARGO_BIN_EXE_cutover");
    let state = tempfile::tempdir().unwrap();
    support::net::wait_for_demo_ports();
    let t = Tmux {
        socket: format!("cutover-console-test-{}", std::process::id()),
    };
    let cmd = format!(
        "CUTOVER_STATE_DIR={} USER=oncall {bin} demo; sleep 60",
        state.path().display()
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "140",
        "-y",
        "42",
        &cmd,
    ]);
    // payments' canary takes its first traffic (20 %).
    t.wait_for(
        "payments at 20 %",
        |s| service_row(s, "payments").contains("v2 20%"),
        90,
    );
    // payments is the first service in the tree, so it is selected: one key rolls it back.
    t.run(&["send-keys", "-t", "demo", "r"]);
    let screen = t.wait_for(
        "payments rolled back",
        |s| service_row(s, "payments").contains("ROLLED BACK"),
        60,
    );
    assert!(service_row(&screen, "payments").contains("⟲"), "{screen}");
    assert!(
        service_row(&screen, "payments").contains("v1 100%"),
        "{screen}"
    );
    // The proxy itself routes everything to v1 again.
    let answers: Vec<Option<String>> = (0..30)
        .map(|_| revision_behind("127.0.0.1:18301"))
        .collect();
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("v1")),
        "{answers:?}"
    );
    // The operator's command is in the log: filter the log down to it.
    t.run(&["send-keys", "-t", "demo", "/"]);
    t.run(&["send-keys", "-t", "demo", "-l", "rolling back"]);
    t.run(&["send-keys", "-t", "demo", "Enter"]);
    let screen = t.wait_for(
        "the rollback in the log",
        |s| s.contains("payments: rolling back by oncall"),
        20,
    );
    assert!(screen.contains("operator oncall"), "{screen}");
    // Wait for the end, then q quits without asking and prints the summary.
    t.wait_for("the release to finish", |s| s.contains("FINISHED"), 90);
    t.run(&["send-keys", "-t", "demo", "q"]);
    let after = t.wait_for("the summary", |s| s.contains("exit "), 30);
    assert!(
        after.contains("payments") && after.contains("rolled_back"),
        "{after}"
    );
}

#[test]
fn quitting_and_leaving_the_release_paused_exits_6_and_resume_carries_on() {
    let bin = env!("CARGO_BIN_EXE_cutover");
    let dir = tempfile::tempdir().unwrap();
    let port = support::net::free_port();
    let release = dir.path().join("held.toml");
    std::fs::write(
        &release,
        format!(
            r#"[release]
name = "held"
platform = "local"

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "forever" }} ]
[service.health]
interval = "200ms"
timeout = "150ms"
[service.local]
listen = "127.0.0.1:{port}"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "held-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let t = Tmux {
        socket: format!("cutover-console-quit-{}", std::process::id()),
    };
    let cmd = format!(
        "CUTOVER_STATE_DIR={} {bin} deploy {}; echo \"exit $?\"; sleep 60",
        state.display(),
        release.display()
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "140",
        "-y",
        "42",
        &cmd,
    ]);
    t.wait_for(
        "the canary held at its pause",
        |s| service_row(s, "api").contains("v2 50%"),
        60,
    );
    t.run(&["send-keys", "-t", "demo", "q"]);
    t.wait_for("the quit dialog", |s| s.contains("roll back"), 10);
    t.run(&["send-keys", "-t", "demo", "p"]);
    let after = t.wait_for("the exit code", |s| s.contains("exit "), 30);
    assert!(after.contains("exit 6"), "{after}");
    assert!(after.contains("cutover resume"), "{after}");
    // The journal knows the run is unfinished and paused.
    let out = Command::new(bin)
        .args(["history", "--output", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        runs.as_array()
            .is_some_and(|a| a.iter().any(|r| r["state"] != "finished")),
        "{runs}"
    );
}
