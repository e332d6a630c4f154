//! The plan of a release with tenants: rings in order, each ring's tenants in start order,
//! each tenant's services and waves named `TENANT/SERVICE`, and the timing of the whole
//! fleet.
//!
//! **Timing.** A tenant takes its own plan's minimum time to full promotion (`d`, gates
//! answered at once). A ring starts its tenants in order on `max_parallel` slots, each as
//! soon as a slot is free (the engine's rule), so it lasts the makespan of that list
//! schedule; with `n` tenants of equal `d` that is `ceil(n / max_parallel) × d`. After its
//! last tenant promoted, the ring bakes. The release's minimum time is the sum over rings
//! of `makespan + bake` (the last ring's bake included: the release ends after it). Gates
//! (a tenant's approval, its services' approvals and pauses without a duration) count as
//! answered at once and are listed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use serde::Serialize;

use super::{Plan, plan};
use crate::duration::format_duration;
use crate::release::fleet::TenantRelease;
use crate::release::tenants::{self, qualified};
use crate::release::{OnTimeout, Release};

/// The fleet's part of the plan (`--output json`: `rings`, `failure_budget`,
/// `fleet_timing`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetPlan {
    /// Rings in the order they deploy.
    pub rings: Vec<RingPlan>,
    /// Tenants that may fail in the whole release (the budget resolved).
    pub failure_budget: usize,
    pub timing: FleetTiming,
}

/// One ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RingPlan {
    pub name: String,
    /// Its tenants, in start order.
    pub tenants: Vec<TenantPlan>,
    /// Tenants deploying at once (`max_parallel` resolved against the ring's size).
    pub max_parallel: usize,
    /// The bake after its last tenant promoted, in seconds.
    pub bake_s: u64,
    /// The makespan of its tenants on `max_parallel` slots (without the bake).
    pub min_duration_ms: u64,
}

/// One tenant's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantPlan {
    pub name: String,
    pub tags: Vec<String>,
    /// Its services, `TENANT/SERVICE`, in wave order.
    pub services: Vec<String>,
    /// Its waves, each a list of `TENANT/SERVICE`; dependencies stay inside the tenant.
    pub waves: Vec<Vec<String>>,
    /// Its minimum time to full promotion (its own plan's).
    pub min_to_full_promotion_ms: u64,
    /// Where it waits for people: its approval before it starts, then its services' gates.
    pub gates: Vec<String>,
    /// Its own plan (steps of each service), for the text form; not in JSON.
    #[serde(skip)]
    pub plan: Plan,
}

/// The fleet's timing, as a formula people can check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetTiming {
    pub min_to_full_promotion_ms: u64,
    pub formula: String,
    /// Gates across every tenant.
    pub gates: usize,
}

