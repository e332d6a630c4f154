//! What front ends see: the [`Event`]s the engine broadcasts (and journals) and the
//! [`ReleaseState`] snapshot, which is a pure fold of those events ([`ReleaseState::apply`]).
//! The console renders these types, the control API ships them; all are serde types.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::judge::Outcome;
use crate::migrate::ServiceProgress;
use crate::plan::Action;
use crate::platform::Weights;
use crate::release::{FailurePolicy, OnTimeout, StrategyKind};

use super::command::Command;

mod describe;
mod fleet;
mod fold;

pub use describe::describe;
pub use fleet::{
    FleetEvent, FleetState, RingState, RingStatus, TenantFreeze, TenantState, TenantStatus,
};

/// Where one service is in its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Waiting for its dependencies or a free slot.
    Pending,
    /// Launching the candidate, waiting for health, running smoke tests.
    Starting,
    /// Moving through its steps (see `step` / `steps`).
    Progressing,
    /// A judge is comparing candidate and baseline.
    Analysing,
    /// Held by an operator, a `pause forever` step, the failure policy or an inconclusive
    /// analysis; `paused_reason` says which.
    Paused,
    /// An approval gate waits for a person (`gate` has the deadline).
    AwaitingApproval,
    /// The candidate is stable (cleanup of the old revision may still run).
    Promoted,
    /// Traffic is going back to the baseline.
    RollingBack,
    /// All traffic is on the baseline again.
    RolledBack,
    /// Could not be completed nor rolled back; needs a person.
    Failed,
    /// Never started (a dependency did not promote, or the release was aborted).
    Skipped,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Pending => "pending",
            ServiceStatus::Starting => "starting",
            ServiceStatus::Progressing => "progressing",
            ServiceStatus::Analysing => "analysing",
            ServiceStatus::Paused => "paused",
            ServiceStatus::AwaitingApproval => "awaiting_approval",
            ServiceStatus::Promoted => "promoted",
            ServiceStatus::RollingBack => "rolling_back",
            ServiceStatus::RolledBack => "rolled_back",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Skipped => "skipped",
        }
    }
    /// Nothing more happens to it unless someone retries it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ServiceStatus::Promoted
                | ServiceStatus::RolledBack
                | ServiceStatus::Failed
                | ServiceStatus::Skipped
        )
    }
    /// Started and not finished: it may have changed something in the world.
    pub fn is_active(self) -> bool {
        !self.is_terminal() && self != ServiceStatus::Pending
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The release as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Loaded, waiting for a `start` command.
    Ready,
    Running,
    /// Held: no service takes a step until `resume`.
    Paused,
    /// Every service reached promoted, rolled back, failed or skipped.
    Finished,
}

/// How a release ended, per service (the `summary` line of `deploy --output json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    Promoted,
    RolledBack,
    Skipped,
    Failed,
}

/// A gate waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    #[serde(flatten)]
    pub kind: GateKind,
    pub since_ms: u64,
    /// When it times out (`None`: never).
    pub deadline_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "gate")]
pub enum GateKind {
    /// `approve` or `reject`; on timeout, `on_timeout` happens. `rule`: who may approve
    /// and how many (the policy's `[approval]` tightened by the gate's own ask), as the
    /// engine enforces it; `None`: anyone, the step's count.
    Approval {
        on_timeout: OnTimeout,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<crate::policy::ApprovalRule>,
    },
    /// `promote` moves on (a `pause forever` step, or an inconclusive analysis).
    Promote,
}

/// A judge's latest word on a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictInfo {
    pub outcome: Outcome,
    pub judge: String,
    /// One sentence: why.
    pub summary: String,
    /// One line per metric (`errors: canary 2.1 % vs baseline 0.5 %, ...: FAIL`).
    pub explanation: Vec<String>,
    pub at_ms: u64,
}

/// Health of the revisions of one service, as last polled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub candidate_healthy: u32,
    pub candidate_desired: u32,
    pub baseline_healthy: u32,
    pub baseline_desired: u32,
    /// The last problem seen (an instance unhealthy or exited), if any.
    pub problem: Option<String>,
    pub at_ms: u64,
}

