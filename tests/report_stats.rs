//! `cutover stats` over journals whose answer is worked out by hand below, and `cutover
//! report` on them: a refused run is not a deployment, a rollback's time to restore runs
//! from the first failing signal to all traffic on stable, `--since` and `--env` filter.

mod support;

use std::process::Command;

use cutover::engine::FinalStatus::{Promoted, RolledBack};
use cutover::judge::Outcome;
use support::CUTOVER;
use support::journals::RunWriter;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// Five runs (times in seconds from each run's start):
/// - A production, api + web: promoted at 600 and 900, ends at 1200.            success
/// - B production, api: bad window at 100, rollback decided at 130, on v1 at 190, ends
///   at 200: time to restore 90 s.                                              failure
/// - C staging, api, 40 days ago: promoted at 2900, ends at 3000.               success
/// - D production: refused by a freeze window before anything changed (no candidate),
///   ends at 5.                                                                 refused
/// - E staging, web: rolled back by an operator at 400 (no failing signal before), on v1
///   at 430, ends at 450: time to restore 30 s.                                 failure
fn journals(dir: &std::path::Path) {
    let now = cutover::journal::timefmt::now_ms();
    let recent = now - DAY;

    let mut a = RunWriter::new(
        dir,
        "shop",
        Some("production"),
        Some("CHG-1"),
        &["api", "web"],
        recent,
    );
    a.start(0.0, "ann")
        .launch(1.0, "api")
        .launch(1.0, "web")
        .window(60.0, "api", 1, 0, 41.0)
        .verdict(61.0, "api", Outcome::Pass)
        .promote(600.0, "api")
        .promote(900.0, "web");
    a.finish(1200.0, "promoted", &[("api", Promoted), ("web", Promoted)]);

    let mut b = RunWriter::new(
        dir,
        "shop",
        Some("production"),
        Some("CHG-2"),
        &["api"],
        recent + HOUR,
    );
    b.start(0.0, "ann")
        .launch(1.0, "api")
        .window(50.0, "api", 1, 0, 40.0)
        .window(100.0, "api", 1, 30, 180.0)
        .window(120.0, "api", 2, 35, 190.0)
        .verdict(130.0, "api", Outcome::Fail)
        .rollback(130.0, 190.0, "api", None);
    b.finish(200.0, "rolled_back", &[("api", RolledBack)]);

    let mut c = RunWriter::new(dir, "shop", Some("staging"), None, &["api"], now - 40 * DAY);
    c.start(0.0, "bob")
        .launch(1.0, "api")
        .promote(2900.0, "api");
    c.finish(3000.0, "promoted", &[("api", Promoted)]);

    let mut d = RunWriter::new(
        dir,
        "shop",
        Some("production"),
        Some("CHG-3"),
        &["api"],
        recent + 2 * HOUR,
    );
    d.entry(1.0, "policy", refusal("freeze"));
    d.finish(5.0, "refused", &[]);

    let mut e = RunWriter::new(
        dir,
        "shop",
        Some("staging"),
        None,
        &["web"],
        recent + 3 * HOUR,
    );
    e.start(0.0, "bob")
        .launch(1.0, "web")
        .window(200.0, "web", 0, 0, 40.0)
        .rollback(400.0, 430.0, "web", Some("carol"));
    e.finish(450.0, "rolled_back", &[("web", RolledBack)]);
}

/// A `policy` entry refusing a run by `rule` (as `session/policy_gate.rs` writes it).
fn refusal(rule: &str) -> serde_json::Value {
    serde_json::json!({
        "summary": format!("refused before anything changed: {rule}"),
        "refused": [{"rule": rule, "message": format!("a {rule} refusal")}],
    })
}

fn stats(dir: &std::path::Path, more: &[&str]) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = ["stats", "--output", "json", "--state-dir"]
        .iter()
        .map(|a| a.as_ref())
        .collect();
    args.push(dir.as_os_str());
    args.extend(more.iter().map(std::ffi::OsStr::new));
    serde_json::from_slice(&support::cutover_ok(args).stdout).unwrap()
}

