//! Tenants in rings at run time (a release with `[[tenant]]`s, flattened into services
//! named `TENANT/SERVICE`: `release::flatten`). The rules:
//!
//! * Rings run in order. Inside the running ring, tenants start in ring order, at most
//!   the ring's `max_parallel` at once; a started tenant's services follow their own waves
//!   (`schedule.rs` keeps waves and `max_parallel` per tenant).
//! * A service failure rolls back its tenant's services, dependents first
//!   (`rollback.rs` calls [`Engine::rollback_tenant`]); other tenants are never touched.
//!   With `on_failure = "pause"` the failed service waits for a person and the release
//!   goes on with the other tenants.
//! * A tenant whose services all promoted is promoted: its flags are written into the
//!   flags file (journaled before and after, atomic rename). One that ended otherwise has
//!   failed (`rolled_back`, or `failed` when some service could not go back) and counts
//!   against the failure budget, once, across the whole release. A failure that takes the
//!   count over the budget stops the release starting tenants: every pending tenant is
//!   skipped with the budget named; tenants in flight finish or roll back as they would.
//! * After a ring's last tenant finished, the ring bakes for `bake` (when some tenant of
//!   it promoted): its promoted tenants' candidates stay under health checks, and one that
//!   turns unhealthy fails its tenant (rolled back where the baseline still runs), which
//!   counts. The next ring starts after the bake.
//! * An excluded tenant (`exclude TENANT --reason ...`) is skipped and never counted.
//!
//! Work per tick is proportional to the tenants in flight and the baking ring, never to
//! the whole fleet: the tenants in flight are a set kept beside the state.

use super::runs::NameMap;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use crate::release::Release;
use crate::release::flatten::tenant_of;
use crate::release::tenants::{FlagValue, members};

use super::reconciler::{Engine, EngineError, ms};
use super::state::{
    EventKind, FleetEvent, FleetState, ReleaseStatus, RingState, RingStatus, ServiceStatus,
    TenantState, TenantStatus, Trigger,
};

/// The engine's own bookkeeping of the fleet (the state is in `ReleaseState::fleet`).
pub(super) struct FleetRt {
    /// Tenant name → index in `FleetState::tenants`.
    pub index: NameMap<usize>,
    /// Each service's tenant index, by plan position (`Engine::order`; a name is found
    /// through `Runs::position`).
    pub tenant_at: Vec<Option<usize>>,
    /// Each tenant's services by plan position, in plan order (the same services as
    /// `TenantState::services`, which names them).
    pub positions: Vec<Vec<usize>>,
    /// Tenants whose outcome is open: running, or rolling back after their promotion.
    pub active: BTreeSet<usize>,
    /// Where the flags file is (`[flags] file` against the release's directory).
    pub flags_path: Option<PathBuf>,
    /// The flags the release manages, with their defaults.
    pub declared: BTreeMap<String, FlagValue>,
    /// When the baking ring's tenants are checked next.
    pub next_bake_check_ms: u64,
}

impl FleetRt {
    pub(super) fn new(release: &Release, order: &[String], flags_path: Option<PathBuf>) -> Self {
        let index = release
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect::<NameMap<_>>();
        let tenant_at: Vec<Option<usize>> = order
            .iter()
            .map(|s| index.get(tenant_of(s)?).copied())
            .collect();
        let mut positions = vec![Vec::new(); release.tenants.len()];
        for (i, t) in tenant_at.iter().enumerate() {
            if let Some(p) = t.and_then(|t| positions.get_mut(t)) {
                p.push(i);
            }
        }
        FleetRt {
            index,
            tenant_at,
            positions,
            active: BTreeSet::new(),
            flags_path,
            declared: crate::flagd::declared(release),
            next_bake_check_ms: 0,
        }
    }
}