impl HealthSummary {
    /// The same counts and problem, whatever the time of the poll (destructured, so a
    /// field added later cannot be forgotten here).
    pub fn same_but_time(&self, other: &HealthSummary) -> bool {
        let HealthSummary {
            candidate_healthy,
            candidate_desired,
            baseline_healthy,
            baseline_desired,
            problem,
            at_ms: _,
        } = self;
        *candidate_healthy == other.candidate_healthy
            && *candidate_desired == other.candidate_desired
            && *baseline_healthy == other.baseline_healthy
            && *baseline_desired == other.baseline_desired
            && *problem == other.problem
    }
}

/// One service, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    pub strategy: StrategyKind,
    /// 0-based wave from the plan.
    pub wave: usize,
    pub depends_on: Vec<String>,
    pub status: ServiceStatus,
    /// The revision running before the release (what a rollback returns to).
    pub baseline: String,
    /// The revision this release rolls out.
    pub candidate: String,
    /// 1-based index of the current step (0 before the first).
    pub step: usize,
    /// Description of every step, from the plan.
    pub steps: Vec<String>,
    /// Traffic split in force as last set by the engine.
    pub weights: Weights,
    /// The candidate's share of traffic.
    pub candidate_weight: u8,
    /// The candidate has been launched and not retired.
    pub candidate_running: bool,
    /// The baseline is still running (false once retired after promotion).
    pub baseline_running: bool,
    pub health: HealthSummary,
    pub verdict: Option<VerdictInfo>,
    pub gate: Option<Gate>,
    /// A timed step (pause, analysis, keep-old) ends at this time.
    pub wait_until_ms: Option<u64>,
    pub paused_reason: Option<String>,
    /// Why it rolled back, failed or was skipped.
    pub reason: Option<String>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Old revision still to retire after promotion.
    pub cleanup_pending: bool,
    /// Who approved the waiting approval gate so far, in order, for gates needing several
    /// different approvers (`approvals = N`). Folded from the journaled `approve`
    /// commands, so a resumed engine keeps approvals recorded before a crash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
}

/// A deploy that started although its lifecycle gate was closed: the environments whose
/// promoted run of the same artifact was missing, who skipped the gate and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub operator: String,
    pub reason: String,
    /// The required environments without a qualifying run.
    pub skipped: Vec<String>,
}

/// A freeze window holding the release's next services back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeHold {
    pub window: String,
    pub until_ms: u64,
    /// When it closes, in its zone and UTC.
    pub until: String,
}

/// The whole release, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseState {
    pub release: String,
    /// The journal run this state belongs to.
    pub run_id: String,
    pub platform: String,
    /// The release's `environment`, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The lifecycle gate was skipped (`--skip-requires`): who, why, and what it skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// The policy in force at the start (see `EventKind::ReleaseLoaded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_control: Option<crate::policy::ChangeControl>,
    /// A freeze window holds the next services back (see `engine/change_control.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<FreezeHold>,
    /// The change ticket the release ships under (`[release] change`, `--change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    pub status: ReleaseStatus,
    pub on_failure: FailurePolicy,
    pub max_parallel: u32,
    pub waves: Vec<Vec<String>>,
    /// In plan order (wave by wave).
    pub services: Vec<std::sync::Arc<ServiceState>>,
    pub paused_reason: Option<String>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Who started it.
    pub operator: Option<String>,
    /// The release's migrations, in release order, once the engine reported on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<MigrationState>,
    /// Tenants in rings (a release with `[[tenant]]`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetState>,
    /// The last engine event applied.
    pub last_seq: u64,
    /// Service name → its place in `services`, built when the release is loaded and
    /// shared between snapshots (an `Arc`: cloning a snapshot does not copy it). Not
    /// serialized: a deserialized state finds its services by a scan instead.
    #[serde(skip)]
    by_name: ServiceIndex,
}

/// Where each service is in [`ReleaseState::services`]. Equal to every other index (it
/// is derived from `services`, which `PartialEq` compares).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceIndex(std::sync::Arc<super::runs::NameMap<usize>>);

impl PartialEq for ServiceIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ServiceIndex {
    pub(crate) fn of(services: &[std::sync::Arc<ServiceState>]) -> ServiceIndex {
        ServiceIndex(std::sync::Arc::new(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), i))
                .collect(),
        ))
    }
}

/// Static description of one service when a release is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInit {
    pub name: String,
    pub strategy: StrategyKind,
    pub wave: usize,
    pub depends_on: Vec<String>,
    pub baseline: String,
    pub candidate: String,
    pub steps: Vec<String>,
}

