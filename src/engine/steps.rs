//! Running a service's plan steps: enter the current step, finish it when its condition
//! holds, move to the next one.

use std::time::Duration;

use crate::judge::Outcome;
use crate::plan::{Action, PlanStep};
use crate::release::{OnTimeout, StrategyKind};

use super::analysis::judge_config;
use super::reconciler::{Engine, EngineError, ms, weights_of};
use super::service_run::BatchPhase;
use super::state::{EventKind, Gate, GateKind, ReleaseStatus, ServiceStatus};

impl Engine {
    /// One service's share of a tick: the service at plan position `i`, named `name`. The
    /// per-tick pass drives every service in flight at every tick, so this path reads the
    /// service's status and run state by position, never by name.
    pub(super) async fn drive_at(&mut self, i: usize, name: &str) -> Result<(), EngineError> {
        let status = self.status_at(i);
        match status {
            ServiceStatus::Pending | ServiceStatus::Skipped | ServiceStatus::Failed => {
                return Ok(());
            }
            ServiceStatus::RolledBack => return Ok(()),
            ServiceStatus::RollingBack => return self.continue_rollback(name).await,
            _ => {}
        }
        let now = self.clock.now_ms();
        let Some(rt) = self.runs.at(i) else {
            return Ok(());
        };
        // Watch health and the judges (even while paused: a pause freezes weights, not checks).
        if rt.next_health_ms <= now {
            self.poll_health_at(i, name).await?;
            if self.status_at(i) != status {
                return Ok(());
            }
        }
        if status != ServiceStatus::Promoted {
            self.poll_analysis_at(i, name).await?;
            if !self.status_at(i).is_active() {
                return Ok(());
            }
        }
        let release_paused = self.state.status == ReleaseStatus::Paused;
        let Some(rt) = self.runs.at(i) else {
            return Ok(());
        };
        if release_paused || rt.paused_by_operator || rt.failure_hold.is_some() {
            return Ok(());
        }
        // Progress deadline: a step that waits for nobody but takes too long.
        let deadline = ms(self.release.release.progress_deadline.0);
        if let Some(step) = rt.step() {
            let waits_for_people = step.is_gate()
                || rt.gate_deadline_ms.is_some()
                || self.svc_at(i, name).is_some_and(|s| s.gate.is_some());
            let own = step.min_duration_ms;
            if status != ServiceStatus::Promoted
                && !waits_for_people
                && (rt.entered || rt.retry.is_some())
                && now > rt.step_started_ms + own + deadline
            {
                let why = if rt.extending {
                    "the analysis stayed inconclusive until the progress deadline".to_string()
                } else {
                    format!(
                        "step {} ({}) made no progress",
                        step.index, step.description
                    )
                };
                let reason = format!(
                    "{why} within progress_deadline {}",
                    self.release.release.progress_deadline
                );
                return self.fail_service(name, reason).await;
            }
        }
        self.run_step_at(i, name).await
    }

