//! The plan: a pure function of a release. Waves of services that may roll out together
//! (respecting `depends_on` and `max_parallel`), every service's expanded steps, where the
//! migrations sit, and timing: the minimum time to full promotion and, at each step, the
//! worst-case time to notice a failure and put traffic back on the stable revision.
//!
//! `cutover plan` prints it; the engine executes exactly these steps.

mod blue_green;
mod canary;
mod expand;
mod fleet_engine;
mod images;
mod json;
mod linear;
mod render;
mod render_rings;
mod rings;
mod rolling;
mod service;
mod timing;
mod waves;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

pub use expand::expand;
pub use fleet_engine::engine_plan;
pub use images::{PlannedImage, planned_images, render_images_text};
pub use json::plan_json;
pub use render::render_text;
pub use render_rings::render_fleet_text;
pub use rings::{FleetPlan, FleetTiming, RingPlan, TenantPlan, makespan, plan_fleet};
pub use service::{
    baseline_revision, candidate_revision, default_replicas, drain_timeout, launch_replicas,
    planned_replicas, revision_of_image, revisions,
};
pub use waves::waves;

use crate::release::{FailurePolicy, OnTimeout, PlatformKind, Release, StrategyKind};
use timing::{min_to_promotion, timing};

/// The whole plan. Its JSON form is stable: tools read `waves` and `services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub release: String,
    pub platform: PlatformKind,
    pub max_parallel: u32,
    pub on_failure: FailurePolicy,
    /// Each wave is a list of service names that may roll out at the same time. A wave
    /// starts when every service of the previous wave is promoted.
    pub waves: Vec<Vec<String>>,
    /// Services in wave order.
    pub services: Vec<ServicePlan>,
    pub migrations: Vec<MigrationPlan>,
    pub timing: ReleaseTiming,
}

/// One service's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    pub name: String,
    /// 0-based index into `waves`.
    pub wave: usize,
    pub strategy: StrategyKind,
    pub depends_on: Vec<String>,
    /// Services that depend on this one (their smoke tests re-run after it is promoted).
    pub dependents: Vec<String>,
    pub steps: Vec<PlanStep>,
    /// Sum of the minimum durations of the steps up to and including promotion, assuming
    /// people answer gates at once. Dependents may start from then on.
    pub min_to_promotion_ms: u64,
    /// True when some step waits for a person (approval, pause forever, manual switch).
    pub waits_for_people: bool,
}

/// One expanded step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanStep {
    /// 1-based position in the service's steps.
    pub index: usize,
    #[serde(flatten)]
    pub action: Action,
    /// A sentence for people.
    pub description: String,
    /// The candidate's share of traffic while this step runs.
    pub candidate_weight: u8,
    /// How long the step lasts at least (gates: 0, assuming an immediate answer).
    pub min_duration_ms: u64,
    /// The longest the step can last before it times out or the progress deadline fails
    /// it; `None` when it waits for a person without a limit.
    pub max_duration_ms: Option<u64>,
    /// Worst-case time from a candidate instance failing its health checks to the engine
    /// noticing: `unhealthy_after × interval + timeout`.
    pub detect_unhealthy_ms: u64,
    /// Worst-case time from a regression (errors, latency) starting during this step to a
    /// verdict: until the end of the next analysis from here. `None` when no analysis
    /// follows before promotion: such a regression is only caught by health checks.
    pub detect_regression_ms: Option<u64>,
    /// How traffic goes back to the stable revision from this step.
    pub rollback: &'static str,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start the candidate's instances; `replicas: None` means the size the platform's
    /// service has now (ECS desired count).
    Launch {
        revision: String,
        replicas: Option<u32>,
    },
    /// Wait until every candidate instance passes its health checks.
    WaitHealthy,
    /// Run the smoke tests against the candidate through the test route.
    Smoke { tests: Vec<String> },
    /// Move this share of traffic to the candidate.
    SetWeight { weight: u8 },
    /// Judge the candidate against the baseline for this long.
    Analysis { duration_ms: u64 },
    /// Wait; `duration_ms: None` waits for a promote command.
    Pause { duration_ms: Option<u64> },
    /// Wait for `approvals` distinct people to approve (or one to reject).
    Approval {
        timeout_ms: u64,
        on_timeout: OnTimeout,
        #[serde(default = "one_approver", skip_serializing_if = "is_one_approver")]
        approvals: u32,
        /// Who may approve (operators, `group:NAME`); empty = as the policy says.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        /// The person who started the release does not count.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        four_eyes: bool,
    },
    /// Blue-green: all traffic to the candidate at once.
    Switch,
    /// Hold at 100 % with analysis running before calling the candidate stable.
    Bake { duration_ms: u64 },
    /// Replace one batch of instances (rolling).
    ReplaceBatch { batch: u32, of: u32, instances: u32 },
    /// ECS rolling update by the ECS deployment controller, watched until it completes.
    EcsRollingUpdate,
    /// The candidate becomes stable.
    Promote,
    /// Keep the old revision running (idle) for instant rollback.
    KeepOld { duration_ms: u64 },
    /// Drain the old revision and stop it.
    Retire { drain_timeout_ms: u64 },
}