impl ServiceInit {
    /// What a front end is told about a planned service, with the revisions it moves
    /// between (the plan's names, or the platform's when it reports its own baseline).
    pub fn new(sp: &crate::plan::ServicePlan, baseline: String, candidate: String) -> ServiceInit {
        ServiceInit {
            name: sp.name.clone(),
            strategy: sp.strategy,
            wave: sp.wave,
            depends_on: sp.depends_on.clone(),
            baseline,
            candidate,
            steps: sp.steps.iter().map(|s| s.description.clone()).collect(),
        }
    }
}

/// Who or what made a rollback happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Trigger {
    /// An operator's command.
    Operator { operator: String },
    /// The engine's own checks (judge, health, smoke test, deadline).
    Automatic,
    /// The failure policy, because another service failed.
    Policy { failed: String },
}

/// One thing that happened; numbered, timed, journaled before the engine acts on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// The engine loaded a release (first entry of a run).
    ReleaseLoaded {
        release: String,
        run_id: String,
        platform: String,
        /// The release's `environment` (`production` gets the loud banner), so every
        /// attached console shows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        environment: Option<String>,
        /// The deploy skipped its lifecycle gate (`--skip-requires REASON`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        break_glass: Option<Box<BreakGlass>>,
        /// The policy in force at the start: freeze windows, roster, who may approve, a
        /// freeze's break-glass (so resume and audit read what the start read).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change_control: Option<Box<crate::policy::ChangeControl>>,
        /// The change ticket (`[release] change`, `--change`), shown in every console.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<String>,
        on_failure: FailurePolicy,
        max_parallel: u32,
        waves: Vec<Vec<String>>,
        services: Vec<ServiceInit>,
    },
    /// A command was accepted and is about to be carried out.
    CommandAccepted {
        operator: String,
        command: Command,
        /// The operator's stated reason (`ctl --reason`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A command was refused; nothing changed.
    CommandRefused {
        operator: String,
        command: Command,
        reason: String,
        /// The operator's stated reason (`ctl --reason`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    ReleaseStarted {
        operator: String,
    },
    /// A freeze window opened mid-release: no further service starts until it closes
    /// (services already rolling out go on). Journaled with the window's name.
    FreezeHeld {
        window: String,
        /// When it closes (unix ms), and the same in its zone and UTC, for people.
        until_ms: u64,
        until: String,
    },
    /// The freeze window closed: services start again.
    /// A break-glass requested at the start got the approvals the policy's
    /// `[break_glass]` names: no freeze window holds the run any more.
    BreakGlassGranted {
        approvers: Vec<String>,
    },
    FreezeLifted {
        window: String,
    },
    /// The baseline of a service runs and takes all traffic (before any step).
    BaselineReady {
        service: String,
        revision: String,
    },
    ServiceStarted {
        service: String,
    },
    StepStarted {
        service: String,
        index: usize,
        of: usize,
        action: Action,
        description: String,
        /// A timed step ends then.
        until_ms: Option<u64>,
    },
    /// The candidate was launched (or relaunched on resume).
    Launched {
        service: String,
        revision: String,
        replicas: u32,
    },
    WeightsSet {
        service: String,
        weights: Weights,
    },
    /// A health poll (not journaled: observations only).
    Health {
        service: String,
        summary: HealthSummary,
    },
    SmokeResult {
        service: String,
        test: String,
        /// Which revision the test ran against (dependents' tests run on their stable).
        revision: String,
        passed: bool,
        detail: String,
    },
    /// A judge's verdict (journaled when the outcome changes or the analysis ends).
    Verdict {
        service: String,
        verdict: VerdictInfo,
    },
    /// One analysis window of baseline against candidate, measured over the same period
    /// (the judge's input), with each arm's p99 latency over that window when the metric
    /// source had it: the evidence behind a verdict, drawn in the release report.
    AnalysisSample {
        service: String,
        window: crate::judge::AnalysisWindow,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline_p99_ms: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate_p99_ms: Option<f64>,
    },
    /// A gate opened: approval, pause forever, inconclusive analysis.
    GateWaiting {
        service: String,
        gate: Gate,
        reason: String,
    },
    GateAnswered {
        service: String,
        answer: String,
        by: String,
    },
    /// A service (or with `service: None` the release) was held.
    Paused {
        service: Option<String>,
        reason: String,
    },
    Resumed {
        service: Option<String>,
        operator: String,
    },
    Promoted {
        service: String,
    },
    RollbackStarted {
        service: String,
        reason: String,
        trigger: Trigger,
    },
    RolledBack {
        service: String,
        reason: String,
    },
    Failed {
        service: String,
        reason: String,
    },
    Skipped {
        service: String,
        reason: String,
    },
    /// A service goes back to pending (retry).
    Retrying {
        service: String,
        operator: String,
    },
    /// A revision was drained and stopped.
    Retired {
        service: String,
        revision: String,
    },
    /// A platform call failed and will be tried again (or not: `fatal`).
    PlatformError {
        service: String,
        message: String,
        fatal: bool,
    },
    ReleaseFinished {
        services: BTreeMap<String, FinalStatus>,
        /// 0 all promoted, 3 something rolled back or failed.
        exit_code: u8,
    },
    /// The engine restarted from the journal (`cutover resume`).
    EngineRestarted {
        operator: String,
        note: String,
    },
    /// A step of a `[[migration]]` (lint, dry run, expand, contract, undo): recorded
    /// before the database is touched (`Expanding`, `Contracting`, `UndoingExpand`) and
    /// after (`Expanded`, `Contracted`, `Undone`, `Failed`).
    Migration {
        migration: String,
        phase: MigrationPhase,
        /// One line: what happened, or why it waits or failed.
        detail: String,
        /// Lint findings (`file:line [rule] ...`), dry-run steps, the objects changed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<String>,
    },
    /// Tenants in rings (`state/fleet.rs`).
    Fleet {
        event: FleetEvent,
    },
}

