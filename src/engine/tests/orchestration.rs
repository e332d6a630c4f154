//! Several services: dependencies, `max_parallel` and the failure policies.

use super::*;

#[tokio::test]
async fn dependencies_order_the_rollout_and_max_parallel_bounds_it() {
    let r = release(
        "max_parallel = 2",
        &[
            ("a", &plain(&[])),
            ("b", &plain(&[])),
            ("c", &plain(&[])),
            ("d", &plain(&["a", "b"])),
        ],
    );
    let mut h = H::new(r);
    h.start().await;
    h.run_for(Duration::from_secs(1)).await;
    let active: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|s| h.status(s).is_active())
        .collect();
    assert_eq!(active.len(), 2, "{active:?}");
    assert_eq!(h.status("d"), ServiceStatus::Pending);
    h.finish(Duration::from_secs(300)).await;
    let started = |s: &str| {
        h.events()
            .iter()
            .position(|e| matches!(&e.kind, EventKind::ServiceStarted { service } if service == s))
            .unwrap()
    };
    let promoted = |s: &str| {
        h.events()
            .iter()
            .position(|e| matches!(&e.kind, EventKind::Promoted { service } if service == s))
            .unwrap()
    };
    assert!(started("d") > promoted("a") && started("d") > promoted("b"));
    for s in ["a", "b", "c", "d"] {
        assert_eq!(h.status(s), ServiceStatus::Promoted);
    }
}

#[tokio::test]
async fn dependents_smoke_tests_rerun_against_a_promoted_dependency() {
    let with_smoke = format!(
        "{}\n[[service.smoke]]\nname = \"checkout\"\nrequest = \"GET /api/checkout\"\n",
        plain(&["payments"])
    );
    let r = release("", &[("payments", &plain(&[])), ("orders", &with_smoke)]);
    let mut h = H::new(r);
    h.start().await;
    h.finish(Duration::from_secs(300)).await;
    let ran = h.smoke.ran();
    // orders' test ran on its stable v1 once payments v2 was promoted, then on its own v2.
    assert_eq!(
        ran,
        vec!["checkout@v1".to_string(), "checkout@v2".to_string()]
    );
    // Failing cross-validation rolls the dependency back.
    let r = release("", &[("payments", &plain(&[])), ("orders", &with_smoke)]);
    let mut h = H::new(r);
    h.smoke.fail("checkout@v1");
    h.start().await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("payments"), ServiceStatus::RolledBack);
    assert!(
        h.svc("payments")
            .reason
            .unwrap()
            .contains("dependent orders")
    );
    assert_eq!(h.status("orders"), ServiceStatus::Skipped);
}

#[tokio::test]
async fn rollback_dependents_rolls_back_changed_dependents_and_skips_the_rest() {
    // b depends on a; c independent. a is promoted but kept warm (blue-green), b regresses
    // after a's promotion; then a is rolled back by hand: b (changed) goes first.
    let bg = "strategy = \"blue_green\"\nblue_green = { keep_old_for = \"10m\" }\n";
    let r = release(
        "max_parallel = 3",
        &[
            ("a", bg),
            ("b", &plain(&["a"])),
            ("c", &plain(&[])),
            ("d", &plain(&["b"])),
        ],
    );
    let mut h = H::new(r);
    h.start().await;
    // Wave 1 (a, c) ends when c is promoted after its 10 s hold; then b starts.
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("b"), ServiceStatus::Pending, "waves are barriers");
    h.run_for(Duration::from_secs(9)).await;
    assert_eq!(h.status("a"), ServiceStatus::Promoted);
    assert_eq!(h.status("c"), ServiceStatus::Promoted);
    assert!(h.status("b").is_active());
    assert!(h.cmd("rollback a").await.is_ok());
    assert_eq!(h.status("a"), ServiceStatus::RolledBack);
    assert_eq!(h.status("b"), ServiceStatus::RolledBack);
    h.run_for(Duration::from_secs(1)).await;
    assert_eq!(h.status("d"), ServiceStatus::Skipped);
    let order: Vec<String> = h
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RolledBack { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["b".to_string(), "a".to_string()]);
    h.finish(Duration::from_secs(120)).await;
    h.no_traffic_on_stopped();
}

#[tokio::test]
async fn rollback_release_policy_rolls_back_everything_changed() {
    let r = release(
        "on_failure = \"rollback_release\"\nmax_parallel = 2",
        &[("a", &plain(&[])), ("b", GATED), ("c", &plain(&["a"]))],
    );
    let mut h = H::new(r);
    h.platform
        .script("b", "v2", InstanceState::Healthy, 0.0, 0.0);
    h.start().await;
    h.run_for(Duration::from_secs(12)).await;
    assert_eq!(h.status("a"), ServiceStatus::Promoted);
    // b crashes while it waits at its gate.
    h.platform.set_state(
        "b",
        "v2",
        InstanceState::Exited {
            reason: "exit 1".into(),
        },
    );
    h.run_for(Duration::from_secs(2)).await;
    assert_eq!(h.status("b"), ServiceStatus::RolledBack);
    // a's old revision was retired after promotion: it cannot go back and says so.
    let a = h.svc("a");
    assert!(
        matches!(a.status, ServiceStatus::Failed | ServiceStatus::Promoted),
        "{a:?}"
    );
    assert!(matches!(
        h.status("c"),
        ServiceStatus::Skipped | ServiceStatus::RolledBack
    ));
    h.finish(Duration::from_secs(60)).await;
    h.no_traffic_on_stopped();
}

#[tokio::test]
async fn pause_policy_holds_every_weight_for_a_person() {
    let r = release("on_failure = \"pause\"", &[("api", GATED)]);
    let mut h = H::new(r);
    h.start().await;
    h.run_for(Duration::from_secs(5)).await;
    h.platform.set_state(
        "api",
        "v2",
        InstanceState::Unhealthy {
            reason: "503".into(),
        },
    );
    h.run_for(Duration::from_secs(3)).await;
    let s = h.svc("api");
    assert_eq!(s.status, ServiceStatus::Paused);
    assert!(s.paused_reason.unwrap().contains("on_failure = pause"));
    assert_eq!(h.engine.state().status, ReleaseStatus::Paused);
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v1".to_string(), 90), ("v2".to_string(), 10)]
    );
    let refused = h.cmd("promote api").await.unwrap_err();
    assert!(refused.reason.contains("failed"), "{refused:?}");
    assert!(h.cmd("rollback api").await.is_ok());
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    h.finish(Duration::from_secs(10)).await;
}
