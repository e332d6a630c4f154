//! The engine's per-service run states, in plan order, found by name through a fast index
//! or by plan position directly. The per-tick pass addresses services by position
//! (`active.rs`); everything else by name, as a map would.

use std::collections::HashMap;
use std::ops::{Index, IndexMut};

use super::service_run::ServiceRun;

/// A map keyed by service name with a fast, non-keyed hasher. Service names come from
/// the release file the operator deploys, not from the network, so a keyed hash's
/// protection against chosen collisions buys nothing here, and it was a tenth of the
/// engine's time at fleet scale.
pub(crate) type NameMap<V> = HashMap<String, V, rustc_hash::FxBuildHasher>;

/// Run states in plan order (position `i` is `Engine::order[i]`).
#[derive(Default)]
pub(super) struct Runs {
    index: NameMap<usize>,
    list: Vec<ServiceRun>,
}

impl Runs {
    /// Add the next service in plan order (a name seen before replaces its run state).
    pub(super) fn push(&mut self, name: String, run: ServiceRun) {
        match self.index.get(&name) {
            Some(&i) => self.list[i] = run,
            None => {
                self.index.insert(name, self.list.len());
                self.list.push(run);
            }
        }
    }

    /// The plan position of a service.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub(super) fn get(&self, name: &str) -> Option<&ServiceRun> {
        self.list.get(*self.index.get(name)?)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut ServiceRun> {
        self.list.get_mut(*self.index.get(name)?)
    }

    pub(super) fn at(&self, i: usize) -> Option<&ServiceRun> {
        self.list.get(i)
    }

    pub(super) fn at_mut(&mut self, i: usize) -> Option<&mut ServiceRun> {
        self.list.get_mut(i)
    }

    pub(super) fn contains_key(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &ServiceRun> {
        self.list.iter()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut ServiceRun> {
        self.list.iter_mut()
    }
}

impl Index<&str> for Runs {
    type Output = ServiceRun;

    /// Like a map's index: the caller knows the service is in the plan.
    fn index(&self, name: &str) -> &ServiceRun {
        match self.get(name) {
            Some(rt) => rt,
            None => panic!("no run state for service `{name}`"),
        }
    }
}

impl IndexMut<&str> for Runs {
    fn index_mut(&mut self, name: &str) -> &mut ServiceRun {
        match self.get_mut(name) {
            Some(rt) => rt,
            None => panic!("no run state for service `{name}`"),
        }
    }
}

impl Index<&String> for Runs {
    type Output = ServiceRun;

    fn index(&self, name: &String) -> &ServiceRun {
        &self[name.as_str()]
    }
}
