//! The shipped example policies (examples/policies/) against real plans: each denies a
//! crafted plan and passes a good one; freeze refusals and break-glass.

use std::path::Path;

use super::*;

fn plan_of(text: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    for f in ["e.sql", "c.sql"] {
        std::fs::write(dir.path().join(f), "select 1;\n").unwrap();
    }
    let loaded = crate::release::load_text(
        &dir.path().join("release.toml"),
        text,
        dir.path(),
        &crate::release::LoadOptions::default(),
    )
    .unwrap();
    crate::plan::plan_json(&loaded, scan::PinMode::default()).unwrap()
}

fn service(name: &str, strategy: &str, steps: &str, port: u16) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
strategy = "{strategy}"
{steps}
[service.local]
listen = "127.0.0.1:{port}"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
    )
}

const HEAD: &str = "[release]\nname = \"r\"\nplatform = \"local\"\n";
const ANALYSED: &str = "steps = [{ set_weight = 10 }, { analysis = \"1m\" }]";
const UNANALYSED: &str = "steps = [{ set_weight = 10 }, { pause = \"1m\" }]";

fn example(name: &str) -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/policies")
        .join(name);
    Policy {
        rego: vec![RegoSource {
            text: std::fs::read_to_string(&path).unwrap(),
            path,
        }],
        ..Policy::default()
    }
}

fn ctx(env: &str, change: Option<&'static str>) -> Context<'static> {
    Context {
        environment: Some(if env == "production" {
            "production"
        } else {
            "staging"
        }),
        operator: "alice",
        change,
        now: chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
        break_glass: None,
    }
}

fn denies(p: &Policy, plan: serde_json::Value, c: &Context) -> Vec<String> {
    match check(p, &[], plan, c) {
        Ok(_) => vec![],
        Err(r) => r.iter().map(Refusal::message).collect(),
    }
}

#[test]
fn production_canary_needs_analysis_on_every_service_that_takes_traffic() {
    let p = example("production-canary.rego");
    let good = plan_of(&format!(
        "{HEAD}{}",
        service("api", "canary", ANALYSED, 18401)
    ));
    assert_eq!(
        denies(&p, good, &ctx("production", None)),
        Vec::<String>::new()
    );
    let bad = plan_of(&format!(
        "{HEAD}{}{}",
        service("api", "canary", UNANALYSED, 18401),
        service("web", "blue_green", "", 18402)
    ));
    let d = denies(&p, bad.clone(), &ctx("production", None));
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(d[0].ends_with("api is a canary without analysis; production needs an analysis step before full traffic"), "{d:#?}");
    assert!(d[1].ends_with("web takes traffic in production with a blue_green rollout; production needs a canary with analysis"), "{d:#?}");
    // Staging is not production.
    assert_eq!(denies(&p, bad, &ctx("staging", None)), Vec::<String>::new());
}

#[test]
fn no_contract_in_the_same_release_as_a_first_canary_step() {
    let p = example("contract-not-with-canary.rego");
    let migration = |contract: bool| {
        format!(
            "[[migration]]\nname = \"m\"\ndatabase = \"sqlite://x.db\"\nexpand = \"e.sql\"\n{}services = [\"api\"]\n",
            if contract {
                "contract = \"c.sql\"\n"
            } else {
                ""
            }
        )
    };
    let text = |strategy: &str, steps: &str, contract: bool| {
        format!(
            "{HEAD}{}{}",
            service("api", strategy, steps, 18401),
            migration(contract)
        )
    };
    let d = denies(
        &p,
        plan_of(&text("canary", ANALYSED, true)),
        &ctx("staging", None),
    );
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].ends_with("migration m contracts in the same release as api's first canary step; contract in a later release"), "{d:#?}");
    // Expand only, or the contract with a blue-green switch, passes.
    assert_eq!(
        denies(
            &p,
            plan_of(&text("canary", ANALYSED, false)),
            &ctx("staging", None)
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        denies(
            &p,
            plan_of(&text("blue_green", "", true)),
            &ctx("staging", None)
        ),
        Vec::<String>::new()
    );
}

#[test]
fn production_needs_a_change_ticket() {
    let p = example("production-change-ticket.rego");
    let plan = plan_of(&format!(
        "{HEAD}{}",
        service("api", "canary", ANALYSED, 18401)
    ));
    let d = denies(&p, plan.clone(), &ctx("production", None));
    assert_eq!(d.len(), 1);
    assert!(d[0].contains("production needs a change ticket"), "{d:#?}");
    assert_eq!(
        denies(&p, plan.clone(), &ctx("production", Some("CHG-1234"))),
        Vec::<String>::new()
    );
    assert_eq!(
        denies(&p, plan, &ctx("staging", None)),
        Vec::<String>::new()
    );
}

