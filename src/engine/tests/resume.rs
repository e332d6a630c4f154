//! Resuming from a journal, and the property that every command sequence (with crashes) ends cleanly.

use super::*;

#[tokio::test]
async fn resume_from_events_restores_revisions_and_weights() {
    let r = release("", &[("api", GATED)]);
    let mut h = H::new(r.clone());
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::Paused);
    let events = h.events();
    // A new process: nothing runs.
    let clock = h.clock.clone();
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let rec = MemoryRecorder::new();
    for e in &events {
        rec.events.lock().unwrap().push(e.clone());
    }
    let plan = crate::plan::plan(&r);
    let mut engine = Engine::restore(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(ScriptedSmoke::new()),
        EngineOptions::default(),
        &events,
    )
    .unwrap();
    engine.tick().await.unwrap();
    assert_eq!(
        platform.all_weights()["api"],
        vec![("v1".to_string(), 90), ("v2".to_string(), 10)]
    );
    assert!(platform.running("api", "v1") && platform.running("api", "v2"));
    let mut h2 = H {
        engine,
        clock,
        platform,
        smoke: ScriptedSmoke::new(),
        rec,
    };
    h2.settle().await;
    assert_eq!(h2.status("api"), ServiceStatus::Paused);
    assert!(h2.cmd("promote-all api").await.is_ok());
    h2.finish(Duration::from_secs(30)).await;
    assert_eq!(h2.status("api"), ServiceStatus::Promoted);
}

#[tokio::test]
async fn resume_after_a_kill_during_the_first_bootstrap_starts_the_baseline_afresh() {
    // The crashed run journaled the start but no baseline was ready yet: resume must launch
    // the baseline and give it all traffic, not assume the candidate took over.
    let r = release("", &[("api", GATED)]);
    let mut h = H::new(r.clone());
    h.start().await;
    let events: Vec<_> = h
        .events()
        .into_iter()
        .take_while(|e| {
            !matches!(
                e.kind,
                EventKind::WeightsSet { .. } | EventKind::BaselineReady { .. }
            )
        })
        .collect();
    assert!(!events.is_empty());
    let clock = h.clock.clone();
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let rec = MemoryRecorder::new();
    rec.events.lock().unwrap().extend(events.iter().cloned());
    let plan = crate::plan::plan(&r);
    let mut engine = Engine::restore(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(ScriptedSmoke::new()),
        EngineOptions::default(),
        &events,
    )
    .unwrap();
    engine.tick().await.unwrap();
    assert!(platform.running("api", "v1"));
    assert_eq!(platform.all_weights()["api"], vec![("v1".to_string(), 100)]);
    let mut h2 = H {
        engine,
        clock,
        platform,
        smoke: ScriptedSmoke::new(),
        rec,
    };
    h2.settle().await;
    assert_eq!(h2.status("api"), ServiceStatus::Paused);
    assert!(h2.cmd("promote-all api").await.is_ok());
    h2.finish(Duration::from_secs(30)).await;
    assert_eq!(h2.status("api"), ServiceStatus::Promoted);
}

