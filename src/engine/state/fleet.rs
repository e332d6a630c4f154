//! Tenants in rings, as front ends and `resume` see them: [`FleetState`] is a pure fold of
//! the [`FleetEvent`]s (journaled as `EventKind::Fleet`). The engine's rules are in
//! `engine/fleet.rs`; this file only says what each event means for the snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::release::tenants::FlagValue;

/// Where one tenant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Its ring has not reached it yet.
    Pending,
    /// Its services are rolling out (or rolling back).
    Running,
    /// Every service promoted; its flags are in the flags file.
    Promoted,
    /// It failed and its services went back to their baselines.
    RolledBack,
    /// It failed and some service could not be rolled back.
    Failed,
    /// Never started: the failure budget was exceeded.
    Skipped,
    /// An operator excluded it (`exclude TENANT --reason ...`): skipped, not counted.
    Excluded,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Pending => "pending",
            TenantStatus::Running => "running",
            TenantStatus::Promoted => "promoted",
            TenantStatus::RolledBack => "rolled_back",
            TenantStatus::Failed => "failed",
            TenantStatus::Skipped => "skipped",
            TenantStatus::Excluded => "excluded",
        }
    }

    /// Nothing more happens to it unless someone acts.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TenantStatus::Pending | TenantStatus::Running)
    }

    /// What `--output json` summaries say (`excluded` is a kind of `skipped`).
    pub fn summary(self) -> &'static str {
        match self {
            TenantStatus::Excluded => "skipped",
            s => s.as_str(),
        }
    }
}

impl std::fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one ring is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingStatus {
    Pending,
    /// Starting its tenants, at most `max_parallel` at once.
    Running,
    /// Every tenant finished; the promoted ones stay watched until `bake_until_ms`.
    Baking,
    Done,
}

/// One tenant of the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    pub name: String,
    /// Index into [`FleetState::rings`].
    pub ring: usize,
    pub tags: Vec<String>,
    /// Its services, `TENANT/SERVICE`, in plan order.
    pub services: Vec<String>,
    pub status: TenantStatus,
    /// Why it failed, was skipped or excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Held by `pause TENANT`: a pending tenant does not start.
    #[serde(default)]
    pub paused: bool,
    /// The flags the release gives it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, FlagValue>,
    /// The values the flags file gave it before cutover wrote its flags (restored when it
    /// rolls back after its promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags_before: Option<BTreeMap<String, FlagValue>>,
    /// Counted against the failure budget (once, whatever happens after).
    #[serde(default)]
    pub counted: bool,
    /// Its `[tenant.approval]` gate is open: it starts once enough people approved
    /// (`approve TENANT`); `deadline_ms` `None` waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<TenantGate>,
    /// Held by a tenant-tag freeze window that opened mid-release: it does not start
    /// until the window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<TenantFreeze>,
}

/// The tenant-tag window holding a pending tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantFreeze {
    pub window: String,
    pub until_ms: u64,
}

/// A tenant's approval gate before its first service starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantGate {
    pub deadline_ms: Option<u64>,
    /// Who approved so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
}

/// One ring of the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingState {
    pub name: String,
    /// Its tenants in start order (indexes into [`FleetState::tenants`]).
    pub tenants: Vec<usize>,
    /// Tenants at once (resolved against the ring's size).
    pub max_parallel: usize,
    pub bake_ms: u64,
    pub status: RingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_until_ms: Option<u64>,
}

/// The fleet: rings, tenants, and the failure budget's count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// Tenants that may fail in the whole release.
    pub budget: usize,
    /// Tenants that failed so far (excluded ones do not count).
    pub failures: usize,
    /// Set once a failure exceeded the budget: no tenant starts any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceeded: Option<String>,
    /// The flags file cutover writes (as the release names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags_file: Option<String>,
    pub rings: Vec<RingState>,
    pub tenants: Vec<TenantState>,
}

