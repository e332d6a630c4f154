//! The reconciler: one state machine per service, orchestrated across services, driven by
//! ticks (time) and commands. Every decision goes through [`Engine::emit`], which
//! records the event durably, folds it into the [`ReleaseState`] and broadcasts it, and
//! only then does the engine act on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::plan::Plan;
use crate::platform::{InstanceState, Platform, RevisionHealth, Weights};
use crate::release::Release;

use super::background::Background;
use super::clock::Clock;
use super::migration::ContractMode;
use super::recorder::{RecordError, Recorder};
use super::service_run::ServiceRun;
use super::smoke::SmokeTester;
use super::state::{
    Event, EventKind, FinalStatus, ReleaseState, ReleaseStatus, ServiceInit, ServiceStatus, Trigger,
};
use super::steps::retry_backoff_ms;

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
    /// The deploy skipped its lifecycle gate (`--skip-requires`): journaled with the
    /// release and shown in every console's banner.
    pub break_glass: Option<super::BreakGlass>,
    /// What the policy in force makes the engine enforce (freeze windows, who may approve);
    /// journaled with the release, and on resume the journaled one is used.
    pub change_control: Option<crate::policy::ChangeControl>,
    /// A release with tenants: where the flags file is (`[flags] file` against the
    /// release's directory). `None`: no flags are written.
    pub flags_path: Option<std::path::PathBuf>,
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
            break_glass: None,
            change_control: None,
            flags_path: None,
        }
    }
}

/// The engine of one release run.
pub struct Engine {
    pub(super) release: Release,
    /// What captured text is scrubbed of before it becomes an event (`redact.rs`).
    pub(super) secrets: crate::secrets::Secrets,
    pub(super) options: EngineOptions,
    pub(super) platform: Arc<dyn Platform>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) recorder: Box<dyn Recorder>,
    pub(super) smoke: Arc<dyn SmokeTester>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) state_tx: watch::Sender<ReleaseState>,
    pub(super) state: ReleaseState,
    pub(super) dirty: bool,
    pub(super) seq: u64,
    /// Service names in plan order (shared: the per-tick pass holds it while it drives).
    pub(super) order: Arc<[String]>,
    pub(super) runs: super::runs::Runs,
    pub(super) wake: Arc<Notify>,
    pub(super) bg_tx: mpsc::UnboundedSender<Background>,
    pub(super) bg_rx: mpsc::UnboundedReceiver<Background>,
    pub(super) bootstrapped: bool,
    /// Resumed from a journal: revisions must be brought back before going on.
    pub(super) restore: bool,
    /// The operator's stated reason for the command being handled (journaled with it).
    pub(super) note: Option<String>,
    /// Per service: who or what started its latest rollback, and when (for refusals).
    pub(super) rollbacks: HashMap<String, (String, u64)>,
    /// The release's migration stages.
    pub(super) mig: super::migration::Migrations,
    /// Tenants in rings (a release with `[[tenant]]`s): `engine/fleet.rs`.
    pub(super) fleet: Option<super::fleet::FleetRt>,
    /// The services a tick visits, kept in step with the fold (`active.rs`).
    pub(super) active: super::active::ActiveIndex,
    /// When the snapshot was last published (`publish.rs`).
    pub(super) published_at: Option<std::time::Instant>,
}

pub(super) fn weights_of(baseline: &str, candidate: &str, candidate_weight: u8) -> Weights {
    let mut w = Vec::new();
    if candidate_weight < 100 {
        w.push((baseline.to_string(), 100 - candidate_weight));
    }
    if candidate_weight > 0 {
        w.push((candidate.to_string(), candidate_weight));
    }
    w
}

pub(super) fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

