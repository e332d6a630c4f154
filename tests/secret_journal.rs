//! A revision's environment value never reaches the state directory, yet `resume` after
//! `kill -9` relaunches the revision with it (re-reading the release file, checked against
//! the journaled digest); a release file changed since the run started is refused.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::net::free_port;
use support::{CUTOVER, demo_replica, everything_under, wait_for};

const SECRET: &str = "envmark-7f3a9c2e";

fn release(marker: &str, port: u16) -> String {
    format!(
        r#"
[release]
name = "secretenv"
platform = "local"
progress_deadline = "60s"

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "6s" }} ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:{port}"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "{marker}"]
current = {{ revision = "v1", env = {{ API_TOKEN = "oldmark-19d2c4" }} }}
target = {{ revision = "v2", env = {{ API_TOKEN = "{SECRET}" }} }}
"#
    )
}

#[test]
fn env_values_stay_out_of_the_journal_and_resume_relaunches_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("secretmark{}", std::process::id());
    let file = dir.path().join("release.toml");
    let text = release(&marker, free_port());
    std::fs::write(&file, &text).unwrap();
    let state = dir.path().join("state");
    // `--change` overrides the file: a resume that re-reads the file must apply it again
    // to get the journaled release back.
    let mut deploy = Command::new(CUTOVER)
        .args(["deploy", "--headless", "--change", "CHG-9", "--state-dir"])
        .arg(&state)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once the candidate runs (with its secret in its environment).
    wait_for("the candidate launched", Duration::from_secs(60), || {
        demo_replica(&marker, "v2").is_some()
    });
    deploy.kill().unwrap();
    let _ = deploy.wait();
    let journaled = everything_under(&state);
    assert!(
        journaled.contains("\"release\""),
        "no release entry journaled"
    );
    for secret in [SECRET, "oldmark-19d2c4"] {
        assert!(
            !journaled.contains(secret),
            "{secret} is under the state dir"
        );
    }
    let audit = Command::new(CUTOVER)
        .args(["audit", "--output", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&audit.stdout).contains(SECRET));

    // A changed release file is refused, naming it and what to do.
    std::fs::write(&file, format!("{text}\n# edited\n")).unwrap();
    let refused = Command::new(CUTOVER)
        .args(["resume", "--headless", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("release.toml") && err.contains("changed"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");

    // Restored, resume carries on and the candidate runs with its full environment.
    std::fs::write(&file, &text).unwrap();
    let mut resume = Command::new(CUTOVER)
        .args(["resume", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut environ = String::new();
    wait_for("the candidate relaunched", Duration::from_secs(60), || {
        demo_replica(&marker, "v2")
            .and_then(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
            .map(|e| environ = String::from_utf8_lossy(&e).replace('\0', "\n"))
            .is_some_and(|()| environ.contains("API_TOKEN="))
    });
    assert!(
        environ.lines().any(|l| l == format!("API_TOKEN={SECRET}")),
        "the relaunched candidate lacks its environment value"
    );
    let status = resume.wait().unwrap();
    let mut out = String::new();
    use std::io::Read;
    resume
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(!out.contains(SECRET));
    let journaled = everything_under(&state);
    assert!(
        !journaled.contains(SECRET),
        "the secret reached the state dir after resume"
    );
    // The finished run's report (written by the resumed process) names the ticket.
    let state_arg = state.to_string_lossy().into_owned();
    let report = support::cutover_ok(["report", "--format", "json", "--state-dir", &state_arg]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["change"], "CHG-9");
    let run = report["run_id"].as_str().unwrap();
    assert!(state.join("runs").join(run).join("report.html").is_file());
}
