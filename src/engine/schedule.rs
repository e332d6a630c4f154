//! Which services start when: dependencies, waves, `max_parallel`; and when the release is
//! finished.

use super::background::Busy;
use super::reconciler::{Engine, EngineError};
use super::state::{EventKind, ReleaseStatus, ServiceStatus};

impl Engine {
    /// Start services whose dependencies are promoted, up to `max_parallel` at once; skip
    /// those whose dependencies can no longer promote.
    pub(super) async fn schedule(&mut self) -> Result<(), EngineError> {
        if self.state.status != ReleaseStatus::Running {
            return Ok(());
        }
        if self.fleet.is_some() {
            // Each tenant in flight is a release of its own: its waves, its max_parallel.
            for at in self.fleet_schedulable() {
                self.schedule_group(&at).await?;
            }
            return Ok(());
        }
        let all: Vec<usize> = (0..self.order.len()).collect();
        self.schedule_group(&all).await
    }

    /// [`Engine::schedule`] over one group of services (the release, or one tenant's),
    /// given by plan position: a fleet runs this for every tenant in flight at every tick.
    async fn schedule_group(&mut self, at: &[usize]) -> Result<(), EngineError> {
        let max = self.state.max_parallel.max(1) as usize;
        // The names, shared: no copy of a name per pending service.
        let order = self.order.clone();
        let group = || at.iter().filter_map(|&i| self.svc_at(i, order.get(i)?));
        // Waves are barriers (see the plan): a wave starts once every service of the
        // earlier waves has finished (promoted, or rolled back / skipped / failed).
        let open_wave = group()
            .filter(|s| !s.status.is_terminal())
            .map(|s| s.wave)
            .min()
            .unwrap_or(usize::MAX);
        let mut active = group().filter(|s| s.status.is_active()).count();
        for &i in at {
            if self.status_at(i) != ServiceStatus::Pending {
                continue;
            }
            let Some(name) = order.get(i) else {
                continue;
            };
            // The first dependency that can no longer promote, or whether all promoted.
            let (bad, ready) = {
                let Some(deps) = self.active.deps.get(i) else {
                    continue;
                };
                let of =
                    |d: &Option<usize>| d.map_or(ServiceStatus::Skipped, |d| self.status_at(d));
                let bad = deps.iter().position(|d| {
                    matches!(
                        of(d),
                        ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::Skipped
                    )
                });
                let ready = deps.iter().all(|d| of(d) == ServiceStatus::Promoted);
                (bad, ready)
            };
            if let Some(k) = bad {
                let dep = self.runs[name]
                    .spec
                    .depends_on
                    .get(k)
                    .cloned()
                    .unwrap_or_default();
                let reason = format!("dependency {dep} {}", self.status(&dep));
                self.emit(EventKind::Skipped {
                    service: name.clone(),
                    reason,
                })?;
                continue;
            }
            if !ready {
                continue;
            }
            if !self.runs[name].retiring.is_empty() {
                continue;
            }
            if self.svc(name).is_some_and(|s| s.wave > open_wave) {
                continue;
            }
            if self.migration_holds(name) {
                continue;
            }
            if active >= max {
                break;
            }
            if self.frozen_now()? {
                break;
            }
            let now = self.clock.now_ms();
            if let Some(rt) = self.runs.get_mut(name) {
                rt.reset_run();
                rt.step_started_ms = now;
                rt.next_health_ms = now;
            }
            self.emit(EventKind::ServiceStarted {
                service: name.clone(),
            })?;
            active += 1;
        }
        Ok(())
    }

    pub(super) fn check_finished(&mut self) -> Result<(), EngineError> {
        if self.state.status == ReleaseStatus::Finished || self.any_open() {
            return Ok(());
        }
        let Some(services) = self.state.final_statuses() else {
            return Ok(());
        };
        if self
            .runs
            .values()
            .any(|rt| rt.busy == Some(Busy::CrossCheck))
            || self.migrations_pending()
            || self.fleet_pending()
        {
            return Ok(());
        }
        let exit_code = self.state.exit_code();
        self.emit(EventKind::ReleaseFinished {
            services,
            exit_code,
        })?;
        Ok(())
    }

    /// The wave that starts next (`usize::MAX` when every service finished).
    pub(super) fn open_wave(&self) -> usize {
        self.state
            .services
            .iter()
            .filter(|s| !s.status.is_terminal())
            .map(|s| s.wave)
            .min()
            .unwrap_or(usize::MAX)
    }
}