fn spread(median: f64, p90: f64) -> serde_json::Value {
    serde_json::json!({"median": median, "p90": p90})
}

#[test]
fn stats_over_known_journals_match_the_figures_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    journals(dir.path());
    let s = stats(dir.path(), &[]);
    assert_eq!(s["runs"], 5);
    assert_eq!(s["deployments"], 4, "{s:#}");
    assert_eq!(
        s["refused"],
        serde_json::json!({"total": 1, "by_reason": {"freeze": 1}})
    );
    assert_eq!(s["unfinished"], 0);
    // A and C promoted without a rollback; B and E rolled back.
    assert_eq!(s["success_rate"], 0.5);
    assert_eq!(s["change_failure_rate"], 0.5);
    // Durations 1200, 200, 3000, 450: sorted 200 450 1200 3000; median (450+1200)/2,
    // p90 the 4th of 4 (nearest rank ceil(0.9 × 4)).
    assert_eq!(s["duration_s"], spread(825.0, 3000.0));
    // B: 190 - 100 (the first window with the candidate erring above the baseline);
    // E: 430 - 400 (the operator's rollback is the first signal). Median 60, p90 90.
    assert_eq!(s["time_to_restore_s"], spread(60.0, 90.0));

    // api: A promoted (1 → 600), B rolled back (1 → 190), C promoted (1 → 2900).
    let api = &s["by_service"]["api"];
    assert_eq!(api["deployments"], 3);
    assert_eq!(api["promoted"], 2);
    assert_eq!(api["duration_s"], spread(599.0, 2899.0));
    assert_eq!(api["time_to_restore_s"], spread(90.0, 90.0));
    // web: A promoted (1 → 900), E rolled back (1 → 430).
    let web = &s["by_service"]["web"];
    assert_eq!(web["deployments"], 2);
    assert_eq!(web["success_rate"], 0.5);
    assert_eq!(web["duration_s"], spread((899.0 + 429.0) / 2.0, 899.0));
    assert_eq!(web["time_to_restore_s"], spread(30.0, 30.0));

    // By environment: production A, B (D refused); staging C, E.
    let prod = &s["by_environment"]["production"];
    assert_eq!(prod["deployments"], 2);
    assert_eq!(prod["success_rate"], 0.5);
    assert_eq!(prod["duration_s"], spread(700.0, 1200.0));
    let staging = &s["by_environment"]["staging"];
    assert_eq!(staging["duration_s"], spread(1725.0, 3000.0));

    // The seed's targets ride along.
    assert_eq!(s["targets"]["success_rate"], 0.98);
    assert_eq!(s["targets"]["time_to_restore_s"], 300.0);

    // --env and --since.
    let st = stats(dir.path(), &["--env", "staging"]);
    assert_eq!(
        (st["runs"].clone(), st["deployments"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(
        st["refused"],
        serde_json::json!({"total": 0, "by_reason": {}})
    );
    let recent = stats(dir.path(), &["--since", "30d"]);
    assert_eq!(recent["deployments"], 3, "C is 40 days old");
    assert_eq!(recent["success_rate"], serde_json::json!(1.0 / 3.0));
    assert_eq!(recent["refused"]["total"], 1);

    // The text form sets the figures beside the targets.
    let out = Command::new(CUTOVER)
        .args(["stats", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4 deployment(s), 1 refused before anything changed (freeze 1)"),
        "{text}"
    );
    assert!(
        text.contains("success rate") && text.contains("50.0 %") && text.contains(">= 98 %"),
        "{text}"
    );
    assert!(
        text.contains("13 min 45 s") && text.contains("30-90 min"),
        "{text}"
    );
    assert!(
        text.contains("time to restore") && text.contains("< 5 min"),
        "{text}"
    );
}

#[test]
fn a_bad_since_and_an_unknown_run_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CUTOVER)
        .args(["stats", "--since", "soon", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("30d"));
    let out = Command::new(CUTOVER)
        .args(["report", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runs under"));
    let out = Command::new(CUTOVER)
        .args(["report", "nope-run", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_report_of_a_refused_run_says_nothing_changed_and_json_keys_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    journals(dir.path());
    let runs = cutover::journal::list_runs(dir.path()).unwrap();
    let refused = runs
        .iter()
        .find(|r| r.outcome.as_deref() == Some("refused"))
        .unwrap();
    let out = Command::new(CUTOVER)
        .args(["report", &refused.run_id, "--format", "json", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changed_anything"], false);
    assert_eq!(v["refused_reason"], "freeze");
    assert_eq!(v["change"], "CHG-3");
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "break_glass",
            "change",
            "changed_anything",
            "changes",
            "duration_s",
            "environment",
            "finished_at",
            "finished_ms",
            "format",
            "journal",
            "outcome",
            "people",
            "platform",
            "policy",
            "refused_reason",
            "release",
            "rollbacks",
            "run_id",
            "services",
            "started_at",
            "started_by",
            "started_ms",
            "state",
            "timeline",
            "waivers"
        ]
    );
    // history shows the change ticket.
    let out = Command::new(CUTOVER)
        .args(["history", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("CHANGE"), "{text}");
    assert!(text.contains("CHG-3") && text.contains("CHG-1"), "{text}");
}

/// Runs refused before anything changed are counted by reason, each once under the
/// first refusal its journal gives: a freeze window, a Rego deny, an invalid policy, the
/// scan gate, image pinning, the ECS preflight, a migration lint, and a run that says
/// nothing (`other`). A deployment next to them is not counted among them.
#[test]
fn refused_runs_are_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let now = cutover::journal::timefmt::now_ms() - DAY;
    let refused = |i: u64, f: &dyn Fn(&mut RunWriter)| {
        let mut w = RunWriter::new(dir.path(), "shop", None, None, &["api"], now + i * HOUR);
        f(&mut w);
        w.finish(5.0, "refused", &[]);
    };
    for (i, rule) in ["freeze", "deny", "invalid", "scan"].iter().enumerate() {
        refused(i as u64, &|w| {
            w.entry(1.0, "policy", refusal(rule));
        });
    }
    refused(4, &|w| {
        w.entry(
            1.0,
            "platform",
            serde_json::json!({"summary": "image pinning failed, nothing was changed: api: image x:1 not found"}),
        );
    });
    refused(5, &|w| {
        w.entry(
            1.0,
            "platform",
            serde_json::json!({"summary": "ECS preflight failed, nothing was changed: api: no such cluster"}),
        );
    });
    refused(6, &|w| {
        w.start(0.0, "ann").at(
            1.0,
            cutover::engine::EventKind::Migration {
                migration: "m1".into(),
                phase: cutover::engine::MigrationPhase::Failed,
                detail: "lint: adding a NOT NULL column without a default".into(),
                lines: Vec::new(),
            },
        );
    });
    refused(7, &|_| {});
    // A freeze and a deny in one entry count once, as the first.
    refused(8, &|w| {
        w.entry(
            1.0,
            "policy",
            serde_json::json!({"summary": "refused", "refused": [{"rule": "freeze"}, {"rule": "deny"}]}),
        );
    });
    let mut ok = RunWriter::new(dir.path(), "shop", None, None, &["api"], now + 9 * HOUR);
    ok.start(0.0, "ann").launch(1.0, "api").promote(60.0, "api");
    ok.finish(61.0, "promoted", &[("api", Promoted)]);

    let s = stats(dir.path(), &[]);
    assert_eq!(s["deployments"], 1);
    assert_eq!(
        s["refused"],
        serde_json::json!({
            "total": 9,
            "by_reason": {
                "freeze": 2,
                "policy": 2,
                "image_gate": 2,
                "preflight": 1,
                "migration": 1,
                "other": 1,
            }
        }),
        "{s:#}"
    );
}
