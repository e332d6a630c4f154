//! `cutover plan` of a release with tenants: rings, their tenants in start order, each
//! tenant's waves as TENANT/SERVICE, and the fleet's timing formula (makespan + bake).

mod support;

use std::path::Path;
use std::process::Command;

use cutover::plan;
use cutover::release::{self, LoadOptions};

fn load(path: &Path) -> release::LoadedRelease {
    release::load(path, &LoadOptions::default())
        .unwrap_or_else(|d| panic!("{}", d.iter().map(|x| x.to_string()).collect::<String>()))
}

fn example_fleet() -> release::LoadedRelease {
    load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet.toml"))
}

#[test]
fn the_fleet_example_plans_in_three_rings() {
    let l = example_fleet();
    let f = plan::plan_fleet(&l.release, &l.tenants).expect("tenants");
    let rings: Vec<(&str, usize, usize, u64)> = f
        .rings
        .iter()
        .map(|r| (r.name.as_str(), r.tenants.len(), r.max_parallel, r.bake_s))
        .collect();
    assert_eq!(
        rings,
        [
            ("canary", 1, 1, 300),
            ("early", 4, 2, 600),
            ("rest", 3, 2, 0)
        ]
    );
    let acme = &f.rings[0].tenants[0];
    assert_eq!(acme.services, ["acme/api", "acme/web"]);
    assert_eq!(acme.waves, [vec!["acme/api"], vec!["acme/web"]]);
    assert_eq!(f.failure_budget, 1);
    // Equal tenants: each ring is ceil(n / max_parallel) tenants long, plus its bake.
    let one = acme.min_to_full_promotion_ms;
    assert!(one > 0);
    assert_eq!(f.rings[1].min_duration_ms, 2 * one);
    assert_eq!(f.rings[2].min_duration_ms, 2 * one);
    assert_eq!(
        f.timing.min_to_full_promotion_ms,
        one + 300_000 + 2 * one + 600_000 + 2 * one
    );
    // wayne's approval is listed as a gate.
    let wayne = f.rings[2]
        .tenants
        .iter()
        .find(|t| t.name == "wayne")
        .unwrap();
    assert_eq!(wayne.gates.len(), 1);
    assert!(wayne.gates[0].contains("approval before it starts"));
    assert_eq!(f.timing.gates, 1);
    insta::assert_snapshot!("plan_rings_text_fleet", plan::render_fleet_text(&f));
}

#[test]
fn json_adds_rings_with_each_tenants_services_and_waves() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "examples/fleet.toml", "--output", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ring = &v["rings"][1];
    assert_eq!(ring["name"], "early");
    assert_eq!(ring["max_parallel"], 2);
    assert_eq!(ring["bake_s"], 600);
    assert_eq!(ring["tenants"][0]["name"], "globex");
    assert_eq!(
        ring["tenants"][0]["waves"],
        serde_json::json!([["globex/api"], ["globex/web"]])
    );
    assert_eq!(
        ring["tenants"][0]["services"],
        serde_json::json!(["globex/api", "globex/web"])
    );
    assert_eq!(v["failure_budget"], 1);
    assert!(
        v["fleet_timing"]["formula"]
            .as_str()
            .unwrap()
            .contains("bake 10m")
    );
    // The release's own plan is still there, unchanged in shape.
    assert_eq!(v["waves"], serde_json::json!([["api"], ["web"]]));
    // Without tenants, no rings key.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "examples/canary-diamond.toml", "--output", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v.get("rings").is_none());
}

/// `n` tenants whose pause lasts `pause_s(i)` seconds, in one ring of `max_parallel`.
fn fleet(n: usize, max_parallel: &str, pause_s: impl Fn(usize) -> u64) -> String {
    let mut t = String::from(
        "[release]\nname = \"gen\"\nfailure_budget = \"10%\"\n\n[vars]\nport = 30000\nhold = \"1s\"\n",
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[tenant]]\nname = \"t{i}\"\ntags = [\"all\"]\nvars = {{ port = {}, hold = \"{}s\" }}\n",
            30001 + i,
            pause_s(i)
        ));
    }
    t.push_str(&format!(
        "\n[[ring]]\nname = \"all\"\nselect = [\"tag:all\"]\nmax_parallel = {max_parallel}\nbake = \"1m\"\n"
    ));
    t.push_str("\n[[service]]\nname = \"api\"\nstrategy = \"canary\"\nsteps = [{ set_weight = 50 }, { pause = \"${hold}\" }]\n[service.health]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_after = 1\n[service.local]\nlisten = \"127.0.0.1:${port}\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{port}\"]\ncurrent = { revision = \"a\" }\ntarget = { revision = \"b\" }\n");
    t
}

fn load_text(text: &str) -> release::LoadedRelease {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.toml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

#[test]
fn tenants_that_differ_are_scheduled_in_order_on_max_parallel_slots() {
    // Pauses of 10, 1, 8 and 6 s on 2 slots: each tenant is pause + its fixed steps.
    let pauses = [10, 1, 8, 6];
    let l = load_text(&fleet(4, "\"50%\"", |i| pauses[i]));
    let f = plan::plan_fleet(&l.release, &l.tenants).unwrap();
    let r = &f.rings[0];
    assert_eq!(r.max_parallel, 2);
    let ds: Vec<u64> = r
        .tenants
        .iter()
        .map(|t| t.min_to_full_promotion_ms)
        .collect();
    let fixed = ds[1] - 1000;
    assert_eq!(ds, pauses.map(|p| p * 1000 + fixed));
    // t0 on one slot; t1 then t2 on the other (t2 starts at t1's end); t3 when t0 ends.
    let expected = (ds[0] + ds[3]).max(ds[1] + ds[2]);
    assert_eq!(r.min_duration_ms, expected);
    assert_eq!(plan::makespan(&ds, 2), expected);
    assert_eq!(f.timing.min_to_full_promotion_ms, expected + 60_000);
    assert!(f.timing.formula.contains("4 tenants in order on 2 slot(s)"));
    assert_eq!(f.failure_budget, 0, "10% of 4 rounds down");
}

#[test]
fn five_hundred_tenants_read_as_one_group() {
    let l = load_text(&fleet(500, "25", |_| 2));
    let f = plan::plan_fleet(&l.release, &l.tenants).unwrap();
    assert_eq!(f.rings[0].tenants.len(), 500);
    assert_eq!(f.failure_budget, 50);
    let text = plan::render_fleet_text(&f);
    assert!(text.lines().count() < 20, "{text}");
    assert!(text.contains("… and 476 more"), "{text}");
    // 500 equal tenants, 25 at once: 20 rounds.
    assert_eq!(
        f.rings[0].min_duration_ms,
        20 * f.rings[0].tenants[0].min_to_full_promotion_ms
    );
}
