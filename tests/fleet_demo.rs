//! `cutover demo --fleet --headless` as a process, to its end: eight tenants in three
//! rings on this machine under the demo's load; initech's configuration breaks its new api,
//! the failure budget (1) absorbs it, the other seven promote (the last ring after its
//! approval gates promoted themselves), and the flags file it leaves reads, through flagd's
//! own evaluator, `new_checkout` on for exactly the promoted tenants.

mod support;

use std::process::Command;

use serde_json::Value;
use support::flagd::evaluate;

const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "soylent", "stark", "wayne",
];

#[test]
fn the_fleet_demo_rolls_back_the_broken_tenant_and_flags_exactly_the_promoted_ones() {
    support::net::wait_for_fleet_demo_ports();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = Command::new(support::CUTOVER)
        .args([
            "demo",
            "--fleet",
            "--headless",
            "--output",
            "json",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let s: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The demo's own exit: 0 when the engine caught the broken tenant and promoted the rest
    // (the run itself ended with a rollback: 3).
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(s["type"], "summary", "{s}");
    assert_eq!(s["exit_code"], 3, "{s}");
    assert_eq!(s["broken_tenant"], "initech", "{s}");
    for t in TENANTS {
        let want = if t == "initech" {
            "rolled_back"
        } else {
            "promoted"
        };
        assert_eq!(s["tenants"][t], want, "{t}: {s}");
    }
    assert_eq!(s["services"]["initech/api"], "rolled_back", "{s}");
    assert_eq!(s["services"]["initech/web"], "skipped", "{s}");
    assert_eq!(s["services"]["wayne/web"], "promoted", "{s}");
    assert_eq!(s["failure_budget"]["budget"], 1, "{s}");
    assert_eq!(s["failure_budget"]["failures"], 1, "{s}");
    assert_eq!(s["failure_budget"]["exceeded"], Value::Null, "{s}");
    assert_eq!(s["failure_budget_used"], "1 of 1 used", "{s}");
    // The flags file, read by flagd's evaluator: on for exactly the promoted tenants.
    let flags = s["flags_file"]
        .as_str()
        .expect("the summary names the flags file");
    assert!(flags.starts_with(state.to_str().unwrap()), "{flags}");
    let text = std::fs::read_to_string(flags).unwrap();
    for t in TENANTS {
        let on = evaluate(&text, "new_checkout", t);
        assert_eq!(on, Value::Bool(t != "initech"), "{t}: {text}");
    }
    assert_eq!(
        evaluate(&text, "new_checkout", "not-a-tenant"),
        Value::Bool(false)
    );
    let promoted: Vec<&str> = TENANTS.into_iter().filter(|&t| t != "initech").collect();
    assert_eq!(s["flag_on"], serde_json::json!(promoted), "{s}");
    // The last ring's gates opened and promoted themselves (nobody approved).
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("journal.jsonl"))
        .find(|p| p.exists())
        .expect("a run's journal");
    let journal = std::fs::read_to_string(journal).unwrap();
    let awaiting: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["payload"].get("event").cloned())
        .filter(|e| e["type"] == "fleet" && e["event"]["what"] == "tenant_awaiting_approval")
        .filter_map(|e| e["event"]["tenant"].as_str().map(String::from))
        .collect();
    assert_eq!(awaiting, ["hooli", "soylent", "stark", "wayne"]);
}
