//! Starting and resuming: every baseline up before the first step, and on resume every
//! journaled revision relaunched at its journaled weights.

use std::sync::Arc;

use crate::plan::Plan;
use crate::platform::Platform;
use crate::release::{Release, StrategyKind};

use super::clock::Clock;
use super::reconciler::{
    Engine, EngineError, EngineOptions, ms, problem_of, trigger_text, weights_of,
};
use super::recorder::Recorder;
use super::service_run::ServiceRun;
use super::smoke::SmokeTester;
use super::state::{Event, EventKind, ReleaseState, ServiceState, ServiceStatus};

impl Engine {
    /// Rebuild an engine from a journal's events (`cutover resume`): the state is the fold
    /// of the events; revisions are relaunched at their journaled weights on the next tick,
    /// and each unfinished service restarts its current step.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        release: Release,
        plan: &Plan,
        platform: Arc<dyn Platform>,
        clock: Arc<dyn Clock>,
        recorder: Box<dyn Recorder>,
        smoke: Arc<dyn SmokeTester>,
        options: EngineOptions,
        events: &[Event],
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine::bare(release, plan, platform, clock, recorder, smoke, options)?;
        engine.state = ReleaseState::replay(events);
        engine.seq = engine.state.last_seq;
        engine.reindex();
        for e in events {
            if let EventKind::RollbackStarted {
                service, trigger, ..
            } = &e.kind
            {
                engine
                    .rollbacks
                    .insert(service.clone(), (trigger_text(trigger), e.at_ms));
            }
        }
        if engine.state.services.len() != engine.order.len() {
            return Err(EngineError::Setup(format!(
                "the journal describes {} service(s) but the release file has {}; resume needs the same release file",
                engine.state.services.len(),
                engine.order.len()
            )));
        }
        let now = engine.clock.now_ms();
        for s in engine.state.services.clone() {
            let Some(rt) = engine.runs.get_mut(&s.name) else {
                return Err(EngineError::UnknownService(s.name.clone()));
            };
            rt.idx = s.step.saturating_sub(1);
            rt.entered = false;
            rt.step_started_ms = now;
            // Rolling batches restart from the journaled weight.
            rt.replaced = (u32::from(s.candidate_weight) * rt.replicas).div_ceil(100);
            if s.status == ServiceStatus::Paused && s.gate.is_none() {
                rt.paused_by_operator = true;
            }
            if s.status == ServiceStatus::Promoted && !s.cleanup_pending {
                rt.complete = true;
            }
            if s.status == ServiceStatus::RollingBack {
                rt.rollback_waiting = true;
            }
            restore_partial_approvals(rt, &s);
        }
        engine.restore = true;
        engine.fleet_restore()?;
        let operator = engine.options.operator.clone();
        engine.emit(EventKind::EngineRestarted {
            operator,
            note: format!("resuming from event {}", engine.seq),
        })?;
        Ok(engine)
    }

    /// Before the first step: every baseline runs and takes all traffic. On resume, every
    /// journaled revision is relaunched and the journaled weights are set again.
    pub(super) async fn bootstrap(&mut self) -> Result<(), EngineError> {
        let inventory = self.platform.inventory().await.unwrap_or_default();
        let mut want: Vec<(String, String, u32, bool)> = Vec::new(); // service, revision, replicas, is_candidate
        let order = self.order.clone();
        for name in order.iter() {
            let name = name.clone();
            let s = self.state.service(&name).cloned();
            let Some(s) = s else { continue };
            let rt = &self.runs[&name];
            let replicas = rt.replicas;
            let baseline_needed = !self.restore || baseline_relaunched(&s);
            if baseline_needed {
                let baseline_replicas = if s.strategy == StrategyKind::Rolling && self.restore {
                    replicas.saturating_sub(rt.replaced).max(
                        u32::from(
                            s.status == ServiceStatus::RollingBack
                                || s.status == ServiceStatus::RolledBack,
                        ) * replicas,
                    )
                } else {
                    replicas
                };
                if baseline_replicas > 0 {
                    want.push((name.clone(), s.baseline.clone(), baseline_replicas, false));
                }
            }
            if self.restore && candidate_relaunched(&s) {
                let n =
                    if s.strategy == StrategyKind::Rolling && s.status != ServiceStatus::Promoted {
                        self.runs[&name].replaced.max(1)
                    } else {
                        replicas
                    };
                want.push((name.clone(), s.candidate.clone(), n, true));
            }
        }
        for (service, revision, replicas, _) in &want {
            let running = inventory.iter().any(|r| {
                &r.service == service && &r.revision == revision && r.replicas >= *replicas
            });
            if !running && let Err(e) = self.platform.launch(service, revision, *replicas).await {
                self.emit(EventKind::PlatformError {
                    service: service.clone(),
                    message: e.message.clone(),
                    fatal: true,
                })?;
                return Err(EngineError::Setup(format!(
                    "cannot start {service} {revision}: {}",
                    e.message
                )));
            }
        }
        // Wait until every revision wanted has a healthy instance (bounded).
        let deadline = self.clock.now_ms() + ms(self.options.bootstrap_timeout);
        loop {
            let mut missing = Vec::new();
            for (service, revision, _, _) in &want {
                match self.platform.health(service, revision).await {
                    Ok(h) if h.all_healthy() => {}
                    Ok(h) => missing.push(format!(
                        "{service} {revision} ({}/{} healthy{})",
                        h.healthy(),
                        h.desired,
                        problem_of(&h).map(|p| format!(", {p}")).unwrap_or_default()
                    )),
                    Err(e) => missing.push(format!("{service} {revision} ({})", e.message)),
                }
            }
            if missing.is_empty() {
                break;
            }
            if self.clock.now_ms() >= deadline {
                return Err(EngineError::Setup(format!(
                    "revisions did not become healthy within {:?}: {}",
                    self.options.bootstrap_timeout,
                    missing.join("; ")
                )));
            }
            let at = self.clock.now_ms() + 100;
            self.clock.sleep_until(at).await;
        }
        let order = self.order.clone();
        for name in order.iter() {
            let name = name.clone();
            let Some(s) = self.state.service(&name).cloned() else {
                continue;
            };
            let fresh = !self.restore || never_bootstrapped(&s);
            let weights = if self.restore && !s.weights.is_empty() {
                match s.status {
                    ServiceStatus::RollingBack
                    | ServiceStatus::RolledBack
                    | ServiceStatus::Skipped => weights_of(&s.baseline, &s.candidate, 0),
                    _ => s.weights.clone(),
                }
            } else if !fresh && !s.baseline_running {
                weights_of(&s.baseline, &s.candidate, 100)
            } else {
                weights_of(&s.baseline, &s.candidate, 0)
            };
            self.emit(EventKind::WeightsSet {
                service: name.clone(),
                weights: weights.clone(),
            })?;
            if let Err(e) = self.platform.set_weights(&name, &weights).await {
                return Err(EngineError::Setup(format!(
                    "cannot set the weights of {name}: {}",
                    e.message
                )));
            }
            if fresh {
                self.emit(EventKind::BaselineReady {
                    service: name.clone(),
                    revision: s.baseline.clone(),
                })?;
            }
            if self.restore
                && s.status == ServiceStatus::RollingBack
                && let Some(rt) = self.runs.get_mut(&name)
            {
                rt.rollback_waiting = true;
            }
            if self.restore && s.status == ServiceStatus::RolledBack && s.candidate_running {
                self.spawn_retire(&name, &s.candidate);
            }
        }
        self.restore = false;
        Ok(())
    }
}

