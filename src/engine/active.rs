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
//! * `parked`: promoted services whose steps are all done and that only wait for their
//!   next health poll (a fleet keeps them under health checks while their ring runs or
//!   bakes: thousands at a time, each polled every few seconds). For them a visit before
//!   `next_health_ms` does nothing, so instead of visiting them at every tick the pass
//!   parks them in a queue keyed by that time and puts them back into `watched` at the first
//!   pass at or after it. An event naming a parked service puts it back at once (its queue
//!   entry goes stale and is ignored when it comes out). They never set a wake-up (a
//!   finished service's health poll waits for the next tick, as before), so parking
//!   changes which services a tick *looks at*, not what it does.
//! * `waking`: the same for promoted services keeping their old revision warm
//!   (`keep_old`): a visit before their next health poll or the end of the step does
//!   nothing. Unlike the others they set a wake-up, so `services_wakeup` reads the
//!   earliest live entry of this queue as the linear pass would read the service.
//! * `open`: how many services are not finished, so `check_finished` knows without a scan.
//!
//! The linear pass (every service in plan order, the same rule) is kept beside it for the
//! equivalence test in `tests/active.rs`: both must drive the same services in the same
//! order and compute the same wake-up time.

use std::collections::BTreeMap;

use crate::plan::Action;

use super::reconciler::Engine;
use super::state::{RingStatus, ServiceStatus};

/// The engine's index of the services a tick has to visit.
#[derive(Debug, Default)]
pub(super) struct ActiveIndex {
    /// Plan positions of the services the pass visits (a superset of the unsettled
    /// services that are not pending; settled ones leave it lazily).
    watched: PosSet,
    /// Parked services by the time of their next health poll, earliest first. Services
    /// polled in one pass share that time (now + the interval), so a time holds many
    /// positions and parking or waking one costs a push or a pop, not a heap's sift. An
    /// entry is live only while `parked_at[position]` holds the same time.
    parked: BTreeMap<u64, Vec<usize>>,
    /// Parked services that set a wake-up at the time they are parked until (a promoted
    /// service keeping its old revision warm: see [`Engine::parkable`]).
    waking: BTreeMap<u64, Vec<usize>>,
    /// Per plan position: the time it is parked until, if parked.
    parked_at: Vec<Option<u64>>,
    /// `ReleaseState::services[i]` is the service at plan position `i`, for every `i`
    /// (true in every state folded from a `ReleaseLoaded` of this plan): the pass reads a
    /// status by position instead of by name.
    aligned: bool,
    /// Services not finished (not promoted, rolled back, failed or skipped).
    pub(super) open: usize,
    /// Per plan position: the plan positions of the service's dependencies, in
    /// `depends_on` order (`None` for a name not in the plan), so that `schedule` reads
    /// their statuses without a lookup by name. Fixed with the plan ([`ActiveIndex::new`]).
    pub(super) deps: Vec<Vec<Option<usize>>>,
    /// Test switch: run the linear pass instead (the equivalence test's reference).
    #[cfg(test)]
    pub(super) linear: bool,
}

impl ActiveIndex {
    /// An empty index for the services of `runs` (their dependencies resolved to plan
    /// positions once).
    pub(super) fn new(runs: &super::runs::Runs) -> Self {
        let deps = runs
            .values()
            .map(|rt| {
                rt.spec
                    .depends_on
                    .iter()
                    .map(|d| runs.position(d))
                    .collect()
            })
            .collect();
        ActiveIndex {
            deps,
            ..Default::default()
        }
    }
}

impl Engine {
    /// Build the index from the state from scratch (a new engine, a restored one).
    pub(super) fn reindex(&mut self) {
        let mut watched = PosSet::with_len(self.order.len());
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
        self.active.aligned = self.state.services.len() == self.order.len()
            && self
                .state
                .services
                .iter()
                .zip(self.order.iter())
                .all(|(s, n)| s.name == *n);
        self.active.watched = watched;
        self.active.parked.clear();
        self.active.waking.clear();
        self.active.parked_at = vec![None; self.order.len()];
        self.active.open = open;
    }

    /// After the fold of an event naming `name`, whose status was `before`.
    pub(super) fn track(&mut self, name: &str, before: Option<ServiceStatus>) {
        let Some(i) = self.runs.position(name) else {
            return;
        };
        let Some(after) = self.status_known_at(i) else {
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
            if let Some(p) = self.active.parked_at.get_mut(i) {
                *p = None;
            }
        }
    }

    /// The status of the service at plan position `i`, if the state knows it.
    pub(super) fn status_known_at(&self, i: usize) -> Option<ServiceStatus> {
        if self.active.aligned {
            return self.state.services.get(i).map(|s| s.status);
        }
        self.state.service(self.order.get(i)?).map(|s| s.status)
    }

    /// [`Engine::svc_shared`] of the service at plan position `i`, named `name`.
    pub(super) fn svc_shared_at(
        &self,
        i: usize,
        name: &str,
    ) -> Option<std::sync::Arc<super::state::ServiceState>> {
        if self.active.aligned {
            return self.state.services.get(i).cloned();
        }
        self.svc_shared(name)
    }

