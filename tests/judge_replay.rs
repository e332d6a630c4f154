//! `cutover judge replay` on the committed example recordings, as a library call and as
//! the real binary (exit codes are an interface).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cutover::judge::replay::{render, replay_file, replay_text};
use cutover::judge::{AnalysisConfig, JudgeKind, Outcome};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/judge")
        .join(name)
}

#[test]
fn a_recorded_error_regression_fails_with_an_explanation() {
    let r = replay_file(
        &example("error-regression.jsonl"),
        &AnalysisConfig::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(r.final_verdict.outcome, Outcome::Fail);
    let last = r.timeline.last().unwrap();
    assert_eq!(last.outcome, Outcome::Fail);
    assert!(
        last.elapsed_ms <= 180_000,
        "failed only after {} ms",
        last.elapsed_ms
    );
    assert!(r.timeline.first().unwrap().outcome == Outcome::Inconclusive);
    let text = render(&r);
    assert!(text.contains("errors: canary"), "{text}");
    assert!(text.contains("over tolerance 1.25×: FAIL"), "{text}");
    assert!(text.contains("later windows not judged"), "{text}");
}

#[test]
fn a_recorded_latency_regression_fails_on_latency() {
    let r = replay_file(
        &example("latency-regression.jsonl"),
        &AnalysisConfig::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(r.final_verdict.outcome, Outcome::Fail);
    let failing: Vec<String> = r
        .final_verdict
        .metrics
        .iter()
        .filter(|m| m.status == Outcome::Fail)
        .map(|m| m.to_string())
        .collect();
    assert!(
        failing.len() == 1 && failing[0].starts_with("latency >202ms:"),
        "{failing:?}"
    );
}

#[test]
fn a_recorded_healthy_canary_passes_after_the_minimum_exposure() {
    let r = replay_file(
        &example("healthy.jsonl"),
        &AnalysisConfig::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(r.windows, 360);
    assert_eq!(r.final_verdict.outcome, Outcome::Pass, "{}", render(&r));
    let first_pass = r
        .timeline
        .iter()
        .find(|e| e.outcome == Outcome::Pass)
        .unwrap();
    assert_eq!(first_pass.elapsed_ms, 300_000);
    assert!(r.timeline.iter().all(|e| e.outcome != Outcome::Fail));
    // The recording counts requests slower than the baseline p99 (202 ms). Read by the
    // threshold judge that is "canary p99 ≤ 202 ms" per minute, which a healthy canary
    // misses about half the time: a false rollback, explained.
    let t = AnalysisConfig {
        judge: JudgeKind::Threshold,
        ..Default::default()
    };
    let r = replay_file(&example("healthy.jsonl"), &t, Duration::from_secs(60)).unwrap();
    assert_eq!(r.final_verdict.outcome, Outcome::Fail, "{}", render(&r));
    assert!(
        r.final_verdict
            .notes
            .iter()
            .any(|n| n.contains("p99 ≤ 202ms")),
        "{}",
        render(&r)
    );
}

#[test]
fn bad_lines_are_named_with_their_place_and_fix() {
    let cfg = AnalysisConfig::default();
    let good = r#"{"at_ms":1000,"duration_ms":1000,"canary_weight":0.1,"baseline":{"requests":90,"errors":0},"canary":{"requests":10,"errors":0}}"#;
    let e = replay_text(
        "x.jsonl",
        &format!("{good}\n\n{{\"at_ms\":2000}}\n"),
        &cfg,
        Duration::from_secs(60),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("x.jsonl:3: not an analysis window"), "{e}");
    assert!(e.contains("one JSON object like"), "{e}");
    let backwards = good.replace("1000,\"duration", "500,\"duration");
    let e = replay_text(
        "x.jsonl",
        &format!("{good}\n{backwards}\n"),
        &cfg,
        Duration::from_secs(60),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("x.jsonl:2:") && e.contains("time order"),
        "{e}"
    );
    let e = replay_text("x.jsonl", "\n\n", &cfg, Duration::from_secs(60))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no analysis windows"), "{e}");
}

#[test]
fn the_binary_exits_3_on_a_would_be_rollback_0_on_pass_and_2_on_bad_input() {
    let bin = env!("CARGO_BIN_EXE_cutover");
    let out = Command::new(bin)
        .args(["judge", "replay"])
        .arg(example("error-regression.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL after"));
    let out = Command::new(bin)
        .args(["judge", "replay"])
        .arg(example("healthy.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(bin)
        .args(["judge", "replay", "/nonexistent/windows.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/windows.jsonl")
    );
    let out = Command::new(bin)
        .args(["judge", "replay", "--tolerance", "0.5"])
        .arg(example("healthy.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("analysis.tolerance"));
    let out = Command::new(bin)
        .args(["judge", "replay", "--output", "json"])
        .arg(example("healthy.jsonl"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["final"]["outcome"], "pass");
}

#[test]
fn judge_bench_json_has_the_documented_shape() {
    let bin = env!("CARGO_BIN_EXE_cutover");
    let out = Command::new(bin)
        .args([
            "judge-bench",
            "--scenario",
            "crash",
            "--trials",
            "20",
            "--horizon",
            "30s",
            "--judge",
            "sequential",
            "--judge",
            "argo-fl0",
            "--tune-trials",
            "10",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    // Both calibrations by default: documented first, then tuned to equal A/A.
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["calibration"], "documented");
    assert_eq!(rows[2]["calibration"], "equal-aa");
    assert_eq!(rows[2]["judge"], "sequential");
    let argo = rows[1]["params"].as_str().unwrap();
    assert!(
        argo.contains("success ≥ 99 %") && argo.contains("p99 ≤ 243 ms"),
        "{argo}"
    );
    let tuning = v["tuning"].as_array().unwrap();
    assert_eq!(tuning.len(), 2);
    assert_eq!(tuning[1]["judge"], "argo-fl0");
    assert!(tuning[1]["aa_rate"].as_f64().unwrap() <= 0.01 + 1e-9);
    assert_eq!(rows[0]["judge"], "sequential");
    assert_eq!(rows[0]["scenario"], "crash");
    assert_eq!(rows[0]["trials"], 20);
    assert_eq!(rows[0]["rollback_rate"], 1.0);
    assert!(rows[0]["median_detect_s"].as_f64().unwrap() <= 2.0);
    // Argo checks once a minute: nothing within 30 s.
    assert_eq!(rows[1]["rollback_rate"], 0.0);
    assert!(rows[1]["median_detect_s"].is_null());
    let bad = Command::new(bin)
        .args(["judge-bench", "--weight", "150"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--weight"));
}

#[test]
fn bursty_replays_as_a_release_with_bursty_true_judges() {
    // The recording's first minute, judged as a bursty service: the verdict says the bar
    // is raised until the dispersion is measured, and the binary takes the flag.
    let text = std::fs::read_to_string(example("error-regression.jsonl")).unwrap();
    let minute: String = text.lines().take(60).map(|l| format!("{l}\n")).collect();
    let bursty = AnalysisConfig {
        bursty: true,
        ..AnalysisConfig::default()
    };
    let r = replay_text(
        "first-minute.jsonl",
        &minute,
        &bursty,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(r.final_verdict.outcome, Outcome::Inconclusive);
    assert!(
        r.final_verdict
            .notes
            .iter()
            .any(|n| n.starts_with("bursty = true: evidence 443 instead of 200")),
        "{:?}",
        r.final_verdict.notes
    );
    let plain = replay_text(
        "first-minute.jsonl",
        &minute,
        &AnalysisConfig::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        plain
            .final_verdict
            .notes
            .iter()
            .all(|n| !n.contains("bursty"))
    );
    // The binary's flag: the same minute from a file, with and without it.
    let dir = std::env::temp_dir().join(format!("cutover-bursty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("first-minute.jsonl");
    std::fs::write(&file, &minute).unwrap();
    let run = |flag: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["judge", "replay"])
            .args(flag)
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with = run(&["--bursty"]);
    assert!(
        with.contains("note: bursty = true: evidence 443 instead of 200"),
        "{with}"
    );
    assert!(!run(&[]).contains("bursty = true"));
    std::fs::remove_dir_all(&dir).unwrap();
}
