//! The reconciler: one state machine per service, orchestrated across services, driven by
//! ticks (time) and commands. Every decision goes through [`Engine::emit`], which
//! records the event durably, folds it into the [`ReleaseState`] and broadcasts it, and
//! only then does the engine act on it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::judge::Outcome;
use crate::plan::{Action, Plan, PlanStep};
use crate::platform::{InstanceState, Platform, RevisionHealth, Weights};
use crate::release::{FailurePolicy, OnInconclusive, OnTimeout, Release, Service, StrategyKind};

use super::analysis::{AnalysisRun, judge_config, sample_every};
use super::clock::Clock;
use super::command::{Command, CommandReply, Refusal};
use super::recorder::{RecordError, Recorder};
use super::smoke::{SmokeOutcome, SmokeTester};
use super::state::{
    Event, EventKind, FinalStatus, Gate, GateKind, HealthSummary, ReleaseState, ReleaseStatus,
    ServiceInit, ServiceState, ServiceStatus, Trigger,
};

// The engine's migration stages (a child module: it extends `Engine` with hooks below).
#[path = "migration.rs"]
mod migration;
pub use migration::ContractMode;
pub(crate) use migration::service_progress as migration_service_progress;

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the release has no service named `{0}`")]
    UnknownService(String),
    #[error("{0}")]
    Setup(String),
}

/// Settings of one engine run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Who started the engine (resume and automatic events are attributed to it).
    pub operator: String,
    /// How long starting baselines (and restarting revisions on resume) may take.
    pub bootstrap_timeout: Duration,
    /// Keep the engine running after the release finished, for as long as a command
    /// sender is alive (a console, `retry` after the summary). Default: stop when done.
    pub stay_alive: bool,
    /// What the platform knows of a service better than the release file does (ECS: the
    /// revision running now and the service's task count). Empty on the local platform.
    pub platform_services: HashMap<String, PlatformService>,
    /// The release's `[[migration]]`s, read and linted (`migrate::prepare`).
    pub migrations: Vec<crate::migrate::PreparedMigration>,
    /// What happens once a contract is allowed (confirm, `--allow-contract`, defer).
    pub contract: ContractMode,
    /// How migration stages run (timeouts, retries); the actor is the operator.
    pub migrate: crate::migrate::RunOptions,
}

/// A platform's view of one service at the start of a run (see
/// [`EngineOptions::platform_services`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformService {
    /// The baseline revision's name as the platform names it (`1.0`, an image tag),
    /// instead of the release's placeholder.
    pub baseline: Option<String>,
    /// Instances per revision, instead of `[service.local] replicas`.
    pub replicas: Option<u32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            operator: "unknown".into(),
            bootstrap_timeout: Duration::from_secs(60),
            stay_alive: false,
            platform_services: HashMap::new(),
            migrations: Vec::new(),
            contract: ContractMode::default(),
            migrate: crate::migrate::RunOptions::default(),
        }
    }
}

