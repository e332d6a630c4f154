//! Tenants in rings on the fake platform and clock: rings in order, `max_parallel`
//! tenants, the failure budget across the release, bakes, flags, per-tenant commands and
//! resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::engine::state::{FleetEvent, RingStatus, TenantStatus};

pub(crate) const SERVICES: &str = r#"
[[service]]
name = "api"
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "10s" } ]
[service.local]
listen = "127.0.0.1:${api_port}"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2" }

[[service]]
name = "web"
depends_on = ["api"]
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "10s" } ]
[service.local]
listen = "127.0.0.1:${web_port}"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

/// A release of `n` tenants `t1..tn` (each with `api` and `web`, web after api, flag
/// `new_checkout` on), with `rings` (`[[ring]]` tables) and `header` in `[release]`.
pub(crate) fn fleet_release(n: usize, header: &str, rings: &str) -> Release {
    fleet_release_of(n, header, rings, SERVICES)
}

/// [`fleet_release`] with other `[[service]]`s (ports from `${api_port}`, `${web_port}`).
pub(crate) fn fleet_release_of(n: usize, header: &str, rings: &str, services: &str) -> Release {
    let mut text = format!(
        "[release]\nname = \"f\"\nplatform = \"local\"\n{header}\n[flags]\nfile = \"flags.json\"\n[vars]\napi_port = 19000\nweb_port = 19001\n"
    );
    for i in 1..=n {
        text.push_str(&format!(
            "\n[[tenant]]\nname = \"t{i}\"\ntags = [\"{}\"]\nvars = {{ api_port = {}, web_port = {} }}\nflags = {{ new_checkout = true }}\n",
            if i == 1 { "canary" } else { "rest" },
            19100 + 2 * i,
            19101 + 2 * i
        ));
    }
    text.push_str(rings);
    text.push_str(services);
    let loaded = crate::release::load_text(
        Path::new("fleet-test.toml"),
        &text,
        Path::new("."),
        &Default::default(),
    )
    .unwrap_or_else(|d| {
        panic!(
            "test release invalid:\n{}\n{text}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        )
    });
    crate::release::flatten::flatten(&loaded.release, &loaded.tenants)
}

pub(crate) fn harness(r: Release, flags: Option<&Path>) -> H {
    harness_with(
        r,
        EngineOptions {
            operator: "tester".into(),
            flags_path: flags.map(Path::to_path_buf),
            ..Default::default()
        },
    )
}

fn harness_with(r: Release, options: EngineOptions) -> H {
    let clock = FakeClock::new(START);
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let smoke = testing::ScriptedSmoke::new();
    let rec = MemoryRecorder::new();
    let plan = crate::plan::engine_plan(&r);
    let engine = Engine::new(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(smoke.clone()),
        options,
    )
    .unwrap();
    H {
        engine,
        clock,
        platform,
        smoke,
        rec,
    }
}

fn tenants(h: &H) -> BTreeMap<String, TenantStatus> {
    h.engine
        .state()
        .fleet
        .as_ref()
        .unwrap()
        .tenants
        .iter()
        .map(|t| (t.name.clone(), t.status))
        .collect()
}

pub(crate) fn fleet_events(h: &H) -> Vec<(u64, FleetEvent)> {
    h.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Fleet { event } => Some((e.at_ms, event)),
            _ => None,
        })
        .collect()
}

fn broken(h: &H, tenant: &str) {
    h.platform.script(
        &format!("{tenant}/api"),
        "v2",
        InstanceState::Unhealthy {
            reason: "connection refused".into(),
        },
        0.0,
        0.0,
    );
}

pub(crate) const RINGS: &str = "\n[[ring]]\nname = \"canary\"\nselect = [\"tag:canary\"]\nbake = \"1m\"\n\n[[ring]]\nname = \"rest\"\nselect = [\"tag:rest\"]\nmax_parallel = 2\n";