/// What happens to the fleet (journaled inside `EventKind::Fleet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "what")]
pub enum FleetEvent {
    /// The rings and tenants of the release (right after `release_loaded`).
    Loaded {
        fleet: Box<FleetState>,
    },
    RingStarted {
        ring: String,
    },
    /// Every tenant of the ring finished; the bake runs until `until_ms`.
    RingBaking {
        ring: String,
        until_ms: u64,
    },
    RingDone {
        ring: String,
    },
    TenantStarted {
        tenant: String,
    },
    TenantPromoted {
        tenant: String,
    },
    /// The tenant failed (`outcome`: `rolled_back` or `failed`); `failures` is the budget's
    /// count after it (unchanged when it was already counted).
    TenantFailed {
        tenant: String,
        outcome: TenantStatus,
        reason: String,
        failures: usize,
    },
    TenantSkipped {
        tenant: String,
        reason: String,
    },
    TenantExcluded {
        tenant: String,
        reason: String,
    },
    /// `retry TENANT`: it runs again (its failure stays counted).
    TenantRetrying {
        tenant: String,
    },
    TenantPaused {
        tenant: String,
    },
    /// Its `[tenant.approval]` gate opened (it holds a slot of its ring).
    TenantAwaitingApproval {
        tenant: String,
        deadline_ms: Option<u64>,
    },
    /// One person approved the tenant's gate.
    TenantApproved {
        tenant: String,
        by: String,
    },
    TenantResumed {
        tenant: String,
    },
    /// A tenant-tag freeze window open now holds the tenant before it starts (once per
    /// hold: journaled again only when the window or its end changes).
    TenantFrozen {
        tenant: String,
        window: String,
        until_ms: u64,
    },
    /// The window holding the tenant closed: it may start.
    TenantFreezeLifted {
        tenant: String,
        window: String,
    },
    /// A failure went over the budget: no further tenant starts.
    BudgetExceeded {
        failures: usize,
        budget: usize,
        reason: String,
    },
    /// The flags file was written for `tenant`: its content before and after, and the
    /// tenant's values before (what a rollback restores).
    FlagsWritten {
        tenant: String,
        file: String,
        before: String,
        after: String,
        previous: BTreeMap<String, FlagValue>,
        /// True when this write restored the tenant's previous values (a rollback).
        restored: bool,
    },
}

impl FleetEvent {
    /// The tenant the event is about, if any.
    pub fn tenant(&self) -> Option<&str> {
        use FleetEvent::*;
        match self {
            TenantStarted { tenant }
            | TenantPromoted { tenant }
            | TenantFailed { tenant, .. }
            | TenantSkipped { tenant, .. }
            | TenantExcluded { tenant, .. }
            | TenantRetrying { tenant }
            | TenantPaused { tenant }
            | TenantResumed { tenant }
            | TenantAwaitingApproval { tenant, .. }
            | TenantApproved { tenant, .. }
            | TenantFrozen { tenant, .. }
            | TenantFreezeLifted { tenant, .. }
            | FlagsWritten { tenant, .. } => Some(tenant),
            Loaded { .. }
            | RingStarted { .. }
            | RingBaking { .. }
            | RingDone { .. }
            | BudgetExceeded { .. } => None,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        use FleetEvent::*;
        match self {
            Loaded { fleet } => format!(
                "{} tenant(s) in {} ring(s), failure budget {}",
                fleet.tenants.len(),
                fleet.rings.len(),
                fleet.budget
            ),
            RingStarted { ring } => format!("ring {ring} started"),
            RingBaking { ring, .. } => format!("ring {ring} baking"),
            RingDone { ring } => format!("ring {ring} done"),
            TenantStarted { tenant } => format!("tenant {tenant} started"),
            TenantPromoted { tenant } => format!("tenant {tenant} promoted"),
            TenantFailed {
                tenant,
                outcome,
                reason,
                failures,
            } => format!("tenant {tenant} {outcome}: {reason} ({failures} failure(s) counted)"),
            TenantSkipped { tenant, reason } => format!("tenant {tenant} skipped: {reason}"),
            TenantExcluded { tenant, reason } => format!("tenant {tenant} excluded: {reason}"),
            TenantRetrying { tenant } => format!("tenant {tenant} retrying"),
            TenantPaused { tenant } => format!("tenant {tenant} paused"),
            TenantAwaitingApproval { tenant, .. } => {
                format!("tenant {tenant} waits for approval (`approve {tenant}`)")
            }
            TenantApproved { tenant, by } => format!("tenant {tenant} approved by {by}"),
            TenantResumed { tenant } => format!("tenant {tenant} resumed"),
            TenantFrozen {
                tenant,
                window,
                until_ms,
            } => format!(
                "tenant {tenant} held by the freeze window `{window}` until {}",
                crate::policy::freeze::instant(*until_ms).format("%Y-%m-%d %H:%M UTC")
            ),
            TenantFreezeLifted { tenant, window } => {
                format!("tenant {tenant}: the freeze window `{window}` closed")
            }
            BudgetExceeded { reason, .. } => reason.clone(),
            FlagsWritten {
                tenant,
                file,
                restored,
                ..
            } => {
                if *restored {
                    format!("{file}: tenant {tenant}'s previous flags restored")
                } else {
                    format!("{file}: tenant {tenant}'s flags written")
                }
            }
        }
    }
}

impl FleetState {
    pub fn tenant(&self, name: &str) -> Option<&TenantState> {
        self.tenants.iter().find(|t| t.name == name)
    }

