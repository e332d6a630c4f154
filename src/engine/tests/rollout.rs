//! Rollouts of one service: the strategies, health, smoke tests, analysis, deadlines and gates.

use super::*;

#[tokio::test]
async fn a_healthy_canary_promotes_and_retires_the_old_revision() {
    let mut h = H::new(release("", &[("api", CANARY)]));
    h.start().await;
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v2".to_string(), 100u8)]
    );
    h.run_for(Duration::from_secs(5)).await;
    assert!(!h.platform.running("api", "v1"), "old revision retired");
    assert!(h.engine.is_done());
    // The plan's steps ran in order.
    let steps: Vec<usize> = h
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=h.svc("api").steps.len()).collect::<Vec<_>>());
    // The analysis passed with an explanation.
    let v = h.svc("api").verdict.unwrap();
    assert_eq!(v.outcome, crate::judge::Outcome::Pass, "{v:?}");
    assert!(!v.explanation.is_empty());
    h.no_traffic_on_stopped();
}

#[tokio::test]
async fn a_regressing_canary_is_rolled_back_by_the_judge() {
    let mut h = H::new(release("", &[("api", CANARY)]));
    h.platform
        .script("api", "v2", InstanceState::Healthy, 0.2, 0.0);
    h.start().await;
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    let reason = h.svc("api").reason.unwrap();
    assert!(reason.contains("analysis failed"), "{reason}");
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v1".to_string(), 100u8)]
    );
    h.run_for(Duration::from_secs(1)).await;
    assert!(
        !h.platform.running("api", "v2"),
        "candidate retired after the rollback"
    );
    // Traffic went back to stable before the candidate was retired.
    let calls = h.platform.calls();
    let back = calls
        .iter()
        .rposition(|c| c.starts_with("weights api [(\"v1\", 100)]"))
        .unwrap();
    let retire = calls.iter().position(|c| c == "retire api v2").unwrap();
    assert!(back < retire, "{calls:?}");
}

#[tokio::test]
async fn health_failure_and_crashes_roll_back() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(5)).await;
    assert_eq!(h.status("api"), ServiceStatus::Paused);
    h.platform.set_state(
        "api",
        "v2",
        InstanceState::Unhealthy {
            reason: "GET /healthz answered 503".into(),
        },
    );
    h.run_for(Duration::from_secs(2)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert!(h.svc("api").reason.unwrap().contains("503"));
    h.no_traffic_on_stopped();
}

#[tokio::test]
async fn smoke_failure_rolls_back_before_any_traffic() {
    let body =
        format!("{CANARY}\n[[service.smoke]]\nname = \"ping\"\nrequest = \"GET /api/ping\"\n");
    let mut h = H::new(release("", &[("api", &body)]));
    h.smoke.fail("ping");
    h.start().await;
    h.run_for(Duration::from_secs(5)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert!(h.svc("api").reason.unwrap().contains("smoke test ping"));
    assert!(
        !h.platform
            .calls()
            .iter()
            .any(|c| c.contains("(\"v2\", 10)")),
        "candidate never got traffic"
    );
}

#[tokio::test]
async fn a_load_balancer_outage_is_retried_with_backoff_and_bounded_by_the_deadline() {
    let steps = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"5s\" }, { set_weight = 50 }, { pause = \"forever\" } ]\n";
    let mut h = H::new(release("progress_deadline = \"2m\"", &[("api", steps)]));
    h.start().await;
    h.run_for(Duration::from_secs(2)).await;
    assert_eq!(h.svc("api").candidate_weight, 10);
    // The API that shifts weights goes away before the step to 50 %.
    h.platform.fail_weights("api", true);
    h.run_for(Duration::from_secs(60)).await;
    let errors = |h: &H| {
        h.events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::PlatformError { .. }))
            .count()
    };
    // Backoff 1, 2, 4, 8, 16, 30 s: a handful of tries in the first minute, not sixty.
    let first_minute = errors(&h);
    assert!(
        (4..=8).contains(&first_minute),
        "{first_minute} tries in a minute"
    );
    // The known split stays in force meanwhile.
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v1".to_string(), 90), ("v2".to_string(), 10)]
    );
    assert!(
        !h.status("api").is_terminal() && h.status("api") != ServiceStatus::RollingBack,
        "{:?}",
        h.status("api")
    );
    // The deadline counts from the step's first try, so the retries cannot run forever.
    h.run_for(Duration::from_secs(90)).await;
    let s = h.svc("api");
    assert!(
        s.reason
            .as_deref()
            .unwrap_or("")
            .contains("progress_deadline"),
        "{s:?}"
    );
    assert_eq!(s.status, ServiceStatus::RollingBack);
    // The API comes back: the rollback goes through.
    h.platform.fail_weights("api", false);
    h.run_for(Duration::from_secs(60)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v1".to_string(), 100)]
    );
}

