//! A service's expanded steps: what every strategy shares (launch, health checks and smoke
//! tests before any traffic; descriptions, rollback paths and detection times of every
//! step), around the strategy's own steps (one file per strategy).

use std::time::Duration;

use super::{Action, PlanStep, blue_green, canary, linear, ms, rolling, service};
use crate::duration::format_duration;
use crate::release::{Analysis, OnTimeout, PlatformKind, Release, Service, StrategyKind};

/// One step before it is described: action, candidate weight, minimum and maximum
/// duration (ms).
pub(super) type Raw = (Action, u8, u64, Option<u64>);

/// What a strategy's steps are made of, worked out once per service.
pub(super) struct Expansion {
    /// Health checks until a new instance counts as healthy (ms).
    pub healthy_min: u64,
    /// The release's progress deadline (ms).
    pub deadline: u64,
    pub replicas: u32,
    /// `None` on ECS: the size the platform's service has now.
    pub launch_replicas: Option<u32>,
    /// The candidate revision.
    pub revision: String,
    /// Drain timeout of the old revision (ms).
    pub drain: u64,
    pub smoke_names: Vec<String>,
    pub smoke_max: u64,
}

impl Expansion {
    /// Launch the candidate, wait until it is healthy, run the smoke tests.
    pub(super) fn prelude(&self, raw: &mut Vec<Raw>) {
        raw.push((
            Action::Launch {
                revision: self.revision.clone(),
                replicas: self.launch_replicas,
            },
            0,
            0,
            Some(self.deadline),
        ));
        raw.push((
            Action::WaitHealthy,
            0,
            self.healthy_min,
            Some(self.deadline),
        ));
        if !self.smoke_names.is_empty() {
            raw.push((
                Action::Smoke {
                    tests: self.smoke_names.clone(),
                },
                0,
                0,
                Some(self.smoke_max),
            ));
        }
    }
}

/// The steps the engine runs for one service.
pub fn expand(release: &Release, s: &Service) -> Vec<PlanStep> {
    let h = &s.health;
    let detect_unhealthy = ms(h.interval.0) * u64::from(h.unhealthy_after) + ms(h.timeout.0);
    let healthy_min = ms(h.interval.0) * u64::from(h.healthy_after);
    let deadline = ms(release.release.progress_deadline.0);
    let on_ecs = release.release.platform == PlatformKind::Ecs;
    let replicas = service::planned_replicas(s);
    let launch_replicas = service::launch_replicas(release, s);
    let revision = service::candidate_revision(release, s);
    let drain = ms(service::drain_timeout(s));
    let smoke_names: Vec<String> = s.smoke.iter().map(|t| t.name.clone()).collect();
    let smoke_max: u64 = s.smoke.iter().map(|t| ms(t.timeout.0)).sum();
    let ex = Expansion {
        healthy_min,
        deadline,
        replicas,
        launch_replicas,
        revision,
        drain,
        smoke_names,
        smoke_max,
    };
    let raw = match s.strategy {
        StrategyKind::Canary => canary::steps(&ex, s),
        StrategyKind::BlueGreen => blue_green::steps(&ex, s),
        StrategyKind::Linear => linear::steps(&ex, s),
        StrategyKind::Rolling if on_ecs => rolling::ecs_steps(&ex),
        StrategyKind::Rolling => rolling::steps(&ex, s),
    };
    finish(raw, s, detect_unhealthy, release.release.platform)
}

fn finish(
    raw: Vec<Raw>,
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
            approvers,
            four_eyes,
        } => format!(
            "wait for {}{}{} at {w}% (up to {}, then {})",
            if *approvals > 1 {
                format!("{approvals} approvals")
            } else {
                "approval".to_string()
            },
            if approvers.is_empty() {
                String::new()
            } else {
                format!(" from {}", approvers.join(", "))
            },
            if *four_eyes {
                " (four eyes: not the starter)"
            } else {
                ""
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