/// Approvals of the waiting gate recorded before a crash count after resume: the state
/// fold kept who approved; the gate is re-entered at the same step index.
pub(super) fn restore_partial_approvals(rt: &mut ServiceRun, s: &crate::engine::ServiceState) {
    if s.status == ServiceStatus::AwaitingApproval {
        rt.approvers = s.approvals.iter().map(|w| (rt.idx, w.clone())).collect();
    }
}

/// A service the interrupted run had not yet started (killed during the first bootstrap,
/// before its baseline was journaled ready): resume starts it as a fresh run would.
/// On resume: the revisions the journal says ran, which the engine launches again on a
/// machine where they do not run (`(service, revision)`, in the release's order). A
/// standby that took a run over says these (`session/standby.rs`).
pub fn relaunched_on_resume(state: &ReleaseState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in &state.services {
        if baseline_relaunched(s) {
            out.push((s.name.clone(), s.baseline.clone()));
        }
        if candidate_relaunched(s) {
            out.push((s.name.clone(), s.candidate.clone()));
        }
    }
    out
}

fn baseline_relaunched(s: &ServiceState) -> bool {
    s.baseline_running || never_bootstrapped(s)
}

fn candidate_relaunched(s: &ServiceState) -> bool {
    s.candidate_running && !matches!(s.status, ServiceStatus::RolledBack | ServiceStatus::Skipped)
}

pub(super) fn never_bootstrapped(s: &ServiceState) -> bool {
    s.status == ServiceStatus::Pending && !s.baseline_running && !s.candidate_running
}
