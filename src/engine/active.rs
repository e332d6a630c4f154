//! Which services the engine's per-tick pass visits: an index kept in step with the
//! state's fold, so that a tick's work follows what is running, not the size of the
//! release (a fleet of 10,000 tenant-services has a few hundred in flight at a time).
//!
//! * `watched`: the services the pass drives and `next_wakeup` reads, by plan position.
//!   A service enters it when an event leaves it in a status other than `pending`
//!   ([`Engine::track`], called by `emit` after the fold); the pass drops it once it is
//!   *settled*: finished (promoted, rolled back, failed or skipped), its steps and cleanup
//!   complete, nothing of it running in the background, and, if promoted, only in a fleet
//!   whose ring is done (a promoted candidate stays under health checks while its ring
//!   runs or bakes; in a release without tenants, until the run ends, as always). Every
//!   way back out of settled goes through an event naming the service (a rollback, a
//!   retry), which puts it back.
//! * `open`: how many services are not finished, so `check_finished` knows without a scan.
//!
//! The linear pass (every service in plan order, the same rule) is kept beside it for the
//! equivalence test in `tests/active.rs`: both must drive the same services in the same
//! order and compute the same wake-up time.

use std::collections::{BTreeSet, HashMap};

use super::reconciler::Engine;
use super::state::{RingStatus, ServiceStatus};

/// The engine's index of the services a tick has to visit.
#[derive(Debug, Default)]
pub(super) struct ActiveIndex {
    /// Service name → its place in `Engine::order`.
    pos: HashMap<String, usize>,
    /// Plan positions of the services the pass visits (a superset of the unsettled
    /// services that are not pending; settled ones leave it lazily).
    watched: BTreeSet<usize>,
    /// Services not finished (not promoted, rolled back, failed or skipped).
    pub(super) open: usize,
    /// Test switch: run the linear pass instead (the equivalence test's reference).
    #[cfg(test)]
    pub(super) linear: bool,
}

impl Engine {
    /// Build the index from the state from scratch (a new engine, a restored one).
    pub(super) fn reindex(&mut self) {
        let pos = self
            .order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut watched = BTreeSet::new();
        let mut open = 0;
        for (i, name) in self.order.iter().enumerate() {
            let Some(s) = self.state.service(name) else {
                continue;
            };
            if !s.status.is_terminal() {
                open += 1;
            }
            if s.status != ServiceStatus::Pending {
                watched.insert(i);
            }
        }
        self.active.pos = pos;
        self.active.watched = watched;
        self.active.open = open;
    }

    /// After the fold of an event naming `name`, whose status was `before`.
    pub(super) fn track(&mut self, name: &str, before: Option<ServiceStatus>) {
        let Some(after) = self.state.service(name).map(|s| s.status) else {
            return;
        };
        let Some(&i) = self.active.pos.get(name) else {
            return;
        };
        if let Some(b) = before
            && b.is_terminal() != after.is_terminal()
        {
            if after.is_terminal() {
                self.active.open = self.active.open.saturating_sub(1);
            } else {
                self.active.open += 1;
            }
        }
        if after != ServiceStatus::Pending {
            self.active.watched.insert(i);
        }
    }

    /// Nothing is left for the pass to do with this service until an event names it again.
    fn settled(&self, name: &str) -> bool {
        let st = self.status(name);
        if !st.is_terminal() {
            return false;
        }
        let Some(rt) = self.runs.get(name) else {
            return true;
        };
        if !rt.complete || rt.busy.is_some() || !rt.retiring.is_empty() {
            return false;
        }
        st != ServiceStatus::Promoted || self.ring_done_of(name)
    }

    /// The service belongs to a tenant whose ring is done (false without tenants).
    fn ring_done_of(&self, name: &str) -> bool {
        let (Some(t), Some(f)) = (self.tenant_index_of(name), self.state.fleet.as_ref()) else {
            return false;
        };
        f.tenants
            .get(t)
            .and_then(|x| f.rings.get(x.ring))
            .is_some_and(|r| r.status == RingStatus::Done)
    }

    /// Whether the pass drives this service now.
    fn due_for_pass(&self, name: &str) -> bool {
        self.status(name) != ServiceStatus::Pending && !self.settled(name)
    }

    /// The per-tick pass: drive every service that is not pending and not settled, in
    /// plan order, visiting only the index (a service that joins it during the pass, after
    /// the one being driven, is driven in this pass too, as a scan in plan order would).
    pub(super) async fn drive_pass(&mut self) -> Result<(), super::EngineError> {
        #[cfg(test)]
        if self.active.linear {
            for name in self.order.clone() {
                if self.due_for_pass(&name) {
                    self.drive(&name).await?;
                }
            }
            return Ok(());
        }
        let mut from = 0;
        while let Some(&i) = self.active.watched.range(from..).next() {
            from = i + 1;
            let Some(name) = self.order.get(i).cloned() else {
                self.active.watched.remove(&i);
                continue;
            };
            if !self.due_for_pass(&name) {
                self.active.watched.remove(&i);
                continue;
            }
            self.drive(&name).await?;
        }
        Ok(())
    }

    /// The earliest time a service the pass visits needs the engine (health polls,
    /// timed steps, gate deadlines, retries, analysis samples), from `now`.
    pub(super) fn services_wakeup(&self, now: u64, mut t: u64) -> u64 {
        #[cfg(test)]
        if self.active.linear {
            return self.services_wakeup_of(self.order.iter(), now, t);
        }
        let names = self
            .active
            .watched
            .iter()
            .filter_map(|&i| self.order.get(i));
        t = self.services_wakeup_of(names, now, t);
        t
    }

    fn services_wakeup_of<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
        now: u64,
        mut t: u64,
    ) -> u64 {
        for name in names {
            let Some(rt) = self.runs.get(name) else {
                continue;
            };
            let st = self.status(name);
            if st == ServiceStatus::Pending || (st.is_terminal() && rt.complete) {
                continue;
            }
            t = t.min(rt.next_health_ms.max(now + 1));
            let retry_at = rt.retry.map(|(_, at)| at);
            for x in [rt.until_ms, rt.gate_deadline_ms, retry_at]
                .into_iter()
                .flatten()
            {
                t = t.min(x.max(now + 1));
            }
            for a in [&rt.analysis, &rt.continuous].into_iter().flatten() {
                t = t.min(a.next_sample_ms.max(now + 1));
            }
        }
        t
    }

    /// Some service is not finished yet.
    pub(super) fn any_open(&self) -> bool {
        #[cfg(test)]
        if self.active.linear {
            return self.state.final_statuses().is_none();
        }
        self.active.open > 0
    }
}