#[tokio::test]
async fn one_broken_tenant_within_the_budget_and_the_rest_promote() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    let mut h = harness(fleet_release(5, "failure_budget = 1", RINGS), Some(&flags));
    broken(&h, "t3");
    h.start().await;
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert_eq!(t["t3"], TenantStatus::RolledBack);
    for n in ["t1", "t2", "t4", "t5"] {
        assert_eq!(t[n], TenantStatus::Promoted, "{n}");
        assert_eq!(h.status(&format!("{n}/web")), ServiceStatus::Promoted);
    }
    // t3's failed api rolled back; its web never started.
    assert_eq!(h.status("t3/api"), ServiceStatus::RolledBack);
    assert_eq!(h.status("t3/web"), ServiceStatus::Skipped);
    let f = h.engine.state().fleet.clone().unwrap();
    assert_eq!((f.failures, f.exceeded), (1, None));
    // Flags: on for exactly the promoted tenants.
    let text = std::fs::read_to_string(&flags).unwrap();
    let ff = crate::flagd::FlagFile::read(Some(&text), &crate::flagd::declared(&h.engine.release))
        .unwrap();
    for (n, on) in [
        ("t1", true),
        ("t2", true),
        ("t3", false),
        ("t4", true),
        ("t5", true),
    ] {
        assert_eq!(
            ff.value(n, "new_checkout"),
            Some(&crate::release::tenants::FlagValue::Bool(on)),
            "{n}"
        );
    }
    // Every write was journaled with the content before and after.
    let writes: Vec<String> = fleet_events(&h)
        .into_iter()
        .filter_map(|(_, e)| match e {
            FleetEvent::FlagsWritten { tenant, after, .. } => {
                Some(format!("{tenant}:{}", after.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(writes.len(), 4, "{writes:?}");
    assert_eq!(h.engine.state().exit_code(), 3);
    h.no_traffic_on_stopped();
}

#[tokio::test]
async fn the_ring_bakes_before_the_next_starts_and_max_parallel_holds() {
    let mut h = harness(fleet_release(5, "failure_budget = 1", RINGS), None);
    h.start().await;
    h.finish(Duration::from_secs(3600)).await;
    let ev = fleet_events(&h);
    let at = |want: &dyn Fn(&FleetEvent) -> bool| {
        ev.iter().find(|(_, e)| want(e)).map(|(t, _)| *t).unwrap()
    };
    let t1_promoted = at(&|e| matches!(e, FleetEvent::TenantPromoted { tenant } if tenant == "t1"));
    let baking = at(&|e| matches!(e, FleetEvent::RingBaking { ring, .. } if ring == "canary"));
    let rest = at(&|e| matches!(e, FleetEvent::RingStarted { ring } if ring == "rest"));
    assert!(baking >= t1_promoted);
    assert!(
        rest >= baking + 60_000,
        "the next ring started {} ms into the bake",
        rest - baking
    );
    // Never more than two tenants of the ring at once.
    let mut running = 0i32;
    let mut most = 0;
    for (_, e) in &ev {
        match e {
            FleetEvent::TenantStarted { tenant } if tenant != "t1" => running += 1,
            FleetEvent::TenantPromoted { tenant } | FleetEvent::TenantFailed { tenant, .. }
                if tenant != "t1" =>
            {
                running -= 1
            }
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 2);
    let f = h.engine.state().fleet.clone().unwrap();
    assert!(f.rings.iter().all(|r| r.status == RingStatus::Done));
    assert_eq!(h.engine.state().exit_code(), 0);
}

#[tokio::test]
async fn two_failures_exceed_a_budget_of_one_and_pending_tenants_are_skipped() {
    let rings = "\n[[ring]]\nname = \"all\"\nselect = [\"tag:canary\", \"tag:rest\"]\n";
    let mut h = harness(fleet_release(5, "failure_budget = 1", rings), None);
    broken(&h, "t1");
    broken(&h, "t2");
    h.start().await;
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert_eq!(t["t1"], TenantStatus::RolledBack);
    assert_eq!(t["t2"], TenantStatus::RolledBack);
    for n in ["t3", "t4", "t5"] {
        assert_eq!(t[n], TenantStatus::Skipped, "{n}");
        assert_eq!(h.status(&format!("{n}/api")), ServiceStatus::Skipped);
    }
    let f = h.engine.state().fleet.clone().unwrap();
    assert_eq!(f.failures, 2);
    assert!(f.exceeded.unwrap().contains("failure budget of 1 exceeded"));
}

#[tokio::test]
async fn a_failure_during_the_bake_counts() {
    let mut h = harness(fleet_release(5, "failure_budget = 0", RINGS), None);
    h.start().await;
    // Run until the canary ring bakes, then break t1's candidate.
    for _ in 0..600 {
        h.run_for(Duration::from_secs(1)).await;
        let baking = h.engine.state().fleet.as_ref().unwrap().rings[0].status == RingStatus::Baking;
        if baking {
            break;
        }
    }
    assert_eq!(tenants(&h)["t1"], TenantStatus::Promoted);
    h.platform.set_state(
        "t1/api",
        "v2",
        InstanceState::Exited {
            reason: "killed".into(),
        },
    );
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert!(
        matches!(t["t1"], TenantStatus::RolledBack | TenantStatus::Failed),
        "{t:?}"
    );
    let f = h.engine.state().fleet.clone().unwrap();
    assert_eq!(f.failures, 1);
    assert!(f.exceeded.is_some());
    for n in ["t2", "t3", "t4", "t5"] {
        assert_eq!(t[n], TenantStatus::Skipped, "{n}");
    }
}

#[tokio::test]
async fn an_excluded_tenant_is_skipped_and_not_counted() {
    let mut h = harness(fleet_release(3, "failure_budget = 0", RINGS), None);
    h.start().await;
    let c = Command::parse("exclude t3").unwrap();
    let refused = h.engine.handle(c.clone(), "alice").await.unwrap();
    assert!(refused.unwrap_err().reason.contains("--reason"));
    let ok = h
        .engine
        .handle_with_note(c, "alice", Some("contract ends".into()))
        .await
        .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert_eq!(t["t3"], TenantStatus::Excluded);
    assert_eq!(
        (t["t1"], t["t2"]),
        (TenantStatus::Promoted, TenantStatus::Promoted)
    );
    let f = h.engine.state().fleet.clone().unwrap();
    assert_eq!(f.summary()["t3"], "skipped");
    assert_eq!((f.failures, f.exceeded), (0, None));
}

#[tokio::test]
async fn rollback_retry_and_pause_of_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    let rings =
        "\n[[ring]]\nname = \"all\"\nselect = [\"tag:canary\", \"tag:rest\"]\nmax_parallel = 2\n";
    let mut h = harness(fleet_release(2, "failure_budget = 2", rings), Some(&flags));
    h.start().await;
    assert!(h.cmd("pause t2").await.is_ok());
    h.run_for(Duration::from_secs(5)).await;
    // t2 started with t1 (two slots) and is held: its api takes no further step.
    let step = h.svc("t2/api").step;
    h.run_for(Duration::from_secs(60)).await;
    assert_eq!(h.svc("t2/api").step, step);
    assert_eq!(h.svc("t2/api").status, ServiceStatus::Paused);
    assert!(h.cmd("resume t2").await.is_ok());
    h.finish(Duration::from_secs(3600)).await;
    assert_eq!(tenants(&h)["t1"], TenantStatus::Promoted);
    // A promoted tenant rolled back gets its previous flag values back.
    let before = {
        let text = std::fs::read_to_string(&flags).unwrap();
        text.contains("t1")
    };
    assert!(before);
    let mut h = h;
    let r = h.cmd("rollback t1").await;
    assert!(r.is_ok(), "{r:?}");
    h.finish(Duration::from_secs(3600)).await;
    let t1 = tenants(&h)["t1"];
    assert!(
        matches!(t1, TenantStatus::RolledBack | TenantStatus::Failed),
        "{t1:?}"
    );
    let text = std::fs::read_to_string(&flags).unwrap();
    let ff = crate::flagd::FlagFile::read(Some(&text), &crate::flagd::declared(&h.engine.release))
        .unwrap();
    assert_eq!(
        ff.value("t1", "new_checkout"),
        Some(&crate::release::tenants::FlagValue::Bool(false))
    );
    // Retry: it runs again (its old revision is gone, so it fails again); its failure
    // is counted once.
    assert!(h.cmd("retry t1").await.is_ok());
    assert!(
        fleet_events(&h)
            .iter()
            .any(|(_, e)| matches!(e, FleetEvent::TenantRetrying { tenant } if tenant == "t1"))
    );
    h.finish(Duration::from_secs(3600)).await;
    assert_eq!(h.engine.state().fleet.as_ref().unwrap().failures, 1);
}

/// One service per tenant, one short step: a tenant takes a few seconds.
const ONE: &str = r#"
[[service]]
name = "api"
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "2s" } ]
[service.local]
listen = "127.0.0.1:${api_port}"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

#[tokio::test]
async fn resume_mid_ring_keeps_promoted_tenants_and_the_budget_count() {
    let rings = "\n[[ring]]\nname = \"all\"\nselect = [\"tag:canary\", \"tag:rest\"]\n";
    let r = fleet_release(4, "failure_budget = 2", rings);
    let mut h = harness(r.clone(), None);
    broken(&h, "t1");
    h.start().await;
    // Until t2 promoted (t1 failed before it), then "kill -9".
    for _ in 0..600 {
        h.run_for(Duration::from_secs(1)).await;
        if tenants(&h)["t2"] == TenantStatus::Promoted {
            break;
        }
    }
    assert_eq!(tenants(&h)["t1"], TenantStatus::RolledBack);
    assert_eq!(tenants(&h)["t2"], TenantStatus::Promoted);
    let events = h.events();
    let clock = h.clock.clone();
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let rec = MemoryRecorder::new();
    rec.events.lock().unwrap().extend(events.iter().cloned());
    let plan = crate::plan::engine_plan(&r);
    let engine = Engine::restore(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(testing::ScriptedSmoke::new()),
        EngineOptions::default(),
        &events,
    )
    .unwrap();
    let mut h = H {
        engine,
        clock,
        platform,
        smoke: testing::ScriptedSmoke::new(),
        rec,
    };
    assert_eq!(h.engine.state().fleet.as_ref().unwrap().failures, 1);
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert_eq!(
        (t["t1"], t["t2"], t["t3"], t["t4"]),
        (
            TenantStatus::RolledBack,
            TenantStatus::Promoted,
            TenantStatus::Promoted,
            TenantStatus::Promoted
        )
    );
    // Nothing of t2 was started again after the restart.
    let restarted = h
        .events()
        .iter()
        .position(|e| matches!(e.kind, EventKind::EngineRestarted { .. }))
        .unwrap();
    let again: Vec<String> = h.events()[restarted..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ServiceStarted { service } => Some(service.clone()),
            EventKind::Fleet {
                event: FleetEvent::TenantStarted { tenant },
            } => Some(tenant.clone()),
            _ => None,
        })
        .collect();
    assert!(
        again
            .iter()
            .all(|s| !s.starts_with("t2") && !s.starts_with("t1")),
        "{again:?}"
    );
    assert_eq!(h.engine.state().fleet.as_ref().unwrap().failures, 1);
}

mod budget {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

        /// Whichever tenants break, with any budget and parallelism: the count never
        /// passes the budget by more than the tenants that were in flight when it was
        /// exceeded, no tenant starts after that, and every failure is counted once.
        #[test]
        fn the_budget_is_never_overrun(
            broken_mask in 0u32..64,
            budget in 0usize..4,
            parallel in 1usize..4,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let n = 6;
                let rings = format!(
                    "\n[[ring]]\nname = \"one\"\nselect = [\"tag:canary\"]\n\n[[ring]]\nname = \"two\"\nselect = [\"tag:rest\"]\nmax_parallel = {parallel}\n"
                );
                let r = fleet_release_of(n, &format!("failure_budget = {budget}"), &rings, ONE);
                let mut h = harness(r, None);
                for i in 0..n {
                    if broken_mask & (1 << i) != 0 {
                        h.platform.script(
                            &format!("t{}/api", i + 1),
                            "v2",
                            InstanceState::Unhealthy { reason: "503".into() },
                            0.0,
                            0.0,
                        );
                    }
                }
                h.start().await;
                h.finish(Duration::from_secs(3600)).await;
                let mut in_flight = 0usize;
                let mut failures = 0usize;
                let mut exceeded_with: Option<usize> = None;
                for (_, e) in fleet_events(&h) {
                    match e {
                        FleetEvent::TenantStarted { tenant } => {
                            assert!(exceeded_with.is_none(), "{tenant} started after the budget was exceeded");
                            in_flight += 1;
                        }
                        FleetEvent::TenantPromoted { .. } => in_flight -= 1,
                        FleetEvent::TenantFailed { failures: f, .. } => {
                            in_flight -= 1;
                            failures += 1;
                            assert_eq!(f, failures, "each failure counted once");
                        }
                        FleetEvent::BudgetExceeded { failures: f, budget: b, .. } => {
                            assert_eq!((f, b), (budget + 1, budget));
                            exceeded_with = Some(in_flight);
                        }
                        _ => {}
                    }
                }
                let f = h.engine.state().fleet.clone().unwrap();
                assert_eq!(f.failures, failures);
                assert!(failures <= budget + 1 + exceeded_with.unwrap_or(0));
                let broken = broken_mask.count_ones() as usize;
                if broken <= budget {
                    assert!(f.exceeded.is_none());
                    assert_eq!(failures, broken);
                    assert!(f.tenants.iter().all(|t| t.status != TenantStatus::Skipped));
                } else {
                    assert!(f.exceeded.is_some());
                }
            });
        }
    }
}