/// Where a migration's stages sit among the waves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationPlan {
    pub name: String,
    pub services: Vec<String>,
    /// `expand` runs before this wave starts (0-based).
    pub expand_before_wave: usize,
    /// `contract` runs after this wave is promoted and `bake_ms` passed, with confirmation.
    pub contract_after_wave: Option<usize>,
    pub bake_ms: u64,
}

/// Timing of the whole release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseTiming {
    /// Minimum time to full promotion: each wave takes as long as its slowest service.
    pub min_to_full_promotion_ms: u64,
    /// How that figure is made, for people: `wave 1 (max of a 1m, b 2m) + ...`.
    pub formula: String,
    /// Gates that wait for a person; each adds however long the person takes.
    pub gates: usize,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Build the plan of a validated release.
pub fn plan(release: &Release) -> Plan {
    let waves_idx = waves(release);
    let wave_of: HashMap<usize, usize> = waves_idx
        .iter()
        .enumerate()
        .flat_map(|(w, ss)| ss.iter().map(move |s| (*s, w)))
        .collect();
    let mut dependents: HashMap<&str, Vec<String>> = HashMap::new();
    for s in &release.services {
        for d in &s.depends_on {
            dependents
                .entry(d.as_str())
                .or_default()
                .push(s.name.clone());
        }
    }
    let mut services = Vec::new();
    for wave in &waves_idx {
        for &i in wave {
            let s = &release.services[i];
            let steps = expand(release, s);
            let min_to_promotion_ms = min_to_promotion(&steps);
            let waits_for_people = steps.iter().any(PlanStep::is_gate);
            services.push(ServicePlan {
                name: s.name.clone(),
                wave: wave_of[&i],
                strategy: s.strategy,
                depends_on: s.depends_on.clone(),
                dependents: dependents.get(s.name.as_str()).cloned().unwrap_or_default(),
                steps,
                min_to_promotion_ms,
                waits_for_people,
            });
        }
    }
    let waves: Vec<Vec<String>> = waves_idx
        .iter()
        .map(|w| {
            w.iter()
                .map(|i| release.services[*i].name.clone())
                .collect()
        })
        .collect();
    let migrations = release
        .migrations
        .iter()
        .map(|m| {
            let ws: Vec<usize> = m
                .services
                .iter()
                .filter_map(|n| release.services.iter().position(|s| &s.name == n))
                .filter_map(|i| wave_of.get(&i).copied())
                .collect();
            MigrationPlan {
                name: m.name.clone(),
                services: m.services.clone(),
                expand_before_wave: ws.iter().copied().min().unwrap_or(0),
                contract_after_wave: m.contract.as_ref().and(ws.iter().copied().max()),
                bake_ms: ms(m.bake.0),
            }
        })
        .collect::<Vec<_>>();
    let timing = timing(&services, &waves, &migrations);
    Plan {
        release: release.release.name.clone(),
        platform: release.release.platform,
        max_parallel: release.release.max_parallel,
        on_failure: release.release.on_failure,
        waves,
        services,
        migrations,
        timing,
    }
}

impl PlanStep {
    /// True when the step waits for a person: see [`Action::is_gate`].
    pub fn is_gate(&self) -> bool {
        self.action.is_gate()
    }
}

impl Action {
    /// True for a gate, a step that waits for a person: an approval, or a pause without a
    /// duration (until someone promotes). Gates count 0 in the plan's minimum times, are
    /// exempt from the progress deadline, and are drawn apart in the console's timeline.
    pub fn is_gate(&self) -> bool {
        matches!(
            self,
            Action::Approval { .. } | Action::Pause { duration_ms: None }
        )
    }
}

fn one_approver() -> u32 {
    1
}

fn is_one_approver(n: &u32) -> bool {
    *n == 1
}
