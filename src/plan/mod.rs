//! The plan: a pure function of a release. Waves of services that may roll out together
//! (respecting `depends_on` and `max_parallel`), every service's expanded steps, where the
//! migrations sit, and timing: the minimum time to full promotion and, at each step, the
//! worst-case time to notice a failure and put traffic back on the stable revision.
//!
//! `cutover plan` prints it; the engine executes exactly these steps.

mod render;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

pub use render::render_text;

use crate::duration::format_duration;
use crate::release::{
    Analysis, FailurePolicy, OnTimeout, PauseFor, PlatformKind, Release, Service, Step,
    StrategyKind,
};

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
            let waits_for_people = steps.iter().any(is_gate);
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

fn min_to_promotion(steps: &[PlanStep]) -> u64 {
    let end = steps
        .iter()
        .position(|st| st.action == Action::Promote)
        .map_or(steps.len(), |i| i + 1);
    steps[..end].iter().map(|st| st.min_duration_ms).sum()
}

fn is_gate(st: &PlanStep) -> bool {
    matches!(
        st.action,
        Action::Approval { .. } | Action::Pause { duration_ms: None }
    )
}

fn timing(
    services: &[ServicePlan],
    waves: &[Vec<String>],
    migrations: &[MigrationPlan],
) -> ReleaseTiming {
    let by_name: HashMap<&str, &ServicePlan> =
        services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut total = 0u64;
    let mut parts = Vec::new();
    for (w, names) in waves.iter().enumerate() {
        let longest = names
            .iter()
            .map(|n| by_name[n.as_str()].min_to_promotion_ms)
            .max()
            .unwrap_or(0);
        total += longest;
        let inner: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{} {}",
                    n,
                    format_duration(Duration::from_millis(
                        by_name[n.as_str()].min_to_promotion_ms
                    ))
                )
            })
            .collect();
        if names.len() == 1 {
            parts.push(format!("wave {} ({})", w + 1, inner[0]));
        } else {
            parts.push(format!("wave {} (max of {})", w + 1, inner.join(", ")));
        }
    }
    for m in migrations {
        if m.contract_after_wave.is_some() && m.bake_ms > 0 {
            total += m.bake_ms;
            parts.push(format!(
                "bake before contracting {} {}",
                m.name,
                format_duration(Duration::from_millis(m.bake_ms))
            ));
        }
    }
    let gates = services
        .iter()
        .flat_map(|s| &s.steps)
        .filter(|st| is_gate(st))
        .count();
    let mut formula = parts.join(" + ");
    formula.push_str(&format!(
        " = {}",
        format_duration(Duration::from_millis(total))
    ));
    if gates > 0 {
        formula.push_str(&format!(" + the time people take at {gates} gate(s)"));
    }
    ReleaseTiming {
        min_to_full_promotion_ms: total,
        formula,
        gates,
    }
}

/// Waves by list scheduling: a service is ready once all its dependencies are in earlier
/// waves; each wave takes at most `max_parallel` ready services, those heading the longest
/// chain of dependents first, then in file order. Services in a cycle (refused by
/// validation) are left out.
pub fn waves(release: &Release) -> Vec<Vec<usize>> {
    let n = release.services.len();
    let index: HashMap<&str, usize> = release
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = release
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .filter(|d| *d != i)
                .collect()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    // Longest chain of dependents below each service (iteratively, in reverse topological order).
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut topo = Vec::with_capacity(n);
    let mut queue: Vec<usize> = (0..n).filter(|i| remaining[*i] == 0).collect();
    while let Some(i) = queue.pop() {
        topo.push(i);
        for &m in &dependents[i] {
            remaining[m] -= 1;
            if remaining[m] == 0 {
                queue.push(m);
            }
        }
    }
    let mut height = vec![0usize; n];
    for &i in topo.iter().rev() {
        height[i] = dependents[i]
            .iter()
            .map(|m| height[*m] + 1)
            .max()
            .unwrap_or(0);
    }
    let in_dag: Vec<bool> = {
        let mut v = vec![false; n];
        for &i in &topo {
            v[i] = true;
        }
        v
    };
    let max_parallel = release.release.max_parallel.max(1) as usize;
    let mut placed = vec![false; n];
    let mut waves = Vec::new();
    let mut left = topo.len();
    while left > 0 {
        let mut ready: Vec<usize> = (0..n)
            .filter(|&i| in_dag[i] && !placed[i] && deps[i].iter().all(|d| placed[*d]))
            .collect();
        ready.sort_by_key(|&i| (std::cmp::Reverse(height[i]), i));
        ready.truncate(max_parallel);
        for &i in &ready {
            placed[i] = true;
        }
        left -= ready.len();
        ready.sort_unstable();
        waves.push(ready);
    }
    waves
}