#[tokio::test]
async fn a_tenant_approval_gate_holds_its_slot_until_approved_or_timed_out() {
    let rings =
        "\n[[ring]]\nname = \"all\"\nselect = [\"tag:canary\", \"tag:rest\"]\nmax_parallel = 3\n";
    let mut r = fleet_release_of(3, "failure_budget = 1", rings, ONE);
    for t in [1, 2] {
        r.tenants[t].approval = Some(crate::release::tenants::TenantApproval {
            timeout: crate::release::Dur(Duration::from_secs(600)),
            on_timeout: crate::release::OnTimeout::Rollback,
            approvals: 1,
            approvers: vec![],
            four_eyes: false,
        });
    }
    let mut h = harness(r, None);
    h.start().await;
    h.run_for(Duration::from_secs(60)).await;
    let t = tenants(&h);
    assert_eq!(t["t1"], TenantStatus::Promoted);
    assert_eq!(
        (t["t2"], t["t3"]),
        (TenantStatus::Pending, TenantStatus::Pending)
    );
    assert_eq!(h.status("t2/api"), ServiceStatus::Pending);
    assert!(h.cmd("approve t1").await.is_err(), "no gate is open for t1");
    let r = h.cmd_as("approve t2", "bob").await;
    assert!(r.as_ref().is_ok_and(|t| t.contains("it starts")), "{r:?}");
    h.finish(Duration::from_secs(3600)).await;
    let t = tenants(&h);
    assert_eq!(t["t2"], TenantStatus::Promoted);
    // Nobody answered for t3: after 10 minutes it is rolled back (never started) and counts.
    assert_eq!(t["t3"], TenantStatus::RolledBack);
    assert_eq!(h.status("t3/api"), ServiceStatus::Skipped);
    let f = h.engine.state().fleet.clone().unwrap();
    assert_eq!(f.failures, 1);
    assert!(
        f.tenants[2]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("approval timed out"))
    );
}