    /// Enter the current step if needed, and finish it when its condition holds (the
    /// service at plan position `i`, named `name`).
    pub(super) async fn run_step_at(&mut self, i: usize, name: &str) -> Result<(), EngineError> {
        let Some(rt) = self.runs.at(i) else {
            return Ok(());
        };
        let Some(step) = rt.step_shared() else {
            return Ok(());
        };
        if rt.busy.is_some() {
            return Ok(());
        }
        let (entered, retrying, until_ms) = (rt.entered, rt.retry, rt.until_ms);
        let now = self.clock.now_ms();
        let s = match self.svc_shared_at(i, name) {
            Some(s) => s,
            None => return Ok(()),
        };
        if !entered {
            if retrying.is_some_and(|(_, at)| now < at) {
                return Ok(());
            }
            let until = match step.action {
                Action::Analysis { duration_ms }
                | Action::Bake { duration_ms }
                | Action::KeepOld { duration_ms }
                | Action::Pause {
                    duration_ms: Some(duration_ms),
                } => Some(now + duration_ms),
                _ => None,
            };
            let mut of = 0;
            if let Some(rt) = self.runs.at_mut(i) {
                rt.entered = true;
                rt.batch = BatchPhase::Launch;
                if retrying.is_none() {
                    rt.step_started_ms = now;
                }
                rt.until_ms = until;
                rt.gate_deadline_ms = None;
                rt.extending = false;
                of = rt.steps.len();
            }
            self.emit(EventKind::StepStarted {
                service: name.to_string(),
                index: step.index,
                of,
                action: step.action.clone(),
                description: step.description.clone(),
                until_ms: until,
            })?;
            return self.enter_step(name, &step, &s).await;
        }
        // Completion checks of steps already entered.
        match &step.action {
            Action::Launch { .. } | Action::SetWeight { .. } | Action::Switch => {
                if step_is_instant(&step.action) {
                    self.complete_step(name).await?;
                }
            }
            // An ECS rolling update is done when the platform reports the new deployment
            // healthy (its rollout state folded into health); a failed rollout shows as a
            // health problem and the progress deadline bounds the wait.
            Action::WaitHealthy | Action::EcsRollingUpdate => {
                if let Ok(h) = self.platform.health(name, &s.candidate).await
                    && h.all_healthy()
                {
                    self.complete_step(name).await?;
                }
            }
            Action::Analysis { .. } | Action::Bake { .. } => {
                let Some(rt) = self.runs.at(i) else {
                    return Ok(());
                };
                let extended_pass = rt.extending
                    && rt
                        .analysis
                        .as_ref()
                        .or(rt.continuous.as_ref())
                        .is_some_and(|a| a.outcome() == Outcome::Pass);
                if extended_pass {
                    if let Some(rt) = self.runs.at_mut(i) {
                        rt.extending = false;
                    }
                    self.end_analysis(name, &step).await?;
                } else if rt.until_ms.is_some_and(|u| now >= u) {
                    self.end_analysis(name, &step).await?;
                }
            }
            Action::Pause {
                duration_ms: Some(_),
            }
            | Action::KeepOld { .. } => {
                if until_ms.is_some_and(|u| now >= u) {
                    self.complete_step(name).await?;
                }
            }
            Action::Approval { on_timeout, .. } => {
                if self
                    .runs
                    .at(i)
                    .is_some_and(|rt| rt.gate_deadline_ms.is_some_and(|d| now >= d))
                {
                    let on_timeout = *on_timeout;
                    if let Some(rt) = self.runs.at_mut(i) {
                        rt.gate_deadline_ms = None;
                    }
                    match on_timeout {
                        OnTimeout::Rollback => {
                            self.fail_service(
                                name,
                                "approval timed out (on_timeout = rollback)".into(),
                            )
                            .await?
                        }
                        OnTimeout::Promote => {
                            self.emit(EventKind::GateAnswered {
                                service: name.to_string(),
                                answer: "approved on timeout (on_timeout = promote)".into(),
                                by: "engine".into(),
                            })?;
                            self.complete_step(name).await?;
                        }
                        OnTimeout::Pause => {
                            let gate = Gate {
                                kind: GateKind::Promote,
                                since_ms: now,
                                deadline_ms: None,
                            };
                            self.emit(EventKind::GateWaiting {
                                service: name.to_string(),
                                gate,
                                reason:
                                    "approval timed out (on_timeout = pause): promote or roll back"
                                        .into(),
                            })?;
                        }
                    }
                }
            }
            Action::ReplaceBatch { .. } => self.rolling_batch(name, &s).await?,
            Action::Pause { duration_ms: None }
            | Action::Smoke { .. }
            | Action::Promote
            | Action::Retire { .. } => {}
        }
        Ok(())
    }

