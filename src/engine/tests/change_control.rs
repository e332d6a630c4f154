//! Change control in the engine: a freeze window that opens mid-release holds the next
//! wave until it closes; approval gates under the policy's roster and four eyes.

use std::collections::BTreeMap;

use super::*;
use crate::policy::{ApprovalRule, ChangeControl, FreezeWindow, Roster};

fn engine_with(r: Release, cc: ChangeControl) -> H {
    let clock = FakeClock::new(START);
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    H::with_options(
        r,
        clock,
        platform,
        EngineOptions {
            operator: "tester".into(),
            change_control: Some(cc),
            ..Default::default()
        },
    )
}

fn freeze_at_22_15_utc_for_an_hour() -> ChangeControl {
    // START is 2023-11-14T22:13:20Z: the window opens 100 s later, until 23:15 UTC.
    ChangeControl {
        freeze: vec![FreezeWindow {
            name: "nightly".into(),
            cron: "15 22 * * *".into(),
            duration_ms: 3_600_000,
            timezone: "UTC".into(),
            environments: vec![],
            tenant_tags: vec![],
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_window_that_opens_mid_release_holds_the_next_wave_until_it_closes() {
    let a = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"3m\" } ]\n";
    let b = "depends_on = [\"a\"]\nstrategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
    let mut h = engine_with(
        release("", &[("a", a), ("b", b)]),
        freeze_at_22_15_utc_for_an_hour(),
    );
    h.start().await;
    h.run_for(Duration::from_secs(30)).await;
    assert!(h.status("a").is_active(), "a starts before the window");
    // a's 3 min pause crosses the window's opening: a finishes, b is held.
    h.run_for(Duration::from_secs(300)).await;
    assert_eq!(
        h.status("a"),
        ServiceStatus::Promoted,
        "a rolling out finishes"
    );
    assert_eq!(h.status("b"), ServiceStatus::Pending);
    let held = h.engine.state().frozen.clone().unwrap();
    assert_eq!(held.window, "nightly");
    assert_eq!(held.until, "2023-11-14 23:15 UTC (2023-11-14 23:15 UTC)");
    let holds: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::FreezeHeld { .. }))
        .collect();
    assert_eq!(holds.len(), 1, "journaled once");
    // Still held a minute before the end; started once it closed.
    let until = held.until_ms;
    h.run_for(Duration::from_millis(until - h.clock.now_ms() - 60_000))
        .await;
    assert_eq!(h.status("b"), ServiceStatus::Pending);
    h.run_for(Duration::from_secs(61)).await;
    assert!(
        h.status("b") != ServiceStatus::Pending,
        "b starts after the window"
    );
    assert!(h.engine.state().frozen.is_none());
    let ev = h.events();
    let lifted = ev
        .iter()
        .position(|e| matches!(&e.kind, EventKind::FreezeLifted { window } if window == "nightly"))
        .unwrap();
    let b_started = ev
        .iter()
        .position(|e| matches!(&e.kind, EventKind::ServiceStarted { service } if service == "b"))
        .unwrap();
    assert!(lifted < b_started);
    assert!(ev[b_started].at_ms >= until);
    h.finish(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn a_break_glass_at_the_start_covers_the_run() {
    let a = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"3m\" } ]\n";
    let b = "depends_on = [\"a\"]\nstrategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
    let mut cc = freeze_at_22_15_utc_for_an_hour();
    cc.break_glass = Some(crate::policy::FreezeBreak {
        operator: "tester".into(),
        reason: "incident 7".into(),
        window: "nightly".into(),
        approvers: vec!["bob".into()],
        pending: false,
    });
    let mut h = engine_with(release("", &[("a", a), ("b", b)]), cc);
    h.start().await;
    h.finish(Duration::from_secs(600)).await;
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::FreezeHeld { .. }))
    );
}

fn approval_policy() -> ChangeControl {
    ChangeControl {
        roster: Roster {
            groups: BTreeMap::from([(
                "sre".into(),
                vec!["alice".into(), "bob".into(), "carol".into()],
            )]),
        },
        approval: Some(ApprovalRule {
            approvers: vec!["group:sre".into()],
            required: 2,
            four_eyes: true,
            within: vec![],
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn approvals_follow_the_roster_four_eyes_and_the_required_count() {
    // The step asks one approval; the policy asks two people of sre, not the starter.
    const GATE: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", on_timeout = \"rollback\" } ]\n";
    let mut h = engine_with(release("", &[("api", GATE)]), approval_policy());
    // alice starts the release.
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::AwaitingApproval);
    let refused = |r: CommandReply| r.unwrap_err().reason;
    let r = refused(h.cmd_as("approve api", "alice").await);
    assert!(
        r.starts_with("alice started this release; four eyes"),
        "{r}"
    );
    assert!(
        r.contains("2 of group:sre (alice, bob, carol), not the person who started it"),
        "{r}"
    );
    let r = refused(h.cmd_as("approve api", "mallory").await);
    assert!(r.starts_with("mallory is not in group:sre"), "{r}");
    let first = h.cmd_as("approve api", "bob").await.unwrap();
    assert!(first.contains("approval 1 of 2"), "{first}");
    let r = refused(h.cmd_as("approve api", "bob").await);
    assert!(r.starts_with("bob already approved"), "{r}");
    assert_eq!(h.status("api"), ServiceStatus::AwaitingApproval);
    assert!(h.cmd_as("approve api", "carol").await.is_ok());
    assert_ne!(h.status("api"), ServiceStatus::AwaitingApproval);
    // Every refusal is journaled with its reason; the roster is in the release's first event.
    let ev = h.events();
    let refusals = ev
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::CommandRefused {
                    command: Command::Approve { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(refusals, 3);
    assert!(
        matches!(&ev[0].kind, EventKind::ReleaseLoaded { change_control: Some(cc), .. } if cc.roster.groups["sre"].len() == 3)
    );
}

#[tokio::test]
async fn resume_reads_the_roster_the_start_journaled() {
    const GATE: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", on_timeout = \"rollback\" } ]\n";
    let r = release("", &[("api", GATE)]);
    let mut h = engine_with(r.clone(), approval_policy());
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert!(h.cmd_as("approve api", "bob").await.is_ok());
    // Resumed with no policy given: the journaled one still holds.
    let events = h.events();
    let plan = crate::plan::plan(&r);
    let mut engine = Engine::restore(
        r,
        &plan,
        h.platform.clone(),
        Arc::new(h.clock.clone()),
        Box::new(h.rec.clone()),
        Arc::new(h.smoke.clone()),
        EngineOptions::default(),
        &events,
    )
    .unwrap();
    let c = Command::parse("approve api").unwrap();
    let r = engine.handle(c, "mallory").await.unwrap().unwrap_err();
    assert!(
        r.reason.starts_with("mallory is not in group:sre"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn a_gate_names_its_own_approvers_within_the_policy_and_journals_its_rule() {
    // The policy: one of sre (alice, bob, carol). The gate: one of group:dba (bob, carol,
    // dave), four eyes. Effective: one person in both (bob or carol), not the starter.
    const GATE: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", approvers = [\"group:dba\"], four_eyes = true } ]\n";
    let mut cc = approval_policy();
    cc.roster.groups.insert(
        "dba".into(),
        vec!["bob".into(), "carol".into(), "dave".into()],
    );
    cc.approval = Some(ApprovalRule {
        approvers: vec!["group:sre".into()],
        required: 1,
        four_eyes: false,
        within: vec![],
    });
    let mut h = engine_with(release("", &[("api", GATE)]), cc);
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::AwaitingApproval);
    // The gate's rule is journaled on the gate, and in its reason (audit, report).
    let waiting = h
        .events()
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::GateWaiting { gate, reason, .. } => Some((gate, reason)),
            _ => None,
        })
        .unwrap();
    let GateKind::Approval {
        rule: Some(rule), ..
    } = &waiting.0.kind
    else {
        panic!("no rule on the gate: {waiting:?}");
    };
    assert_eq!(rule.approvers, ["group:dba"]);
    assert_eq!(rule.within, ["group:sre"]);
    assert!(rule.four_eyes);
    assert!(
        waiting.1.ends_with("may approve: 1 of group:dba (bob, carol, dave), not the person who started it, within the policy's group:sre"),
        "{}",
        waiting.1
    );
    let refused = |r: CommandReply| r.unwrap_err().reason;
    let r = refused(h.cmd_as("approve api", "erin").await);
    assert!(r.starts_with("erin is not in group:dba"), "{r}");
    assert!(r.ends_with("0 of 1 approvals so far)"), "{r}");
    let r = refused(h.cmd_as("approve api", "dave").await);
    assert!(
        r.starts_with("dave is not in group:sre (the policy's [approval]"),
        "{r}"
    );
    // alice started the release (and is in neither group's way: four eyes comes first).
    let r = refused(h.cmd_as("approve api", "alice").await);
    assert!(
        r.starts_with("alice started this release; four eyes"),
        "{r}"
    );
    assert!(h.cmd_as("approve api", "carol").await.is_ok());
    assert_ne!(h.status("api"), ServiceStatus::AwaitingApproval);
}

#[tokio::test]
async fn without_a_policy_a_gate_s_four_eyes_still_refuses_the_starter() {
    const GATE: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", approvals = 2, four_eyes = true } ]\n";
    let mut h = engine_with(release("", &[("api", GATE)]), ChangeControl::default());
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    let r = h.cmd_as("approve api", "alice").await.unwrap_err().reason;
    assert!(
        r.starts_with("alice started this release; four eyes"),
        "{r}"
    );
    assert!(
        r.ends_with(
            "(approving api: 2 of anyone, not the person who started it; 0 of 2 approvals so far)"
        ),
        "{r}"
    );
    let first = h.cmd_as("approve api", "bob").await.unwrap();
    assert!(first.contains("approval 1 of 2"), "{first}");
    assert!(h.cmd_as("approve api", "carol").await.is_ok());
    assert_ne!(h.status("api"), ServiceStatus::AwaitingApproval);
}

#[tokio::test]
async fn a_pending_break_glass_waits_before_any_platform_action_for_its_approvals() {
    // START (22:13:20 UTC) is inside a window open 22:00-23:00 UTC; alice started the
    // release with --break-glass and no approver; the policy asks two of sre, four eyes.
    let a = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
    let mut cc = approval_policy();
    cc.approval = None;
    cc.freeze = vec![FreezeWindow {
        name: "nightly".into(),
        cron: "0 22 * * *".into(),
        duration_ms: 3_600_000,
        timezone: "UTC".into(),
        environments: vec![],
        tenant_tags: vec![],
    }];
    cc.break_glass_rule = Some(ApprovalRule {
        approvers: vec!["group:sre".into()],
        required: 2,
        four_eyes: true,
        within: vec![],
    });
    cc.break_glass = Some(crate::policy::FreezeBreak {
        operator: "alice".into(),
        reason: "incident 9".into(),
        window: "nightly".into(),
        approvers: vec![],
        pending: true,
    });
    let mut h = engine_with(release("", &[("a", a)]), cc);
    h.start().await;
    h.run_for(Duration::from_secs(60)).await;
    let acted = |h: &H| {
        h.events().iter().any(|e| {
            matches!(
                e.kind,
                EventKind::BaselineReady { .. }
                    | EventKind::Launched { .. }
                    | EventKind::ServiceStarted { .. }
            )
        })
    };
    assert!(
        !acted(&h),
        "nothing may act before the break-glass is approved"
    );
    assert_eq!(h.engine.state().frozen.as_ref().unwrap().window, "nightly");
    let refused = |r: CommandReply| r.unwrap_err().reason;
    let r = refused(h.cmd_as("approve-break-glass", "alice").await);
    assert!(
        r.starts_with("alice started this release; four eyes"),
        "{r}"
    );
    let r = refused(h.cmd_as("approve-break-glass", "mallory").await);
    assert!(r.starts_with("mallory is not in group:sre (break-glass of alice in freeze window nightly: 2 of group:sre (alice, bob, carol), not the person who started it; 0 of 2 approvals so far)"), "{r}");
    let one = h.cmd_as("approve-break-glass", "bob").await.unwrap();
    assert!(
        one.contains("break-glass approval 1 of 2 recorded (bob)"),
        "{one}"
    );
    let r = refused(h.cmd_as("approve-break-glass", "bob").await);
    assert!(r.starts_with("bob already approved"), "{r}");
    h.run_for(Duration::from_secs(5)).await;
    assert!(!acted(&h));
    let done = h.cmd_as("approve-break-glass", "carol").await.unwrap();
    assert!(
        done.contains("break-glass approved (2 of 2: bob, carol)"),
        "{done}"
    );
    h.finish(Duration::from_secs(120)).await;
    assert_eq!(h.status("a"), ServiceStatus::Promoted);
    let ev = h.events();
    let granted = ev
        .iter()
        .position(|e| matches!(&e.kind, EventKind::BreakGlassGranted { approvers } if approvers == &["bob", "carol"]))
        .unwrap();
    let first_action = ev
        .iter()
        .position(|e| {
            matches!(
                e.kind,
                EventKind::BaselineReady { .. } | EventKind::Launched { .. }
            )
        })
        .unwrap();
    assert!(granted < first_action);
    let b = h
        .engine
        .state()
        .change_control
        .as_ref()
        .and_then(|c| c.break_glass.clone())
        .unwrap();
    assert!(!b.pending);
    // Every approval and refusal is journaled with its operator.
    let tries = ev
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::CommandAccepted {
                    command: Command::ApproveBreakGlass,
                    ..
                } | EventKind::CommandRefused {
                    command: Command::ApproveBreakGlass,
                    ..
                }
            )
        })
        .count();
    assert_eq!(tries, 5);
}

#[tokio::test]
async fn approve_break_glass_without_one_is_refused() {
    let a = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
    let mut h = engine_with(release("", &[("a", a)]), ChangeControl::default());
    h.start().await;
    let r = h
        .cmd_as("approve-break-glass", "bob")
        .await
        .unwrap_err()
        .reason;
    assert!(r.starts_with("no break-glass is waiting"), "{r}");
}
