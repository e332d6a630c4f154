//! Engine tests on the fake clock and the fake platform.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::testing::{FakePlatform, ScriptedSmoke};
use super::*;
use crate::platform::InstanceState;
use crate::release::Release;

pub(crate) const START: u64 = 1_700_000_000_000;

/// A release of local services with the given `[[service]]` bodies (name first).
pub(crate) fn release(header: &str, services: &[(&str, &str)]) -> Release {
    let mut text = format!("[release]\nname = \"t\"\nplatform = \"local\"\n{header}\n");
    for (i, (name, body)) in services.iter().enumerate() {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{name}\"\n{body}\n[service.local]\nlisten = \"127.0.0.1:{}\"\nreplicas = 2\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n",
            19000 + i
        ));
    }
    match crate::release::load_str(Path::new("test.toml"), &text, Path::new(".")) {
        Ok(r) => r,
        Err(d) => panic!(
            "test release invalid:\n{}\n{text}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        ),
    }
}

pub(crate) struct H {
    pub engine: Engine,
    pub clock: FakeClock,
    pub platform: Arc<FakePlatform>,
    pub smoke: ScriptedSmoke,
    pub rec: MemoryRecorder,
}

impl H {
    pub fn new(r: Release) -> H {
        let clock = FakeClock::new(START);
        let platform = FakePlatform::new(Arc::new(clock.clone()));
        H::with(r, clock, platform)
    }

    pub fn with(r: Release, clock: FakeClock, platform: Arc<FakePlatform>) -> H {
        let smoke = ScriptedSmoke::new();
        let rec = MemoryRecorder::new();
        let plan = crate::plan::plan(&r);
        let engine = Engine::new(
            r,
            &plan,
            platform.clone(),
            Arc::new(clock.clone()),
            Box::new(rec.clone()),
            Arc::new(smoke.clone()),
            EngineOptions {
                operator: "tester".into(),
                ..Default::default()
            },
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

    /// Tick until nothing changes at the current time (background work included).
    pub async fn settle(&mut self) {
        for _ in 0..200 {
            // A migration stage runs on the blocking pool, in real time.
            for _ in 0..2000 {
                if !self.engine.migrations_busy() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.engine.tick().await.unwrap();
            }
            let before = self.rec.snapshot().len();
            self.engine.tick().await.unwrap();
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            self.engine.tick().await.unwrap();
            if self.rec.snapshot().len() == before {
                return;
            }
        }
        panic!("engine does not settle");
    }

    /// Let `d` pass, waking the engine whenever it asks.
    pub async fn run_for(&mut self, d: Duration) {
        let end = self.clock.now_ms() + d.as_millis() as u64;
        self.settle().await;
        loop {
            let t = self.engine.next_wakeup();
            if t > end {
                break;
            }
            self.clock.set(t);
            self.settle().await;
        }
        self.clock.set(end);
        self.settle().await;
    }

    pub async fn cmd(&mut self, text: &str) -> CommandReply {
        self.cmd_as(text, "alice").await
    }

    pub async fn cmd_as(&mut self, text: &str, operator: &str) -> CommandReply {
        let c = Command::parse(text).unwrap();
        let r = self.engine.handle(c, operator).await.unwrap();
        self.settle().await;
        r
    }

    pub async fn start(&mut self) {
        assert!(self.cmd("start").await.is_ok());
    }

    pub fn status(&self, s: &str) -> ServiceStatus {
        self.engine.state().service(s).unwrap().status
    }

    pub fn svc(&self, s: &str) -> ServiceState {
        self.engine.state().service(s).unwrap().clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.rec.snapshot()
    }

    pub fn no_traffic_on_stopped(&self) {
        let bad = self.platform.traffic_on_stopped();
        assert!(bad.is_empty(), "traffic on revisions not running: {bad:?}");
    }

    /// Run until the release finished (bounded).
    pub async fn finish(&mut self, limit: Duration) {
        let end = self.clock.now_ms() + limit.as_millis() as u64;
        while self.engine.state().status != ReleaseStatus::Finished {
            assert!(
                self.clock.now_ms() < end,
                "release not finished: {:#?}",
                self.engine.state()
            );
            self.run_for(Duration::from_secs(1)).await;
        }
    }
}

const CANARY: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { analysis = \"1m\" }, { set_weight = 50 }, { pause = \"30s\" } ]\n[service.analysis]\nmin_requests = 100\nmin_duration = \"30s\"\n";
const GATED: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"forever\" }, { set_weight = 50 }, { approval = \"10m\", on_timeout = \"rollback\" } ]\n";

fn plain(deps: &[&str]) -> String {
    let d: Vec<String> = deps.iter().map(|x| format!("\"{x}\"")).collect();
    format!(
        "depends_on = [{}]\nstrategy = \"canary\"\nsteps = [ {{ set_weight = 50 }}, {{ pause = \"10s\" }} ]\n",
        d.join(", ")
    )
}

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
