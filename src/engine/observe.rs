//! What the engine watches while a service rolls out: the health of its revisions and the
//! analyses (judges), and what a failed check does.

use std::time::Duration;

use crate::judge::Outcome;
use crate::plan::{Action, PlanStep};
use crate::platform::RevisionHealth;
use crate::release::{OnInconclusive, StrategyKind};

use super::analysis::{AnalysisRun, judge_config, sample_every};
use super::reconciler::{Engine, EngineError, ms, problem_of};
use super::state::{EventKind, Gate, GateKind, HealthSummary, ServiceStatus};

impl Engine {
    /// Poll the health of the service at plan position `i` (named `name`): the per-tick
    /// pass calls it for thousands of promoted services a second in a large ring, so the
    /// common path reads by position, never by name.
    pub(super) async fn poll_health_at(&mut self, i: usize, name: &str) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        // The service's state as shared with the snapshot (no copy).
        let Some(s) = self.svc_shared_at(i, name) else {
            return Ok(());
        };
        let Some(rt) = self.runs.at_mut(i) else {
            return Ok(());
        };
        let interval = ms(rt.spec.health.interval.0).max(50);
        let unhealthy_after = rt.spec.health.unhealthy_after.max(1);
        rt.next_health_ms = now + interval;
        if !s.candidate_running {
            return Ok(());
        }
        let cand = self.platform.health(name, &s.candidate).await;
        let base = if s.baseline_running {
            self.platform.health(name, &s.baseline).await.ok()
        } else {
            None
        };
        match cand {
            Err(e) => {
                let errors = {
                    let Some(rt) = self.runs.at_mut(i) else {
                        return Ok(());
                    };
                    rt.health_errors += 1;
                    rt.health_errors
                };
                if errors >= unhealthy_after {
                    return self
                        .fail_service(
                            name,
                            format!(
                                "health of {} could not be read {errors} times: {}",
                                s.candidate, e.message
                            ),
                        )
                        .await;
                }
            }
            Ok(h) => {
                let summary = HealthSummary {
                    candidate_healthy: h.healthy(),
                    candidate_desired: h.desired,
                    baseline_healthy: base.as_ref().map_or(0, RevisionHealth::healthy),
                    baseline_desired: base.as_ref().map_or(0, |b| b.desired),
                    problem: problem_of(&h),
                    at_ms: now,
                };
                let changed = {
                    let Some(rt) = self.runs.at_mut(i) else {
                        return Ok(());
                    };
                    rt.health_errors = 0;
                    // Unchanged but for the time: keep the summary, move its time (no copy;
                    // the common case, thousands of times a second in a large ring).
                    match rt.last_health.as_mut() {
                        Some(old) if old.same_but_time(&summary) => {
                            old.at_ms = now;
                            false
                        }
                        _ => {
                            rt.last_health = Some(summary.clone());
                            true
                        }
                    }
                };
                if changed {
                    self.emit(EventKind::Health {
                        service: name.to_string(),
                        summary: summary.clone(),
                    })?;
                }
                if let Some(p) = summary.problem {
                    if s.status != ServiceStatus::Promoted {
                        return self
                            .fail_service(name, format!("candidate {} health: {p}", s.candidate))
                            .await;
                    }
                    // Promoted: go back while the old revision is still warm; once it is
                    // gone, restart what failed.
                    let warm =
                        s.baseline_running && !self.runs[name].retiring.contains(&s.baseline);
                    if warm {
                        return self
                            .fail_service(
                                name,
                                format!("after promotion, while {} was kept warm, candidate {} health: {p}", s.baseline, s.candidate),
                            )
                            .await;
                    }
                    // A tenant's bake: the failure counts against the budget (`fleet.rs`).
                    if self
                        .fleet_bake_failure(name, &format!("candidate {} health: {p}", s.candidate))
                        .await?
                    {
                        return Ok(());
                    }
                    let replicas = self.runs[name].replicas;
                    self.emit(EventKind::PlatformError {
                        service: name.to_string(),
                        message: format!(
                            "{p}; the old revision is retired, restarting {}",
                            s.candidate
                        ),
                        fatal: false,
                    })?;
                    if let Err(e) = self.platform.launch(name, &s.candidate, replicas).await {
                        self.emit(EventKind::PlatformError {
                            service: name.to_string(),
                            message: e.message,
                            fatal: !e.retryable,
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sample the analyses of the service at plan position `i` (named `name`) that are due.
    pub(super) async fn poll_analysis_at(
        &mut self,
        i: usize,
        name: &str,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let weight = self.svc_at(i, name).map_or(0, |s| s.candidate_weight);
        for continuous in [false, true] {
            let due = self.runs.at(i).is_some_and(|rt| {
                let a = if continuous {
                    &rt.continuous
                } else {
                    &rt.analysis
                };
                a.as_ref().is_some_and(|a| a.next_sample_ms <= now)
            });
            if !due {
                continue;
            }
            let result = {
                let Some(rt) = self.runs.at_mut(i) else {
                    return Ok(());
                };
                let a = if continuous {
                    &mut rt.continuous
                } else {
                    &mut rt.analysis
                };
                match a.as_mut() {
                    Some(a) => a.sample(now, weight).await,
                    None => Ok(Default::default()),
                }
            };
            match result {
                Err(e) => {
                    self.emit(EventKind::PlatformError {
                        service: name.to_string(),
                        message: format!("metrics: {e}"),
                        fatal: false,
                    })?;
                }
                Ok(sampled) => {
                    if let Some((window, baseline_p99_ms, candidate_p99_ms)) = sampled.window {
                        self.emit(EventKind::AnalysisSample {
                            service: name.to_string(),
                            window,
                            baseline_p99_ms,
                            candidate_p99_ms,
                        })?;
                    }
                    let Some(v) = sampled.verdict else { continue };
                    let fail = v.outcome == Outcome::Fail;
                    let summary = v.summary.clone();
                    self.emit(EventKind::Verdict {
                        service: name.to_string(),
                        verdict: v,
                    })?;
                    if fail {
                        return self
                            .fail_service(name, format!("analysis failed: {summary}"))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) async fn start_analysis(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        cfg: crate::judge::AnalysisConfig,
        duration_ms: u64,
        continuous: bool,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let every = sample_every(Duration::from_millis(duration_ms));
        match AnalysisRun::start(
            self.platform.metrics(),
            name,
            &s.baseline,
            &s.candidate,
            cfg,
            every,
            now,
        )
        .await
        {
            Ok(run) => {
                if let Some(rt) = self.runs.get_mut(name) {
                    if continuous {
                        rt.continuous = Some(run);
                    } else {
                        rt.analysis = Some(run);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.fail_service(name, format!("cannot start the analysis: {e}"))
                    .await
            }
        }
    }

    /// Linear and rolling judge throughout, from the first traffic on the candidate.
    pub(super) async fn maybe_start_continuous(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        force: bool,
    ) -> Result<(), EngineError> {
        let rt = &self.runs[name];
        if rt.continuous.is_some()
            || !matches!(s.strategy, StrategyKind::Linear | StrategyKind::Rolling)
            || (rt.spec.analysis.is_none() && !force)
        {
            return Ok(());
        }
        let total: u64 = rt
            .steps
            .iter()
            .map(|st| st.min_duration_ms)
            .sum::<u64>()
            .max(1000);
        let cfg = judge_config(
            rt.spec.analysis.as_ref(),
            false,
            Duration::from_millis(total),
        );
        let mut fresh = s.clone();
        fresh.candidate_weight = self.svc(name).map_or(0, |x| x.candidate_weight);
        self.start_analysis(name, &fresh, cfg, total, true).await
    }

    /// The end of a timed analysis (or bake): pass moves on, fail rolls back, inconclusive
    /// pauses or extends and says why.
    pub(super) async fn end_analysis(
        &mut self,
        name: &str,
        step: &PlanStep,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let rt = &self.runs[name];
        let is_canary = rt.spec.strategy == StrategyKind::Canary;
        let run = rt.analysis.as_ref().or(rt.continuous.as_ref());
        let Some(run) = run else {
            return self.complete_step(name).await;
        };
        let verdict = run.verdict(now);
        let outcome = run.outcome();
        // Intermediate holds of linear/rolling only need "not failed"; the last analysis
        // before full traffic (and every canary analysis, and the bake) needs a pass.
        let last_before_full = rt.steps[rt.idx + 1..]
            .iter()
            .take_while(|st| st.action != Action::Promote)
            .all(|st| !matches!(st.action, Action::Analysis { .. }));
        let needs_pass =
            is_canary || matches!(step.action, Action::Bake { .. }) || last_before_full;
        match outcome {
            Outcome::Fail => {
                let summary = verdict.summary.clone();
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                self.fail_service(name, format!("analysis failed: {summary}"))
                    .await
            }
            Outcome::Pass => {
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                if let Some(rt) = self.runs.get_mut(name) {
                    rt.analysis = None;
                    if matches!(step.action, Action::Bake { .. }) {
                        rt.continuous = None;
                    }
                }
                self.complete_step(name).await
            }
            Outcome::Inconclusive if !needs_pass => self.complete_step(name).await,
            Outcome::Inconclusive => {
                let on = rt
                    .spec
                    .analysis
                    .as_ref()
                    .map_or(OnInconclusive::Pause, |a| a.on_inconclusive);
                if rt.extending {
                    return Ok(());
                }
                let summary = verdict.summary.clone();
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                match on {
                    OnInconclusive::Extend => {
                        // Keep analysing until a verdict or the progress deadline.
                        if let Some(rt) = self.runs.get_mut(name) {
                            rt.extending = true;
                            rt.until_ms = None;
                            rt.step_started_ms = now;
                        }
                        Ok(())
                    }
                    OnInconclusive::Pause => {
                        if let Some(rt) = self.runs.get_mut(name) {
                            rt.until_ms = None;
                        }
                        let gate = Gate {
                            kind: GateKind::Promote,
                            since_ms: now,
                            deadline_ms: None,
                        };
                        self.emit(EventKind::GateWaiting {
                            service: name.to_string(),
                            gate,
                            reason: format!(
                                "analysis inconclusive, not a pass: {summary}; promote to accept, rollback to reject"
                            ),
                        })
                    }
                }
            }
        }
    }
}