fn d(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

/// The fleet plan of a release and its tenants' releases (`LoadedRelease::tenants`);
/// `None` without tenants.
pub fn plan_fleet(release: &Release, resolved: &[TenantRelease]) -> Option<FleetPlan> {
    if release.tenants.is_empty() {
        return None;
    }
    let members = tenants::members(&release.tenants, &release.rings);
    let mut rings = Vec::with_capacity(release.rings.len());
    for (ring, member) in release.rings.iter().zip(&members) {
        let tenants: Vec<TenantPlan> = member
            .iter()
            .filter_map(|&i| {
                let t = &release.tenants[i];
                // In file order, like the tenants (a search only if not).
                let r = resolved
                    .get(i)
                    .filter(|x| x.name == t.name)
                    .or_else(|| resolved.iter().find(|x| x.name == t.name))?;
                Some(tenant_plan(t, &r.release))
            })
            .collect();
        let max_parallel = ring.max_parallel.parallel_of(tenants.len());
        let durations: Vec<u64> = tenants.iter().map(|t| t.min_to_full_promotion_ms).collect();
        rings.push(RingPlan {
            name: ring.name.clone(),
            min_duration_ms: makespan(&durations, max_parallel),
            max_parallel,
            bake_s: ring.bake.as_secs(),
            tenants,
        });
    }
    let timing = timing(&rings);
    Some(FleetPlan {
        failure_budget: release
            .release
            .failure_budget
            .map_or(0, |b| b.budget_of(release.tenants.len())),
        rings,
        timing,
    })
}

fn tenant_plan(t: &tenants::Tenant, release: &Release) -> TenantPlan {
    let p = plan(release);
    let q = |s: &String| qualified(&t.name, s);
    let mut gates = Vec::new();
    if let Some(a) = &t.approval {
        let then = match a.on_timeout {
            OnTimeout::Rollback => "skip the tenant",
            OnTimeout::Promote => "start",
            OnTimeout::Pause => "keep waiting",
        };
        let who = if a.approvals > 1 {
            format!("approval by {} people", a.approvals)
        } else {
            "approval".to_string()
        };
        gates.push(format!(
            "{}: {who} before it starts (timeout {}, then {then})",
            t.name, a.timeout
        ));
    }
    for s in &p.services {
        for st in s.steps.iter().filter(|st| st.is_gate()) {
            gates.push(format!(
                "{} step {}: {}",
                q(&s.name),
                st.index,
                st.description
            ));
        }
    }
    TenantPlan {
        name: t.name.clone(),
        tags: t.tags.clone(),
        services: p.services.iter().map(|s| q(&s.name)).collect(),
        waves: p.waves.iter().map(|w| w.iter().map(q).collect()).collect(),
        min_to_full_promotion_ms: p.timing.min_to_full_promotion_ms,
        gates,
        plan: p,
    }
}

/// The end of a list schedule: jobs in order, each on the first free of `slots` slots.
pub fn makespan(durations: &[u64], slots: usize) -> u64 {
    let mut free: BinaryHeap<Reverse<u64>> = (0..slots.max(1)).map(|_| Reverse(0)).collect();
    let mut end = 0;
    for &dur in durations {
        let Reverse(start) = free.pop().unwrap_or(Reverse(0));
        let finish = start.saturating_add(dur);
        end = end.max(finish);
        free.push(Reverse(finish));
    }
    end
}

fn timing(rings: &[RingPlan]) -> FleetTiming {
    let mut total = 0u64;
    let mut parts = Vec::new();
    for r in rings {
        let n = r.tenants.len();
        let first = r.tenants.first().map_or(0, |t| t.min_to_full_promotion_ms);
        let equal = r
            .tenants
            .iter()
            .all(|t| t.min_to_full_promotion_ms == first);
        let inner = if n == 1 {
            format!("{} {}", r.tenants[0].name, d(first))
        } else if equal {
            let rounds = n.div_ceil(r.max_parallel);
            format!(
                "{n} tenants × {}, {} at once: {rounds} round(s) = {}",
                d(first),
                r.max_parallel,
                d(r.min_duration_ms)
            )
        } else {
            format!(
                "{n} tenants in order on {} slot(s) = {}",
                r.max_parallel,
                d(r.min_duration_ms)
            )
        };
        parts.push(format!("ring {} ({inner})", r.name));
        total = total.saturating_add(r.min_duration_ms);
        if r.bake_s > 0 {
            parts.push(format!("bake {}", d(r.bake_s * 1000)));
            total = total.saturating_add(r.bake_s * 1000);
        }
    }
    let gates: usize = rings
        .iter()
        .flat_map(|r| &r.tenants)
        .map(|t| t.gates.len())
        .sum();
    let mut formula = format!("{} = {}", parts.join(" + "), d(total));
    if gates > 0 {
        formula.push_str(&format!(" + the time people take at {gates} gate(s)"));
    }
    FleetTiming {
        min_to_full_promotion_ms: total,
        formula,
        gates,
    }
}

#[cfg(test)]
mod tests {
    use super::makespan;

    #[test]
    fn makespan_is_the_end_of_the_list_schedule() {
        assert_eq!(makespan(&[], 2), 0);
        assert_eq!(makespan(&[10, 10, 10, 10, 10], 2), 30);
        assert_eq!(makespan(&[10, 10, 10], 5), 10);
        // In order, each on the first free slot: 5 and 1 start, 1 ends, 4 starts at 1
        // (ends 5), 3 starts at 5 on either slot (ends 8).
        assert_eq!(makespan(&[5, 1, 4, 3], 2), 8);
        assert_eq!(makespan(&[7, 7], 0), 14);
    }
}