/// Where one `[[migration]]` stands in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Nothing done yet.
    Pending,
    /// Lint found nothing blocking (warnings, if any, are in `lines`).
    Linted,
    /// Dry run on a copy passed.
    DryRunOk,
    /// Expand is being applied (recorded before the database is touched).
    Expanding,
    /// Expand applied; old and new revisions both work on the schema.
    Expanded,
    /// Every listed service is promoted and baked; contract waits for a person.
    ContractAwaiting,
    /// Contract is being applied.
    Contracting,
    /// Contract applied: the listed services cannot roll back to their old revision.
    Contracted,
    /// A listed service rolled back: `undo_expand` is being applied.
    UndoingExpand,
    /// `undo_expand` applied: the schema is as before the release.
    Undone,
    /// A listed service rolled back and there is no `undo_expand`: the additive schema
    /// stays (the old revision works with it).
    KeptExpanded,
    /// The release ended without contract (not confirmed); `detail` says how to run it.
    ContractPending,
    /// Lint refused it, or the dry run or a stage failed; `detail` says why.
    Failed,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Pending => "pending",
            MigrationPhase::Linted => "linted",
            MigrationPhase::DryRunOk => "dry-run ok",
            MigrationPhase::Expanding => "expanding",
            MigrationPhase::Expanded => "expanded",
            MigrationPhase::ContractAwaiting => "contract awaiting confirmation",
            MigrationPhase::Contracting => "contracting",
            MigrationPhase::Contracted => "contracted",
            MigrationPhase::UndoingExpand => "undoing expand",
            MigrationPhase::Undone => "undone",
            MigrationPhase::KeptExpanded => "expanded (kept after rollback)",
            MigrationPhase::ContractPending => "contract pending",
            MigrationPhase::Failed => "failed",
        }
    }
}