/// The steps the engine runs for one service.
pub fn expand(release: &Release, s: &Service) -> Vec<PlanStep> {
    let h = &s.health;
    let detect_unhealthy = ms(h.interval.0) * u64::from(h.unhealthy_after) + ms(h.timeout.0);
    let healthy_min = ms(h.interval.0) * u64::from(h.healthy_after);
    let deadline = ms(release.release.progress_deadline.0);
    let on_ecs = release.release.platform == PlatformKind::Ecs;
    let replicas = s.local.as_ref().map_or(1, |l| l.replicas);
    let launch_replicas = if on_ecs { None } else { Some(replicas) };
    let revision = match (&s.local, &s.ecs) {
        (Some(l), _) if release.release.platform == PlatformKind::Local => {
            l.target.revision.clone()
        }
        (_, Some(e)) => e.image.rsplit(':').next().unwrap_or(&e.image).to_string(),
        (Some(l), None) => l.target.revision.clone(),
        (None, None) => "candidate".into(),
    };
    let drain = s.local.as_ref().map_or(30_000, |l| ms(l.drain_timeout.0));
    let mut raw: Vec<(Action, u8, u64, Option<u64>)> = Vec::new(); // action, weight, min, max
    let smoke_names: Vec<String> = s.smoke.iter().map(|t| t.name.clone()).collect();
    let smoke_max: u64 = s.smoke.iter().map(|t| ms(t.timeout.0)).sum();
    let prelude = |raw: &mut Vec<(Action, u8, u64, Option<u64>)>| {
        raw.push((
            Action::Launch {
                revision: revision.clone(),
                replicas: launch_replicas,
            },
            0,
            0,
            Some(deadline),
        ));
        raw.push((Action::WaitHealthy, 0, healthy_min, Some(deadline)));
        if !smoke_names.is_empty() {
            raw.push((
                Action::Smoke {
                    tests: smoke_names.clone(),
                },
                0,
                0,
                Some(smoke_max),
            ));
        }
    };
    match s.strategy {
        StrategyKind::Canary => {
            prelude(&mut raw);
            let mut w = 0u8;
            for st in &s.steps {
                match st {
                    Step::SetWeight(x) => {
                        w = *x;
                        raw.push((Action::SetWeight { weight: w }, w, 0, Some(0)));
                    }
                    Step::Analysis(d) => raw.push((
                        Action::Analysis {
                            duration_ms: ms(d.0),
                        },
                        w,
                        ms(d.0),
                        Some(ms(d.0)),
                    )),
                    Step::Pause(PauseFor::For(d)) => raw.push((
                        Action::Pause {
                            duration_ms: Some(ms(d.0)),
                        },
                        w,
                        ms(d.0),
                        Some(ms(d.0)),
                    )),
                    Step::Pause(PauseFor::Forever) => {
                        raw.push((Action::Pause { duration_ms: None }, w, 0, None))
                    }
                    Step::Approval {
                        timeout,
                        on_timeout,
                        approvals,
                    } => raw.push((
                        Action::Approval {
                            timeout_ms: ms(timeout.0),
                            on_timeout: *on_timeout,
                            approvals: *approvals,
                        },
                        w,
                        0,
                        Some(ms(timeout.0)),
                    )),
                }
            }
            if w < 100 {
                raw.push((Action::SetWeight { weight: 100 }, 100, 0, Some(0)));
            }
            raw.push((Action::Promote, 100, 0, Some(0)));
            raw.push((
                Action::Retire {
                    drain_timeout_ms: drain,
                },
                100,
                0,
                Some(drain),
            ));
        }
        StrategyKind::BlueGreen => {
            let bg = s.blue_green.clone().unwrap_or_default();
            prelude(&mut raw);
            if !bg.auto_promote {
                raw.push((
                    Action::Approval {
                        timeout_ms: deadline,
                        on_timeout: OnTimeout::Rollback,
                        approvals: 1,
                    },
                    0,
                    0,
                    Some(deadline),
                ));
            }
            raw.push((Action::Switch, 100, 0, Some(0)));
            if let Some(a) = &s.analysis {
                let d = ms(a.min_duration.0);
                raw.push((
                    Action::Bake { duration_ms: d },
                    100,
                    d,
                    Some(deadline.max(d)),
                ));
            }
            raw.push((Action::Promote, 100, 0, Some(0)));
            let keep = ms(bg.keep_old_for.0);
            raw.push((Action::KeepOld { duration_ms: keep }, 100, keep, Some(keep)));
            raw.push((
                Action::Retire {
                    drain_timeout_ms: drain,
                },
                100,
                0,
                Some(drain),
            ));
        }
        StrategyKind::Linear => {
            let (step, every) = s
                .linear
                .as_ref()
                .map_or((100, 0), |l| (l.step.max(1), ms(l.every.0)));
            prelude(&mut raw);
            let mut w = 0u8;
            while w < 100 {
                w = w.saturating_add(step).min(100);
                raw.push((Action::SetWeight { weight: w }, w, 0, Some(0)));
                if w < 100 {
                    let action = if s.analysis.is_some() {
                        Action::Analysis { duration_ms: every }
                    } else {
                        Action::Pause {
                            duration_ms: Some(every),
                        }
                    };
                    raw.push((action, w, every, Some(every)));
                }
            }
            raw.push((Action::Promote, 100, 0, Some(0)));
            raw.push((
                Action::Retire {
                    drain_timeout_ms: drain,
                },
                100,
                0,
                Some(drain),
            ));
        }
        StrategyKind::Rolling if on_ecs => {
            raw.push((Action::EcsRollingUpdate, 100, healthy_min, Some(deadline)));
            raw.push((Action::Promote, 100, 0, Some(0)));
        }
        StrategyKind::Rolling => {
            let r = s.rolling.clone().unwrap_or_default();
            let batch = r.batch.max(1);
            let batches = replicas.div_ceil(batch);
            let mut replaced = 0u32;
            for b in 0..batches {
                let n = batch.min(replicas - replaced);
                replaced += n;
                let w = ((u64::from(replaced) * 100) / u64::from(replicas.max(1))) as u8;
                raw.push((
                    Action::ReplaceBatch {
                        batch: b + 1,
                        of: batches,
                        instances: n,
                    },
                    w,
                    healthy_min,
                    Some(deadline),
                ));
            }
            raw.push((Action::Promote, 100, 0, Some(0)));
        }
    }
    finish(raw, s, detect_unhealthy, release.release.platform)
}

