//! One release file promoted from staging to production on the local platform, ports by
//! variable: production is refused (exit 2, before anything runs) until staging promoted
//! the same artifact; a different `--set` is a different artifact; `--skip-requires` is
//! the break-glass, journaled with the operator and reason; `history` shows each run's
//! environment; `diff --between` on the local platform compares the resolved releases.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::CUTOVER;
use support::net::free_port;
use support::output_text as text;

fn release(staging_port: u16, production_port: u16) -> String {
    format!(
        r#"
[vars]
port = 1
tag = "v2"

[release]
name = "promote"
platform = "local"
progress_deadline = "60s"

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "300ms" }} ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:${{port}}"
drain_timeout = "300ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "${{tag}}" }}

[environments.staging]
vars = {{ port = {staging_port} }}

[environments.production]
requires = ["staging"]
vars = {{ port = {production_port} }}
"#
    )
}

fn cutover(state: &Path, args: &[&str]) -> Output {
    Command::new(CUTOVER)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env("USER", "alice")
        .output()
        .expect("run cutover")
}

#[test]
fn production_waits_for_staging_to_promote_the_same_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    let state = dir.path().join("state");
    std::fs::write(&file, release(free_port(), free_port())).expect("write release");
    let f = file.to_string_lossy().to_string();

    // Production first: refused before anything starts, naming staging and the command.
    let out = cutover(&state, &["deploy", &f, "--env", "production", "--headless"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("production requires staging"), "{t}");
    assert!(
        t.contains(&format!("cutover deploy {f} --env staging")),
        "{t}"
    );
    assert!(t.contains("--skip-requires"), "{t}");
    let runs = cutover(&state, &["history", "--output", "json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&runs.stdout).expect("history JSON"),
        serde_json::json!([]),
        "a refused deploy leaves no run"
    );

    // Staging with another artifact (a different --set) does not count.
    let out = cutover(
        &state,
        &[
            "deploy",
            &f,
            "--env",
            "staging",
            "--set",
            "tag=v3",
            "--headless",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cutover(&state, &["deploy", &f, "--env", "production", "--headless"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("promoted a different artifact"), "{t}");
    assert!(t.contains("tag=v3"), "names what differed: {t}");

    // Staging promotes the same artifact: production may go.
    let out = cutover(&state, &["deploy", &f, "--env", "staging", "--headless"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cutover(&state, &["deploy", &f, "--env", "production", "--headless"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // history names each run's environment.
    let out = cutover(&state, &["history"]);
    let t = text(&out);
    assert!(t.lines().next().is_some_and(|h| h.contains("ENV")), "{t}");
    let envs: Vec<&str> = t
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(envs, ["production", "staging", "staging"], "{t}");
}

#[test]
fn skip_requires_is_a_journaled_break_glass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    let state = dir.path().join("state");
    std::fs::write(&file, release(free_port(), free_port())).expect("write release");
    let f = file.to_string_lossy().to_string();
    let out = cutover(
        &state,
        &[
            "deploy",
            &f,
            "--env",
            "production",
            "--skip-requires",
            "INC-4711: staging is down",
            "--headless",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("BREAK-GLASS: alice skipped the lifecycle gate (staging"),
        "{t}"
    );
    let audit = cutover(&state, &["audit", "--output", "json"]);
    let found = String::from_utf8_lossy(&audit.stdout);
    assert!(
        found.contains("\"break_glass\"")
            && found.contains("INC-4711: staging is down")
            && found.contains("\"skipped\":[\"staging\"]")
            && found.contains("alice"),
        "{found}"
    );
    // An empty reason is no reason.
    let out = cutover(
        &state,
        &[
            "deploy",
            &f,
            "--env",
            "production",
            "--skip-requires",
            " ",
            "--headless",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn local_parity_is_the_resolved_releases_and_all_declared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(18_001, 18_002)).expect("write release");
    let out = Command::new(CUTOVER)
        .args([
            "diff",
            &file.to_string_lossy(),
            "--between",
            "staging",
            "production",
            "--output",
            "json",
        ])
        .output()
        .expect("run cutover diff");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["source"], "release");
    let diffs: Vec<(String, String, String)> = v["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or("").to_string(),
                d["class"].as_str().unwrap_or("").to_string(),
                format!("{} {}", d["a"], d["b"]),
            )
        })
        .collect();
    assert!(
        diffs.iter().any(|(p, c, ab)| p == "local.listen"
            && c == "declared"
            && ab.contains("127.0.0.1:18001")
            && ab.contains("127.0.0.1:18002")),
        "{diffs:?}"
    );
    assert!(
        diffs.iter().any(|(p, _, _)| p == "release.environment"),
        "{diffs:?}"
    );
}