impl std::fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One migration, as front ends show it (folded from [`EventKind::Migration`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationState {
    pub name: String,
    pub phase: MigrationPhase,
    pub detail: String,
    /// The latest non-empty `lines` (lint findings, dry-run steps).
    pub lines: Vec<String>,
    /// Lint or the dry run refused it: nothing touched the database.
    pub refused: bool,
    pub since_ms: u64,
    /// When expand was applied (the timeline's ▲).
    #[serde(default)]
    pub expanded_at_ms: Option<u64>,
    /// When contract or undo_expand was applied (the timeline's ▼).
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
}

impl EventKind {
    /// The service this event is about.
    pub fn service(&self) -> Option<&str> {
        use EventKind::*;
        match self {
            BaselineReady { service, .. }
            | ServiceStarted { service }
            | StepStarted { service, .. }
            | Launched { service, .. }
            | WeightsSet { service, .. }
            | Health { service, .. }
            | SmokeResult { service, .. }
            | Verdict { service, .. }
            | AnalysisSample { service, .. }
            | GateWaiting { service, .. }
            | GateAnswered { service, .. }
            | Promoted { service }
            | RollbackStarted { service, .. }
            | RolledBack { service, .. }
            | Failed { service, .. }
            | Skipped { service, .. }
            | Retrying { service, .. }
            | Retired { service, .. }
            | PlatformError { service, .. } => Some(service),
            Paused { service, .. } | Resumed { service, .. } => service.as_deref(),
            CommandAccepted { command, .. } | CommandRefused { command, .. } => command.service(),
            ReleaseLoaded { .. }
            | ReleaseStarted { .. }
            | FreezeHeld { .. }
            | FreezeLifted { .. }
            | BreakGlassGranted { .. }
            | ReleaseFinished { .. }
            | EngineRestarted { .. }
            | Migration { .. }
            | Fleet { .. } => None,
        }
    }

    /// The journal's `kind` column.
    pub fn journal_kind(&self) -> &'static str {
        use EventKind::*;
        match self {
            CommandAccepted { .. } | CommandRefused { .. } => "command",
            Verdict { .. } => "verdict",
            AnalysisSample { .. } => "analysis",
            StepStarted { .. } => "step",
            Launched { .. }
            | WeightsSet { .. }
            | Retired { .. }
            | PlatformError { .. }
            | BaselineReady { .. } => "platform",
            Migration { .. } => "migration",
            Fleet { .. } => "fleet",
            _ => "decision",
        }
    }

    /// Observations are broadcast but not journaled.
    pub fn is_observation(&self) -> bool {
        matches!(self, EventKind::Health { .. })
    }

    /// The operator behind it, if a person caused it.
    pub fn operator(&self) -> Option<&str> {
        use EventKind::*;
        match self {
            CommandAccepted { operator, .. }
            | CommandRefused { operator, .. }
            | ReleaseStarted { operator }
            | Resumed { operator, .. }
            | Retrying { operator, .. }
            | EngineRestarted { operator, .. } => Some(operator),
            GateAnswered { by, .. } => Some(by),
            RollbackStarted {
                trigger: Trigger::Operator { operator },
                ..
            } => Some(operator),
            _ => None,
        }
    }
}

impl ReleaseState {
    /// An empty state, before `ReleaseLoaded`.
    pub fn empty() -> ReleaseState {
        ReleaseState {
            release: String::new(),
            run_id: String::new(),
            platform: String::new(),
            environment: None,
            break_glass: None,
            change_control: None,
            frozen: None,
            change: None,
            status: ReleaseStatus::Ready,
            on_failure: FailurePolicy::default(),
            max_parallel: 1,
            waves: Vec::new(),
            services: Vec::new(),
            paused_reason: None,
            started_at_ms: None,
            finished_at_ms: None,
            operator: None,
            migrations: Vec::new(),
            fleet: None,
            last_seq: 0,
            by_name: ServiceIndex::default(),
        }
    }

    /// Rebuild a state from events (resume, late-joining front ends).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> ReleaseState {
        let mut s = ReleaseState::empty();
        for e in events {
            s.apply(e);
        }
        s
    }

    /// The service named `name`: through the index when it is in step with `services`
    /// (always, in a state folded from events), else by a scan.
    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        match self.position(name) {
            Some(i) => self.services.get(i).map(|s| &**s),
            None => None,
        }
    }

    fn service_mut(&mut self, name: &str) -> Option<&mut ServiceState> {
        match self.position(name) {
            Some(i) => self.services.get_mut(i).map(std::sync::Arc::make_mut),
            None => None,
        }
    }

    /// The place of service `name` in `services`.
    pub fn position(&self, name: &str) -> Option<usize> {
        match self.by_name.0.get(name) {
            Some(&i) if self.services.get(i).is_some_and(|s| s.name == name) => return Some(i),
            // The index covers every service (one entry each): a name it lacks is not
            // here, and a scan of a large fleet per unknown name would cost more than the
            // lookup it backs.
            None if !self.services.is_empty() && self.by_name.0.len() == self.services.len() => {
                return None;
            }
            _ => {}
        }
        self.services.iter().position(|s| s.name == name)
    }

    pub fn migration(&self, name: &str) -> Option<&MigrationState> {
        self.migrations.iter().find(|m| m.name == name)
    }

    /// The exit code of a finished release: 2 when lint or a dry run refused a migration
    /// (nothing touched the database), 3 when a migration stage failed, 0 when every
    /// service promoted, else 3.
    pub fn exit_code(&self) -> u8 {
        if self.migrations.iter().any(|m| m.refused) {
            return 2;
        }
        if self
            .migrations
            .iter()
            .any(|m| m.phase == MigrationPhase::Failed)
        {
            return 3;
        }
        match self.final_statuses() {
            Some(s) if s.values().all(|f| *f == FinalStatus::Promoted) => 0,
            _ => 3,
        }
    }

    /// Final status of every service (for the summary), `None` while some is unfinished.
    pub fn final_statuses(&self) -> Option<BTreeMap<String, FinalStatus>> {
        self.services
            .iter()
            .map(|s| {
                let f = match s.status {
                    ServiceStatus::Promoted => FinalStatus::Promoted,
                    ServiceStatus::RolledBack => FinalStatus::RolledBack,
                    ServiceStatus::Skipped => FinalStatus::Skipped,
                    ServiceStatus::Failed => FinalStatus::Failed,
                    _ => return None,
                };
                Some((s.name.clone(), f))
            })
            .collect()
    }
}