#[tokio::test]
async fn progress_deadline_fails_a_candidate_that_never_gets_healthy() {
    let mut h = H::new(release("progress_deadline = \"30s\"", &[("api", CANARY)]));
    h.platform
        .script("api", "v2", InstanceState::Starting, 0.0, 0.0);
    h.start().await;
    h.run_for(Duration::from_secs(29)).await;
    assert_eq!(h.status("api"), ServiceStatus::Starting);
    h.run_for(Duration::from_secs(5)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert!(h.svc("api").reason.unwrap().contains("progress_deadline"));
}

#[tokio::test]
async fn too_little_traffic_is_inconclusive_and_pauses_with_a_reason() {
    let body = "strategy = \"canary\"\nsteps = [ { set_weight = 1 }, { analysis = \"30s\" } ]\n[service.analysis]\nmin_requests = 100000\nmin_duration = \"30s\"\n";
    let mut h = H::new(release("", &[("api", body)]));
    h.start().await;
    h.run_for(Duration::from_secs(40)).await;
    let s = h.svc("api");
    assert_eq!(s.status, ServiceStatus::Paused, "{s:?}");
    assert!(s.paused_reason.unwrap().contains("inconclusive"));
    assert_eq!(
        s.verdict.unwrap().outcome,
        crate::judge::Outcome::Inconclusive
    );
    // A person accepts it.
    assert!(h.cmd("promote api").await.is_ok());
    h.finish(Duration::from_secs(60)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
}

#[tokio::test]
async fn inconclusive_extend_keeps_analysing_until_the_deadline() {
    let body = "strategy = \"canary\"\nsteps = [ { set_weight = 1 }, { analysis = \"30s\" } ]\n[service.analysis]\nmin_requests = 100000\nmin_duration = \"30s\"\non_inconclusive = \"extend\"\n";
    let mut h = H::new(release("progress_deadline = \"2m\"", &[("api", body)]));
    h.start().await;
    h.run_for(Duration::from_secs(60)).await;
    assert_eq!(h.status("api"), ServiceStatus::Analysing);
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert!(h.svc("api").reason.unwrap().contains("inconclusive"));
}

#[tokio::test]
async fn approval_gate_times_out_into_its_on_timeout() {
    let mut h = H::new(release("", &[("api", GATED)]));
    h.start().await;
    h.run_for(Duration::from_secs(5)).await;
    assert!(h.cmd("promote api").await.is_ok());
    h.run_for(Duration::from_secs(1)).await;
    let s = h.svc("api");
    assert_eq!(s.status, ServiceStatus::AwaitingApproval);
    let gate = s.gate.unwrap();
    assert_eq!(gate.deadline_ms, Some(gate.since_ms + 600_000));
    h.run_for(Duration::from_secs(601)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert!(h.svc("api").reason.unwrap().contains("approval timed out"));
}

#[tokio::test]
async fn blue_green_switches_at_once_and_keeps_the_old_revision_warm() {
    let bg = "strategy = \"blue_green\"\nblue_green = { keep_old_for = \"1m\" }\n[service.analysis]\njudge = \"threshold\"\nmin_duration = \"20s\"\nmin_requests = 50\n";
    let mut h = H::new(release("", &[("web", bg)]));
    h.start().await;
    h.finish(Duration::from_secs(120)).await;
    assert_eq!(h.status("web"), ServiceStatus::Promoted);
    let weights: Vec<u8> = h
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WeightsSet { service, .. } if service == "web" => {
                Some(h.engine.state().service("web").map_or(0, |_| 0))
            }
            _ => None,
        })
        .collect();
    assert!(!weights.is_empty());
    assert!(h.platform.running("web", "v1"), "old revision kept warm");
    assert!(h.svc("web").cleanup_pending);
    h.run_for(Duration::from_secs(61)).await;
    assert!(!h.platform.running("web", "v1"), "then retired");
    assert!(h.engine.is_done());
}

#[tokio::test]
async fn linear_moves_step_by_step_with_analysis_throughout() {
    let lin = "strategy = \"linear\"\nlinear = { step = 25, every = \"20s\" }\n[service.analysis]\nmin_requests = 100\nmin_duration = \"20s\"\n";
    let mut h = H::new(release("", &[("api", lin)]));
    h.start().await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
    let ws: Vec<u8> = h
        .platform
        .calls()
        .iter()
        .filter_map(|c| c.strip_prefix("weights api "))
        .filter_map(|w| {
            w.split("(\"v2\", ")
                .nth(1)
                .and_then(|x| x.split(')').next())
                .and_then(|x| x.parse().ok())
        })
        .collect();
    assert_eq!(ws, vec![25, 50, 75, 100]);
    // And a regression in the middle is caught.
    let mut h = H::new(release("", &[("api", lin)]));
    h.platform
        .script("api", "v2", InstanceState::Healthy, 0.3, 0.0);
    h.start().await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
}

#[tokio::test]
async fn rolling_replaces_in_batches_and_rolls_back_to_full_size() {
    let roll = "strategy = \"rolling\"\nrolling = { batch = 1 }\n";
    let mut h = H::new(release("", &[("api", roll)]));
    h.start().await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("api"), ServiceStatus::Promoted);
    let calls = h.platform.calls();
    assert!(calls.contains(&"launch api v2 1".to_string()), "{calls:?}");
    assert!(calls.contains(&"launch api v2 2".to_string()), "{calls:?}");
    assert!(calls.contains(&"launch api v1 1".to_string()), "{calls:?}");
    // The old revision was scaled to zero; rolling back brings it back to full size
    // and only then moves traffic.
    assert!(h.cmd("rollback api").await.is_ok());
    h.run_for(Duration::from_secs(2)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert_eq!(
        h.platform.all_weights()["api"],
        vec![("v1".to_string(), 100)]
    );
    let relaunches = h
        .platform
        .calls()
        .iter()
        .filter(|c| *c == "launch api v1 2")
        .count();
    assert_eq!(
        relaunches, 2,
        "started at bootstrap, then again for the rollback"
    );
    h.no_traffic_on_stopped();
}