    /// [`Engine::svc`] of the service at plan position `i`, named `name`.
    pub(super) fn svc_at(&self, i: usize, name: &str) -> Option<&super::state::ServiceState> {
        if self.active.aligned {
            return self.state.services.get(i).map(|s| &**s);
        }
        self.svc(name)
    }

    /// As [`Engine::status`], by plan position.
    pub(super) fn status_at(&self, i: usize) -> ServiceStatus {
        self.status_known_at(i).unwrap_or(ServiceStatus::Skipped)
    }

    /// Nothing is left for the pass to do with this service until an event names it again.
    fn settled(&self, i: usize) -> bool {
        let st = self.status_at(i);
        if !st.is_terminal() {
            return false;
        }
        let Some(rt) = self.runs.at(i) else {
            return true;
        };
        if !rt.complete || rt.busy.is_some() || !rt.retiring.is_empty() {
            return false;
        }
        st != ServiceStatus::Promoted || self.ring_done_at(i)
    }

    /// The service belongs to a tenant whose ring is done (false without tenants).
    fn ring_done_at(&self, i: usize) -> bool {
        let (Some(rt), Some(f)) = (self.fleet.as_ref(), self.state.fleet.as_ref()) else {
            return false;
        };
        rt.tenant_at
            .get(i)
            .copied()
            .flatten()
            .and_then(|t| f.tenants.get(t))
            .and_then(|x| f.rings.get(x.ring))
            .is_some_and(|r| r.status == RingStatus::Done)
    }

    /// Whether the pass drives this service now.
    fn due_for_pass(&self, i: usize) -> bool {
        self.status_at(i) != ServiceStatus::Pending && !self.settled(i)
    }

    /// Whether a visit to this service before some time does nothing, and that time if it
    /// is still to come: `(until, wakes)`. Two cases:
    /// * promoted and every step (cleanup included) done: all `drive` does for it is a
    ///   health poll at `next_health_ms`. It sets no wake-up (`services_wakeup` skips a
    ///   finished, complete service), so `wakes` is false;
    /// * promoted and keeping its old revision warm (`keep_old`, entered, nothing in the
    ///   background): `drive` polls health at `next_health_ms` and completes the step at
    ///   `until_ms`, nothing else (a promoted service has no progress deadline and no
    ///   analysis to sample). Its wake-up ([`Engine::wake_of`]) is at or before both, so
    ///   it parks until then and `wakes`: `services_wakeup` counts it from the queue.
    ///   Everything that moves those times goes through an event naming the service
    ///   (which unparks it) or `unfreeze` (which unparks what it shifts).
    fn parkable(&self, i: usize, now: u64) -> Option<(u64, bool)> {
        if self.status_at(i) != ServiceStatus::Promoted {
            return None;
        }
        let rt = self.runs.at(i)?;
        let (until, wakes) = match rt.step() {
            None if rt.complete => (rt.next_health_ms, false),
            Some(step)
                if matches!(step.action, Action::KeepOld { .. })
                    && rt.entered
                    && rt.busy.is_none()
                    && rt.until_ms.is_some() =>
            {
                (self.wake_of(i)?, true)
            }
            _ => return None,
        };
        (until > now).then_some((until, wakes))
    }

    /// Promoted and complete: `drive` would only poll its health.
    fn only_polled(&self, i: usize) -> bool {
        self.status_at(i) == ServiceStatus::Promoted
            && self
                .runs
                .at(i)
                .is_some_and(|rt| rt.complete && rt.step().is_none())
    }

    /// Park a service until `until` (see the module's notes).
    fn park(&mut self, i: usize, until: u64, wakes: bool) {
        self.active.watched.remove(i);
        if let Some(p) = self.active.parked_at.get_mut(i) {
            *p = Some(until);
            let queue = if wakes {
                &mut self.active.waking
            } else {
                &mut self.active.parked
            };
            queue.entry(until).or_default().push(i);
        }
    }

    /// Whether the service is parked now (tests).
    #[cfg(test)]
    pub(super) fn is_parked(&self, name: &str) -> bool {
        self.runs
            .position(name)
            .and_then(|i| self.active.parked_at.get(i).copied().flatten())
            .is_some()
    }

    /// Put a parked service back into the pass now (its queue entry goes stale).
    pub(super) fn unpark(&mut self, i: usize) {
        if let Some(p) = self.active.parked_at.get_mut(i)
            && p.take().is_some()
        {
            self.active.watched.insert(i);
        }
    }

    /// Put every service parked until `now` or earlier back into the pass.
    fn unpark_due(&mut self, now: u64) {
        let a = &mut self.active;
        for queue in [&mut a.parked, &mut a.waking] {
            while let Some(entry) = queue.first_entry() {
                if *entry.key() > now {
                    break;
                }
                let (until, due) = entry.remove_entry();
                for i in due {
                    if let Some(p) = a.parked_at.get_mut(i)
                        && *p == Some(until)
                    {
                        *p = None;
                        a.watched.insert(i);
                    }
                }
            }
        }
    }