fn finish(
    raw: Vec<(Action, u8, u64, Option<u64>)>,
    s: &Service,
    detect_unhealthy: u64,
    platform: PlatformKind,
) -> Vec<PlanStep> {
    let continuous = s.analysis.is_some() && s.strategy != StrategyKind::Canary;
    // Time until the end of the next analysis, walking forward from each step.
    let mut next_analysis_end: Vec<Option<u64>> = vec![None; raw.len()];
    let mut acc: Option<u64> = None;
    for (i, (action, _, min, _)) in raw.iter().enumerate().rev() {
        let judged = match action {
            Action::Analysis { .. } | Action::Bake { .. } => true,
            Action::KeepOld { .. } | Action::Retire { .. } | Action::Promote => false,
            _ => {
                continuous
                    && matches!(
                        action,
                        Action::ReplaceBatch { .. } | Action::EcsRollingUpdate
                    )
            }
        };
        acc = if judged {
            Some(*min)
        } else {
            acc.map(|a| a + min)
        };
        if matches!(
            action,
            Action::Promote | Action::KeepOld { .. } | Action::Retire { .. }
        ) {
            acc = None;
        }
        next_analysis_end[i] = acc;
    }
    let (back_to_old, back_to_stable) = match platform {
        PlatformKind::Local => (
            "one weight change in cutover's proxy back to the old revision, still running",
            "one weight change in cutover's proxy back to stable",
        ),
        PlatformKind::Ecs => (
            "one ALB listener-rule weight change back to the old revision, still running",
            "one ALB listener-rule weight change back to stable",
        ),
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, (action, w, min, max))| {
            let rollback = match (&action, w) {
                (Action::Launch { .. } | Action::WaitHealthy | Action::Smoke { .. }, _) => {
                    "no traffic on the candidate yet: stop it"
                }
                (Action::Promote, _) if s.strategy == StrategyKind::Rolling => {
                    "old instances are gone: roll the previous revision out again"
                }
                (Action::KeepOld { .. } | Action::Promote, _) => back_to_old,
                (Action::Retire { .. }, _) => "old revision gone: roll forward or redeploy it",
                (Action::ReplaceBatch { .. }, _) => {
                    "restart the replaced instances on the stable revision, then stop the candidate's"
                }
                (Action::EcsRollingUpdate, _) => {
                    "update the ECS service back to the previous task definition"
                }
                (_, 0) => "no traffic on the candidate yet: stop it",
                _ => back_to_stable,
            };
            let description = describe(&action, w, s);
            PlanStep {
                index: i + 1,
                description,
                candidate_weight: w,
                min_duration_ms: min,
                max_duration_ms: max,
                detect_unhealthy_ms: detect_unhealthy,
                detect_regression_ms: next_analysis_end[i],
                rollback,
                action,
            }
        })
        .collect()
}

