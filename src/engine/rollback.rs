//! Failure and rollback: the failure policy, a rollback with its dependents, the baseline
//! taking the traffic back.

use std::collections::BTreeSet;

use crate::release::FailurePolicy;

use super::reconciler::{Engine, EngineError, weights_of};
use super::state::{EventKind, ReleaseStatus, ServiceStatus, Trigger};

impl Engine {
    /// A failure of one service: apply the release's failure policy.
    pub(super) async fn fail_service(
        &mut self,
        name: &str,
        reason: String,
    ) -> Result<(), EngineError> {
        // A tenant's failure rolls back that tenant only (`fleet.rs`).
        if self.state.on_failure != FailurePolicy::Pause
            && let Some(t) = self.tenant_index_of(name)
        {
            return self
                .rollback_tenant(t, Some(name), reason, Trigger::Automatic, false)
                .await;
        }
        match self.state.on_failure {
            FailurePolicy::Pause => {
                if let Some(rt) = self.runs.get_mut(name) {
                    rt.failure_hold = Some(reason.clone());
                    rt.analysis = None;
                    rt.continuous = None;
                    rt.paused_at_ms = Some(self.clock.now_ms());
                }
                self.emit(EventKind::Paused {
                    service: Some(name.to_string()),
                    reason: format!(
                        "failed: {reason}; on_failure = pause holds every weight: roll back, or resume to override"
                    ),
                })?;
                // With tenants, the other tenants go on.
                if self.state.status == ReleaseStatus::Running && self.fleet.is_none() {
                    self.emit(EventKind::Paused {
                        service: None,
                        reason: format!("{name} failed"),
                    })?;
                }
                Ok(())
            }
            FailurePolicy::RollbackDependents => {
                self.rollback_with_dependents(name, reason, Trigger::Automatic)
                    .await
            }
            FailurePolicy::RollbackRelease => {
                self.rollback_release(Some(name), reason, Trigger::Automatic)
                    .await
            }
        }
    }