#[tokio::test]
async fn a_partial_approval_recorded_before_a_crash_counts_after_resume() {
    const TWO: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", on_timeout = \"rollback\", approvals = 2 } ]\n";
    let r = release("", &[("api", TWO)]);
    let mut h = H::new(r.clone());
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::AwaitingApproval);
    let first = h.cmd_as("approve api", "alice").await.unwrap();
    assert!(first.contains("approval 1 of 2"), "{first}");
    assert_eq!(h.svc("api").approvals, vec!["alice".to_string()]);
    // The process dies here; a new one resumes from the journaled events.
    let events = h.events();
    assert_eq!(
        ReleaseState::replay(&events).services[0].approvals,
        vec!["alice".to_string()],
        "the fold of the journal keeps alice's approval"
    );
    let clock = h.clock.clone();
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let rec = MemoryRecorder::new();
    rec.events.lock().unwrap().extend(events.iter().cloned());
    let plan = crate::plan::plan(&r);
    let engine = Engine::restore(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(ScriptedSmoke::new()),
        EngineOptions::default(),
        &events,
    )
    .unwrap();
    let mut h2 = H {
        engine,
        clock,
        platform,
        smoke: ScriptedSmoke::new(),
        rec,
    };
    h2.settle().await;
    assert_eq!(h2.status("api"), ServiceStatus::AwaitingApproval);
    assert_eq!(
        h2.svc("api").approvals,
        vec!["alice".to_string()],
        "re-entering the gate on resume keeps the approvals"
    );
    // alice cannot count twice across the crash ...
    let again = h2.cmd_as("approve api", "alice").await.unwrap_err();
    assert!(
        again.reason.contains("alice already approved api") && again.reason.contains("1 so far"),
        "{}",
        again.reason
    );
    assert_eq!(h2.status("api"), ServiceStatus::AwaitingApproval);
    // ... and bob's approval is the second of two: the gate opens.
    let second = h2.cmd_as("approve api", "bob").await.unwrap();
    assert_eq!(second, "api approved");
    h2.settle().await;
    assert_ne!(h2.status("api"), ServiceStatus::AwaitingApproval);
    assert!(h2.svc("api").approvals.is_empty());
    assert!(h2.events().iter().any(
        |e| matches!(&e.kind, EventKind::GateAnswered { by, answer, .. } if by == "bob" && answer == "approved")
    ));
    h2.finish(Duration::from_secs(30)).await;
    assert_eq!(h2.status("api"), ServiceStatus::Promoted);
}

mod property {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Cmd(&'static str),
        Wait(u64),
        Crash(&'static str),
        Sick(&'static str),
    }

    fn op() -> impl Strategy<Value = Op> {
        let cmds = prop::sample::select(vec![
            "pause",
            "resume",
            "pause a",
            "resume a",
            "pause b",
            "promote a",
            "promote b",
            "promote-all a",
            "promote-all c",
            "approve b",
            "reject b",
            "rollback a",
            "rollback b",
            "rollback c",
            "rollback",
            "retry a",
            "retry b",
            "retry c",
            "abort",
            "start",
        ]);
        prop_oneof![
            6 => cmds.prop_map(Op::Cmd),
            4 => (1u64..20).prop_map(Op::Wait),
            1 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Op::Crash),
            1 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Op::Sick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever operators do and whatever breaks, traffic never stays on a revision
        /// that does not run, weights always add up to 100, and the release ends.
        #[test]
        fn random_commands_never_leave_traffic_on_a_stopped_revision(ops in prop::collection::vec(op(), 1..25)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let r = release(
                    "max_parallel = 2",
                    &[
                        ("a", GATED),
                        ("b", &format!("depends_on = [\"a\"]\n{}", GATED)),
                        ("c", "strategy = \"blue_green\"\nblue_green = { keep_old_for = \"30s\" }\n"),
                    ],
                );
                let mut h = H::new(r);
                h.start().await;
                for op in ops {
                    match op {
                        Op::Cmd(c) => { let _ = h.cmd(c).await; }
                        Op::Wait(s) => h.run_for(Duration::from_secs(s)).await,
                        Op::Crash(s) => {
                            h.platform.set_state(s, "v2", InstanceState::Exited { reason: "killed".into() });
                            h.run_for(Duration::from_secs(2)).await;
                        }
                        Op::Sick(s) => {
                            h.platform.set_state(s, "v2", InstanceState::Unhealthy { reason: "503".into() });
                            h.run_for(Duration::from_secs(2)).await;
                        }
                    }
                    h.no_traffic_on_stopped();
                    for (svc, ws) in h.platform.all_weights() {
                        let sum: u32 = ws.iter().map(|(_, w)| u32::from(*w)).sum();
                        assert_eq!(sum, 100, "{svc}: {ws:?}");
                    }
                }
                // Whatever happened, an operator can always bring it to an end.
                let _ = h.cmd("rollback").await;
                let _ = h.cmd("resume").await;
                let _ = h.cmd("abort").await;
                h.finish(Duration::from_secs(120)).await;
                h.no_traffic_on_stopped();
            });
        }
    }
}