pub(super) fn problem_of(h: &RevisionHealth) -> Option<String> {
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
                let rt = &engine.runs[&sp.name];
                let (mut baseline, candidate) = crate::plan::revisions(&engine.release, &rt.spec);
                if let Some(b) = engine
                    .options
                    .platform_services
                    .get(&sp.name)
                    .and_then(|p| p.baseline.clone())
                {
                    baseline = b;
                }
                ServiceInit::new(sp, baseline, candidate)
            })
            .collect();
        let run_id = engine.recorder.run_id();
        engine.emit(EventKind::ReleaseLoaded {
            release: plan.release.clone(),
            run_id,
            platform: engine.platform.name().to_string(),
            environment: engine.release.release.environment.clone(),
            break_glass: engine.options.break_glass.clone().map(Box::new),
            change_control: engine.options.change_control.clone().map(Box::new),
            change: engine.release.release.change.clone(),
            on_failure: plan.on_failure,
            max_parallel: plan.max_parallel,
            waves: plan.waves.clone(),
            services,
        })?;
        if engine.fleet.is_some() {
            let fleet = super::fleet::initial_state(&engine.release, &engine.order);
            engine.fleet_emit(super::state::FleetEvent::Loaded {
                fleet: Box::new(fleet),
            })?;
        }
        Ok(engine)
    }

    pub(super) fn bare(
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
        let mut runs = super::runs::Runs::default();
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
                .unwrap_or_else(|| crate::plan::default_replicas(&spec));
            order.push(sp.name.clone());
            runs.push(
                sp.name.clone(),
                ServiceRun::new(spec, sp.steps.clone(), sp.dependents.clone(), replicas),
            );
        }
        let mig = super::migration::Migrations::new(
            &options.migrations,
            plan,
            options.contract,
            options.migrate.clone(),
        );
        let fleet = (!release.tenants.is_empty())
            .then(|| super::fleet::FleetRt::new(&release, &order, options.flags_path.clone()));
        Ok(Engine {
            fleet,
            active: super::active::ActiveIndex::new(&runs),
            published_at: None,
            mig,
            secrets: crate::secrets::Secrets::from_release(&release),
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
            order: order.into(),
            runs,
            wake: Arc::new(Notify::new()),
            bg_tx,
            bg_rx,
            bootstrapped: false,
            restore: false,
            note: None,
            rollbacks: HashMap::new(),
        })
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

    /// After a retryable platform failure: try again later, backing off.
    pub(super) fn back_off(&mut self, service: &str) {
        let now = self.clock.now_ms();
        if let Some(rt) = self.runs.get_mut(service) {
            let attempts = rt.retry.map_or(0, |(n, _)| n) + 1;
            rt.retry = Some((attempts, now + retry_backoff_ms(attempts)));
        }
    }

    /// Record a platform call that failed but may succeed on a later tick.
    pub(super) fn platform_warning(
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

    /// Record, apply, broadcast. The caller acts only after this returned Ok.
    pub(crate) fn emit(&mut self, mut kind: EventKind) -> Result<(), EngineError> {
        super::redact::scrub(&mut kind, &self.secrets);
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
        let named = event
            .kind
            .service()
            .map(|n| (n.to_string(), self.state.service(n).map(|s| s.status)));
        self.state.apply(&event);
        match (&event.kind, named) {
            (EventKind::ReleaseLoaded { .. }, _) => self.reindex(),
            (_, Some((name, before))) => self.track(&name, before),
            _ => {}
        }
        self.dirty = true;
        let _ = self.events.send(event);
        Ok(())
    }

    pub(super) fn status(&self, name: &str) -> ServiceStatus {
        self.state
            .service(name)
            .map_or(ServiceStatus::Skipped, |s| s.status)
    }

    pub(super) fn svc(&self, name: &str) -> Option<&super::state::ServiceState> {
        self.state.service(name)
    }

    /// The service's state, shared with the snapshot (a reference count, not a copy; a
    /// change folded while it is held copies the service then).
    pub(super) fn svc_shared(&self, name: &str) -> Option<Arc<super::state::ServiceState>> {
        let i = self.state.position(name)?;
        self.state.services.get(i).cloned()
    }

    /// True once the release finished and no cleanup or background work remains.
    pub fn is_done(&self) -> bool {
        self.state.status == ReleaseStatus::Finished
            && self.runs.values().all(|rt| {
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
        let mut t = self.services_wakeup(now, now + 1000);
        if let Some(x) = self.fleet_wakeup() {
            t = t.min(x.max(now + 1));
        }
        t
    }

    /// Run everything that is due now. Returns after one pass.
    pub async fn tick(&mut self) -> Result<(), EngineError> {
        self.recorder.still_writer()?;
        while let Ok(bg) = self.bg_rx.try_recv() {
            self.on_background(bg).await?;
        }
        if matches!(self.state.status, ReleaseStatus::Ready) {
            self.publish();
            return Ok(());
        }
        if !self.bootstrapped && self.held_before_start()? {
            self.publish();
            return Ok(());
        }
        if !self.bootstrapped {
            self.bootstrap().await?;
            self.bootstrapped = true;
        }
        self.drive_pass().await?;
        self.migrations_tick().await?;
        self.fleet_tick().await?;
        self.schedule().await?;
        self.check_finished()?;
        self.publish();
        Ok(())
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

/// `by alice`, `automatically`, `by policy after orders failed`.
pub(super) fn trigger_text(t: &Trigger) -> String {
    match t {
        Trigger::Operator { operator } => format!("by {operator}"),
        Trigger::Automatic => "automatically".into(),
        Trigger::Policy { failed } => format!("by policy after {failed} failed"),
    }
}