    pub(super) async fn enter_step(
        &mut self,
        name: &str,
        step: &PlanStep,
        s: &super::state::ServiceState,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        match &step.action {
            Action::Launch { revision, replicas } => {
                let n = replicas.unwrap_or(self.runs[name].replicas);
                match self.platform.launch(name, revision, n).await {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: revision.clone(),
                            replicas: n,
                        })?;
                        if let Some(rt) = self.runs.get_mut(name) {
                            rt.next_health_ms = now;
                        }
                        self.complete_step(name).await?;
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            Action::WaitHealthy => {}
            Action::Smoke { .. } => self.spawn_smoke(name, false),
            Action::SetWeight { weight } => {
                if self.set_weight(name, s, *weight).await? {
                    self.maybe_start_continuous(name, s, false).await?;
                    self.complete_step(name).await?;
                }
            }
            Action::Switch => {
                if self.set_weight(name, s, 100).await? {
                    self.complete_step(name).await?;
                }
            }
            Action::EcsRollingUpdate => {
                match self
                    .platform
                    .launch(name, &s.candidate, self.runs[name].replicas)
                    .await
                {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: s.candidate.clone(),
                            replicas: self.runs[name].replicas,
                        })?;
                        if let Some(rt) = self.runs.get_mut(name) {
                            rt.next_health_ms = now;
                        }
                        // Completed once healthy (see run_step), not here.
                        self.set_weight(name, s, 100).await?;
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            Action::Analysis { duration_ms } => {
                let continuous = s.strategy != StrategyKind::Canary;
                if continuous {
                    self.maybe_start_continuous(name, s, true).await?;
                } else {
                    let cfg = judge_config(
                        self.runs[name].spec.analysis.as_ref(),
                        false,
                        Duration::from_millis(*duration_ms),
                    );
                    self.start_analysis(name, s, cfg, *duration_ms, false)
                        .await?;
                }
            }
            Action::Bake { duration_ms } => {
                // No baseline takes traffic at 100 %: judge the candidate against the
                // release's absolute bounds.
                let cfg = judge_config(
                    self.runs[name].spec.analysis.as_ref(),
                    true,
                    Duration::from_millis(*duration_ms),
                );
                self.start_analysis(name, s, cfg, *duration_ms, true)
                    .await?;
            }
            Action::Pause {
                duration_ms: Some(_),
            }
            | Action::KeepOld { .. } => {}
            Action::Pause { duration_ms: None } => {
                let gate = Gate {
                    kind: GateKind::Promote,
                    since_ms: now,
                    deadline_ms: None,
                };
                self.emit(EventKind::GateWaiting {
                    service: name.to_string(),
                    gate,
                    reason: format!("held at {}% until someone promotes", s.candidate_weight),
                })?;
            }
            Action::Approval {
                timeout_ms,
                on_timeout,
                ..
            } => {
                let deadline = now + timeout_ms;
                if let Some(rt) = self.runs.get_mut(name) {
                    rt.gate_deadline_ms = Some(deadline);
                }
                let rule = self.gate_rule(name);
                let who = self.gate_rule_text(rule.as_ref());
                let gate = Gate {
                    kind: GateKind::Approval {
                        on_timeout: *on_timeout,
                        rule,
                    },
                    since_ms: now,
                    deadline_ms: Some(deadline),
                };
                self.emit(EventKind::GateWaiting {
                    service: name.to_string(),
                    gate,
                    reason: format!(
                        "approval needed at {}% (approve or reject){who}",
                        s.candidate_weight
                    ),
                })?;
            }
            Action::ReplaceBatch { .. } => self.rolling_batch(name, s).await?,
            Action::Promote => {
                if let Some(rt) = self.runs.get_mut(name) {
                    rt.analysis = None;
                    rt.continuous = None;
                }
                let dependents_have_tests = self.runs[name]
                    .dependents
                    .iter()
                    .any(|d| self.runs.get(d).is_some_and(|rt| !rt.spec.smoke.is_empty()));
                if dependents_have_tests {
                    self.spawn_smoke(name, true);
                } else {
                    self.emit(EventKind::Promoted {
                        service: name.to_string(),
                    })?;
                    self.complete_step(name).await?;
                }
            }
            Action::Retire { .. } => {
                if s.baseline_running {
                    let baseline = s.baseline.clone();
                    self.spawn_retire(name, &baseline);
                } else {
                    self.complete_step(name).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn rolling_batch(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
    ) -> Result<(), EngineError> {
        let Some(step) = self.runs[name].step_shared() else {
            return Ok(());
        };
        let Action::ReplaceBatch { instances, .. } = step.action else {
            return Ok(());
        };
        let replicas = self.runs[name].replicas;
        match self.runs[name].batch {
            BatchPhase::Launch => {
                let target = (self.runs[name].replaced + instances).min(replicas);
                match self.platform.launch(name, &s.candidate, target).await {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: s.candidate.clone(),
                            replicas: target,
                        })?;
                        if let Some(rt) = self.runs.get_mut(name) {
                            rt.batch = BatchPhase::Shift;
                            rt.replaced = target;
                            rt.next_health_ms = self.clock.now_ms();
                        }
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            BatchPhase::Shift => {
                let healthy = match self.platform.health(name, &s.candidate).await {
                    Ok(h) => h.all_healthy(),
                    Err(_) => false,
                };
                if !healthy {
                    return Ok(());
                }
                let replaced = self.runs[name].replaced;
                let w = ((u64::from(replaced) * 100) / u64::from(replicas.max(1))) as u8;
                if !self.set_weight(name, s, w).await? {
                    return Ok(());
                }
                // `launch` (idempotent, reconciles the count) rather than `scale`: after a
                // resume the baseline may have been restarted smaller, or not at all.
                let keep = replicas - replaced;
                if let Err(e) = self.platform.launch(name, &s.baseline, keep).await
                    && keep > 0
                {
                    return self.platform_failed(name, e).await;
                }
                self.maybe_start_continuous(name, s, false).await?;
                if let Some(rt) = self.runs.get_mut(name) {
                    rt.batch = BatchPhase::Done;
                }
                self.complete_step(name).await?;
            }
            BatchPhase::Done => {}
        }
        Ok(())
    }

    pub(super) async fn set_weight(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        candidate_weight: u8,
    ) -> Result<bool, EngineError> {
        let weights = weights_of(&s.baseline, &s.candidate, candidate_weight);
        self.emit(EventKind::WeightsSet {
            service: name.to_string(),
            weights: weights.clone(),
        })?;
        if let Err(e) = self.platform.set_weights(name, &weights).await {
            self.platform_failed(name, e).await?;
            return Ok(false);
        }
        Ok(true)
    }

    pub(super) async fn platform_failed(
        &mut self,
        name: &str,
        e: crate::platform::PlatformError,
    ) -> Result<(), EngineError> {
        self.emit(EventKind::PlatformError {
            service: name.to_string(),
            message: e.message.clone(),
            fatal: !e.retryable,
        })?;
        if e.retryable {
            self.back_off(name);
            if let Some(rt) = self.runs.get_mut(name) {
                rt.entered = false;
            }
            return Ok(());
        }
        self.fail_service(name, format!("platform: {}", e.message))
            .await
    }

    /// Move on to the next step (or to promote, after `promote-all`).
    pub(super) async fn complete_step(&mut self, name: &str) -> Result<(), EngineError> {
        let weight = self.svc(name).map_or(0, |s| s.candidate_weight);
        let Some(rt) = self.runs.get_mut(name) else {
            return Ok(());
        };
        let mut next = rt.idx + 1;
        if rt.promote_all {
            let promote_at = rt.steps.iter().position(|s| s.action == Action::Promote);
            if let Some(p) = promote_at
                && next < p
            {
                next = if weight >= 100 {
                    p
                } else {
                    // The last step that moves traffic to 100 %.
                    rt.steps[..p]
                        .iter()
                        .rposition(|s| {
                            s.candidate_weight == 100
                                && matches!(
                                    s.action,
                                    Action::SetWeight { .. }
                                        | Action::Switch
                                        | Action::ReplaceBatch { .. }
                                        | Action::EcsRollingUpdate
                                )
                        })
                        .filter(|i| *i >= next)
                        .unwrap_or(p)
                };
            }
        }
        rt.idx = next;
        rt.entered = false;
        rt.retry = None;
        rt.until_ms = None;
        rt.gate_deadline_ms = None;
        if rt.idx >= rt.steps.len() {
            rt.complete = true;
        }
        Ok(())
    }
}

pub(super) fn step_is_instant(a: &Action) -> bool {
    matches!(
        a,
        Action::Launch { .. } | Action::SetWeight { .. } | Action::Switch
    )
}

/// Wait before trying a step again after a retryable platform failure: 1 s, doubling,
/// at most 30 s (a long outage costs a few journal lines a minute, not a few a second).
pub(super) fn retry_backoff_ms(attempts: u32) -> u64 {
    (1000u64 << attempts.saturating_sub(1).min(5)).min(30_000)
}