#[test]
fn the_shipped_policy_file_reads_and_a_deploy_in_its_weekend_window_is_refused() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/policy.toml");
    let p = file::load(&file).unwrap();
    assert_eq!(p.rego.len(), 3);
    assert_eq!(p.images, super::scan::PinMode::Required);
    let scan = p.scan.as_ref().unwrap();
    assert_eq!(
        (scan.severity, &scan.source, scan.waivers.len()),
        (
            super::scan::Severity::High,
            &super::scan::ScanSource::Ecr,
            1
        )
    );
    let plan = plan_of(&format!(
        "{HEAD}{}",
        service("api", "canary", ANALYSED, 18401)
    ));
    // Saturday 2026-12-05 12:00 UTC: inside "weekend" (Friday 18:00 Berlin + 64 h).
    let mut c = ctx("production", Some("CHG-1"));
    c.now = chrono::DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let r = check(&p, &[], plan.clone(), &c).unwrap_err();
    assert_eq!(r.len(), 1, "{r:#?}");
    assert!(
        r[0].message().starts_with(
            "the freeze window `weekend` is open until 2026-12-07 10:00 CET (2026-12-07 09:00 UTC)"
        ),
        "{r:#?}"
    );
    // Break-glass: the starter may not approve it (four eyes), bob of sre may.
    let own = ["alice".to_string()];
    c.break_glass = Some(("incident 42", &own));
    let r = check(&p, &[], plan.clone(), &c).unwrap_err();
    assert!(
        r[0].message()
            .contains("--break-glass refused: alice started this release; four eyes"),
        "{r:#?}"
    );
    let bob = ["bob".to_string()];
    c.break_glass = Some(("incident 42", &bob));
    let cc = check(&p, &[], plan.clone(), &c).unwrap();
    let b = cc.break_glass.unwrap();
    assert_eq!(
        (b.window.as_str(), b.approvers.as_slice()),
        ("weekend", &bob[..])
    );
    assert_eq!(cc.freeze.len(), 2);
    assert!(!b.pending);
    // No approver named: the release may start, and the engine waits for the approval
    // (`approve-break-glass`) with the policy's [break_glass] journaled.
    c.break_glass = Some(("incident 42", &[]));
    let cc = check(&p, &[], plan.clone(), &c).unwrap();
    let b = cc.break_glass.unwrap();
    assert!(b.pending && b.approvers.is_empty());
    assert_eq!(cc.break_glass_rule.unwrap().approvers, ["group:sre"]);
    // An empty reason is still refused.
    c.break_glass = Some(("  ", &[]));
    assert!(check(&p, &[], plan.clone(), &c).is_err());
    // Staging is not frozen.
    let mut c = ctx("staging", None);
    c.now = chrono::DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(check(&p, &[], plan, &c).is_ok());
}

#[test]
fn a_release_freeze_window_refuses_and_its_mistakes_are_located() {
    let text = format!(
        "{HEAD}{}\n[[freeze]]\nname = \"always\"\ncron = \"* * * * *\"\nduration = \"2h\"\ntimezone = \"UTC\"\n",
        service("api", "canary", ANALYSED, 18401)
    );
    let dir = tempfile::tempdir().unwrap();
    let loaded = crate::release::load_text(
        &dir.path().join("release.toml"),
        &text,
        dir.path(),
        &crate::release::LoadOptions::default(),
    )
    .unwrap();
    let windows: Vec<FreezeWindow> = loaded.release.freeze.iter().map(|f| f.window()).collect();
    let r = check(
        &Policy::default(),
        &windows,
        plan_of(&text),
        &ctx("staging", None),
    )
    .unwrap_err();
    assert!(
        r[0].message()
            .starts_with("the freeze window `always` is open until "),
        "{r:#?}"
    );
    let bad = format!(
        "{HEAD}{}\n[[freeze]]\nname = \"x\"\ncron = \"0 18 * *\"\nduration = \"2h\"\ntimezone = \"Europe/Berlim\"\n",
        service("api", "canary", ANALYSED, 18401)
    );
    let e = crate::release::load_text(
        &dir.path().join("release.toml"),
        &bad,
        dir.path(),
        &crate::release::LoadOptions::default(),
    )
    .unwrap_err();
    let heads: Vec<String> = e.iter().map(|d| d.headline()).collect();
    assert!(heads.iter().any(|h| h.ends_with("release.toml:17:8: `0 18 * *` has 4 field(s); a window's cron has 5: minute hour day-of-month month day-of-week (e.g. \"0 18 * * 5\")")), "{heads:#?}");
    assert!(
        heads
            .iter()
            .any(|h| h.contains("release.toml:19:12: `Europe/Berlim` is not an IANA time zone")),
        "{heads:#?}"
    );
}

#[test]
fn a_tenant_tag_window_refuses_a_release_with_gold_tenants_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = file::parse(
        &dir.path().join("policy.toml"),
        "[[freeze]]\nname = \"gold-weekend\"\ncron = \"0 18 * * 5\"\nduration = \"64h\"\ntimezone = \"Europe/Berlin\"\ntenant_tags = [\"tier/gold\"]\n",
    )
    .unwrap();
    assert_eq!(p.freeze[0].tenant_tags, ["tier/gold"]);
    let gold = ["tier/gold".to_string()];
    let free = ["tier/free".to_string()];
    let sat = chrono::DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let r = check_tenants(
        &p,
        &[],
        Some("production"),
        &[("acme", &gold), ("initech", &free)],
        sat,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].message(),
        "the freeze window `gold-weekend` holds tenant(s) acme (tags tier/gold) until 2026-12-07 10:00 CET (2026-12-07 09:00 UTC); deploy after it ends, or without those tenants"
    );
    assert!(check_tenants(&p, &[], Some("production"), &[("initech", &free)], sat).is_empty());
    // The release-wide check does not see it: a release without gold tenants starts.
    let plan = plan_of(&format!(
        "{HEAD}{}",
        service("api", "canary", ANALYSED, 18401)
    ));
    let mut c = ctx("production", None);
    c.now = sat;
    assert!(check(&p, &[], plan, &c).is_ok());
}