/// A tenant-tag window (`tenant_tags = ["gold"]`) that opens mid-release holds the gold
/// tenants before they start, until it closes; the other tenants of the ring go on; the
/// hold and its end are journaled once each and the state shows the window.
#[tokio::test]
async fn a_tenant_tag_window_opening_mid_release_holds_only_its_tenants_until_it_closes() {
    let rings = "\n[[ring]]\nname = \"all\"\nselect = [\"t1\", \"t2\", \"t3\", \"t4\", \"t5\"]\n";
    let mut r = fleet_release(5, "failure_budget = 1", rings);
    for (t, tag) in [(1, "gold"), (2, "rest"), (3, "gold"), (4, "rest")] {
        r.tenants[t].tags = vec![tag.to_string()];
    }
    // START is 2023-11-14T22:13:20Z: the window opens 40 s later, for 10 minutes.
    let open = START + 40_000;
    let close = open + 600_000;
    let options = EngineOptions {
        operator: "tester".into(),
        change_control: Some(crate::policy::ChangeControl {
            freeze: vec![crate::policy::FreezeWindow {
                name: "gold-weekend".into(),
                cron: "14 22 * * *".into(),
                duration_ms: 600_000,
                timezone: "UTC".into(),
                environments: vec![],
                tenant_tags: vec!["gold".into()],
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut h = harness_with(r, options);
    h.start().await;
    h.run_for(Duration::from_secs(300)).await;
    // Mid-window: t4 (gold) waits, held by the window; the rest ran.
    let f = h.engine.state().fleet.clone().unwrap();
    let t4 = f.tenant("t4").unwrap();
    assert_eq!(t4.status, TenantStatus::Pending);
    assert_eq!(
        t4.frozen,
        Some(crate::engine::state::TenantFreeze {
            window: "gold-weekend".into(),
            until_ms: close
        })
    );
    assert_eq!(h.status("t4/api"), ServiceStatus::Pending);
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["tenants"][3]["frozen"]["window"], "gold-weekend");
    for n in ["t1", "t3", "t5"] {
        assert_eq!(tenants(&h)[n], TenantStatus::Promoted, "{n} goes on");
    }
    assert!(
        h.engine.state().frozen.is_none(),
        "the release as a whole is not frozen"
    );
    h.finish(Duration::from_secs(3600)).await;
    let ev = fleet_events(&h);
    let started = |n: &str| {
        ev.iter()
            .find(|(_, e)| matches!(e, FleetEvent::TenantStarted { tenant } if tenant == n))
            .map(|(at, _)| *at)
            .unwrap()
    };
    // No gold tenant started inside the window; some other tenant did.
    for n in ["t2", "t4"] {
        let at = started(n);
        assert!(
            at < open || at >= close,
            "{n} started at +{} ms",
            at - START
        );
    }
    assert!(
        ["t3", "t5"]
            .iter()
            .any(|n| (open..close).contains(&started(n))),
        "the tenants without the tag went on inside the window"
    );
    assert!(started("t4") >= close);
    let holds: Vec<&(u64, FleetEvent)> = ev
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                FleetEvent::TenantFrozen { .. } | FleetEvent::TenantFreezeLifted { .. }
            )
        })
        .collect();
    assert_eq!(holds.len(), 2, "one hold and its end: {holds:?}");
    assert_eq!(
        holds[0].1,
        FleetEvent::TenantFrozen {
            tenant: "t4".into(),
            window: "gold-weekend".into(),
            until_ms: close
        }
    );
    assert_eq!(
        holds[1].1,
        FleetEvent::TenantFreezeLifted {
            tenant: "t4".into(),
            window: "gold-weekend".into()
        }
    );
    assert!(holds[1].0 >= close);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::FreezeHeld { .. })),
        "a tenant-tag window never holds the release"
    );
    assert!(tenants(&h).values().all(|s| *s == TenantStatus::Promoted));
    assert!(
        h.engine.state().fleet.clone().unwrap().tenants[3]
            .frozen
            .is_none()
    );
}

