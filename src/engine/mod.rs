//! The deployment engine: a reconciler per service and an orchestrator across services,
//! driven by an injected [`Clock`] and the [`crate::platform::Platform`] trait.
//!
//! * Front ends send [`CommandRequest`]s through one `mpsc` channel and get a
//!   [`CommandReply`] back through a oneshot.
//! * They subscribe to [`Event`]s (a `broadcast`) and watch the [`ReleaseState`]
//!   snapshot (a `watch`), which is a pure fold of the events.
//! * Every event except health observations is recorded ([`Recorder`], the journal)
//!   before the engine acts on it.
//!
//! Start one with [`Engine::new`] (or [`Engine::restore`] from a journal), then
//! [`spawn`] it: the returned [`EngineHandle`] has the command sender, an event
//! subscription, the state watch and the join handle yielding the [`RunOutcome`].

mod active;
pub mod analysis;
pub mod annotations;
mod background;
mod bootstrap;
mod change_control;
pub mod clock;
pub mod command;
mod commands;
mod fleet;
mod fleet_commands;
pub mod http;
mod migration;
pub mod notify;
mod observe;
mod publish;
mod reconciler;
pub mod recorder;
mod redact;
mod rollback;
mod runs;
mod schedule;
mod service_run;
pub mod smoke;
pub mod state;
mod steps;
pub mod telemetry;
mod tenant_freeze;
pub mod testing;
#[cfg(test)]
mod tests;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

pub use bootstrap::relaunched_on_resume;
pub use clock::{Clock, FakeClock, SystemClock};
pub use command::{Command, CommandReply, CommandRequest, Refusal, operator_name};
/// The fleet's state before anything ran (what `FleetEvent::Loaded` carries).
pub use fleet::initial_state as fleet_initial_state;
pub use migration::ContractMode;
pub use reconciler::{Engine, EngineError, EngineOptions, PlatformService};
pub use recorder::{
    JournalRecorder, MemoryRecorder, RecordError, Recorder, event_payload, events_from_entries,
};
pub use smoke::{RealSmoke, SmokeOutcome, SmokeTester};
pub use state::{
    BreakGlass, Event, EventKind, FinalStatus, FleetEvent, FleetState, Gate, GateKind,
    HealthSummary, MigrationPhase, MigrationState, ReleaseState, ReleaseStatus, ServiceInit,
    ServiceState, ServiceStatus, TenantStatus, Trigger, VerdictInfo, describe,
};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub state: ReleaseState,
    /// 0 all promoted, 2 lint or a dry run refused a migration, 3 something rolled back,
    /// failed or was skipped.
    pub exit_code: u8,
}

/// What a front end holds of a running engine.
pub struct EngineHandle {
    pub commands: mpsc::Sender<CommandRequest>,
    pub events: broadcast::Sender<Event>,
    pub state: watch::Receiver<ReleaseState>,
    pub join: JoinHandle<Result<RunOutcome, EngineError>>,
    /// `Some` once the engine stopped on an error (set before `join` yields it), so a
    /// front end that is not awaiting `join`, such as the console, can say why at once.
    pub stopped: watch::Receiver<Option<Stopped>>,
}

/// Why the engine's loop ended with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The journal could not be written (a full or failing disk): nothing was done after
    /// the failed write, so traffic is on the last journaled split.
    pub journal: bool,
    pub reason: String,
}

impl EngineHandle {
    /// Send a command and wait for the engine's answer.
    pub async fn send(&self, command: Command, operator: &str) -> CommandReply {
        let (req, rx) = CommandRequest::new(command.clone(), operator);
        if self.commands.send(req).await.is_err() {
            return Err(Refusal {
                command: command.to_string(),
                reason: "the engine has stopped".into(),
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Refusal {
                command: command.to_string(),
                reason: "the engine stopped before answering".into(),
            })
        })
    }
}

/// Run the engine on its own task until the release finished and cleanup is done.
pub fn spawn(engine: Engine) -> EngineHandle {
    let (tx, rx) = mpsc::channel(256);
    let events = engine.event_sender();
    let state = engine.watch();
    let (stopped_tx, stopped) = watch::channel(None);
    let join = tokio::spawn(async move {
        let r = run(engine, rx).await;
        if let Err(e) = &r {
            let _ = stopped_tx.send(Some(Stopped {
                journal: matches!(e, EngineError::Record(_)),
                reason: e.to_string(),
            }));
        }
        r
    });
    EngineHandle {
        commands: tx,
        events,
        state,
        join,
        stopped,
    }
}

/// The engine's loop: tick, then wait for a command, background work or the next due
/// time, whichever comes first.
pub async fn run(
    mut engine: Engine,
    mut commands: mpsc::Receiver<CommandRequest>,
) -> Result<RunOutcome, EngineError> {
    let wake = engine.wake_handle();
    let clock = engine.clock();
    let mut open = true;
    loop {
        engine.tick().await?;
        if engine.is_done() && !(engine.options().stay_alive && open) {
            break;
        }
        let at = engine.next_wakeup();
        let unpublished = engine.publish_due_in();
        tokio::select! {
            biased;
            req = commands.recv(), if open => match req {
                Some(req) => {
                    let reply = match req.denied {
                        Some(reason) => engine.deny(req.command, &req.operator, reason)?,
                        None => engine.handle_with_note(req.command, &req.operator, req.note).await?,
                    };
                    if let Some(tx) = req.reply {
                        let _ = tx.send(reply);
                    }
                }
                None => open = false,
            },
            _ = wake.notified() => {}
            _ = clock.sleep_until(at) => {}
            _ = tokio::time::sleep(unpublished.unwrap_or_default()), if unpublished.is_some() => engine.flush(),
        }
    }
    engine.flush();
    engine.close()?;
    let state = engine.state().clone();
    let exit_code = state.exit_code();
    Ok(RunOutcome { state, exit_code })
}