    pub(super) fn dependents_closure(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            for d in self
                .runs
                .get(&n)
                .map(|rt| rt.dependents.clone())
                .unwrap_or_default()
            {
                if out.insert(d.clone()) {
                    stack.push(d);
                }
            }
        }
        out
    }

    pub(super) fn changed(&self, name: &str) -> bool {
        let st = self.status(name);
        st.is_active()
            || (st == ServiceStatus::Promoted && self.svc(name).is_some_and(|s| s.baseline_running))
    }

    /// Roll back `name` and every dependent already changed, dependents first.
    pub(super) async fn rollback_with_dependents(
        &mut self,
        name: &str,
        reason: String,
        trigger: Trigger,
    ) -> Result<(), EngineError> {
        let deps = self.dependents_closure(name);
        for d in self.order.clone().iter().rev() {
            if deps.contains(d) && self.changed(d) {
                self.rollback_one(
                    d,
                    format!("depends on {name}, which is rolling back"),
                    Trigger::Policy {
                        failed: name.to_string(),
                    },
                )
                .await?;
            }
        }
        self.rollback_one(name, reason, trigger).await
    }

    /// Roll back everything changed, in reverse order; skip what has not started.
    pub(super) async fn rollback_release(
        &mut self,
        failed: Option<&str>,
        reason: String,
        trigger: Trigger,
    ) -> Result<(), EngineError> {
        for d in self.order.clone().iter().rev() {
            if Some(d.as_str()) == failed {
                self.rollback_one(d, reason.clone(), trigger.clone())
                    .await?;
            } else if self.changed(d) {
                let (why, t) = match failed {
                    Some(f) => (
                        format!("release rolls back after {f} failed"),
                        Trigger::Policy {
                            failed: f.to_string(),
                        },
                    ),
                    None => (reason.clone(), trigger.clone()),
                };
                self.rollback_one(d, why, t).await?;
            } else if self.status(d) == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: d.clone(),
                    reason: "the release is rolling back".into(),
                })?;
            }
        }
        Ok(())
    }

    /// Traffic back to the baseline first; the candidate is retired after.
    pub(super) async fn rollback_one(
        &mut self,
        name: &str,
        reason: String,
        trigger: Trigger,
    ) -> Result<(), EngineError> {
        let Some(s) = self.svc_shared(name) else {
            return Ok(());
        };
        if matches!(
            s.status,
            ServiceStatus::RollingBack | ServiceStatus::RolledBack
        ) {
            return Ok(());
        }
        if self.migration_blocks_rollback(name, &reason)? {
            return Ok(());
        }
        self.emit(EventKind::RollbackStarted {
            service: name.to_string(),
            reason: reason.clone(),
            trigger,
        })?;
        if let Some(rt) = self.runs.get_mut(name) {
            rt.analysis = None;
            rt.continuous = None;
            rt.busy = None;
            rt.generation += 1;
            rt.failure_hold = None;
            rt.paused_by_operator = false;
            rt.rollback_waiting = true;
            rt.entered = false;
            rt.retry = None;
        }
        self.continue_rollback(name).await
    }

    /// The baseline must be able to take the traffic back (rolling scaled it down):
    /// scale it up if needed; true once it is at size with a healthy instance.
    pub(super) async fn baseline_can_take_traffic(
        &mut self,
        name: &str,
        baseline: &str,
    ) -> Result<bool, EngineError> {
        let replicas = self.runs[name].replicas;
        Ok(match self.platform.health(name, baseline).await {
            Ok(h) if h.desired >= replicas && h.healthy() > 0 => true,
            Ok(h) => {
                if h.desired < replicas
                    && let Err(e) = self.platform.launch(name, baseline, replicas).await
                {
                    self.platform_warning(name, e)?;
                }
                h.healthy() > 0 && h.desired >= replicas
            }
            Err(_) => {
                if let Err(e) = self.platform.launch(name, baseline, replicas).await {
                    self.platform_warning(name, e)?;
                }
                false
            }
        })
    }

    pub(super) async fn continue_rollback(&mut self, name: &str) -> Result<(), EngineError> {
        let Some(s) = self.svc_shared(name) else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        if self.runs[name].retry.is_some_and(|(_, at)| now < at) {
            return Ok(()); // backing off after a platform failure
        }
        let reason = s.reason.clone().unwrap_or_default();
        if !s.baseline_running {
            self.emit(EventKind::Failed {
                service: name.to_string(),
                reason: format!(
                    "{reason}; cannot roll back: the baseline {} was already retired (roll forward, or deploy it again)",
                    s.baseline
                ),
            })?;
            return Ok(());
        }
        // When no traffic reached the candidate (as far as the journal knows), the baseline
        // never gave any up and needs no check. The weights are set again either way: the
        // journal records them before the call, so after a failed call it may say more
        // than the platform did.
        let untouched = !s.candidate_running
            || (s.candidate_weight == 0 && s.weights.iter().all(|(r, _)| *r != s.candidate));
        if !untouched && !self.baseline_can_take_traffic(name, &s.baseline).await? {
            return Ok(());
        }
        let w = weights_of(&s.baseline, &s.candidate, 0);
        self.emit(EventKind::WeightsSet {
            service: name.to_string(),
            weights: w.clone(),
        })?;
        if let Err(e) = self.platform.set_weights(name, &w).await {
            self.platform_warning(name, e)?;
            return Ok(());
        }
        self.emit(EventKind::RolledBack {
            service: name.to_string(),
            reason,
        })?;
        if s.candidate_running {
            self.spawn_retire(name, &s.candidate);
        }
        if let Some(rt) = self.runs.get_mut(name) {
            rt.rollback_waiting = false;
            rt.retry = None;
            rt.complete = true;
        }
        Ok(())
    }
}
