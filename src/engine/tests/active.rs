//! The indexed per-tick pass (`engine/active.rs`) decides exactly what the linear pass
//! over every service decides: the same fleet run both ways, with broken tenants, a
//! failure during a bake, and a rollback and retry of a tenant after its ring was done,
//! gives the same journal event for event and time for time; and at every wake-up of the
//! indexed run, the indexed and the linear wake-up time and "anything open" agree.

use std::time::Duration;

use proptest::prelude::*;

use super::fleet::{RINGS, fleet_release, harness};
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
    trace.journal = h
        .events()
        .into_iter()
        .map(|e| (e.at_ms, format!("{:?}", e.kind)))
        .collect();
    trace
}

fn same(broken_mask: u8, bake_break: bool, redo: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let indexed = rt.block_on(scenario(false, broken_mask, bake_break, redo));
    let linear = rt.block_on(scenario(true, broken_mask, bake_break, redo));
    assert_eq!(indexed.journal.len(), linear.journal.len());
    for (i, (a, b)) in indexed.journal.iter().zip(&linear.journal).enumerate() {
        assert_eq!(a, b, "journal entry {i} differs");
    }
    assert_eq!(indexed.wakeups, linear.wakeups);
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
