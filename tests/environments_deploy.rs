//! One release file deployed to an environment: `examples/environments-local.toml` to
//! staging with `--env staging` (ports by `--set`), headless; the run journals its
//! environment and artifact; without `--env` nothing starts. A run whose variable was read
//! with `env:` resumes only when it still resolves the same.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::net::free_port;
use support::{CUTOVER, everything_under, wait_for};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments-local.toml")
}

fn summary(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_local_example_deploys_to_staging_and_refuses_to_guess() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // No --env: refused before anything starts, listing the environments.
    let refused = Command::new(CUTOVER)
        .args(["deploy", "--headless", "--state-dir"])
        .arg(&state)
        .arg(example())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("declares environments (production, staging)") && err.contains("--env"),
        "{err}"
    );
    assert!(!state.join("runs").exists() || everything_under(&state).is_empty());

    let (api, web) = (free_port(), free_port());
    let out = Command::new(CUTOVER)
        .args([
            "deploy",
            "--headless",
            "--output",
            "json",
            "--env",
            "staging",
        ])
        .args(["--set", &format!("api_port={api}")])
        .args(["--set", &format!("web_port={web}")])
        .arg("--state-dir")
        .arg(&state)
        .arg(example())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let s = summary(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    // The log (the console's log pane) shows the resolved values and their sources.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("environment staging"), "{log}");
    assert!(
        log.contains(&format!("api_port = {api}")) && log.contains("(--set)"),
        "{log}"
    );
    assert!(
        log.contains("(environment staging)") || log.contains("([vars])"),
        "{log}"
    );
    assert_eq!(s["services"]["api"], "promoted", "{s}");
    assert_eq!(s["services"]["web"], "promoted", "{s}");
    // The journal names the environment and the artifact with its --set values.
    let journaled = everything_under(&state);
    assert!(
        journaled.contains("\"environment\":\"staging\""),
        "no environment journaled"
    );
    assert!(
        journaled.contains(&format!("\"value\":\"{api}\"")),
        "no --set journaled"
    );
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let origin = cutover::journal::origin_of_run(&state, &runs[0]).unwrap();
    assert_eq!(origin.environment.as_deref(), Some("staging"));
    let artifact = origin.artifact.expect("artifact");
    let loaded = cutover::release::load(
        &example(),
        &cutover::release::LoadOptions {
            env: Some("production".into()),
            sets: artifact.sets.clone(),
            lenient_env: false,
        },
    )
    .unwrap();
    assert_eq!(
        loaded.artifact, artifact,
        "production would deploy the same artifact"
    );
}

/// The pid of an api replica of `revision`.
fn api_replica(revision: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let has = |s: &str| args.contains(&s.as_bytes());
        (has(revision) && has("api") && has("demo-service")).then_some(pid)
    })
}

#[test]
fn resume_resolves_env_values_again_and_refuses_a_change() {
    const VAR: &str = "CUTOVER_TEST_ENV_DEPLOY_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The example, with the api candidate given a token from a variable.
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replacen("[vars]\n", "[vars]\ntoken = \"none\"\n", 1)
        .replacen(
            "target = { revision = \"${version}\" }",
            "target = { revision = \"${version}\", env = { API_TOKEN = \"${token}\" } }",
            1,
        );
    let file = dir.path().join("release.toml");
    std::fs::write(&file, &text).unwrap();
    let (api, web) = (free_port(), free_port());
    let version = format!("2.4.0-{api}");
    let token = format!("tok-{api}-secret");
    let mut deploy = Command::new(CUTOVER)
        .args(["deploy", "--headless", "--env", "staging"])
        .args(["--set", &format!("api_port={api}")])
        .args(["--set", &format!("web_port={web}")])
        .args(["--set", &format!("version={version}")])
        .args(["--set", "hold=6s", "--set", &format!("token=env:{VAR}")])
        .arg("--state-dir")
        .arg(&state)
        .arg(&file)
        .env(VAR, &token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the candidate launched", Duration::from_secs(60), || {
        api_replica(&version).is_some()
    });
    deploy.kill().unwrap();
    let _ = deploy.wait();
    let journaled = everything_under(&state);
    assert!(
        journaled.contains(&format!("env:{VAR}")),
        "the variable's name is journaled"
    );
    assert!(
        !journaled.contains(&token),
        "the env value reached the state dir"
    );

    // The environment variable now holds something else: refused, nothing started.
    let refused = Command::new(CUTOVER)
        .args(["resume", "--headless", "--state-dir"])
        .arg(&state)
        .env(VAR, "another-token-value")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("release.toml")
            && err.contains("--env staging")
            && err.contains(&format!("--set token=env:{VAR}"))
            && err.contains("no longer gives the release the run started with"),
        "{err}"
    );
    assert!(!err.contains(&token), "{err}");

    // The same value again: the run carries on to the end, the candidate with its token.
    let mut resume = Command::new(CUTOVER)
        .args(["resume", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .env(VAR, &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut environ = String::new();
    wait_for("the candidate relaunched", Duration::from_secs(60), || {
        api_replica(&version)
            .and_then(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
            .map(|e| environ = String::from_utf8_lossy(&e).replace('\0', "\n"))
            .is_some_and(|()| environ.contains("API_TOKEN="))
    });
    assert!(environ.lines().any(|l| l == format!("API_TOKEN={token}")));
    let status = resume.wait().unwrap();
    let mut out = Vec::new();
    use std::io::Read;
    resume.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let s = summary(&out);
    assert_eq!(status.code(), Some(0), "{s}");
    assert_eq!(s["services"]["api"], "promoted", "{s}");
    assert!(!everything_under(&state).contains(&token));
}