    /// The per-tick pass: drive every service that is not pending and not settled, in
    /// plan order, visiting only the index (a service that joins it during the pass, after
    /// the one being driven, is driven in this pass too, as a scan in plan order would).
    pub(super) async fn drive_pass(&mut self) -> Result<(), super::EngineError> {
        // The names, shared: no copy of a name per visit.
        let order = self.order.clone();
        #[cfg(test)]
        if self.active.linear {
            for (i, name) in order.iter().enumerate() {
                if self.due_for_pass(i) {
                    self.drive_at(i, name).await?;
                }
            }
            return Ok(());
        }
        let now = self.clock.now_ms();
        self.unpark_due(now);
        let mut from = 0;
        while let Some(i) = self.active.watched.next_from(from) {
            from = i + 1;
            let Some(name) = order.get(i) else {
                self.active.watched.remove(i);
                continue;
            };
            if !self.due_for_pass(i) {
                self.active.watched.remove(i);
                continue;
            }
            if let Some((until, wakes)) = self.parkable(i, self.clock.now_ms()) {
                self.park(i, until, wakes);
                continue;
            }
            if self.only_polled(i) {
                // Promoted and complete, its health poll due: all `drive` would do.
                self.poll_health_at(i, name).await?;
            } else {
                self.drive_at(i, name).await?;
            }
            // Nothing to do for it until a later time: park it now rather than at the
            // next pass's visit.
            if let Some((until, wakes)) = self.parkable(i, self.clock.now_ms()) {
                self.park(i, until, wakes);
            }
        }
        Ok(())
    }

    /// The earliest time a service the pass visits needs the engine (health polls,
    /// timed steps, gate deadlines, retries, analysis samples), from `now`.
    pub(super) fn services_wakeup(&self, now: u64, mut t: u64) -> u64 {
        #[cfg(test)]
        if self.active.linear {
            return self.services_wakeup_of(0..self.order.len(), now, t);
        }
        t = self.services_wakeup_of(self.active.watched.iter(), now, t);
        // Parked services that set a wake-up: the earliest live entry (stale ones, whose
        // service an event put back into the pass, wait for their time to be dropped).
        let live = self.active.waking.iter().find(|(until, at)| {
            at.iter()
                .any(|&i| self.active.parked_at.get(i) == Some(&Some(**until)))
        });
        if let Some((until, _)) = live {
            t = t.min((*until).max(now + 1));
        }
        t
    }

    fn services_wakeup_of(&self, at: impl Iterator<Item = usize>, now: u64, mut t: u64) -> u64 {
        for i in at {
            if let Some(x) = self.wake_of(i) {
                t = t.min(x.max(now + 1));
            }
        }
        t
    }

    /// The earliest time the service at plan position `i` needs the engine (its next
    /// health poll, the end of a timed step, a gate's deadline, a retry, an analysis
    /// sample), or `None` if it needs none (pending, or finished and complete).
    pub(super) fn wake_of(&self, i: usize) -> Option<u64> {
        let rt = self.runs.at(i)?;
        let st = self.status_at(i);
        if st == ServiceStatus::Pending || (st.is_terminal() && rt.complete) {
            return None;
        }
        let retry_at = rt.retry.map(|(_, at)| at);
        let analyses = [&rt.analysis, &rt.continuous]
            .into_iter()
            .flatten()
            .map(|a| a.next_sample_ms);
        [rt.until_ms, rt.gate_deadline_ms, retry_at]
            .into_iter()
            .flatten()
            .chain(analyses)
            .chain([rt.next_health_ms])
            .min()
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

/// A set of plan positions as a bit set: insert and remove in constant time, and the pass
/// walks it in plan order (a word skips 64 positions that are not in it).
#[derive(Debug, Default)]
struct PosSet {
    words: Vec<u64>,
}

impl PosSet {
    fn with_len(n: usize) -> PosSet {
        PosSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    fn insert(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// The smallest position `>= from` in the set.
    fn next_from(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = self.words.get(w)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.words.get(w)?;
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            let i = self.next_from(from)?;
            from = i + 1;
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::PosSet;

    proptest! {
        /// The bit set answers as an ordered set of positions would, whatever the inserts
        /// and removes (positions past its length included).
        #[test]
        fn pos_set_is_an_ordered_set(ops in proptest::collection::vec((any::<bool>(), 0usize..300), 0..200), len in 0usize..200, from in 0usize..320) {
            let mut bits = PosSet::with_len(len);
            let mut model = BTreeSet::new();
            for (insert, i) in ops {
                if insert {
                    bits.insert(i);
                    model.insert(i);
                } else {
                    bits.remove(i);
                    model.remove(&i);
                }
            }
            prop_assert_eq!(bits.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(bits.next_from(from), model.range(from..).next().copied());
        }
    }
}
