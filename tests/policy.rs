//! Change control from the command line: a production canary without analysis is refused
//! by a Rego policy before anything changes (no process, a journal with only the refusal);
//! a deploy inside a freeze window is refused naming the window and its end; `policy
//! check` runs the same checks alone; a bad policy file is located.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::CUTOVER;
use support::net::free_port;
use support::output_text as text;

fn release(port: u16, steps: &str) -> String {
    format!(
        r#"
[release]
name = "pay"
platform = "local"
environment = "production"

[[service]]
name = "api"
strategy = "canary"
steps = {steps}
[service.local]
listen = "127.0.0.1:{port}"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
    )
}

const NO_ANALYSIS: &str = r#"[ { set_weight = 50 }, { pause = "1s" } ]"#;
const ANALYSED: &str = r#"[ { set_weight = 50 }, { analysis = "1m" } ]"#;

fn policy(dir: &Path, extra: &str) -> String {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let file = dir.join("policy.toml");
    std::fs::write(
        &file,
        format!(
            "{extra}\n[[rego]]\nfile = \"{}\"\n[[rego]]\nfile = \"{}\"\n",
            examples.join("production-canary.rego").display(),
            examples.join("production-change-ticket.rego").display()
        ),
    )
    .expect("write policy");
    file.to_string_lossy().to_string()
}

fn cutover(dir: &Path, args: &[&str]) -> Output {
    Command::new(CUTOVER)
        .args(args)
        .env("USER", "alice")
        .env("CUTOVER_CONFIG_DIR", dir.join("config"))
        .env_remove("CUTOVER_POLICY")
        .output()
        .expect("run cutover")
}

/// The runs under `state`, each with its entries' kinds and its outcome.
fn runs(state: &Path) -> Vec<(Vec<String>, String, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    dir.map(|d| {
        let d = d.expect("run dir").path();
        let journal = std::fs::read_to_string(d.join("journal.jsonl")).expect("journal");
        let kinds = journal
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("entry");
                v["kind"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("run.json")).expect("run.json"))
                .expect("run.json is JSON");
        let files = std::fs::read_dir(&d)
            .expect("run dir")
            .map(|f| f.expect("file").file_name().to_string_lossy().to_string())
            .collect();
        (
            kinds,
            run["outcome"].as_str().unwrap_or_default().to_string(),
            files,
        )
    })
    .collect()
}

#[test]
fn a_production_canary_without_analysis_is_stopped_before_anything_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(port, NO_ANALYSIS)).expect("write release");
    let state = dir.path().join("state");
    let pol = policy(dir.path(), "");
    let f = file.to_string_lossy().to_string();
    let s = state.to_string_lossy().to_string();
    let out = cutover(
        dir.path(),
        &[
            "deploy",
            &f,
            "--headless",
            "--state-dir",
            &s,
            "--policy",
            &pol,
            "--change",
            "CHG-1",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("production-canary.rego denies: api is a canary without analysis"),
        "{t}"
    );
    assert!(t.contains("refused before anything changed"), "{t}");
    // Nothing ran: the service's port was never bound, and the only run is the refusal:
    // its release entry, one policy entry, finished `refused`, no platform files.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let r = runs(&state);
    assert_eq!(r.len(), 1, "{r:?}");
    let (kinds, outcome, mut files) = r.into_iter().next().expect("one run");
    assert_eq!(kinds, ["release", "policy"]);
    assert_eq!(outcome, "refused");
    files.sort();
    assert_eq!(files, ["journal.jsonl", "lock", "run.json"]);
    // The audit chain of the refused run verifies.
    let out = cutover(dir.path(), &["audit", "verify", "--state-dir", &s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The same release with analysis and a change ticket passes `policy check`; without
    // the ticket it is denied.
    std::fs::write(&file, release(port, ANALYSED)).expect("write release");
    let ok = cutover(
        dir.path(),
        &["policy", "check", &f, "--policy", &pol, "--change", "CHG-1"],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("release pay may start"), "{}", text(&ok));
    let no_ticket = cutover(dir.path(), &["policy", "check", &f, "--policy", &pol]);
    assert_eq!(no_ticket.status.code(), Some(2), "{}", text(&no_ticket));
    assert!(text(&no_ticket).contains("production needs a change ticket"));
}

#[test]
fn a_deploy_inside_a_freeze_window_is_refused_naming_the_window_and_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(port, ANALYSED)).expect("write release");
    let state = dir.path().join("state");
    // A window that opens every minute for two hours is open now, whenever now is.
    let pol = policy(
        dir.path(),
        "[[freeze]]\nname = \"always\"\ncron = \"* * * * *\"\nduration = \"2h\"\ntimezone = \"Europe/Berlin\"\nenvironments = [\"production\"]\n\n[roster]\ngroups = { sre = [\"bob\"] }\n\n[break_glass]\napprovers = [\"group:sre\"]\nrequired = 1\nfour_eyes = true\n",
    );
    // In the config directory, as policy.toml, without --policy.
    std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
    std::fs::copy(&pol, dir.path().join("config/policy.toml")).expect("copy policy");
    let f = file.to_string_lossy().to_string();
    let s = state.to_string_lossy().to_string();
    let out = cutover(
        dir.path(),
        &[
            "deploy",
            &f,
            "--headless",
            "--state-dir",
            &s,
            "--change",
            "CHG-2",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("the freeze window `always` is open until "),
        "{t}"
    );
    assert!(t.contains(" UTC)"), "{t}");
    assert!(t.contains("CET") || t.contains("CEST"), "{t}");
    // A break-glass the starter approves alone is refused (four eyes)...
    let out = cutover(
        dir.path(),
        &[
            "deploy",
            &f,
            "--headless",
            "--state-dir",
            &s,
            "--change",
            "CHG-2",
            "--break-glass",
            "incident 9",
            "--break-glass-approver",
            "alice",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--break-glass refused: alice started this release; four eyes"),
        "{}",
        text(&out)
    );
    // ...and both refusals are journaled as refused runs.
    let r = runs(&state);
    assert_eq!(r.len(), 2);
    assert!(
        r.iter()
            .all(|(k, o, _)| k == &["release", "policy"] && o == "refused")
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_bad_policy_file_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(free_port(), ANALYSED)).expect("write release");
    let pol = dir.path().join("bad.toml");
    std::fs::write(
        &pol,
        "[[freeze]]\nname = \"x\"\ncron = \"0 18 * * 5\"\nduration = \"1h\"\ntimezone = \"Europe/Berlim\"\n",
    )
    .expect("write policy");
    let out = cutover(
        dir.path(),
        &[
            "policy",
            "check",
            &file.to_string_lossy(),
            "--policy",
            &pol.to_string_lossy(),
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("bad.toml:5:12: `Europe/Berlim` is not an IANA time zone"),
        "{t}"
    );
}
