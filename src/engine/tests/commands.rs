//! Commands: what each does, who is recorded, and which states accept it.

use super::*;

#[tokio::test]
async fn operator_pause_freezes_weights_and_timers() {
    let mut h = H::new(release("", &[("api", CANARY)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert!(h.cmd("pause").await.is_ok());
    let before = h.platform.all_weights();
    h.run_for(Duration::from_secs(600)).await;
    assert_eq!(h.platform.all_weights(), before);
    assert_ne!(h.status("api"), ServiceStatus::Promoted);
    assert!(h.cmd("resume").await.is_ok());
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
}

#[tokio::test]
async fn promote_all_skips_the_remaining_steps() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert!(h.cmd("promote-all api").await.is_ok());
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
    assert!(!h.events().iter().any(|e| matches!(&e.kind, EventKind::GateWaiting { gate, .. } if matches!(gate.kind, GateKind::Approval { .. }))));
}

#[tokio::test]
async fn retry_rolls_a_rolled_back_service_out_again() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert!(h.cmd("rollback api").await.is_ok());
    assert!(h.cmd("retry api").await.is_ok());
    h.run_for(Duration::from_secs(3)).await;
    assert!(h.status("api").is_active(), "{:?}", h.svc("api"));
    assert!(h.cmd("promote-all api").await.is_ok());
    h.finish(Duration::from_secs(30)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
}

#[tokio::test]
async fn every_command_is_journaled_with_its_operator_before_it_acts() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    let _ = h.cmd("approve api").await;
    let _ = h.cmd("rollback api").await;
    let ev = h.events();
    let refused = ev
        .iter()
        .find(|e| matches!(&e.kind, EventKind::CommandRefused { .. }))
        .unwrap();
    assert_eq!(refused.kind.operator(), Some("alice"));
    let accepted = ev
        .iter()
        .position(|e| {
            matches!(
                &e.kind,
                EventKind::CommandAccepted {
                    command: Command::Rollback { .. },
                    ..
                }
            )
        })
        .unwrap();
    let started = ev
        .iter()
        .position(|e| matches!(&e.kind, EventKind::RollbackStarted { .. }))
        .unwrap();
    let weights = ev
        .iter()
        .rposition(|e| matches!(&e.kind, EventKind::WeightsSet { .. }))
        .unwrap();
    assert!(accepted < started && started < weights);
    // Sequence numbers are gapless and the state is their fold.
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    let folded = ReleaseState::replay(&ev);
    assert_eq!(folded.service("api").unwrap().status, h.status("api"));
    // Events round-trip through JSON (the journal and the control API ship them).
    for e in &ev {
        let back: Event = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }
}

/// Which commands each state accepts (Ok), treats as a no-op (Ok) or refuses (Err).
#[tokio::test]
async fn every_command_in_every_state() {
    type Setup = fn() -> (&'static str, Vec<&'static str>, Option<InstanceState>);
    // (state name, how to get there) — each builds a fresh engine.
    let states: Vec<(&str, Setup)> = vec![
        ("ready", || ("", vec![], None)),
        ("pending", || ("dep", vec!["start"], None)),
        ("starting", || ("slow", vec!["start"], None)),
        ("progressing", || ("gated-timed", vec!["start"], None)),
        ("analysing", || ("canary", vec!["start"], None)),
        ("paused_gate", || ("gated", vec!["start"], None)),
        ("paused_operator", || {
            ("gated-timed", vec!["start", "pause api"], None)
        }),
        ("awaiting_approval", || {
            ("gated", vec!["start", "promote api"], None)
        }),
        ("promoted_warm", || ("bg", vec!["start"], None)),
        ("rolled_back", || {
            ("gated", vec!["start", "rollback api"], None)
        }),
        ("skipped", || ("dep", vec!["start", "rollback api"], None)),
        ("release_paused", || {
            ("gated-timed", vec!["start", "pause"], None)
        }),
    ];
    let commands = [
        "start",
        "pause",
        "resume",
        "pause api",
        "resume api",
        "promote api",
        "promote-all api",
        "approve api",
        "reject api",
        "retry api",
        "rollback api",
        "rollback",
        "abort",
    ];
    // Expected: true = accepted (done or idempotent no-op), false = refused.
    let expect = |state: &str, cmd: &str| -> bool {
        match (state, cmd) {
            ("ready", "start" | "abort") => true,
            ("ready", _) => false,
            ("promoted_warm" | "rolled_back", "start" | "pause" | "resume" | "abort") => false,
            (_, "start") => true,
            (_, "abort") => true,
            (_, "rollback") => true,
            ("release_paused", "pause" | "resume") => true,
            (_, "pause") => true,
            (_, "resume") => true,
            ("pending", "rollback api") => true,
            ("pending", _) => false,
            ("starting", "pause api" | "resume api" | "rollback api") => true,
            ("starting", _) => false,
            (
                "progressing" | "analysing" | "release_paused",
                "pause api" | "resume api" | "promote api" | "promote-all api" | "rollback api",
            ) => true,
            ("progressing" | "analysing" | "release_paused", _) => false,
            ("paused_gate", "pause api" | "promote api" | "promote-all api" | "rollback api") => {
                true
            }
            ("paused_gate", _) => false,
            (
                "paused_operator",
                "pause api" | "resume api" | "promote api" | "promote-all api" | "rollback api",
            ) => true,
            ("paused_operator", _) => false,
            ("awaiting_approval", "retry api") => false,
            ("awaiting_approval", _) => true,
            (
                "promoted_warm",
                "pause api" | "resume api" | "approve api" | "reject api" | "retry api",
            ) => false,
            ("promoted_warm", _) => true,
            ("rolled_back" | "skipped", "retry api" | "rollback api") => true,
            ("rolled_back" | "skipped", _) => false,
            _ => unreachable!("{state} {cmd}"),
        }
    };
    let bodies = |kind: &str| -> Vec<(&'static str, String)> {
        match kind {
            "dep" => vec![("base", GATED.to_string()), ("api", plain(&["base"]))],
            "slow" | "gated" | "" => vec![("api", GATED.to_string())],
            "gated-timed" => vec![(
                "api",
                "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"10m\" } ]\n"
                    .to_string(),
            )],
            "canary" => vec![("api", CANARY.to_string())],
            "bg" => vec![(
                "api",
                "strategy = \"blue_green\"\nblue_green = { keep_old_for = \"1h\" }\n".to_string(),
            )],
            _ => unreachable!(),
        }
    };
    let mut failures = Vec::new();
    for (state, setup) in &states {
        for cmd in commands {
            let (kind, prelude, _) = setup();
            let b = bodies(kind);
            let services: Vec<(&str, &str)> = b.iter().map(|(n, s)| (*n, s.as_str())).collect();
            let mut h = H::new(release("", &services));
            if kind == "slow" {
                h.platform
                    .script("api", "v2", InstanceState::Starting, 0.0, 0.0);
            }
            for p in prelude {
                assert!(h.cmd(p).await.is_ok(), "{state}: prelude {p}");
                h.run_for(Duration::from_secs(3)).await;
            }
            let st = match *state {
                "ready" => None,
                _ => Some(h.status("api")),
            };
            let want = match *state {
                "ready" => None,
                "pending" => Some(ServiceStatus::Pending),
                "starting" => Some(ServiceStatus::Starting),
                "progressing" | "release_paused" => Some(ServiceStatus::Progressing),
                "analysing" => Some(ServiceStatus::Analysing),
                "paused_gate" | "paused_operator" => Some(ServiceStatus::Paused),
                "awaiting_approval" => Some(ServiceStatus::AwaitingApproval),
                "promoted_warm" => Some(ServiceStatus::Promoted),
                "rolled_back" => Some(ServiceStatus::RolledBack),
                "skipped" => Some(ServiceStatus::Skipped),
                _ => unreachable!(),
            };
            assert_eq!(st, want, "setting up {state}");
            let got = h.cmd(cmd).await;
            if got.is_ok() != expect(state, cmd) {
                failures.push(format!("{state} + {cmd}: {got:?}"));
            }
            if let Err(r) = &got {
                assert!(!r.reason.is_empty());
            }
            // Idempotence: the same command again never breaks anything, and traffic
            // never sits on a revision that does not run.
            let _ = h.cmd(cmd).await;
            h.run_for(Duration::from_secs(2)).await;
            h.no_traffic_on_stopped();
        }
    }
    assert!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn unknown_service_is_refused_with_the_known_names() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    let r = h.cmd("promote nope").await.unwrap_err();
    assert!(
        r.reason.contains("no service `nope`") && r.reason.contains("api"),
        "{r:?}"
    );
}

#[tokio::test]
async fn the_runner_answers_commands_and_publishes_state() {
    let r = release("", &[("api", GATED)]);
    let h = H::new(r);
    let mut state = h.engine.watch();
    let mut events = h.engine.subscribe();
    let handle = spawn(h.engine);
    assert!(handle.send(Command::Start, "bob").await.is_ok());
    loop {
        state.changed().await.unwrap();
        if state.borrow().service("api").unwrap().status == ServiceStatus::Paused {
            break;
        }
    }
    let refused = handle
        .send(
            Command::Approve {
                service: "api".into(),
            },
            "bob",
        )
        .await;
    assert!(refused.unwrap_err().reason.contains("no approval waiting"));
    assert!(
        handle
            .send(
                Command::PromoteAll {
                    service: "api".into()
                },
                "bob"
            )
            .await
            .is_ok()
    );
    let out = handle.join.await.unwrap().unwrap();
    assert_eq!(out.exit_code, 0);
    let first = events.recv().await.unwrap();
    assert!(matches!(first.kind, EventKind::CommandAccepted { .. }));
}

#[tokio::test]
async fn a_conflicting_command_is_told_who_rolled_back_and_when() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    // alice rolls back (H::cmd acts as alice); bob's promote comes second and is refused.
    assert!(h.cmd("rollback api").await.is_ok());
    h.clock.advance(Duration::from_secs(2));
    let r = h
        .engine
        .handle_with_note(
            Command::parse("promote api").unwrap(),
            "bob",
            Some("ship it".into()),
        )
        .await
        .unwrap();
    let refusal = r.unwrap_err();
    assert!(
        refusal
            .reason
            .contains("api is already rolled back, started by alice 2 s ago")
            || refusal
                .reason
                .contains("api is already rolling back, started by alice 2 s ago"),
        "{}",
        refusal.reason
    );
    let refused = h
        .events()
        .into_iter()
        .find(
            |e| matches!(&e.kind, EventKind::CommandRefused { operator, .. } if operator == "bob"),
        )
        .unwrap();
    assert!(
        matches!(&refused.kind, EventKind::CommandRefused { note: Some(n), .. } if n == "ship it")
    );
}