/// Where a listed service stands for [`migrate::contract_allowed`] (the engine's gate and
/// `cutover migrate contract` alike), its promotion time turned into an `Instant`.
pub(crate) fn service_progress(s: &ServiceState, now_ms: u64, now: Instant) -> ServiceProgress {
    match s.status {
        ServiceStatus::Pending | ServiceStatus::Skipped => ServiceProgress::Pending,
        // The old revision still runs (kept warm, or draining): it may still use the old
        // schema.
        ServiceStatus::Promoted if s.baseline_running => ServiceProgress::RollingOut,
        ServiceStatus::Promoted => {
            let ago = now_ms.saturating_sub(s.finished_at_ms.unwrap_or(now_ms));
            ServiceProgress::Promoted {
                at: now.checked_sub(Duration::from_millis(ago)).unwrap_or(now),
            }
        }
        ServiceStatus::RolledBack => ServiceProgress::RolledBack,
        _ => ServiceProgress::RollingOut,
    }
}

/// Each service's journaled splits, oldest first, consecutive repeats folded. The engine
/// journals a split before it asks the platform for it, so the one before the last is
/// also a split the rule may legitimately show, until an event shows the shift was made:
/// the next step started, a verdict or a gate on the new split, the service promoted,
/// rolled back, its baseline ready or a revision retired. Events that say nothing about
/// it (a platform error and the retry of the same step, commands, pauses) leave the
/// shift in doubt. Once confirmed, the last split alone is accepted.
pub(crate) fn journaled_splits(events: &[Event]) -> BTreeMap<String, Vec<Weights>> {
    let mut out: BTreeMap<String, Vec<Weights>> = BTreeMap::new();
    // Per service: is the last shift confirmed, and in which step was it journaled.
    let mut confirmed: BTreeMap<String, bool> = BTreeMap::new();
    let mut step: BTreeMap<String, usize> = BTreeMap::new();
    let mut shift_step: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let made = match &e.kind {
            EventKind::WeightsSet { service, weights } => {
                let h = out.entry(service.clone()).or_default();
                if h.last() != Some(weights) {
                    h.push(weights.clone());
                }
                confirmed.insert(service.clone(), false);
                shift_step.insert(service.clone(), step.get(service).copied().unwrap_or(0));
                None
            }
            EventKind::StepStarted { service, index, .. } => {
                step.insert(service.clone(), *index);
                (shift_step.get(service) != Some(index)).then_some(service)
            }
            EventKind::Verdict { service, .. }
            | EventKind::GateWaiting { service, .. }
            | EventKind::Promoted { service }
            | EventKind::RolledBack { service, .. }
            | EventKind::BaselineReady { service, .. }
            | EventKind::Retired { service, .. } => Some(service),
            _ => None,
        };
        if let Some(service) = made
            && let Some(c) = confirmed.get_mut(service)
        {
            *c = true;
        }
    }
    for (service, h) in out.iter_mut() {
        let keep = if confirmed.get(service) == Some(&true) {
            1
        } else {
            2
        };
        if h.len() > keep {
            h.drain(..h.len() - keep);
        }
    }
    out
}
