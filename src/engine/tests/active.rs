//! The indexed per-tick pass (`engine/active.rs`) decides exactly what the linear pass
//! over every service decides: the same fleet run both ways, with broken tenants, a
//! failure during a bake, and a rollback and retry of a tenant after its ring was done,
//! gives the same journal event for event and time for time; and at every wake-up of the
//! indexed run, the indexed and the linear wake-up time and "anything open" agree. The
//! same for blue-green services keeping their old revision warm (parked with a wake-up),
//! with the release paused and resumed, a promote, a failure and a rollback meanwhile.

use std::time::Duration;

use proptest::prelude::*;

use super::fleet::{RINGS, SERVICES, fleet_release, fleet_release_of, harness};
use super::*;
use crate::engine::state::{RingStatus, TenantStatus};

/// What a run decided: every journaled event with its time, and the wake-up times.
struct Trace {
    journal: Vec<(u64, String)>,
    wakeups: Vec<u64>,
}

/// Advance to the next wake-up (at most 1 s later), checking the two passes agree there.
async fn step(h: &mut H, linear: bool, trace: &mut Trace) {
    let t = h.engine.next_wakeup();
    if !linear {
        h.engine.active.linear = true;
        let (lt, lopen) = (h.engine.next_wakeup(), h.engine.any_open());
        h.engine.active.linear = false;
        assert_eq!(t, lt, "indexed and linear wake-up differ");
        assert_eq!(
            h.engine.any_open(),
            lopen,
            "indexed and linear open count differ"
        );
    }
    trace.wakeups.push(t);
    h.run_for(Duration::from_secs(1)).await;
}

async fn until_finished(h: &mut H, linear: bool, trace: &mut Trace) {
    for _ in 0..20_000 {
        if h.engine.state().status == ReleaseStatus::Finished {
            return;
        }
        step(h, linear, trace).await;
    }
    panic!("release not finished");
}

async fn scenario(linear: bool, broken_mask: u8, bake_break: bool, redo: bool) -> Trace {
    let mut h = harness(fleet_release(5, "failure_budget = 2", RINGS), None);
    h.engine.active.linear = linear;
    let mut trace = Trace {
        journal: Vec::new(),
        wakeups: Vec::new(),
    };
    for i in 0..5 {
        if broken_mask & (1 << i) != 0 {
            h.platform.script(
                &format!("t{}/api", i + 1),
                "v2",
                InstanceState::Unhealthy {
                    reason: "503".into(),
                },
                0.0,
                0.0,
            );
        }
    }
    h.start().await;
    if bake_break {
        for _ in 0..600 {
            let baking =
                h.engine.state().fleet.as_ref().unwrap().rings[0].status == RingStatus::Baking;
            if baking || h.engine.state().status == ReleaseStatus::Finished {
                break;
            }
            step(&mut h, linear, &mut trace).await;
        }
        h.platform.set_state(
            "t1/web",
            "v2",
            InstanceState::Exited {
                reason: "killed".into(),
            },
        );
    }
    until_finished(&mut h, linear, &mut trace).await;
    // After the ring is done: a tenant rolled back by hand, then retried.
    let promoted = h
        .engine
        .state()
        .fleet
        .as_ref()
        .unwrap()
        .tenants
        .iter()
        .find(|t| t.status == TenantStatus::Promoted)
        .map(|t| t.name.clone());
    if redo && let Some(t) = promoted {
        let _ = h.cmd(&format!("rollback {t}")).await;
        until_finished(&mut h, linear, &mut trace).await;
        let _ = h.cmd(&format!("retry {t}")).await;
        until_finished(&mut h, linear, &mut trace).await;
    }
    trace.journal = journal_of(&h);
    trace
}

/// The fleet tests' tenants, with `web` blue-green keeping its old revision warm for two
/// minutes and a half second (off the whole-second grid of the other services' polls, so
/// a missed wake-up would show), polled every 90 s (it waits for a poll, then for the end
/// of the step).
fn keep_old_services() -> String {
    let canary_web = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n[service.local]\nlisten = \"127.0.0.1:${web_port}\"";
    let warm_web = format!("{KEEP_OLD_ALONE}[service.local]\nlisten = \"127.0.0.1:${{web_port}}\"");
    let services = SERVICES.replacen(canary_web, &warm_web, 1);
    assert_ne!(services, SERVICES, "the fleet tests' web service changed");
    services
}

/// A blue-green `web` alone, keeping its old revision warm for two minutes and a half
/// second, polled every 90 s: with nothing else running, its poll or the end of its step is the engine's next
/// wake-up.
const KEEP_OLD_ALONE: &str = "strategy = \"blue_green\"\nblue_green = { keep_old_for = \"120500ms\" }\n[service.health]\ninterval = \"90s\"\n";