fn describe(action: &Action, w: u8, s: &Service) -> String {
    let d = |ms: u64| format_duration(Duration::from_millis(ms));
    let judge = || {
        s.analysis
            .as_ref()
            .map_or("thresholds".to_string(), describe_judge)
    };
    match action {
        Action::Launch {
            revision,
            replicas: Some(n),
        } => format!("start {n} instance(s) of {revision}"),
        Action::Launch {
            revision,
            replicas: None,
        } => format!("start {revision} at the service's current size"),
        Action::WaitHealthy => format!(
            "wait until every instance passes {} health check(s) on {}",
            s.health.healthy_after, s.health.path
        ),
        Action::Smoke { tests } => {
            format!("smoke tests through the test route: {}", tests.join(", "))
        }
        Action::SetWeight { weight } => format!("send {weight}% of traffic to the candidate"),
        Action::Analysis { duration_ms } => {
            format!("analyse for {} at {w}% ({})", d(*duration_ms), judge())
        }
        Action::Pause {
            duration_ms: Some(p),
        } => format!("hold at {w}% for {}", d(*p)),
        Action::Pause { duration_ms: None } => format!("hold at {w}% until someone promotes"),
        Action::Approval {
            timeout_ms,
            on_timeout,
            approvals,
        } => format!(
            "wait for {} at {w}% (up to {}, then {})",
            if *approvals > 1 {
                format!("{approvals} approvals")
            } else {
                "approval".to_string()
            },
            d(*timeout_ms),
            match on_timeout {
                OnTimeout::Rollback => "roll back",
                OnTimeout::Promote => "promote",
                OnTimeout::Pause => "pause",
            }
        ),
        Action::Switch => "switch all traffic to the candidate".into(),
        Action::Bake { duration_ms } => {
            format!("bake at 100% for {} ({})", d(*duration_ms), judge())
        }
        Action::ReplaceBatch {
            batch,
            of,
            instances,
        } => {
            format!("batch {batch}/{of}: replace {instances} instance(s), wait healthy")
        }
        Action::EcsRollingUpdate => {
            "ECS rolling update to the new task definition, until it completes".into()
        }
        Action::Promote => "the candidate becomes stable".into(),
        Action::KeepOld { duration_ms } => {
            format!("keep the old revision warm for {}", d(*duration_ms))
        }
        Action::Retire { drain_timeout_ms } => {
            format!(
                "drain the old revision (up to {}) and stop it",
                d(*drain_timeout_ms)
            )
        }
    }
}

fn describe_judge(a: &Analysis) -> String {
    match a.judge {
        crate::release::JudgeKind::Sequential => {
            format!("sequential judge, tolerance {}x", a.tolerance)
        }
        crate::release::JudgeKind::Threshold => {
            format!("threshold judge, max error rate {}", a.max_error_rate)
        }
    }
}

fn one_approver() -> u32 {
    1
}

fn is_one_approver(n: &u32) -> bool {
    *n == 1
}
