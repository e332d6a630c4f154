//! `cutover plan`: snapshots of the text and JSON forms for the examples, the stable
//! `waves` shape, and a property test of wave ordering on random graphs.

mod support;

use std::path::Path;

use cutover::plan::{self, Action};
use cutover::release::{self, Release};
use proptest::prelude::*;
use support::release::example;

#[test]
fn plan_text_snapshots() {
    for name in [
        "blue-green.toml",
        "canary-diamond.toml",
        "migration.toml",
        "ecs-canary.toml",
    ] {
        let p = plan::plan(&example(name));
        insta::assert_snapshot!(format!("plan_text_{name}"), plan::render_text(&p));
    }
}

#[test]
fn plan_json_snapshot_of_the_diamond() {
    let p = plan::plan(&example("canary-diamond.toml"));
    insta::assert_json_snapshot!("plan_json_canary-diamond", p);
}

#[test]
fn json_has_top_level_waves_of_names() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "examples/canary-diamond.toml", "--output", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let waves: Vec<Vec<String>> =
        serde_json::from_value(v["waves"].clone()).expect("waves is [[name]]");
    assert_eq!(
        waves,
        vec![
            vec!["ledger", "auth"],
            vec!["payments", "inventory"],
            vec!["orders"],
            vec!["gateway"]
        ]
    );
}

#[test]
fn plan_of_an_invalid_release_exits_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "tests/fixtures/invalid/11-dependency-cycle.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dependency cycle: a -> b -> c -> a"));
}

#[test]
fn timing_adds_the_slowest_service_of_each_wave() {
    let p = plan::plan(&example("canary-diamond.toml"));
    let by = |n: &str| {
        p.services
            .iter()
            .find(|s| s.name == n)
            .expect(n)
            .min_to_promotion_ms
    };
    let expected = by("ledger").max(by("auth"))
        + by("payments").max(by("inventory"))
        + by("orders")
        + by("gateway");
    assert_eq!(p.timing.min_to_full_promotion_ms, expected);
    assert_eq!(p.timing.gates, 1, "payments has one approval gate");
    // payments: 2 health checks at 1s, a 2m analysis and a 1m pause before promotion.
    assert_eq!(by("payments"), 2_000 + 120_000 + 60_000);
}

#[test]
fn canary_steps_expand_in_order_and_end_promoted() {
    let r = example("canary-diamond.toml");
    let p = plan::plan(&r);
    let pay = p
        .services
        .iter()
        .find(|s| s.name == "payments")
        .expect("payments");
    let kinds: Vec<&Action> = pay.steps.iter().map(|s| &s.action).collect();
    assert!(matches!(
        kinds[0],
        Action::Launch {
            replicas: Some(2),
            ..
        }
    ));
    assert!(matches!(kinds[1], Action::WaitHealthy));
    assert!(
        matches!(kinds[2], Action::Smoke { .. }),
        "smoke tests run before the first weight"
    );
    assert!(matches!(kinds[3], Action::SetWeight { weight: 5 }));
    assert!(matches!(kinds.last(), Some(Action::Retire { .. })));
    // After the 2m analysis nothing judges the canary again: regressions then rely on health.
    let after = pay
        .steps
        .iter()
        .find(|s| s.action == Action::SetWeight { weight: 25 })
        .expect("25%");
    assert_eq!(after.detect_regression_ms, None);
    let during = pay
        .steps
        .iter()
        .find(|s| matches!(s.action, Action::Analysis { .. }))
        .expect("analysis");
    assert_eq!(during.detect_regression_ms, Some(120_000));
    assert_eq!(during.detect_unhealthy_ms, 3 * 1_000 + 500);
}

/// A release with `n` services where service i may depend on any j < i (so it is a DAG).
fn dag_release(n: usize, edges: &[(usize, usize)], max_parallel: u32) -> Release {
    let mut text = format!("[release]\nname = \"prop\"\nmax_parallel = {max_parallel}\n");
    for i in 0..n {
        let deps: Vec<String> = edges
            .iter()
            .filter(|(a, b)| *a == i && *b < i)
            .map(|(_, b)| format!("\"s{b}\""))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        text.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\ndepends_on = [{}]\nstrategy = \"blue_green\"\n[service.local]\nlisten = \"127.0.0.1:{}\"\ncommand = [\"x\", \"{{port}}\"]\ncurrent = {{ revision = \"a\" }}\ntarget = {{ revision = \"b\" }}\n",
            deps.join(", "),
            20_000 + i
        ));
    }
    release::load_str(Path::new("prop.toml"), &text, Path::new("."))
        .unwrap_or_else(|d| panic!("{d:?}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn waves_respect_dependencies_and_max_parallel(
        n in 1usize..40,
        raw_edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        max_parallel in 1u32..6,
    ) {
        let edges: Vec<(usize, usize)> = raw_edges.into_iter().map(|(a, b)| (a % n, b % n)).collect();
        let r = dag_release(n, &edges, max_parallel);
        let p = plan::plan(&r);
        let wave_of: std::collections::HashMap<&str, usize> = p
            .waves
            .iter()
            .enumerate()
            .flat_map(|(w, names)| names.iter().map(move |s| (s.as_str(), w)))
            .collect();
        prop_assert_eq!(wave_of.len(), n, "every service is in exactly one wave");
        for wave in &p.waves {
            prop_assert!(!wave.is_empty());
            prop_assert!(wave.len() <= max_parallel as usize, "wave {:?} exceeds {}", wave, max_parallel);
        }
        for s in &r.services {
            for d in &s.depends_on {
                prop_assert!(wave_of[d.as_str()] < wave_of[s.name.as_str()], "{} is not after {}", s.name, d);
            }
        }
    }
}

/// ECS images in the plan: without a policy (`ecr-only`) the text shows each tag
/// resolved at the start; with `--policy` (`pin = "required"`) the JSON gives each
/// service's `image_pin`, the digest when the release writes the image by digest.
#[test]
fn the_plan_shows_how_the_start_pins_each_ecs_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("CUTOVER_POLICY")
            .env("CUTOVER_CONFIG_DIR", dir.path().join("config"))
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = run(&["plan", "examples/ecs-canary.toml"]);
    assert!(
        text.contains("\nimages ([images] pin = \"ecr-only\")\n  worker  123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:2.3.1 → resolved at start\n  api     123456789012.dkr.ecr.us-east-1.amazonaws.com/api:2.3.1 → resolved at start\n"),
        "{text}"
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ecs-canary.toml"),
    )
    .expect("example");
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        example.replace("worker:2.3.1\"", &format!("worker@{digest}\"")),
    )
    .expect("write release");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[images]\npin = \"required\"\n").expect("write policy");
    let json = run(&[
        "plan",
        &file.to_string_lossy(),
        "--output",
        "json",
        "--policy",
        &policy.to_string_lossy(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let pin = |name: &str| {
        v["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["image_pin"].clone())
            .expect("service")
    };
    assert_eq!(
        pin("worker"),
        serde_json::json!({
            "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/worker@{digest}"),
            "mode": "required",
            "digest": digest,
            "at_start": "by digest",
        })
    );
    assert_eq!(
        pin("api"),
        serde_json::json!({
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/api:2.3.1",
            "mode": "required",
            "digest": null,
            "at_start": "resolved at start",
        })
    );
    // The plan's other fields are unchanged.
    assert!(v["waves"].is_array() && v["timing"].is_object());
}