/// What happens while `web` (alone, or the first tenant's in a fleet) keeps its old
/// revision warm: nothing (0), the release paused for 10 s and resumed before the step's
/// end (1), `promote`
/// (2), its candidate exits (3), it is rolled back (4).
async fn keep_old_scenario(linear: bool, fleet: bool, op: u8) -> Trace {
    let (mut h, web, rollback) = if fleet {
        let r = fleet_release_of(4, "failure_budget = 1", RINGS, &keep_old_services());
        (harness(r, None), "t1/web", "rollback t1")
    } else {
        let r = super::release("", &[("web", KEEP_OLD_ALONE)]);
        (H::new(r), "web", "rollback web")
    };
    h.engine.active.linear = linear;
    let mut trace = Trace {
        journal: Vec::new(),
        wakeups: Vec::new(),
    };
    h.start().await;
    let warm = |h: &H| {
        h.engine.runs.get(web).is_some_and(|rt| {
            rt.entered
                && matches!(
                    rt.step().map(|s| &s.action),
                    Some(crate::plan::Action::KeepOld { .. })
                )
        })
    };
    for _ in 0..600 {
        if warm(&h) || h.engine.state().status == ReleaseStatus::Finished {
            break;
        }
        step(&mut h, linear, &mut trace).await;
    }
    assert!(warm(&h), "{web} never kept its old revision warm");
    // Let it sit parked a while first: the pause comes after its 90-second poll, so that
    // it is parked until the end of its step, which the pause moves.
    for _ in 0..if op == 1 { 95 } else { 20 } {
        step(&mut h, linear, &mut trace).await;
        assert!(
            linear || h.engine.is_parked(web),
            "the indexed pass does not park a service keeping its old revision warm"
        );
    }
    match op {
        1 => {
            // (Refused when `web` is alone: that release has finished, only its cleanup
            // runs; in the fleet the other tenants are still to come.)
            let _ = h.cmd("pause").await;
            for _ in 0..10 {
                step(&mut h, linear, &mut trace).await;
            }
            let _ = h.cmd("resume").await;
        }
        2 => {
            let _ = h.cmd(&format!("promote {web}")).await;
        }
        3 => h.platform.set_state(
            web,
            "v2",
            InstanceState::Exited {
                reason: "killed".into(),
            },
        ),
        4 => {
            let _ = h.cmd(rollback).await;
        }
        _ => {}
    }
    // To the end of the cleanup (the release alone has finished while `web` is warm).
    for _ in 0..2_000 {
        if h.engine.is_done() {
            break;
        }
        step(&mut h, linear, &mut trace).await;
    }
    assert!(h.engine.is_done(), "cleanup never ended");
    trace.journal = journal_of(&h);
    trace
}

/// Every journaled event with its time.
fn journal_of(h: &H) -> Vec<(u64, String)> {
    h.events()
        .into_iter()
        .map(|e| (e.at_ms, format!("{:?}", e.kind)))
        .collect()
}

fn agree(indexed: Trace, linear: Trace) {
    assert_eq!(indexed.journal.len(), linear.journal.len());
    for (i, (a, b)) in indexed.journal.iter().zip(&linear.journal).enumerate() {
        assert_eq!(a, b, "journal entry {i} differs");
    }
    assert_eq!(indexed.wakeups, linear.wakeups);
}

#[test]
fn services_keeping_their_old_revision_warm_park_without_changing_a_decision() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (fleet, op) in [false, true]
        .into_iter()
        .flat_map(|f| (0..5).map(move |op| (f, op)))
    {
        let indexed = rt.block_on(keep_old_scenario(false, fleet, op));
        let linear = rt.block_on(keep_old_scenario(true, fleet, op));
        // The scenario did what it says: the warm period was reached, the exit was seen
        // (at the next poll: a rollback if the old revision is still warm, else a restart)
        // and the rollback rolled back.
        let has = |what: &str| indexed.journal.iter().any(|(_, e)| e.contains(what));
        assert!(has("KeepOld"), "fleet {fleet}, op {op}: no keep_old step");
        assert_eq!(has("killed"), op == 3, "fleet {fleet}, op {op}: exit seen?");
        if op == 4 {
            assert!(has("RollbackStarted"), "fleet {fleet}: not rolled back");
        }
        agree(indexed, linear);
    }
}

fn same(broken_mask: u8, bake_break: bool, redo: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let indexed = rt.block_on(scenario(false, broken_mask, bake_break, redo));
    let linear = rt.block_on(scenario(true, broken_mask, bake_break, redo));
    agree(indexed, linear);
}

#[test]
fn the_indexed_pass_decides_what_the_linear_pass_decides() {
    // All promote; a bake failure; a rollback and retry after the ring was done.
    same(0, false, false);
    same(0, true, true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Any broken tenants (within or over the budget), with or without a failure during
    /// the first ring's bake and a rollback and retry at the end.
    #[test]
    fn indexed_and_linear_passes_agree(broken_mask in 0u8..32, bake_break: bool, redo: bool) {
        same(broken_mask, bake_break, redo);
    }
}