/// The fleet's initial state: rings with their members, tenants with their services.
pub fn initial_state(release: &Release, order: &[String]) -> FleetState {
    let member = members(&release.tenants, &release.rings);
    let mut ring_of = vec![0; release.tenants.len()];
    for (r, m) in member.iter().enumerate() {
        for &t in m {
            ring_of[t] = r;
        }
    }
    let mut services: Vec<Vec<String>> = vec![Vec::new(); release.tenants.len()];
    let index: HashMap<&str, usize> = release
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    for s in order {
        if let Some(&i) = tenant_of(s).and_then(|t| index.get(t)) {
            services[i].push(s.clone());
        }
    }
    FleetState {
        budget: release
            .release
            .failure_budget
            .map_or(0, |b| b.budget_of(release.tenants.len())),
        failures: 0,
        exceeded: None,
        flags_file: release.flags.as_ref().map(|f| f.file.clone()),
        rings: release
            .rings
            .iter()
            .zip(&member)
            .map(|(r, m)| RingState {
                name: r.name.clone(),
                tenants: m.clone(),
                max_parallel: r.max_parallel.parallel_of(m.len()),
                bake_ms: ms(r.bake.0),
                status: RingStatus::Pending,
                bake_until_ms: None,
            })
            .collect(),
        tenants: release
            .tenants
            .iter()
            .zip(services)
            .enumerate()
            .map(|(i, (t, services))| TenantState {
                name: t.name.clone(),
                ring: ring_of[i],
                tags: t.tags.clone(),
                services,
                status: TenantStatus::Pending,
                reason: None,
                paused: false,
                flags: t.flags.clone(),
                flags_before: None,
                counted: false,
                awaiting: None,
                frozen: None,
            })
            .collect(),
    }
}

impl Engine {
    pub(super) fn fleet_emit(&mut self, event: FleetEvent) -> Result<(), EngineError> {
        self.emit(EventKind::Fleet { event })
    }

    pub(super) fn fleet_state(&self) -> Option<&FleetState> {
        self.state.fleet.as_ref()
    }

    fn tenant(&self, t: usize) -> Option<&TenantState> {
        self.state.fleet.as_ref()?.tenants.get(t)
    }

    /// The index of the tenant a service belongs to.
    pub(super) fn tenant_index_of(&self, service: &str) -> Option<usize> {
        let i = self.runs.position(service)?;
        self.fleet.as_ref()?.tenant_at.get(i).copied().flatten()
    }

    pub(super) fn tenant_index(&self, name: &str) -> Option<usize> {
        self.fleet.as_ref()?.index.get(name).copied()
    }

    /// The services of the tenants in flight, one list of plan positions per tenant (for
    /// `schedule`).
    pub(super) fn fleet_schedulable(&self) -> Vec<Vec<usize>> {
        let (Some(rt), Some(f)) = (self.fleet.as_ref(), self.state.fleet.as_ref()) else {
            return Vec::new();
        };
        rt.active
            .iter()
            .filter(|&&t| {
                f.tenants
                    .get(t)
                    .is_some_and(|t| t.status == TenantStatus::Running)
            })
            .filter_map(|&t| rt.positions.get(t).cloned())
            .collect()
    }

