//! The per-service run state the engine keeps besides the public snapshot.

use std::collections::BTreeSet;

use crate::plan::PlanStep;
use crate::release::Service;

use super::analysis::AnalysisRun;
use super::background::Busy;
use super::state::HealthSummary;

/// Per-service runtime state that is not part of the public snapshot.
pub(super) struct ServiceRun {
    pub(super) spec: Service,
    /// Shared: the per-tick pass takes the current step without copying it.
    pub(super) steps: std::sync::Arc<[PlanStep]>,
    pub(super) dependents: Vec<String>,
    pub(super) replicas: u32,
    /// 0-based index of the step being run; `entered` says whether its action ran.
    pub(super) idx: usize,
    pub(super) entered: bool,
    /// Where a rolling batch step (`ReplaceBatch`) is.
    pub(super) batch: BatchPhase,
    pub(super) step_started_ms: u64,
    /// A retryable platform failure interrupted the step: (attempts, next try at). The
    /// step keeps its start time, so `progress_deadline` still bounds the retries.
    pub(super) retry: Option<(u32, u64)>,
    pub(super) until_ms: Option<u64>,
    pub(super) gate_deadline_ms: Option<u64>,
    pub(super) paused_by_operator: bool,
    /// on_failure = pause: held after a failure until a person decides.
    pub(super) failure_hold: Option<String>,
    pub(super) paused_at_ms: Option<u64>,
    pub(super) next_health_ms: u64,
    pub(super) health_errors: u32,
    pub(super) last_health: Option<HealthSummary>,
    pub(super) analysis: Option<AnalysisRun>,
    /// Analysis that runs throughout (linear, rolling, blue-green bake).
    pub(super) continuous: Option<AnalysisRun>,
    pub(super) busy: Option<Busy>,
    pub(super) generation: u64,
    /// Revisions being retired in the background.
    pub(super) retiring: BTreeSet<String>,
    pub(super) promote_all: bool,
    pub(super) rollback_waiting: bool,
    /// Who approved which step (0-based index) so far, for gates needing several people.
    pub(super) approvers: Vec<(usize, String)>,
    /// Candidate replicas replaced so far (rolling).
    pub(super) replaced: u32,
    /// A timed analysis ran out inconclusive and keeps going (`on_inconclusive = extend`).
    pub(super) extending: bool,
    /// All steps done (cleanup included).
    pub(super) complete: bool,
}

impl ServiceRun {
    /// A service's run state before its first step.
    pub(super) fn new(
        spec: Service,
        steps: Vec<PlanStep>,
        dependents: Vec<String>,
        replicas: u32,
    ) -> ServiceRun {
        ServiceRun {
            spec,
            steps: steps.into(),
            dependents,
            replicas,
            idx: 0,
            entered: false,
            batch: BatchPhase::Launch,
            step_started_ms: 0,
            retry: None,
            until_ms: None,
            gate_deadline_ms: None,
            paused_by_operator: false,
            failure_hold: None,
            paused_at_ms: None,
            next_health_ms: 0,
            health_errors: 0,
            last_health: None,
            analysis: None,
            continuous: None,
            busy: None,
            generation: 0,
            retiring: BTreeSet::new(),
            promote_all: false,
            rollback_waiting: false,
            approvers: Vec::new(),
            replaced: 0,
            extending: false,
            complete: false,
        }
    }

    pub(super) fn step(&self) -> Option<&PlanStep> {
        self.steps.get(self.idx)
    }

    /// The current step, shared (no copy), for code that must hold it across `&mut self`.
    pub(super) fn step_shared(&self) -> Option<StepRef> {
        (self.idx < self.steps.len()).then(|| StepRef {
            steps: self.steps.clone(),
            idx: self.idx,
        })
    }
    pub(super) fn reset_run(&mut self) {
        self.approvers.clear();
        self.idx = 0;
        self.entered = false;
        self.batch = BatchPhase::Launch;
        self.until_ms = None;
        self.gate_deadline_ms = None;
        self.paused_by_operator = false;
        self.failure_hold = None;
        self.paused_at_ms = None;
        self.health_errors = 0;
        self.analysis = None;
        self.continuous = None;
        self.busy = None;
        self.generation += 1;
        self.promote_all = false;
        self.rollback_waiting = false;
        self.replaced = 0;
        self.extending = false;
        self.complete = false;
        self.retry = None;
    }
}

/// A step of a service's plan held without copying it (see [`ServiceRun::step_shared`]).
pub(super) struct StepRef {
    steps: std::sync::Arc<[PlanStep]>,
    idx: usize,
}

impl std::ops::Deref for StepRef {
    type Target = PlanStep;

    fn deref(&self) -> &PlanStep {
        &self.steps[self.idx]
    }
}

/// The phases of one rolling batch step (`replace_batch`), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchPhase {
    /// Launch the next batch of candidate instances.
    Launch,
    /// Wait until the batch is healthy, then shift its share of the traffic and shrink the
    /// baseline.
    Shift,
    /// The batch is in; the step completes.
    Done,
}