/// Work done off the engine's task; the result comes back through a channel.
#[derive(Debug)]
enum Background {
    Smoke {
        service: String,
        generation: u64,
        /// Whose tests ran (the service itself, or a dependent for cross-validation).
        results: Vec<(String, String, String, SmokeOutcome)>,
        cross: bool,
    },
    Retired {
        service: String,
        revision: String,
        result: Result<(), String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Smoke,
    CrossCheck,
}

/// Per-service runtime state that is not part of the public snapshot.
struct Rt {
    spec: Service,
    steps: Vec<PlanStep>,
    dependents: Vec<String>,
    replicas: u32,
    /// 0-based index of the step being run; `entered` says whether its action ran.
    idx: usize,
    entered: bool,
    /// Sub-phase of multi-stage steps (rolling batches).
    sub: u8,
    step_started_ms: u64,
    /// A retryable platform failure interrupted the step: (attempts, next try at). The
    /// step keeps its start time, so `progress_deadline` still bounds the retries.
    retry: Option<(u32, u64)>,
    until_ms: Option<u64>,
    gate_deadline_ms: Option<u64>,
    paused_by_operator: bool,
    /// on_failure = pause: held after a failure until a person decides.
    failure_hold: Option<String>,
    paused_at_ms: Option<u64>,
    next_health_ms: u64,
    health_errors: u32,
    last_health: Option<HealthSummary>,
    analysis: Option<AnalysisRun>,
    /// Analysis that runs throughout (linear, rolling, blue-green bake).
    continuous: Option<AnalysisRun>,
    busy: Option<Busy>,
    generation: u64,
    /// Revisions being retired in the background.
    retiring: BTreeSet<String>,
    promote_all: bool,
    rollback_waiting: bool,
    /// Who approved which step (0-based index) so far, for gates needing several people.
    approvers: Vec<(usize, String)>,
    /// Candidate replicas replaced so far (rolling).
    replaced: u32,
    /// A timed analysis ran out inconclusive and keeps going (`on_inconclusive = extend`).
    extending: bool,
    /// All steps done (cleanup included).
    complete: bool,
}

/// Approvals of the waiting gate recorded before a crash count after resume: the state
/// fold kept who approved; the gate is re-entered at the same step index.
fn restore_partial_approvals(rt: &mut Rt, s: &crate::engine::ServiceState) {
    if s.status == ServiceStatus::AwaitingApproval {
        rt.approvers = s.approvals.iter().map(|w| (rt.idx, w.clone())).collect();
    }
}

impl Rt {
    fn step(&self) -> Option<&PlanStep> {
        self.steps.get(self.idx)
    }
    fn reset_run(&mut self) {
        self.approvers.clear();
        self.idx = 0;
        self.entered = false;
        self.sub = 0;
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

/// The engine of one release run.
pub struct Engine {
    release: Release,
    options: EngineOptions,
    platform: Arc<dyn Platform>,
    clock: Arc<dyn Clock>,
    recorder: Box<dyn Recorder>,
    smoke: Arc<dyn SmokeTester>,
    events: broadcast::Sender<Event>,
    state_tx: watch::Sender<ReleaseState>,
    state: ReleaseState,
    dirty: bool,
    seq: u64,
    order: Vec<String>,
    rts: HashMap<String, Rt>,
    wake: Arc<Notify>,
    bg_tx: mpsc::UnboundedSender<Background>,
    bg_rx: mpsc::UnboundedReceiver<Background>,
    bootstrapped: bool,
    /// Resumed from a journal: revisions must be brought back before going on.
    restore: bool,
    /// The operator's stated reason for the command being handled (journaled with it).
    note: Option<String>,
    /// Per service: who or what started its latest rollback, and when (for refusals).
    rollbacks: HashMap<String, (String, u64)>,
    /// The release's migration stages.
    mig: migration::Migrations,
}

fn weights_of(baseline: &str, candidate: &str, candidate_weight: u8) -> Weights {
    let mut w = Vec::new();
    if candidate_weight < 100 {
        w.push((baseline.to_string(), 100 - candidate_weight));
    }
    if candidate_weight > 0 {
        w.push((candidate.to_string(), candidate_weight));
    }
    w
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn problem_of(h: &RevisionHealth) -> Option<String> {
    h.instances.iter().find_map(|i| match &i.state {
        InstanceState::Unhealthy { reason } => Some(format!("{} unhealthy: {reason}", i.id)),
        InstanceState::Exited { reason } => Some(format!("{} exited: {reason}", i.id)),
        _ => None,
    })
}

impl Engine {
    /// An engine for a validated release and its plan, starting in [`ReleaseStatus::Ready`]
    /// (send [`Command::Start`]). Records `ReleaseLoaded` first.
    pub fn new(
        release: Release,
        plan: &Plan,
        platform: Arc<dyn Platform>,
        clock: Arc<dyn Clock>,
        recorder: Box<dyn Recorder>,
        smoke: Arc<dyn SmokeTester>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine::bare(release, plan, platform, clock, recorder, smoke, options)?;
        let services = plan
            .services
            .iter()
            .map(|sp| {
                let rt = &engine.rts[&sp.name];
                let (mut baseline, candidate) = revisions(&engine.release, &rt.spec);
                if let Some(b) = engine
                    .options
                    .platform_services
                    .get(&sp.name)
                    .and_then(|p| p.baseline.clone())
                {
                    baseline = b;
                }
                ServiceInit {
                    name: sp.name.clone(),
                    strategy: sp.strategy,
                    wave: sp.wave,
                    depends_on: sp.depends_on.clone(),
                    baseline,
                    candidate,
                    steps: sp.steps.iter().map(|s| s.description.clone()).collect(),
                }
            })
            .collect();
        let run_id = engine.recorder.run_id();
        engine.emit(EventKind::ReleaseLoaded {
            release: plan.release.clone(),
            run_id,
            platform: engine.platform.name().to_string(),
            environment: engine.release.release.environment.clone(),
            on_failure: plan.on_failure,
            max_parallel: plan.max_parallel,
            waves: plan.waves.clone(),
            services,
        })?;
        Ok(engine)
    }

    fn bare(
        release: Release,
        plan: &Plan,
        platform: Arc<dyn Platform>,
        clock: Arc<dyn Clock>,
        recorder: Box<dyn Recorder>,
        smoke: Arc<dyn SmokeTester>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let (events, _) = broadcast::channel(4096);
        let (state_tx, _) = watch::channel(ReleaseState::empty());
        let (bg_tx, bg_rx) = mpsc::unbounded_channel();
        let mut rts = HashMap::new();
        let mut order = Vec::new();
        for sp in &plan.services {
            let spec = release
                .service(&sp.name)
                .cloned()
                .ok_or_else(|| EngineError::UnknownService(sp.name.clone()))?;
            let replicas = options
                .platform_services
                .get(&sp.name)
                .and_then(|p| p.replicas)
                .unwrap_or_else(|| spec.local.as_ref().map_or(1, |l| l.replicas.max(1)));
            order.push(sp.name.clone());
            rts.insert(
                sp.name.clone(),
                Rt {
                    spec,
                    steps: sp.steps.clone(),
                    dependents: sp.dependents.clone(),
                    replicas,
                    idx: 0,
                    entered: false,
                    sub: 0,
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
                },
            );
        }
        let mig = migration::Migrations::new(
            &options.migrations,
            plan,
            options.contract,
            options.migrate.clone(),
        );
        Ok(Engine {
            mig,
            release,
            options,
            platform,
            clock,
            recorder,
            smoke,
            events,
            state_tx,
            state: ReleaseState::empty(),
            dirty: true,
            seq: 0,
            order,
            rts,
            wake: Arc::new(Notify::new()),
            bg_tx,
            bg_rx,
            bootstrapped: false,
            restore: false,
            note: None,
            rollbacks: HashMap::new(),
        })
    }

    /// Rebuild an engine from a journal's events (`cutover resume`): the state is the fold
    /// of the events; revisions are relaunched at their journaled weights on the next tick,
    /// and each unfinished service restarts its current step.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        release: Release,
        plan: &Plan,
        platform: Arc<dyn Platform>,
        clock: Arc<dyn Clock>,
        recorder: Box<dyn Recorder>,
        smoke: Arc<dyn SmokeTester>,
        options: EngineOptions,
        events: &[Event],
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine::bare(release, plan, platform, clock, recorder, smoke, options)?;
        engine.state = ReleaseState::replay(events);
        engine.seq = engine.state.last_seq;
        for e in events {
            if let EventKind::RollbackStarted {
                service, trigger, ..
            } = &e.kind
            {
                engine
                    .rollbacks
                    .insert(service.clone(), (trigger_text(trigger), e.at_ms));
            }
        }
        if engine.state.services.len() != engine.order.len() {
            return Err(EngineError::Setup(format!(
                "the journal describes {} service(s) but the release file has {}; resume needs the same release file",
                engine.state.services.len(),
                engine.order.len()
            )));
        }
        let now = engine.clock.now_ms();
        for s in engine.state.services.clone() {
            let Some(rt) = engine.rts.get_mut(&s.name) else {
                return Err(EngineError::UnknownService(s.name.clone()));
            };
            rt.idx = s.step.saturating_sub(1);
            rt.entered = false;
            rt.step_started_ms = now;
            // Rolling batches restart from the journaled weight.
            rt.replaced = (u32::from(s.candidate_weight) * rt.replicas).div_ceil(100);
            if s.status == ServiceStatus::Paused && s.gate.is_none() {
                rt.paused_by_operator = true;
            }
            if s.status == ServiceStatus::Promoted && !s.cleanup_pending {
                rt.complete = true;
            }
            if s.status == ServiceStatus::RollingBack {
                rt.rollback_waiting = true;
            }
            restore_partial_approvals(rt, &s);
        }
        engine.restore = true;
        let operator = engine.options.operator.clone();
        engine.emit(EventKind::EngineRestarted {
            operator,
            note: format!("resuming from event {}", engine.seq),
        })?;
        Ok(engine)
    }

    /// Subscribe to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
    pub fn event_sender(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }
    /// The snapshot, updated after every tick and command.
    pub fn watch(&self) -> watch::Receiver<ReleaseState> {
        self.state_tx.subscribe()
    }
    pub fn state(&self) -> &ReleaseState {
        &self.state
    }
    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
    pub fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    /// Record, apply, broadcast. The caller acts only after this returned Ok.
    /// Record a platform call that failed but may succeed on a later tick.
    /// After a retryable platform failure: try again later, backing off.
    fn back_off(&mut self, service: &str) {
        let now = self.clock.now_ms();
        if let Some(rt) = self.rts.get_mut(service) {
            let attempts = rt.retry.map_or(0, |(n, _)| n) + 1;
            rt.retry = Some((attempts, now + retry_backoff_ms(attempts)));
        }
    }

    fn platform_warning(
        &mut self,
        service: &str,
        e: crate::platform::PlatformError,
    ) -> Result<(), EngineError> {
        self.back_off(service);
        self.emit(EventKind::PlatformError {
            service: service.to_string(),
            message: e.message,
            fatal: false,
        })
    }

    pub(crate) fn emit(&mut self, kind: EventKind) -> Result<(), EngineError> {
        let observation = kind.is_observation();
        if let EventKind::RollbackStarted {
            service, trigger, ..
        } = &kind
        {
            self.rollbacks.insert(
                service.clone(),
                (trigger_text(trigger), self.clock.now_ms()),
            );
        }
        let event = Event {
            seq: if observation { self.seq } else { self.seq + 1 },
            at_ms: self.clock.now_ms(),
            kind,
        };
        if !observation {
            self.recorder.record(&event)?;
            self.seq += 1;
        }
        self.state.apply(&event);
        self.dirty = true;
        let _ = self.events.send(event);
        Ok(())
    }

    fn publish(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.state_tx.send_replace(self.state.clone());
        }
    }

    fn status(&self, name: &str) -> ServiceStatus {
        self.state
            .service(name)
            .map_or(ServiceStatus::Skipped, |s| s.status)
    }

    fn svc(&self, name: &str) -> Option<&super::state::ServiceState> {
        self.state.service(name)
    }

    /// True once the release finished and no cleanup or background work remains.
    pub fn is_done(&self) -> bool {
        self.state.status == ReleaseStatus::Finished
            && self.rts.values().all(|rt| {
                !self.mig.busy()
                    && rt.retiring.is_empty()
                    && rt.busy.is_none()
                    && !self
                        .svc(&rt.spec.name)
                        .is_some_and(|s| s.status == ServiceStatus::Promoted && !rt.complete)
            })
    }

    /// Mark the journal run finished (after cleanup: nothing may be recorded after it).
    pub fn close(&mut self) -> Result<(), EngineError> {
        let all_promoted = self
            .state
            .final_statuses()
            .is_some_and(|s| s.values().all(|f| *f == FinalStatus::Promoted));
        self.recorder.finish(if all_promoted {
            "promoted"
        } else {
            "rolled_back"
        })?;
        Ok(())
    }

    /// When the engine next needs to run even without a command.
    pub fn next_wakeup(&self) -> u64 {
        let now = self.clock.now_ms();
        let mut t = now + 1000;
        for name in &self.order {
            let rt = &self.rts[name];
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

    /// Run everything that is due now. Returns after one pass.
    pub async fn tick(&mut self) -> Result<(), EngineError> {
        while let Ok(bg) = self.bg_rx.try_recv() {
            self.on_background(bg).await?;
        }
        if matches!(self.state.status, ReleaseStatus::Ready) {
            self.publish();
            return Ok(());
        }
        if !self.bootstrapped {
            self.bootstrap().await?;
            self.bootstrapped = true;
        }
        for name in self.order.clone() {
            self.drive(&name).await?;
        }
        self.migrations_tick().await?;
        self.schedule().await?;
        self.check_finished()?;
        self.publish();
        Ok(())
    }

    /// Before the first step: every baseline runs and takes all traffic. On resume, every
    /// journaled revision is relaunched and the journaled weights are set again.
    async fn bootstrap(&mut self) -> Result<(), EngineError> {
        let inventory = self.platform.inventory().await.unwrap_or_default();
        let mut want: Vec<(String, String, u32, bool)> = Vec::new(); // service, revision, replicas, is_candidate
        for name in self.order.clone() {
            let s = self.state.service(&name).cloned();
            let Some(s) = s else { continue };
            let rt = &self.rts[&name];
            let replicas = rt.replicas;
            let baseline_needed = !self.restore || s.baseline_running || never_bootstrapped(&s);
            if baseline_needed {
                let baseline_replicas = if s.strategy == StrategyKind::Rolling && self.restore {
                    replicas.saturating_sub(rt.replaced).max(
                        u32::from(
                            s.status == ServiceStatus::RollingBack
                                || s.status == ServiceStatus::RolledBack,
                        ) * replicas,
                    )
                } else {
                    replicas
                };
                if baseline_replicas > 0 {
                    want.push((name.clone(), s.baseline.clone(), baseline_replicas, false));
                }
            }
            if self.restore
                && s.candidate_running
                && !matches!(s.status, ServiceStatus::RolledBack | ServiceStatus::Skipped)
            {
                let n =
                    if s.strategy == StrategyKind::Rolling && s.status != ServiceStatus::Promoted {
                        self.rts[&name].replaced.max(1)
                    } else {
                        replicas
                    };
                want.push((name.clone(), s.candidate.clone(), n, true));
            }
        }
        for (service, revision, replicas, _) in &want {
            let running = inventory.iter().any(|r| {
                &r.service == service && &r.revision == revision && r.replicas >= *replicas
            });
            if !running && let Err(e) = self.platform.launch(service, revision, *replicas).await {
                self.emit(EventKind::PlatformError {
                    service: service.clone(),
                    message: e.message.clone(),
                    fatal: true,
                })?;
                return Err(EngineError::Setup(format!(
                    "cannot start {service} {revision}: {}",
                    e.message
                )));
            }
        }
        // Wait until every revision wanted has a healthy instance (bounded).
        let deadline = self.clock.now_ms() + ms(self.options.bootstrap_timeout);
        loop {
            let mut missing = Vec::new();
            for (service, revision, _, _) in &want {
                match self.platform.health(service, revision).await {
                    Ok(h) if h.all_healthy() => {}
                    Ok(h) => missing.push(format!(
                        "{service} {revision} ({}/{} healthy{})",
                        h.healthy(),
                        h.desired,
                        problem_of(&h).map(|p| format!(", {p}")).unwrap_or_default()
                    )),
                    Err(e) => missing.push(format!("{service} {revision} ({})", e.message)),
                }
            }
            if missing.is_empty() {
                break;
            }
            if self.clock.now_ms() >= deadline {
                return Err(EngineError::Setup(format!(
                    "revisions did not become healthy within {:?}: {}",
                    self.options.bootstrap_timeout,
                    missing.join("; ")
                )));
            }
            let at = self.clock.now_ms() + 100;
            self.clock.sleep_until(at).await;
        }
        for name in self.order.clone() {
            let Some(s) = self.state.service(&name).cloned() else {
                continue;
            };
            let fresh = !self.restore || never_bootstrapped(&s);
            let weights = if self.restore && !s.weights.is_empty() {
                match s.status {
                    ServiceStatus::RollingBack
                    | ServiceStatus::RolledBack
                    | ServiceStatus::Skipped => weights_of(&s.baseline, &s.candidate, 0),
                    _ => s.weights.clone(),
                }
            } else if !fresh && !s.baseline_running {
                weights_of(&s.baseline, &s.candidate, 100)
            } else {
                weights_of(&s.baseline, &s.candidate, 0)
            };
            self.emit(EventKind::WeightsSet {
                service: name.clone(),
                weights: weights.clone(),
            })?;
            if let Err(e) = self.platform.set_weights(&name, &weights).await {
                return Err(EngineError::Setup(format!(
                    "cannot set the weights of {name}: {}",
                    e.message
                )));
            }
            if fresh {
                self.emit(EventKind::BaselineReady {
                    service: name.clone(),
                    revision: s.baseline.clone(),
                })?;
            }
            if self.restore
                && s.status == ServiceStatus::RollingBack
                && let Some(rt) = self.rts.get_mut(&name)
            {
                rt.rollback_waiting = true;
            }
            if self.restore && s.status == ServiceStatus::RolledBack && s.candidate_running {
                self.spawn_retire(&name, &s.candidate);
            }
        }
        self.restore = false;
        Ok(())
    }

    /// Start services whose dependencies are promoted, up to `max_parallel` at once; skip
    /// those whose dependencies can no longer promote.
    async fn schedule(&mut self) -> Result<(), EngineError> {
        if self.state.status != ReleaseStatus::Running {
            return Ok(());
        }
        let max = self.state.max_parallel.max(1) as usize;
        // Waves are barriers (see the plan): a wave starts once every service of the
        // earlier waves has finished (promoted, or rolled back / skipped / failed).
        let open_wave = self.open_wave();
        for name in self.order.clone() {
            if self.status(&name) != ServiceStatus::Pending {
                continue;
            }
            let deps = self.rts[&name].spec.depends_on.clone();
            if let Some(bad) = deps.iter().find(|d| {
                matches!(
                    self.status(d),
                    ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::Skipped
                )
            }) {
                let reason = format!("dependency {bad} {}", self.status(bad));
                self.emit(EventKind::Skipped {
                    service: name.clone(),
                    reason,
                })?;
                continue;
            }
            if !deps
                .iter()
                .all(|d| self.status(d) == ServiceStatus::Promoted)
            {
                continue;
            }
            if !self.rts[&name].retiring.is_empty() {
                continue;
            }
            if self.svc(&name).is_some_and(|s| s.wave > open_wave) {
                continue;
            }
            if self.migration_holds(&name) {
                continue;
            }
            let active = self
                .state
                .services
                .iter()
                .filter(|s| s.status.is_active())
                .count();
            if active >= max {
                break;
            }
            let now = self.clock.now_ms();
            if let Some(rt) = self.rts.get_mut(&name) {
                rt.reset_run();
                rt.step_started_ms = now;
                rt.next_health_ms = now;
            }
            self.emit(EventKind::ServiceStarted {
                service: name.clone(),
            })?;
        }
        Ok(())
    }

    fn check_finished(&mut self) -> Result<(), EngineError> {
        if self.state.status == ReleaseStatus::Finished {
            return Ok(());
        }
        let Some(services) = self.state.final_statuses() else {
            return Ok(());
        };
        if self
            .rts
            .values()
            .any(|rt| rt.busy == Some(Busy::CrossCheck))
            || self.migrations_pending()
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

    async fn on_background(&mut self, bg: Background) -> Result<(), EngineError> {
        match bg {
            Background::Smoke {
                service,
                generation,
                results,
                cross,
            } => {
                let Some(rt) = self.rts.get(&service) else {
                    return Ok(());
                };
                if rt.generation != generation {
                    return Ok(());
                }
                if let Some(rt) = self.rts.get_mut(&service) {
                    rt.busy = None;
                }
                let mut failed = None;
                for (owner, test, revision, out) in results {
                    let label = if owner == service {
                        test.clone()
                    } else {
                        format!("{owner}/{test}")
                    };
                    self.emit(EventKind::SmokeResult {
                        service: service.clone(),
                        test: label.clone(),
                        revision,
                        passed: out.passed,
                        detail: out.detail.clone(),
                    })?;
                    if !out.passed && failed.is_none() {
                        failed = Some(if cross {
                            format!(
                                "dependent {owner}'s smoke test {test} failed against the new {service}: {}",
                                out.detail
                            )
                        } else {
                            format!("smoke test {test} failed: {}", out.detail)
                        });
                    }
                }
                let active = self.status(&service).is_active();
                match failed {
                    Some(reason) if active => self.fail_service(&service, reason).await?,
                    Some(_) => {}
                    None if active => {
                        if cross {
                            self.emit(EventKind::Promoted {
                                service: service.clone(),
                            })?;
                        }
                        self.complete_step(&service).await?;
                    }
                    None => {}
                }
            }
            Background::Retired {
                service,
                revision,
                result,
            } => {
                if let Some(rt) = self.rts.get_mut(&service) {
                    rt.retiring.remove(&revision);
                }
                match result {
                    Ok(()) => {
                        self.emit(EventKind::Retired {
                            service: service.clone(),
                            revision: revision.clone(),
                        })?;
                        let is_cleanup = self.rts.get(&service).is_some_and(|rt| {
                            matches!(rt.step().map(|s| &s.action), Some(Action::Retire { .. }))
                        }) && self.status(&service) == ServiceStatus::Promoted;
                        if is_cleanup {
                            self.complete_step(&service).await?;
                        }
                    }
                    Err(message) => {
                        self.emit(EventKind::PlatformError {
                            service: service.clone(),
                            message: format!("retiring {revision}: {message}"),
                            fatal: false,
                        })?;
                        if let Some(rt) = self.rts.get_mut(&service) {
                            // Try again on the next step entry.
                            rt.entered = false;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn spawn_retire(&mut self, service: &str, revision: &str) {
        let Some(rt) = self.rts.get_mut(service) else {
            return;
        };
        if !rt.retiring.insert(revision.to_string()) {
            return;
        }
        let drain = rt
            .spec
            .local
            .as_ref()
            .map_or(Duration::from_secs(30), |l| l.drain_timeout.0);
        let platform = self.platform.clone();
        let tx = self.bg_tx.clone();
        let wake = self.wake.clone();
        let (service, revision) = (service.to_string(), revision.to_string());
        tokio::spawn(async move {
            let result = platform
                .retire(&service, &revision, drain)
                .await
                .map_err(|e| e.message);
            let _ = tx.send(Background::Retired {
                service,
                revision,
                result,
            });
            wake.notify_one();
        });
    }

    fn spawn_smoke(&mut self, service: &str, cross: bool) {
        // Tests to run: (owner service, test, revision to test).
        let mut plan: Vec<(crate::release::Smoke, String, String)> = Vec::new();
        if cross {
            let dependents = self.rts[service].dependents.clone();
            for d in dependents {
                let Some(ds) = self.svc(&d) else { continue };
                // A dependent's tests run against what it serves now.
                let rev = if ds.status == ServiceStatus::Promoted {
                    ds.candidate.clone()
                } else {
                    ds.baseline.clone()
                };
                for t in &self.rts[&d].spec.smoke {
                    plan.push((t.clone(), d.clone(), rev.clone()));
                }
            }
        } else if let Some(s) = self.svc(service) {
            for t in &self.rts[service].spec.smoke {
                plan.push((t.clone(), service.to_string(), s.candidate.clone()));
            }
        }
        let Some(rt) = self.rts.get_mut(service) else {
            return;
        };
        rt.busy = Some(if cross { Busy::CrossCheck } else { Busy::Smoke });
        let generation = rt.generation;
        let platform = self.platform.clone();
        let tester = self.smoke.clone();
        let tx = self.bg_tx.clone();
        let wake = self.wake.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for (test, owner, revision) in plan {
                let out = match platform.test_route(&owner, &revision).await {
                    Err(e) => SmokeOutcome {
                        passed: false,
                        detail: format!("no test route to {owner} {revision}: {}", e.message),
                    },
                    Ok(route) => {
                        let direct = match platform.health(&owner, &revision).await {
                            Ok(h) => h
                                .instances
                                .iter()
                                .find(|i| i.state == InstanceState::Healthy)
                                .map(|i| format!("http://{}", i.address))
                                .unwrap_or_else(|| route.base_url.clone()),
                            Err(_) => route.base_url.clone(),
                        };
                        tester.run(&test, &route, &direct).await
                    }
                };
                let failed = !out.passed;
                results.push((owner, test.name.clone(), revision, out));
                if failed {
                    break;
                }
            }
            let _ = tx.send(Background::Smoke {
                service,
                generation,
                results,
                cross,
            });
            wake.notify_one();
        });
    }

    /// One service's share of a tick.
    async fn drive(&mut self, name: &str) -> Result<(), EngineError> {
        let status = self.status(name);
        match status {
            ServiceStatus::Pending | ServiceStatus::Skipped | ServiceStatus::Failed => {
                return Ok(());
            }
            ServiceStatus::RolledBack => return Ok(()),
            ServiceStatus::RollingBack => return self.continue_rollback(name).await,
            _ => {}
        }
        let now = self.clock.now_ms();
        // Watch health and the judges (even while paused: a pause freezes weights, not checks).
        if self.rts[name].next_health_ms <= now {
            self.poll_health(name).await?;
            if self.status(name) != status {
                return Ok(());
            }
        }
        if status != ServiceStatus::Promoted {
            self.poll_analysis(name).await?;
            if !self.status(name).is_active() {
                return Ok(());
            }
        }
        let release_paused = self.state.status == ReleaseStatus::Paused;
        let rt = &self.rts[name];
        if release_paused || rt.paused_by_operator || rt.failure_hold.is_some() {
            return Ok(());
        }
        // Progress deadline: a step that waits for nobody but takes too long.
        let deadline = ms(self.release.release.progress_deadline.0);
        if let Some(step) = rt.step() {
            let waits_for_people = matches!(
                step.action,
                Action::Pause { duration_ms: None } | Action::Approval { .. }
            ) || rt.gate_deadline_ms.is_some()
                || self.svc(name).is_some_and(|s| s.gate.is_some());
            let own = step.min_duration_ms;
            if status != ServiceStatus::Promoted
                && !waits_for_people
                && (rt.entered || rt.retry.is_some())
                && now > rt.step_started_ms + own + deadline
            {
                let why = if rt.extending {
                    "the analysis stayed inconclusive until the progress deadline".to_string()
                } else {
                    format!(
                        "step {} ({}) made no progress",
                        step.index, step.description
                    )
                };
                let reason = format!(
                    "{why} within progress_deadline {}",
                    self.release.release.progress_deadline
                );
                return self.fail_service(name, reason).await;
            }
        }
        self.run_step(name).await
    }

    async fn poll_health(&mut self, name: &str) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let Some(s) = self.svc(name).cloned() else {
            return Ok(());
        };
        let rt = &self.rts[name];
        let interval = ms(rt.spec.health.interval.0).max(50);
        let unhealthy_after = rt.spec.health.unhealthy_after.max(1);
        if let Some(rt) = self.rts.get_mut(name) {
            rt.next_health_ms = now + interval;
        }
        if !s.candidate_running {
            return Ok(());
        }
        let cand = self.platform.health(name, &s.candidate).await;
        let base = if s.baseline_running {
            self.platform.health(name, &s.baseline).await.ok()
        } else {
            None
        };
        match cand {
            Err(e) => {
                let errors = {
                    let Some(rt) = self.rts.get_mut(name) else {
                        return Ok(());
                    };
                    rt.health_errors += 1;
                    rt.health_errors
                };
                if errors >= unhealthy_after {
                    return self
                        .fail_service(
                            name,
                            format!(
                                "health of {} could not be read {errors} times: {}",
                                s.candidate, e.message
                            ),
                        )
                        .await;
                }
            }
            Ok(h) => {
                let summary = HealthSummary {
                    candidate_healthy: h.healthy(),
                    candidate_desired: h.desired,
                    baseline_healthy: base.as_ref().map_or(0, RevisionHealth::healthy),
                    baseline_desired: base.as_ref().map_or(0, |b| b.desired),
                    problem: problem_of(&h),
                    at_ms: now,
                };
                let changed = {
                    let Some(rt) = self.rts.get_mut(name) else {
                        return Ok(());
                    };
                    rt.health_errors = 0;
                    let old = rt.last_health.as_ref().map(|o| HealthSummary {
                        at_ms: now,
                        ..o.clone()
                    });
                    let changed = old.as_ref() != Some(&summary);
                    rt.last_health = Some(summary.clone());
                    changed
                };
                if changed {
                    self.emit(EventKind::Health {
                        service: name.to_string(),
                        summary: summary.clone(),
                    })?;
                }
                if let Some(p) = summary.problem {
                    if s.status != ServiceStatus::Promoted {
                        return self
                            .fail_service(name, format!("candidate {} health: {p}", s.candidate))
                            .await;
                    }
                    // Promoted: go back while the old revision is still warm; once it is
                    // gone, restart what failed.
                    let warm = s.baseline_running && !self.rts[name].retiring.contains(&s.baseline);
                    if warm {
                        return self
                            .fail_service(
                                name,
                                format!("after promotion, while {} was kept warm, candidate {} health: {p}", s.baseline, s.candidate),
                            )
                            .await;
                    }
                    let replicas = self.rts[name].replicas;
                    self.emit(EventKind::PlatformError {
                        service: name.to_string(),
                        message: format!(
                            "{p}; the old revision is retired, restarting {}",
                            s.candidate
                        ),
                        fatal: false,
                    })?;
                    if let Err(e) = self.platform.launch(name, &s.candidate, replicas).await {
                        self.emit(EventKind::PlatformError {
                            service: name.to_string(),
                            message: e.message,
                            fatal: !e.retryable,
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn poll_analysis(&mut self, name: &str) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let weight = self.svc(name).map_or(0, |s| s.candidate_weight);
        for continuous in [false, true] {
            let due = {
                let rt = &self.rts[name];
                let a = if continuous {
                    &rt.continuous
                } else {
                    &rt.analysis
                };
                a.as_ref().is_some_and(|a| a.next_sample_ms <= now)
            };
            if !due {
                continue;
            }
            let result = {
                let Some(rt) = self.rts.get_mut(name) else {
                    return Ok(());
                };
                let a = if continuous {
                    &mut rt.continuous
                } else {
                    &mut rt.analysis
                };
                match a.as_mut() {
                    Some(a) => a.sample(now, weight).await,
                    None => Ok(None),
                }
            };
            match result {
                Err(e) => {
                    self.emit(EventKind::PlatformError {
                        service: name.to_string(),
                        message: format!("metrics: {e}"),
                        fatal: false,
                    })?;
                }
                Ok(Some(v)) => {
                    let fail = v.outcome == Outcome::Fail;
                    let summary = v.summary.clone();
                    self.emit(EventKind::Verdict {
                        service: name.to_string(),
                        verdict: v,
                    })?;
                    if fail {
                        return self
                            .fail_service(name, format!("analysis failed: {summary}"))
                            .await;
                    }
                }
                Ok(None) => {}
            }
        }
        Ok(())
    }

    /// Enter the current step if needed, and finish it when its condition holds.
    async fn run_step(&mut self, name: &str) -> Result<(), EngineError> {
        let Some(step) = self.rts[name].step().cloned() else {
            return Ok(());
        };
        if self.rts[name].busy.is_some() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let s = match self.svc(name).cloned() {
            Some(s) => s,
            None => return Ok(()),
        };
        if !self.rts[name].entered {
            let retrying = self.rts[name].retry;
            if retrying.is_some_and(|(_, at)| now < at) {
                return Ok(());
            }
            let until = match step.action {
                Action::Analysis { duration_ms }
                | Action::Bake { duration_ms }
                | Action::KeepOld { duration_ms }
                | Action::Pause {
                    duration_ms: Some(duration_ms),
                } => Some(now + duration_ms),
                _ => None,
            };
            if let Some(rt) = self.rts.get_mut(name) {
                rt.entered = true;
                rt.sub = 0;
                if retrying.is_none() {
                    rt.step_started_ms = now;
                }
                rt.until_ms = until;
                rt.gate_deadline_ms = None;
                rt.extending = false;
            }
            self.emit(EventKind::StepStarted {
                service: name.to_string(),
                index: step.index,
                of: self.rts[name].steps.len(),
                action: step.action.clone(),
                description: step.description.clone(),
                until_ms: until,
            })?;
            return self.enter_step(name, &step, &s).await;
        }
        // Completion checks of steps already entered.
        match &step.action {
            Action::Launch { .. } | Action::SetWeight { .. } | Action::Switch => {
                if step_is_instant(&step.action) {
                    self.complete_step(name).await?;
                }
            }
            // An ECS rolling update is done when the platform reports the new deployment
            // healthy (its rollout state folded into health); a failed rollout shows as a
            // health problem and the progress deadline bounds the wait.
            Action::WaitHealthy | Action::EcsRollingUpdate => {
                if let Ok(h) = self.platform.health(name, &s.candidate).await
                    && h.all_healthy()
                {
                    self.complete_step(name).await?;
                }
            }
            Action::Analysis { .. } | Action::Bake { .. } => {
                let rt = &self.rts[name];
                let extended_pass = rt.extending
                    && rt
                        .analysis
                        .as_ref()
                        .or(rt.continuous.as_ref())
                        .is_some_and(|a| a.outcome() == Outcome::Pass);
                if extended_pass {
                    if let Some(rt) = self.rts.get_mut(name) {
                        rt.extending = false;
                    }
                    self.end_analysis(name, &step).await?;
                } else if rt.until_ms.is_some_and(|u| now >= u) {
                    self.end_analysis(name, &step).await?;
                }
            }
            Action::Pause {
                duration_ms: Some(_),
            }
            | Action::KeepOld { .. } => {
                if self.rts[name].until_ms.is_some_and(|u| now >= u) {
                    self.complete_step(name).await?;
                }
            }
            Action::Approval { on_timeout, .. } => {
                if self.rts[name].gate_deadline_ms.is_some_and(|d| now >= d) {
                    let on_timeout = *on_timeout;
                    if let Some(rt) = self.rts.get_mut(name) {
                        rt.gate_deadline_ms = None;
                    }
                    match on_timeout {
                        OnTimeout::Rollback => {
                            self.fail_service(
                                name,
                                "approval timed out (on_timeout = rollback)".into(),
                            )
                            .await?
                        }
                        OnTimeout::Promote => {
                            self.emit(EventKind::GateAnswered {
                                service: name.to_string(),
                                answer: "approved on timeout (on_timeout = promote)".into(),
                                by: "engine".into(),
                            })?;
                            self.complete_step(name).await?;
                        }
                        OnTimeout::Pause => {
                            let gate = Gate {
                                kind: GateKind::Promote,
                                since_ms: now,
                                deadline_ms: None,
                            };
                            self.emit(EventKind::GateWaiting {
                                service: name.to_string(),
                                gate,
                                reason:
                                    "approval timed out (on_timeout = pause): promote or roll back"
                                        .into(),
                            })?;
                        }
                    }
                }
            }
            Action::ReplaceBatch { .. } => self.rolling_batch(name, &s).await?,
            Action::Pause { duration_ms: None }
            | Action::Smoke { .. }
            | Action::Promote
            | Action::Retire { .. } => {}
        }
        Ok(())
    }

    async fn enter_step(
        &mut self,
        name: &str,
        step: &PlanStep,
        s: &super::state::ServiceState,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        match &step.action {
            Action::Launch { revision, replicas } => {
                let n = replicas.unwrap_or(self.rts[name].replicas);
                match self.platform.launch(name, revision, n).await {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: revision.clone(),
                            replicas: n,
                        })?;
                        if let Some(rt) = self.rts.get_mut(name) {
                            rt.next_health_ms = now;
                        }
                        self.complete_step(name).await?;
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            Action::WaitHealthy => {}
            Action::Smoke { .. } => self.spawn_smoke(name, false),
            Action::SetWeight { weight } => {
                if self.set_weight(name, s, *weight).await? {
                    self.maybe_start_continuous(name, s, false).await?;
                    self.complete_step(name).await?;
                }
            }
            Action::Switch => {
                if self.set_weight(name, s, 100).await? {
                    self.complete_step(name).await?;
                }
            }
            Action::EcsRollingUpdate => {
                match self
                    .platform
                    .launch(name, &s.candidate, self.rts[name].replicas)
                    .await
                {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: s.candidate.clone(),
                            replicas: self.rts[name].replicas,
                        })?;
                        if let Some(rt) = self.rts.get_mut(name) {
                            rt.next_health_ms = now;
                        }
                        // Completed once healthy (see run_step), not here.
                        self.set_weight(name, s, 100).await?;
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            Action::Analysis { duration_ms } => {
                let continuous = s.strategy != StrategyKind::Canary;
                if continuous {
                    self.maybe_start_continuous(name, s, true).await?;
                } else {
                    let cfg = judge_config(
                        self.rts[name].spec.analysis.as_ref(),
                        false,
                        Duration::from_millis(*duration_ms),
                    );
                    self.start_analysis(name, s, cfg, *duration_ms, false)
                        .await?;
                }
            }
            Action::Bake { duration_ms } => {
                // No baseline takes traffic at 100 %: judge the candidate against the
                // release's absolute bounds.
                let cfg = judge_config(
                    self.rts[name].spec.analysis.as_ref(),
                    true,
                    Duration::from_millis(*duration_ms),
                );
                self.start_analysis(name, s, cfg, *duration_ms, true)
                    .await?;
            }
            Action::Pause {
                duration_ms: Some(_),
            }
            | Action::KeepOld { .. } => {}
            Action::Pause { duration_ms: None } => {
                let gate = Gate {
                    kind: GateKind::Promote,
                    since_ms: now,
                    deadline_ms: None,
                };
                self.emit(EventKind::GateWaiting {
                    service: name.to_string(),
                    gate,
                    reason: format!("held at {}% until someone promotes", s.candidate_weight),
                })?;
            }
            Action::Approval {
                timeout_ms,
                on_timeout,
                ..
            } => {
                let deadline = now + timeout_ms;
                if let Some(rt) = self.rts.get_mut(name) {
                    rt.gate_deadline_ms = Some(deadline);
                }
                let gate = Gate {
                    kind: GateKind::Approval {
                        on_timeout: *on_timeout,
                    },
                    since_ms: now,
                    deadline_ms: Some(deadline),
                };
                self.emit(EventKind::GateWaiting {
                    service: name.to_string(),
                    gate,
                    reason: format!(
                        "approval needed at {}% (approve or reject)",
                        s.candidate_weight
                    ),
                })?;
            }
            Action::ReplaceBatch { .. } => self.rolling_batch(name, s).await?,
            Action::Promote => {
                if let Some(rt) = self.rts.get_mut(name) {
                    rt.analysis = None;
                    rt.continuous = None;
                }
                let dependents_have_tests = self.rts[name]
                    .dependents
                    .iter()
                    .any(|d| self.rts.get(d).is_some_and(|rt| !rt.spec.smoke.is_empty()));
                if dependents_have_tests {
                    self.spawn_smoke(name, true);
                } else {
                    self.emit(EventKind::Promoted {
                        service: name.to_string(),
                    })?;
                    self.complete_step(name).await?;
                }
            }
            Action::Retire { .. } => {
                if s.baseline_running {
                    let baseline = s.baseline.clone();
                    self.spawn_retire(name, &baseline);
                } else {
                    self.complete_step(name).await?;
                }
            }
        }
        Ok(())
    }

    async fn start_analysis(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        cfg: crate::judge::AnalysisConfig,
        duration_ms: u64,
        continuous: bool,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let every = sample_every(Duration::from_millis(duration_ms));
        match AnalysisRun::start(
            self.platform.metrics(),
            name,
            &s.baseline,
            &s.candidate,
            cfg,
            every,
            now,
        )
        .await
        {
            Ok(run) => {
                if let Some(rt) = self.rts.get_mut(name) {
                    if continuous {
                        rt.continuous = Some(run);
                    } else {
                        rt.analysis = Some(run);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.fail_service(name, format!("cannot start the analysis: {e}"))
                    .await
            }
        }
    }

    /// Linear and rolling judge throughout, from the first traffic on the candidate.
    async fn maybe_start_continuous(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        force: bool,
    ) -> Result<(), EngineError> {
        let rt = &self.rts[name];
        if rt.continuous.is_some()
            || !matches!(s.strategy, StrategyKind::Linear | StrategyKind::Rolling)
            || (rt.spec.analysis.is_none() && !force)
        {
            return Ok(());
        }
        let total: u64 = rt
            .steps
            .iter()
            .map(|st| st.min_duration_ms)
            .sum::<u64>()
            .max(1000);
        let cfg = judge_config(
            rt.spec.analysis.as_ref(),
            false,
            Duration::from_millis(total),
        );
        let mut fresh = s.clone();
        fresh.candidate_weight = self.svc(name).map_or(0, |x| x.candidate_weight);
        self.start_analysis(name, &fresh, cfg, total, true).await
    }

    /// The end of a timed analysis (or bake): pass moves on, fail rolls back, inconclusive
    /// pauses or extends and says why.
    async fn end_analysis(&mut self, name: &str, step: &PlanStep) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        let rt = &self.rts[name];
        let is_canary = rt.spec.strategy == StrategyKind::Canary;
        let run = rt.analysis.as_ref().or(rt.continuous.as_ref());
        let Some(run) = run else {
            return self.complete_step(name).await;
        };
        let verdict = run.verdict(now);
        let outcome = run.outcome();
        // Intermediate holds of linear/rolling only need "not failed"; the last analysis
        // before full traffic (and every canary analysis, and the bake) needs a pass.
        let last_before_full = rt.steps[rt.idx + 1..]
            .iter()
            .take_while(|st| st.action != Action::Promote)
            .all(|st| !matches!(st.action, Action::Analysis { .. }));
        let needs_pass =
            is_canary || matches!(step.action, Action::Bake { .. }) || last_before_full;
        match outcome {
            Outcome::Fail => {
                let summary = verdict.summary.clone();
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                self.fail_service(name, format!("analysis failed: {summary}"))
                    .await
            }
            Outcome::Pass => {
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                if let Some(rt) = self.rts.get_mut(name) {
                    rt.analysis = None;
                    if matches!(step.action, Action::Bake { .. }) {
                        rt.continuous = None;
                    }
                }
                self.complete_step(name).await
            }
            Outcome::Inconclusive if !needs_pass => self.complete_step(name).await,
            Outcome::Inconclusive => {
                let on = rt
                    .spec
                    .analysis
                    .as_ref()
                    .map_or(OnInconclusive::Pause, |a| a.on_inconclusive);
                if rt.extending {
                    return Ok(());
                }
                let summary = verdict.summary.clone();
                self.emit(EventKind::Verdict {
                    service: name.to_string(),
                    verdict,
                })?;
                match on {
                    OnInconclusive::Extend => {
                        // Keep analysing until a verdict or the progress deadline.
                        if let Some(rt) = self.rts.get_mut(name) {
                            rt.extending = true;
                            rt.until_ms = None;
                            rt.step_started_ms = now;
                        }
                        Ok(())
                    }
                    OnInconclusive::Pause => {
                        if let Some(rt) = self.rts.get_mut(name) {
                            rt.until_ms = None;
                        }
                        let gate = Gate {
                            kind: GateKind::Promote,
                            since_ms: now,
                            deadline_ms: None,
                        };
                        self.emit(EventKind::GateWaiting {
                            service: name.to_string(),
                            gate,
                            reason: format!(
                                "analysis inconclusive, not a pass: {summary}; promote to accept, rollback to reject"
                            ),
                        })
                    }
                }
            }
        }
    }

    async fn rolling_batch(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
    ) -> Result<(), EngineError> {
        let Some(step) = self.rts[name].step().cloned() else {
            return Ok(());
        };
        let Action::ReplaceBatch { instances, .. } = step.action else {
            return Ok(());
        };
        let replicas = self.rts[name].replicas;
        match self.rts[name].sub {
            0 => {
                let target = (self.rts[name].replaced + instances).min(replicas);
                match self.platform.launch(name, &s.candidate, target).await {
                    Ok(()) => {
                        self.emit(EventKind::Launched {
                            service: name.to_string(),
                            revision: s.candidate.clone(),
                            replicas: target,
                        })?;
                        if let Some(rt) = self.rts.get_mut(name) {
                            rt.sub = 1;
                            rt.replaced = target;
                            rt.next_health_ms = self.clock.now_ms();
                        }
                    }
                    Err(e) => return self.platform_failed(name, e).await,
                }
            }
            1 => {
                let healthy = match self.platform.health(name, &s.candidate).await {
                    Ok(h) => h.all_healthy(),
                    Err(_) => false,
                };
                if !healthy {
                    return Ok(());
                }
                let replaced = self.rts[name].replaced;
                let w = ((u64::from(replaced) * 100) / u64::from(replicas.max(1))) as u8;
                if !self.set_weight(name, s, w).await? {
                    return Ok(());
                }
                // `launch` (idempotent, reconciles the count) rather than `scale`: after a
                // resume the baseline may have been restarted smaller, or not at all.
                let keep = replicas - replaced;
                if let Err(e) = self.platform.launch(name, &s.baseline, keep).await
                    && keep > 0
                {
                    return self.platform_failed(name, e).await;
                }
                self.maybe_start_continuous(name, s, false).await?;
                if let Some(rt) = self.rts.get_mut(name) {
                    rt.sub = 2;
                }
                self.complete_step(name).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn set_weight(
        &mut self,
        name: &str,
        s: &super::state::ServiceState,
        candidate_weight: u8,
    ) -> Result<bool, EngineError> {
        let weights = weights_of(&s.baseline, &s.candidate, candidate_weight);
        self.emit(EventKind::WeightsSet {
            service: name.to_string(),
            weights: weights.clone(),
        })?;
        if let Err(e) = self.platform.set_weights(name, &weights).await {
            self.platform_failed(name, e).await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn platform_failed(
        &mut self,
        name: &str,
        e: crate::platform::PlatformError,
    ) -> Result<(), EngineError> {
        self.emit(EventKind::PlatformError {
            service: name.to_string(),
            message: e.message.clone(),
            fatal: !e.retryable,
        })?;
        if e.retryable {
            self.back_off(name);
            if let Some(rt) = self.rts.get_mut(name) {
                rt.entered = false;
            }
            return Ok(());
        }
        self.fail_service(name, format!("platform: {}", e.message))
            .await
    }

    /// Move on to the next step (or to promote, after `promote-all`).
    async fn complete_step(&mut self, name: &str) -> Result<(), EngineError> {
        let weight = self.svc(name).map_or(0, |s| s.candidate_weight);
        let Some(rt) = self.rts.get_mut(name) else {
            return Ok(());
        };
        let mut next = rt.idx + 1;
        if rt.promote_all {
            let promote_at = rt.steps.iter().position(|s| s.action == Action::Promote);
            if let Some(p) = promote_at
                && next < p
            {
                next = if weight >= 100 {
                    p
                } else {
                    // The last step that moves traffic to 100 %.
                    rt.steps[..p]
                        .iter()
                        .rposition(|s| {
                            s.candidate_weight == 100
                                && matches!(
                                    s.action,
                                    Action::SetWeight { .. }
                                        | Action::Switch
                                        | Action::ReplaceBatch { .. }
                                        | Action::EcsRollingUpdate
                                )
                        })
                        .filter(|i| *i >= next)
                        .unwrap_or(p)
                };
            }
        }
        rt.idx = next;
        rt.entered = false;
        rt.retry = None;
        rt.until_ms = None;
        rt.gate_deadline_ms = None;
        if rt.idx >= rt.steps.len() {
            rt.complete = true;
        }
        Ok(())
    }

    /// A failure of one service: apply the release's failure policy.
    async fn fail_service(&mut self, name: &str, reason: String) -> Result<(), EngineError> {
        match self.state.on_failure {
            FailurePolicy::Pause => {
                if let Some(rt) = self.rts.get_mut(name) {
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
                if self.state.status == ReleaseStatus::Running {
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

    fn dependents_closure(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            for d in self
                .rts
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

    fn changed(&self, name: &str) -> bool {
        let st = self.status(name);
        st.is_active()
            || (st == ServiceStatus::Promoted && self.svc(name).is_some_and(|s| s.baseline_running))
    }

    /// Roll back `name` and every dependent already changed, dependents first.
    async fn rollback_with_dependents(
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
    async fn rollback_release(
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
    async fn rollback_one(
        &mut self,
        name: &str,
        reason: String,
        trigger: Trigger,
    ) -> Result<(), EngineError> {
        let Some(s) = self.svc(name).cloned() else {
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
        if let Some(rt) = self.rts.get_mut(name) {
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
    async fn baseline_can_take_traffic(
        &mut self,
        name: &str,
        baseline: &str,
    ) -> Result<bool, EngineError> {
        let replicas = self.rts[name].replicas;
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

    async fn continue_rollback(&mut self, name: &str) -> Result<(), EngineError> {
        let Some(s) = self.svc(name).cloned() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        if self.rts[name].retry.is_some_and(|(_, at)| now < at) {
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
        if let Some(rt) = self.rts.get_mut(name) {
            rt.rollback_waiting = false;
            rt.retry = None;
            rt.complete = true;
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        command: &Command,
        operator: &str,
        reason: String,
    ) -> Result<CommandReply, EngineError> {
        self.emit(EventKind::CommandRefused {
            operator: operator.to_string(),
            command: command.clone(),
            reason: reason.clone(),
            note: self.note.clone(),
        })?;
        self.publish();
        Ok(Err(Refusal {
            command: command.to_string(),
            reason,
        }))
    }

    fn accept(&mut self, command: &Command, operator: &str) -> Result<(), EngineError> {
        self.emit(EventKind::CommandAccepted {
            operator: operator.to_string(),
            command: command.clone(),
            note: self.note.clone(),
        })
    }

    /// Carry out one command with the operator's stated reason, journaled with it.
    pub async fn handle_with_note(
        &mut self,
        command: Command,
        operator: &str,
        note: Option<String>,
    ) -> Result<CommandReply, EngineError> {
        self.note = note;
        let reply = self.handle(command, operator).await;
        self.note = None;
        reply
    }

    /// Record a command a front end refused before it reached the engine (a read-only
    /// or invalid credential), so the attempt is in the audit; nothing else changes.
    pub fn deny(
        &mut self,
        command: Command,
        operator: &str,
        reason: String,
    ) -> Result<CommandReply, EngineError> {
        self.refuse(&command, operator, reason)
    }

    /// `payments is already rolling back, started by alice 2 s ago` (who and when, if known).
    fn rolling_back_text(&self, name: &str, status: ServiceStatus) -> String {
        let what = match status {
            ServiceStatus::RollingBack => "already rolling back",
            _ => "already rolled back",
        };
        match self.rollbacks.get(name) {
            Some((by, at)) => {
                let ago = self.clock.now_ms().saturating_sub(*at) / 1000;
                format!("{name} is {what}, started {by} {ago} s ago")
            }
            None => format!("{name} is {what}"),
        }
    }

    /// Carry out one command (idempotent; refused with a reason when it makes no sense).
    pub async fn handle(
        &mut self,
        command: Command,
        operator: &str,
    ) -> Result<CommandReply, EngineError> {
        let reply = self.handle_inner(&command, operator).await?;
        self.publish();
        Ok(reply)
    }

    async fn handle_inner(
        &mut self,
        command: &Command,
        operator: &str,
    ) -> Result<CommandReply, EngineError> {
        if let Some(svc) = command.service()
            && !self.rts.contains_key(svc)
        {
            let known = self.order.join(", ");
            return self.refuse(
                command,
                operator,
                format!("no service `{svc}` in this release (services: {known})"),
            );
        }
        let release = self.state.status;
        let now = self.clock.now_ms();
        let op = operator.to_string();
        match command {
            Command::Start => match release {
                ReleaseStatus::Ready => {
                    self.accept(command, operator)?;
                    self.emit(EventKind::ReleaseStarted { operator: op })?;
                    Ok(Ok("release started".into()))
                }
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
                _ => {
                    self.accept(command, operator)?;
                    Ok(Ok("already started".into()))
                }
            },
            Command::Abort => match release {
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has already finished".into())
                }
                _ => {
                    self.accept(command, operator)?;
                    if release == ReleaseStatus::Ready {
                        self.emit(EventKind::ReleaseStarted {
                            operator: op.clone(),
                        })?;
                        self.bootstrapped = true;
                    }
                    for d in self.order.clone().iter().rev() {
                        let st = self.status(d);
                        if st.is_active() {
                            self.rollback_one(
                                d,
                                format!("release aborted by {op}"),
                                Trigger::Operator {
                                    operator: op.clone(),
                                },
                            )
                            .await?;
                        } else if st == ServiceStatus::Pending {
                            self.emit(EventKind::Skipped {
                                service: d.clone(),
                                reason: format!("release aborted by {op}"),
                            })?;
                        }
                    }
                    if self.state.status == ReleaseStatus::Paused {
                        self.emit(EventKind::Resumed {
                            service: None,
                            operator: op.clone(),
                        })?;
                    }
                    self.migrations_on_abort(&op)?;
                    self.check_finished()?;
                    Ok(Ok(
                        "aborted: services in flight roll back, pending ones are skipped".into(),
                    ))
                }
            },
            Command::Pause { service: None } => match release {
                ReleaseStatus::Running => {
                    self.accept(command, operator)?;
                    for rt in self.rts.values_mut() {
                        rt.paused_at_ms.get_or_insert(now);
                    }
                    self.emit(EventKind::Paused {
                        service: None,
                        reason: format!("paused by {op}"),
                    })?;
                    Ok(Ok("release paused: weights frozen".into()))
                }
                ReleaseStatus::Paused => {
                    self.accept(command, operator)?;
                    Ok(Ok("already paused".into()))
                }
                ReleaseStatus::Ready => {
                    self.refuse(command, operator, "the release has not started".into())
                }
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
            },
            Command::Resume { service: None } => match release {
                ReleaseStatus::Paused => {
                    if let Some(held) = self
                        .order
                        .iter()
                        .find(|n| self.rts[*n].failure_hold.is_some())
                        .cloned()
                    {
                        return self.refuse(
                            command,
                            operator,
                            format!("{held} failed and is held (on_failure = pause): resume {held} to override, or roll it back"),
                        );
                    }
                    self.accept(command, operator)?;
                    self.unfreeze(None, now);
                    self.emit(EventKind::Resumed {
                        service: None,
                        operator: op,
                    })?;
                    Ok(Ok("release resumed".into()))
                }
                ReleaseStatus::Running => {
                    self.accept(command, operator)?;
                    Ok(Ok("not paused".into()))
                }
                ReleaseStatus::Ready => self.refuse(
                    command,
                    operator,
                    "the release has not started; use start".into(),
                ),
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
            },
            Command::Rollback { service: None } => match release {
                ReleaseStatus::Ready => self.refuse(
                    command,
                    operator,
                    "the release has not started; nothing to roll back".into(),
                ),
                _ => {
                    let anything = self
                        .order
                        .iter()
                        .any(|n| self.changed(n) || self.status(n) == ServiceStatus::Pending);
                    self.accept(command, operator)?;
                    if !anything {
                        return Ok(Ok("nothing left to roll back".into()));
                    }
                    if self.state.status == ReleaseStatus::Paused {
                        self.emit(EventKind::Resumed {
                            service: None,
                            operator: op.clone(),
                        })?;
                    }
                    self.rollback_release(
                        None,
                        format!("release rolled back by {op}"),
                        Trigger::Operator { operator: op },
                    )
                    .await?;
                    Ok(Ok("rolling back the release".into()))
                }
            },
            Command::Contract { migration } => {
                self.confirm_contract(command, operator, migration).await
            }
            _ => self.service_command(command, operator, now).await,
        }
    }

    fn unfreeze(&mut self, service: Option<&str>, now: u64) {
        for (name, rt) in self.rts.iter_mut() {
            if service.is_some_and(|s| s != name) {
                continue;
            }
            if let Some(at) = rt.paused_at_ms.take() {
                let shift = now.saturating_sub(at);
                rt.step_started_ms += shift;
                rt.until_ms = rt.until_ms.map(|u| u + shift);
                rt.gate_deadline_ms = rt.gate_deadline_ms.map(|u| u + shift);
            }
        }
    }

    async fn service_command(
        &mut self,
        command: &Command,
        operator: &str,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        let Some(name) = command.service().map(str::to_string) else {
            return self.refuse(command, operator, "this command needs a service".into());
        };
        let Some(s) = self.svc(&name).cloned() else {
            return self.refuse(command, operator, format!("no service `{name}`"));
        };
        let op = operator.to_string();
        let release = self.state.status;
        if release == ReleaseStatus::Ready {
            return self.refuse(
                command,
                operator,
                "the release has not started; send start first".into(),
            );
        }
        let st = s.status;
        let rt = &self.rts[&name];
        let held = rt.failure_hold.clone();
        let step_action = rt.step().map(|x| x.action.clone());
        let not_started = |deps: &[String]| {
            if deps.is_empty() {
                "it has not started yet (waiting for a free slot)".to_string()
            } else {
                format!(
                    "it has not started yet (waits for {} to be promoted)",
                    deps.join(", ")
                )
            }
        };
        let deps = rt.spec.depends_on.clone();
        match command {
            Command::Pause { .. } => match st {
                ServiceStatus::Paused => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is already paused")))
                }
                s if s.is_active() && s != ServiceStatus::RollingBack => {
                    self.accept(command, operator)?;
                    if let Some(rt) = self.rts.get_mut(&name) {
                        rt.paused_by_operator = true;
                        rt.paused_at_ms.get_or_insert(now);
                    }
                    self.emit(EventKind::Paused {
                        service: Some(name.clone()),
                        reason: format!("paused by {op}"),
                    })?;
                    Ok(Ok(format!("{name} paused: weights frozen")))
                }
                ServiceStatus::RollingBack => {
                    let text = self.rolling_back_text(&name, st);
                    self.refuse(command, operator, format!("{text}; a rollback is never paused"))
                }
                ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}; pause the release to hold everything", not_started(&deps))),
                other => self.refuse(command, operator, format!("{name} is {other}; there is nothing to pause")),
            },
            Command::Resume { .. } => match st {
                ServiceStatus::Paused if s.gate.is_some() && held.is_none() && !self.rts[&name].paused_by_operator => {
                    self.refuse(command, operator, format!("{name} waits at a gate ({}): promote to move on, or roll back", s.paused_reason.unwrap_or_default()))
                }
                ServiceStatus::Paused | ServiceStatus::AwaitingApproval
                    if held.is_some() || self.rts[&name].paused_by_operator =>
                {
                    self.accept(command, operator)?;
                    self.unfreeze(Some(&name), now);
                    if let Some(rt) = self.rts.get_mut(&name) {
                        rt.paused_by_operator = false;
                        if rt.failure_hold.take().is_some() {
                            // Overriding a failure: judge again from scratch.
                            rt.entered = false;
                        }
                    }
                    self.emit(EventKind::Resumed {
                        service: Some(name.clone()),
                        operator: op.clone(),
                    })?;
                    if self.state.status == ReleaseStatus::Paused
                        && self.rts.values().all(|rt| rt.failure_hold.is_none())
                        && held.is_some()
                    {
                        self.unfreeze(None, now);
                        self.emit(EventKind::Resumed { service: None, operator: op })?;
                    }
                    Ok(Ok(format!("{name} resumed")))
                }
                s if s.is_active() => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is not paused")))
                }
                ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}", not_started(&deps))),
                other => self.refuse(command, operator, format!("{name} is {other}; there is nothing to resume")),
            },
            Command::Promote { .. } | Command::PromoteAll { .. } => {
                let all = matches!(command, Command::PromoteAll { .. });
                match st {
                    ServiceStatus::Promoted => {
                        self.accept(command, operator)?;
                        if matches!(step_action, Some(Action::KeepOld { .. })) && !all {
                            self.complete_step(&name).await?;
                            return Ok(Ok(format!("{name}: no longer keeping the old revision warm; retiring it")));
                        }
                        Ok(Ok(format!("{name} is already promoted")))
                    }
                    ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}", not_started(&deps))),
                    ServiceStatus::Starting => self.refuse(
                        command,
                        operator,
                        format!("{name}'s candidate is still starting (launch, health checks, smoke tests); it takes no traffic before they pass"),
                    ),
                    _ if held.is_some() => self.refuse(
                        command,
                        operator,
                        format!("{name} failed ({}); roll it back, or resume it to override the failure first", held.unwrap_or_default()),
                    ),
                    ServiceStatus::Progressing | ServiceStatus::Analysing | ServiceStatus::Paused | ServiceStatus::AwaitingApproval => {
                        if self.rts[&name].busy == Some(Busy::CrossCheck) {
                            return self.refuse(command, operator, format!("{name} is being promoted (dependents' smoke tests are running)"));
                        }
                        self.accept(command, operator)?;
                        self.unfreeze(Some(&name), now);
                        if s.gate.is_some() {
                            self.emit(EventKind::GateAnswered {
                                service: name.clone(),
                                answer: if all { "promoted (all steps)".into() } else { "promoted".into() },
                                by: op.clone(),
                            })?;
                        }
                        if let Some(rt) = self.rts.get_mut(&name) {
                            rt.paused_by_operator = false;
                            rt.analysis = None;
                            rt.extending = false;
                            rt.promote_all |= all;
                        }
                        if st == ServiceStatus::Paused && s.gate.is_none() {
                            self.emit(EventKind::Resumed { service: Some(name.clone()), operator: op })?;
                        }
                        let desc = self.rts[&name].step().map(|x| x.description.clone()).unwrap_or_default();
                        self.complete_step(&name).await?;
                        Ok(Ok(if all {
                            format!("{name}: skipping every remaining step to full promotion")
                        } else {
                            format!("{name}: step `{desc}` ended by {}", operator)
                        }))
                    }
                    ServiceStatus::RollingBack | ServiceStatus::RolledBack => {
                        let text = self.rolling_back_text(&name, st);
                        self.refuse(command, operator, format!("{text}; only a rollout in progress can be promoted (retry it first)"))
                    }
                    other => self.refuse(command, operator, format!("{name} is {other}; only a rollout in progress can be promoted (retry it first)")),
                }
            }
            Command::Approve { .. } | Command::Reject { .. } => {
                let approve = matches!(command, Command::Approve { .. });
                if matches!(st, ServiceStatus::RollingBack | ServiceStatus::RolledBack) {
                    let text = self.rolling_back_text(&name, st);
                    return self.refuse(command, operator, format!("{text}; there is no approval waiting"));
                }
                if st != ServiceStatus::AwaitingApproval || held.is_some() {
                    return self.refuse(command, operator, format!("{name} has no approval waiting (it is {st})"));
                }
                let needed = match self.rts[&name].step().map(|x| &x.action) {
                    Some(Action::Approval { approvals, .. }) => *approvals,
                    _ => 1,
                };
                if approve && needed > 1 {
                    let idx = self.rts[&name].idx;
                    let so_far: Vec<String> = self.rts[&name]
                        .approvers
                        .iter()
                        .filter(|(i, _)| *i == idx)
                        .map(|(_, who)| who.clone())
                        .collect();
                    if so_far.iter().any(|w| w == operator) {
                        return self.refuse(
                            command,
                            operator,
                            format!("{operator} already approved {name}; this gate needs {needed} different approvers ({} so far: {})", so_far.len(), so_far.join(", ")),
                        );
                    }
                    if so_far.len() + 1 < needed as usize {
                        // Recorded (journaled as an accepted approve by this operator);
                        // the gate stays until enough different people approved.
                        self.accept(command, operator)?;
                        if let Some(rt) = self.rts.get_mut(&name) {
                            rt.approvers.push((idx, op.clone()));
                        }
                        let have = so_far.len() + 1;
                        return Ok(Ok(format!(
                            "{name}: approval {have} of {needed} recorded ({op}); waiting for {} more from someone else",
                            needed as usize - have
                        )));
                    }
                }
                self.accept(command, operator)?;
                self.unfreeze(Some(&name), now);
                self.emit(EventKind::GateAnswered {
                    service: name.clone(),
                    answer: if approve { "approved".into() } else { "rejected".into() },
                    by: op.clone(),
                })?;
                if approve {
                    if let Some(rt) = self.rts.get_mut(&name) {
                        rt.paused_by_operator = false;
                    }
                    self.complete_step(&name).await?;
                    Ok(Ok(format!("{name} approved")))
                } else {
                    self.rollback_with_dependents(&name, format!("rejected by {op}"), Trigger::Operator { operator: op })
                        .await?;
                    Ok(Ok(format!("{name} rejected: rolling back")))
                }
            }
            Command::Rollback { .. }
                if (st.is_active() || st == ServiceStatus::Promoted)
                    && self.migration_refuses_rollback(&name).is_some() =>
            {
                let why = self.migration_refuses_rollback(&name).unwrap_or_default();
                self.refuse(command, operator, why)
            }
            Command::Rollback { .. } => match st {
                ServiceStatus::RollingBack | ServiceStatus::RolledBack => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is already {st}")))
                }
                ServiceStatus::Skipped => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} was skipped; nothing changed")))
                }
                ServiceStatus::Pending => {
                    self.accept(command, operator)?;
                    self.emit(EventKind::Skipped {
                        service: name.clone(),
                        reason: format!("rolled back by {op} before it started"),
                    })?;
                    self.check_finished()?;
                    Ok(Ok(format!("{name} had not started: skipped")))
                }
                ServiceStatus::Promoted if !s.baseline_running || self.rts[&name].retiring.contains(&s.baseline) => self.refuse(
                    command,
                    operator,
                    format!("{name}'s old revision {} is retired (or being retired); roll forward, or deploy it again", s.baseline),
                ),
                _ => {
                    self.accept(command, operator)?;
                    self.rollback_with_dependents(&name, format!("rolled back by {op}"), Trigger::Operator { operator: op })
                        .await?;
                    if self.state.status == ReleaseStatus::Paused
                        && self.rts.values().all(|rt| rt.failure_hold.is_none())
                        && held.is_some()
                    {
                        self.emit(EventKind::Resumed { service: None, operator: operator.to_string() })?;
                    }
                    Ok(Ok(format!("{name}: traffic back to {}", s.baseline)))
                }
            },
            Command::Retry { .. } => match st {
                ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::Skipped => {
                    if !s.baseline_running {
                        return self.refuse(command, operator, format!("{name}'s baseline {} is not running; nothing to retry from", s.baseline));
                    }
                    self.accept(command, operator)?;
                    if let Some(rt) = self.rts.get_mut(&name) {
                        rt.reset_run();
                    }
                    self.emit(EventKind::Retrying { service: name.clone(), operator: op })?;
                    Ok(Ok(format!("{name} will roll out again once its dependencies are promoted")))
                }
                other => self.refuse(command, operator, format!("{name} is {other}; only a rolled-back, failed or skipped service can be retried")),
            },
            Command::Start | Command::Abort | Command::Contract { .. } => {
                self.refuse(command, operator, "not a service command".into())
            }
        }
    }

    /// Revisions the engine believes a service runs, for invariant checks.
    pub fn believed_weights(&self) -> BTreeMap<String, Weights> {
        self.state
            .services
            .iter()
            .map(|s| (s.name.clone(), s.weights.clone()))
            .collect()
    }
}

fn step_is_instant(a: &Action) -> bool {
    matches!(
        a,
        Action::Launch { .. } | Action::SetWeight { .. } | Action::Switch
    )
}

/// Baseline and candidate revision names of a service on the release's platform.
pub fn revisions(release: &Release, s: &Service) -> (String, String) {
    match (&s.local, &s.ecs) {
        (Some(l), _) if release.release.platform == crate::release::PlatformKind::Local => {
            (l.current.revision.clone(), l.target.revision.clone())
        }
        (_, Some(e)) => (
            "current".to_string(),
            e.image.rsplit(':').next().unwrap_or(&e.image).to_string(),
        ),
        (Some(l), None) => (l.current.revision.clone(), l.target.revision.clone()),
        (None, None) => ("stable".into(), "candidate".into()),
    }
}

/// `by alice`, `automatically`, `by policy after orders failed`.
fn trigger_text(t: &Trigger) -> String {
    match t {
        Trigger::Operator { operator } => format!("by {operator}"),
        Trigger::Automatic => "automatically".into(),
        Trigger::Policy { failed } => format!("by policy after {failed} failed"),
    }
}

/// A service the interrupted run had not yet started (killed during the first bootstrap,
/// before its baseline was journaled ready): resume starts it as a fresh run would.
fn never_bootstrapped(s: &ServiceState) -> bool {
    s.status == ServiceStatus::Pending && !s.baseline_running && !s.candidate_running
}

/// Wait before trying a step again after a retryable platform failure: 1 s, doubling,
/// at most 30 s (a long outage costs a few journal lines a minute, not a few a second).
fn retry_backoff_ms(attempts: u32) -> u64 {
    (1000u64 << attempts.saturating_sub(1).min(5)).min(30_000)
}