/// `[tenant.approval]` with `approvers` and `four_eyes`: the same rule as an approval
/// step's (the policy's `[approval]` tightened by the tenant's own), each refusal saying
/// why: the starter under four eyes, not an allowed approver, the same person twice.
#[tokio::test]
async fn a_tenant_approval_names_who_may_approve_and_four_eyes_refuses_the_starter() {
    let rings = "\n[[ring]]\nname = \"all\"\nselect = [\"tag:canary\", \"tag:rest\"]\n";
    let mut r = fleet_release_of(2, "failure_budget = 1", rings, ONE);
    r.tenants[1].approval = Some(crate::release::tenants::TenantApproval {
        timeout: crate::release::Dur(Duration::from_secs(600)),
        on_timeout: crate::release::OnTimeout::Rollback,
        approvals: 1,
        approvers: vec!["group:sre".into()],
        four_eyes: true,
    });
    let options = EngineOptions {
        operator: "tester".into(),
        change_control: Some(crate::policy::ChangeControl {
            roster: crate::policy::Roster {
                groups: [(
                    "sre".to_string(),
                    vec!["alice".into(), "bob".into(), "carol".into()],
                )]
                .into(),
            },
            // The policy asks two people of everyone: the tenant's gate cannot ask fewer.
            approval: Some(crate::policy::ApprovalRule {
                approvers: vec![],
                required: 2,
                four_eyes: false,
                within: vec![],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut h = harness_with(r, options);
    h.start().await;
    assert_eq!(h.engine.state().operator.as_deref(), Some("alice"));
    h.run_for(Duration::from_secs(60)).await;
    assert_eq!(tenants(&h)["t2"], TenantStatus::Pending);
    let refused = |r: CommandReply| r.expect_err("refused").reason;
    let why = refused(h.cmd_as("approve t2", "alice").await);
    assert!(
        why.starts_with("alice started this release; four eyes: someone else must approve (approving tenant t2: 2 of group:sre (alice, bob, carol), not the person who started it"),
        "{why}"
    );
    let why = refused(h.cmd_as("approve t2", "mallory").await);
    assert!(why.starts_with("mallory is not in group:sre"), "{why}");
    let ok = h.cmd_as("approve t2", "bob").await;
    assert_eq!(ok.as_deref(), Ok("t2: 1 of 2 approvals"));
    let why = refused(h.cmd_as("approve t2", "bob").await);
    assert!(why.contains("bob already approved t2"), "{why}");
    assert_eq!(h.status("t2/api"), ServiceStatus::Pending);
    let ok = h.cmd_as("approve t2", "carol").await;
    assert_eq!(ok.as_deref(), Ok("t2 approved: it starts"));
    h.finish(Duration::from_secs(3600)).await;
    assert_eq!(tenants(&h)["t2"], TenantStatus::Promoted);
    // Each refusal is journaled with its reason.
    let refusals = h
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::CommandRefused { .. }))
        .count();
    assert_eq!(refusals, 3);
}