    /// After a restore: the tenants in flight are those the journal left running (or
    /// rolling back after their promotion).
    pub(super) fn fleet_restore(&mut self) -> Result<(), EngineError> {
        if self.fleet.is_none() {
            return Ok(());
        }
        if self.state.fleet.is_none() {
            let fleet = initial_state(&self.release, &self.order);
            self.fleet_emit(FleetEvent::Loaded {
                fleet: Box::new(fleet),
            })?;
        }
        let active: BTreeSet<usize> = self
            .state
            .fleet
            .as_ref()
            .map(|f| {
                f.tenants
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        t.status == TenantStatus::Running
                            || (t.status == TenantStatus::Promoted
                                && t.services.iter().any(|s| {
                                    self.state
                                        .service(s)
                                        .is_some_and(|x| x.status != ServiceStatus::Promoted)
                                }))
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(rt) = self.fleet.as_mut() {
            rt.active = active;
        }
        Ok(())
    }

    /// Nothing of the fleet is left to do (every ring done, or the budget exceeded and
    /// no tenant in flight).
    pub(super) fn fleet_pending(&self) -> bool {
        let (Some(rt), Some(f)) = (self.fleet.as_ref(), self.state.fleet.as_ref()) else {
            return false;
        };
        if !rt.active.is_empty() {
            return true;
        }
        f.exceeded.is_none() && f.rings.iter().any(|r| r.status != RingStatus::Done)
    }

    /// When the fleet next needs the engine: the bake's end and its next health check.
    pub(super) fn fleet_wakeup(&self) -> Option<u64> {
        let f = self.state.fleet.as_ref()?;
        let r = f
            .rings
            .iter()
            .find(|r| matches!(r.status, RingStatus::Baking | RingStatus::Running))?;
        if r.status == RingStatus::Running {
            // An approval gate's deadline, or the end of a tenant-tag freeze window.
            return r
                .tenants
                .iter()
                .filter_map(|&t| f.tenants.get(t)?.awaiting.as_ref()?.deadline_ms)
                .chain(self.tenant_freeze_wakeup())
                .min();
        }
        let check = self
            .fleet
            .as_ref()
            .map_or(u64::MAX, |rt| rt.next_bake_check_ms);
        Some(r.bake_until_ms.unwrap_or(u64::MAX).min(check))
    }

    /// One pass of the fleet's rules (after the services were driven, before `schedule`).
    pub(super) async fn fleet_tick(&mut self) -> Result<(), EngineError> {
        if self.fleet.is_none() || self.state.status == ReleaseStatus::Ready {
            return Ok(());
        }
        let active: Vec<usize> = self
            .fleet
            .as_ref()
            .map(|rt| rt.active.iter().copied().collect())
            .unwrap_or_default();
        for t in active {
            self.tenant_outcome(t)?;
        }
        self.watch_bake().await?;
        if self.state.status == ReleaseStatus::Running {
            self.advance_rings()?;
        }
        Ok(())
    }

    /// A tenant in flight whose services all finished: promoted, or failed (counted).
    fn tenant_outcome(&mut self, t: usize) -> Result<(), EngineError> {
        // At most ticks some service of the tenant is still going: tell that by plan
        // position, before copying the tenant.
        if let Some(at) = self.fleet.as_ref().and_then(|rt| rt.positions.get(t))
            && at
                .iter()
                .any(|&i| self.status_known_at(i).is_some_and(|s| !s.is_terminal()))
        {
            return Ok(());
        }
        let Some(tenant) = self.tenant(t).cloned() else {
            return Ok(());
        };
        let mut all_promoted = true;
        let mut any_failed = false;
        let mut reason = None;
        for s in &tenant.services {
            let Some(st) = self.state.service(s) else {
                continue;
            };
            if !st.status.is_terminal() {
                return Ok(());
            }
            // A promoted service still retiring its old revision is finished for the fleet.
            if st.status != ServiceStatus::Promoted {
                all_promoted = false;
                if reason.is_none() {
                    reason = st.reason.as_ref().map(|r| format!("{s}: {r}"));
                }
            }
            any_failed |= st.status == ServiceStatus::Failed;
        }
        if let Some(rt) = self.fleet.as_mut() {
            rt.active.remove(&t);
        }
        let name = tenant.name.clone();
        if all_promoted {
            if tenant.status == TenantStatus::Running {
                if let Err(why) = self.write_flags(t, false)? {
                    return self.count_failure(t, TenantStatus::Failed, why);
                }
                self.fleet_emit(FleetEvent::TenantPromoted { tenant: name })?;
            }
            return Ok(());
        }
        if tenant.flags_before.is_some()
            && let Err(why) = self.write_flags(t, true)?
        {
            self.emit(EventKind::PlatformError {
                service: tenant.services.first().cloned().unwrap_or_default(),
                message: why,
                fatal: false,
            })?;
        }
        if tenant.status == TenantStatus::Excluded {
            return Ok(());
        }
        let outcome = if any_failed {
            TenantStatus::Failed
        } else {
            TenantStatus::RolledBack
        };
        let reason = reason.unwrap_or_else(|| "a service did not promote".into());
        self.count_failure(t, outcome, reason)
    }

    /// Record a tenant's failure and its count; a count over the budget stops the fleet.
    fn count_failure(
        &mut self,
        t: usize,
        outcome: TenantStatus,
        reason: String,
    ) -> Result<(), EngineError> {
        let Some(tenant) = self.tenant(t).cloned() else {
            return Ok(());
        };
        let Some(f) = self.state.fleet.as_ref() else {
            return Ok(());
        };
        let failures = f.failures + usize::from(!tenant.counted);
        let budget = f.budget;
        self.fleet_emit(FleetEvent::TenantFailed {
            tenant: tenant.name.clone(),
            outcome,
            reason,
            failures,
        })?;
        if failures > budget
            && self
                .state
                .fleet
                .as_ref()
                .is_some_and(|f| f.exceeded.is_none())
        {
            let failed: Vec<String> = self
                .state
                .fleet
                .as_ref()
                .map(|f| {
                    f.tenants
                        .iter()
                        .filter(|t| t.counted)
                        .map(|t| t.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            let reason = format!(
                "failure budget of {budget} exceeded: {failures} tenant(s) failed ({}); no further tenant starts",
                failed.join(", ")
            );
            self.fleet_emit(FleetEvent::BudgetExceeded {
                failures,
                budget,
                reason: reason.clone(),
            })?;
            self.fleet_skip_pending(&format!("failure budget of {budget} exceeded"))?;
        }
        Ok(())
    }

    /// Every tenant not started yet is skipped (the budget, an abort).
    pub(super) fn fleet_skip_pending(&mut self, reason: &str) -> Result<(), EngineError> {
        let pending: Vec<(String, Vec<String>)> = match self.state.fleet.as_ref() {
            Some(f) => f
                .tenants
                .iter()
                .filter(|t| t.status == TenantStatus::Pending)
                .map(|t| (t.name.clone(), t.services.clone()))
                .collect(),
            None => return Ok(()),
        };
        for (tenant, services) in pending {
            self.fleet_emit(FleetEvent::TenantSkipped {
                tenant,
                reason: reason.to_string(),
            })?;
            self.skip_pending_services(services, reason)?;
        }
        Ok(())
    }

    /// Rings in order: start the next, start its tenants on free slots, bake, done.
    fn advance_rings(&mut self) -> Result<(), EngineError> {
        let Some(f) = self.state.fleet.as_ref() else {
            return Ok(());
        };
        if f.exceeded.is_some() {
            return Ok(());
        }
        let Some(r) = f.rings.iter().position(|r| r.status != RingStatus::Done) else {
            return Ok(());
        };
        let ring = f.rings[r].clone();
        let now = self.clock.now_ms();
        match ring.status {
            RingStatus::Done => {}
            RingStatus::Pending => {
                self.fleet_emit(FleetEvent::RingStarted {
                    ring: ring.name.clone(),
                })?;
                self.start_tenants(&ring)?;
            }
            RingStatus::Running => {
                self.start_tenants(&ring)?;
                let finished = self.state.fleet.as_ref().is_some_and(|f| {
                    ring.tenants
                        .iter()
                        .all(|&t| f.tenants.get(t).is_none_or(|x| x.status.is_terminal()))
                }) && self
                    .fleet
                    .as_ref()
                    .is_none_or(|rt| ring.tenants.iter().all(|t| !rt.active.contains(t)));
                if !finished {
                    return Ok(());
                }
                let promoted = self.state.fleet.as_ref().is_some_and(|f| {
                    ring.tenants.iter().any(|&t| {
                        f.tenants
                            .get(t)
                            .is_some_and(|x| x.status == TenantStatus::Promoted)
                    })
                });
                if ring.bake_ms > 0 && promoted {
                    self.fleet_emit(FleetEvent::RingBaking {
                        ring: ring.name.clone(),
                        until_ms: now + ring.bake_ms,
                    })?;
                    if let Some(rt) = self.fleet.as_mut() {
                        rt.next_bake_check_ms = now;
                    }
                } else {
                    self.fleet_emit(FleetEvent::RingDone { ring: ring.name })?;
                }
            }
            RingStatus::Baking => {
                let in_flight = self
                    .fleet
                    .as_ref()
                    .is_some_and(|rt| ring.tenants.iter().any(|t| rt.active.contains(t)));
                if !in_flight && ring.bake_until_ms.is_none_or(|u| now >= u) {
                    self.fleet_emit(FleetEvent::RingDone { ring: ring.name })?;
                }
            }
        }
        Ok(())
    }

    /// Start the ring's next tenants while it has free slots (not while frozen; a tenant
    /// held by a tenant-tag window is passed over: `tenant_freeze.rs`); a tenant with
    /// `[tenant.approval]` first waits for it, holding a slot.
    fn start_tenants(&mut self, ring: &RingState) -> Result<(), EngineError> {
        self.approval_timeouts(ring)?;
        let Some(f) = self.state.fleet.as_ref() else {
            return Ok(());
        };
        let mut running = ring
            .tenants
            .iter()
            .filter(|&&t| {
                f.tenants.get(t).is_some_and(|x| {
                    x.status == TenantStatus::Running
                        || (x.status == TenantStatus::Pending && x.awaiting.is_some())
                })
            })
            .count();
        let next: Vec<usize> = ring
            .tenants
            .iter()
            .copied()
            .filter(|&t| {
                f.tenants.get(t).is_some_and(|x| {
                    x.status == TenantStatus::Pending && !x.paused && x.awaiting.is_none()
                })
            })
            .collect();
        let held = self.tenants_held(&next)?;
        for t in next.into_iter().filter(|t| !held.contains(t)) {
            if running >= ring.max_parallel || self.frozen_now()? {
                break;
            }
            let Some(name) = self.tenant(t).map(|x| x.name.clone()) else {
                continue;
            };
            running += 1;
            if let Some(a) = self.release.tenants.get(t).and_then(|x| x.approval.clone()) {
                let deadline_ms = (a.on_timeout != crate::release::OnTimeout::Pause)
                    .then(|| self.clock.now_ms() + ms(a.timeout.0));
                self.fleet_emit(FleetEvent::TenantAwaitingApproval {
                    tenant: name,
                    deadline_ms,
                })?;
                continue;
            }
            self.start_approved(t)?;
        }
        Ok(())
    }

    /// A tenant's approval gate that timed out: `rollback` fails it (its services are
    /// skipped; it counts), `promote` starts it.
    fn approval_timeouts(&mut self, ring: &RingState) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let due: Vec<usize> = ring
            .tenants
            .iter()
            .copied()
            .filter(|&t| {
                self.tenant(t).is_some_and(|x| {
                    x.status == TenantStatus::Pending
                        && x.awaiting
                            .as_ref()
                            .is_some_and(|g| g.deadline_ms.is_some_and(|d| now >= d))
                })
            })
            .collect();
        for t in due {
            let promote = self
                .release
                .tenants
                .get(t)
                .and_then(|x| x.approval.as_ref())
                .is_some_and(|a| a.on_timeout == crate::release::OnTimeout::Promote);
            if promote {
                self.start_approved(t)?;
            } else {
                self.reject_tenant(t, "its approval timed out".into())?;
            }
        }
        Ok(())
    }

    /// The tenant starts (its gate, if any, answered yes).
    pub(super) fn start_approved(&mut self, t: usize) -> Result<(), EngineError> {
        let Some(name) = self.tenant(t).map(|x| x.name.clone()) else {
            return Ok(());
        };
        self.fleet_emit(FleetEvent::TenantStarted { tenant: name })?;
        if let Some(rt) = self.fleet.as_mut() {
            rt.active.insert(t);
        }
        Ok(())
    }

    /// The tenant's gate is answered no (rejected, or timed out into `rollback`): its
    /// services are skipped and it counts as failed.
    pub(super) fn reject_tenant(&mut self, t: usize, why: String) -> Result<(), EngineError> {
        let Some(services) = self.tenant(t).map(|x| x.services.clone()) else {
            return Ok(());
        };
        self.skip_pending_services(services, &why)?;
        self.count_failure(t, TenantStatus::RolledBack, why)
    }

    /// Of `services`, those not started are skipped with `reason`.
    pub(super) fn skip_pending_services(
        &mut self,
        services: Vec<String>,
        reason: &str,
    ) -> Result<(), EngineError> {
        for s in services {
            if self.status(&s) == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: s,
                    reason: reason.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// During a bake, the ring's promoted tenants stay under health checks (their
    /// services' own, `observe.rs`, which calls [`Engine::fleet_bake_failure`]): wake the
    /// engine at their interval.
    async fn watch_bake(&mut self) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let Some(f) = self.state.fleet.as_ref() else {
            return Ok(());
        };
        let Some(ring) = f.rings.iter().find(|r| r.status == RingStatus::Baking) else {
            return Ok(());
        };
        if self
            .fleet
            .as_ref()
            .is_some_and(|rt| rt.next_bake_check_ms > now)
        {
            return Ok(());
        }
        let interval = ring
            .tenants
            .iter()
            .filter_map(|&t| f.tenants.get(t))
            .flat_map(|t| &t.services)
            .filter_map(|s| self.runs.get(s))
            .map(|rt| ms(rt.spec.health.interval.0).max(50))
            .min()
            .unwrap_or(1000);
        if let Some(rt) = self.fleet.as_mut() {
            rt.next_bake_check_ms = now + interval;
        }
        Ok(())
    }

    /// A promoted service's candidate turned unhealthy after its old revision was retired:
    /// when its tenant is baking, the tenant fails (it counts) and rolls back what can go
    /// back. True when handled so.
    pub(super) async fn fleet_bake_failure(
        &mut self,
        service: &str,
        problem: &str,
    ) -> Result<bool, EngineError> {
        let Some(t) = self.tenant_index_of(service) else {
            return Ok(false);
        };
        let baking = self.state.fleet.as_ref().is_some_and(|f| {
            f.tenants.get(t).is_some_and(|x| {
                x.status == TenantStatus::Promoted
                    && f.rings
                        .get(x.ring)
                        .is_some_and(|r| r.status == RingStatus::Baking)
            })
        });
        if !baking {
            return Ok(false);
        }
        let name = self.tenant(t).map(|x| x.name.clone()).unwrap_or_default();
        self.rollback_tenant(
            t,
            None,
            format!("tenant {name} failed during the bake: {service}: {problem}"),
            Trigger::Automatic,
            true,
        )
        .await?;
        if let Some(rt) = self.fleet.as_mut() {
            rt.active.insert(t);
        }
        self.tenant_outcome(t)?;
        Ok(true)
    }

    /// Roll back a tenant's services, dependents first (plan order reversed); its pending
    /// services are skipped. `promoted_too`: also services already promoted (a rollback
    /// after the tenant's promotion; one whose baseline is retired then fails).
    pub(super) async fn rollback_tenant(
        &mut self,
        t: usize,
        failed: Option<&str>,
        reason: String,
        trigger: Trigger,
        promoted_too: bool,
    ) -> Result<(), EngineError> {
        let Some(tenant) = self.tenant(t).cloned() else {
            return Ok(());
        };
        for s in tenant.services.iter().rev() {
            let st = self.status(s);
            if Some(s.as_str()) == failed {
                self.rollback_one(s, reason.clone(), trigger.clone())
                    .await?;
            } else if self.changed(s) || (promoted_too && st == ServiceStatus::Promoted) {
                let (why, trig) = match failed {
                    Some(f) => (
                        format!("tenant {} rolls back after {f} failed", tenant.name),
                        Trigger::Policy {
                            failed: f.to_string(),
                        },
                    ),
                    None => (reason.clone(), trigger.clone()),
                };
                self.rollback_one(s, why, trig).await?;
            } else if st == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: s.clone(),
                    reason: format!("tenant {} is rolling back", tenant.name),
                })?;
            }
        }
        Ok(())
    }

    /// Write tenant `t`'s flags (or, `restore`, the values it had before) into the flags
    /// file: journaled before and after, then replaced atomically. `Ok(Err)`: why not.
    fn write_flags(&mut self, t: usize, restore: bool) -> Result<Result<(), String>, EngineError> {
        let Some(rt) = self.fleet.as_ref() else {
            return Ok(Ok(()));
        };
        let Some(path) = rt.flags_path.clone() else {
            return Ok(Ok(()));
        };
        let Some(tenant) = self.tenant(t).cloned() else {
            return Ok(Ok(()));
        };
        if !restore && tenant.flags.is_empty() {
            return Ok(Ok(()));
        }
        let file = path.display().to_string();
        let before = match std::fs::read_to_string(&path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Ok(Err(format!("cannot read the flags file {file}: {e}"))),
        };
        let mut ff = match crate::flagd::FlagFile::read(before.as_deref(), &rt.declared) {
            Ok(ff) => ff,
            Err(e) => return Ok(Err(format!("flags file {file}: {e}"))),
        };
        // Written before and promoted after a crash: the values before are the first write's.
        let previous = tenant
            .flags_before
            .clone()
            .unwrap_or_else(|| ff.tenant_values(&tenant.name));
        let values = if restore {
            previous.clone()
        } else {
            tenant.flags.clone()
        };
        if let Err(e) = ff.set_tenant(&tenant.name, &values) {
            return Ok(Err(format!("flags file {file}: {e}")));
        }
        let after = ff.to_json();
        self.fleet_emit(FleetEvent::FlagsWritten {
            tenant: tenant.name.clone(),
            file: file.clone(),
            before: before.unwrap_or_default(),
            after: after.clone(),
            previous,
            restored: restore,
        })?;
        Ok(crate::flagd::write_atomic(&path, after.as_bytes())
            .map_err(|e| format!("cannot write the flags file {file}: {e}")))
    }
}