#[tokio::test]
async fn a_denied_request_is_journaled_as_refused_and_changes_nothing() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    let before = h.svc("api").status;
    let r = h
        .engine
        .deny(
            Command::parse("rollback api").unwrap(),
            "mallory",
            "read-only token".into(),
        )
        .unwrap();
    assert_eq!(r.unwrap_err().reason, "read-only token");
    assert_eq!(h.svc("api").status, before);
    assert!(h.events().iter().any(|e| matches!(&e.kind,
        EventKind::CommandRefused { operator, reason, .. } if operator == "mallory" && reason == "read-only token")));
}

#[tokio::test]
async fn a_gate_needing_two_approvers_waits_for_two_different_people() {
    const TWO: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"1s\" }, { approval = \"10m\", on_timeout = \"rollback\", approvals = 2 } ]\n";
    let mut h = H::new(release("", &[("api", TWO)]));
    h.start().await;
    h.run_for(Duration::from_secs(3)).await;
    assert_eq!(h.status("api"), ServiceStatus::AwaitingApproval);
    let approve = || Command::parse("approve api").unwrap();
    let first = h.engine.handle(approve(), "alice").await.unwrap().unwrap();
    assert!(first.contains("approval 1 of 2"), "{first}");
    h.settle().await;
    assert_eq!(
        h.status("api"),
        ServiceStatus::AwaitingApproval,
        "one approval is not enough"
    );
    let again = h
        .engine
        .handle(approve(), "alice")
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        again.reason.contains("alice already approved api"),
        "{}",
        again.reason
    );
    let second = h.engine.handle(approve(), "bob").await.unwrap();
    assert!(second.is_ok(), "{second:?}");
    h.settle().await;
    assert_ne!(h.status("api"), ServiceStatus::AwaitingApproval);
    // Each approval is journaled with its operator; the gate is answered by the second.
    let ev = h.events();
    let approvals: Vec<&str> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CommandAccepted {
                operator,
                command: Command::Approve { .. },
                ..
            } => Some(operator.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(approvals, vec!["alice", "bob"]);
    assert!(
        ev.iter()
            .any(|e| matches!(&e.kind, EventKind::GateAnswered { by, .. } if by == "bob"))
    );
    assert!(ev.iter().any(
        |e| matches!(&e.kind, EventKind::CommandRefused { operator, .. } if operator == "alice")
    ));
}
