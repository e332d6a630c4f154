//! Tenant-tag freeze windows opening mid-release (issue 16). A `[[freeze]]` window with
//! `tenant_tags` never holds the release as a whole (`frozen_now` ignores it); it holds
//! the tenants carrying one of its tags. Before the running ring starts a tenant, the
//! engine asks the pure `policy::freeze::tenants_frozen_at` on its own clock: a held
//! tenant does not start (it keeps no slot; the ring's other tenants go on), its hold is
//! journaled once (`TenantFrozen`, with the window and its end) and its release when the
//! window closed (`TenantFreezeLifted`). Tenants already rolling out finish. A
//! break-glass covers release-wide windows only, as at the start.

use std::collections::BTreeSet;

use super::reconciler::{Engine, EngineError};
use super::state::{FleetEvent, TenantStatus};
use crate::policy::freeze;

impl Engine {
    /// Of `candidates` (pending tenants the ring would start, by index), those a
    /// tenant-tag window open now holds. Journals each hold once and each lifted hold.
    pub(super) fn tenants_held(
        &mut self,
        candidates: &[usize],
    ) -> Result<BTreeSet<usize>, EngineError> {
        let mut held = BTreeSet::new();
        let Some(cc) = self.state.change_control.as_ref() else {
            return Ok(held);
        };
        let windows: Vec<freeze::Compiled> = cc
            .freeze
            .iter()
            .filter(|w| !w.tenant_tags.is_empty())
            .filter_map(|w| freeze::Compiled::new(w).ok())
            .collect();
        let Some(f) = self.state.fleet.as_ref() else {
            return Ok(held);
        };
        let was_frozen = |t: &usize| {
            f.tenants
                .get(*t)
                .is_some_and(|x| x.frozen.is_some() && x.status == TenantStatus::Pending)
        };
        if windows.is_empty() && !candidates.iter().any(was_frozen) {
            return Ok(held);
        }
        let names: Vec<(&str, &[String])> = candidates
            .iter()
            .filter_map(|&t| f.tenants.get(t))
            .map(|x| (x.name.as_str(), x.tags.as_slice()))
            .collect();
        let holds = freeze::tenants_frozen_at(
            &windows,
            self.state.environment.as_deref(),
            &names,
            freeze::instant(self.clock.now_ms()),
        );
        let mut events = Vec::new();
        for &t in candidates {
            let Some(x) = f.tenants.get(t) else {
                continue;
            };
            // Of several windows holding it, the one that ends last.
            let hold = holds
                .iter()
                .filter(|h| h.tenants.contains(&x.name))
                .max_by_key(|h| h.window.ends);
            match (hold, &x.frozen) {
                (Some(h), was) => {
                    held.insert(t);
                    let until_ms = h.window.ends_ms();
                    if was
                        .as_ref()
                        .is_none_or(|w| w.window != h.window.name || w.until_ms != until_ms)
                    {
                        events.push(FleetEvent::TenantFrozen {
                            tenant: x.name.clone(),
                            window: h.window.name.clone(),
                            until_ms,
                        });
                    }
                }
                (None, Some(w)) => events.push(FleetEvent::TenantFreezeLifted {
                    tenant: x.name.clone(),
                    window: w.window.clone(),
                }),
                (None, None) => {}
            }
        }
        for e in events {
            self.fleet_emit(e)?;
        }
        Ok(held)
    }

    /// When the earliest tenant-tag hold of the fleet ends (to wake the engine then).
    pub(super) fn tenant_freeze_wakeup(&self) -> Option<u64> {
        self.state
            .fleet
            .as_ref()?
            .tenants
            .iter()
            .filter_map(|t| t.frozen.as_ref().map(|w| w.until_ms))
            .min()
    }
}