    fn tenant_mut(&mut self, name: &str) -> Option<&mut TenantState> {
        self.tenants.iter_mut().find(|t| t.name == name)
    }

    fn ring_mut(&mut self, name: &str) -> Option<&mut RingState> {
        self.rings.iter_mut().find(|r| r.name == name)
    }

    /// `"tenants"` of a summary: each tenant's final word.
    pub fn summary(&self) -> BTreeMap<String, &'static str> {
        self.tenants
            .iter()
            .map(|t| (t.name.clone(), t.status.summary()))
            .collect()
    }

    /// Fold one fleet event (`Loaded` is handled by the caller).
    pub(super) fn apply(&mut self, e: &FleetEvent) {
        use FleetEvent::*;
        match e {
            Loaded { .. } => {}
            RingStarted { ring } => {
                if let Some(r) = self.ring_mut(ring) {
                    r.status = RingStatus::Running;
                }
            }
            RingBaking { ring, until_ms } => {
                if let Some(r) = self.ring_mut(ring) {
                    r.status = RingStatus::Baking;
                    r.bake_until_ms = Some(*until_ms);
                }
            }
            RingDone { ring } => {
                if let Some(r) = self.ring_mut(ring) {
                    r.status = RingStatus::Done;
                }
            }
            TenantStarted { tenant } | TenantRetrying { tenant } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.status = TenantStatus::Running;
                    t.reason = None;
                    t.awaiting = None;
                    t.frozen = None;
                }
            }
            TenantAwaitingApproval {
                tenant,
                deadline_ms,
            } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.awaiting = Some(TenantGate {
                        deadline_ms: *deadline_ms,
                        approvals: Vec::new(),
                    });
                }
            }
            TenantApproved { tenant, by } => {
                if let Some(g) = self.tenant_mut(tenant).and_then(|t| t.awaiting.as_mut())
                    && !g.approvals.contains(by)
                {
                    g.approvals.push(by.clone());
                }
            }
            TenantPromoted { tenant } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.status = TenantStatus::Promoted;
                    t.reason = None;
                }
            }
            TenantFailed {
                tenant,
                outcome,
                reason,
                failures,
            } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.status = *outcome;
                    t.reason = Some(reason.clone());
                    t.counted = true;
                    t.awaiting = None;
                }
                self.failures = *failures;
            }
            TenantSkipped { tenant, reason } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.status = TenantStatus::Skipped;
                    t.reason = Some(reason.clone());
                    t.awaiting = None;
                    t.frozen = None;
                }
            }
            TenantExcluded { tenant, reason } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.status = TenantStatus::Excluded;
                    t.reason = Some(reason.clone());
                    t.awaiting = None;
                    t.frozen = None;
                }
            }
            TenantPaused { tenant } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.paused = true;
                }
            }
            TenantResumed { tenant } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.paused = false;
                }
            }
            TenantFrozen {
                tenant,
                window,
                until_ms,
            } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.frozen = Some(TenantFreeze {
                        window: window.clone(),
                        until_ms: *until_ms,
                    });
                }
            }
            TenantFreezeLifted { tenant, .. } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.frozen = None;
                }
            }
            BudgetExceeded { reason, .. } => self.exceeded = Some(reason.clone()),
            FlagsWritten {
                tenant,
                previous,
                restored,
                ..
            } => {
                if let Some(t) = self.tenant_mut(tenant) {
                    t.flags_before = (!*restored).then(|| previous.clone());
                }
            }
        }
    }
}
