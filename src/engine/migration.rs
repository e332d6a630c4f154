//! The engine's side of `[[migration]]`: it owns the order, `src/migrate/` owns the SQL.
//!
//! * **Lint** every migration when the release starts, before any database is opened. A
//!   blocking finding skips every service: nothing touched a database (exit 2).
//! * **Dry run** on a copy, then **expand**, when the wave of the first listed service is
//!   the next to start; [`Engine::migration_holds`] keeps that wave's services pending
//!   until expand is applied. A dry-run or expand failure skips the services not started.
//! * **Contract** once [`migrate::contract_allowed`] holds (every listed service promoted
//!   and baked) and a person confirmed: [`ContractMode`] says how (a `contract NAME`
//!   command from the console or `ctl`, `--allow-contract`, or the release ends with the
//!   contract pending and says how to run it).
//! * A listed service that **rolls back** before contract runs `undo_expand` once its
//!   candidate is stopped (or the additive schema stays, journaled); after contract a
//!   rollback of a listed service is refused ([`migrate::rollback_allowed`]).
//!
//! Every step is an [`EventKind::Migration`], journaled before the database is touched
//! (`Expanding`, `Contracting`, `UndoingExpand`) and after. The SQL runs on the blocking
//! pool; the engine polls the job each tick. Exactly once across a crash: `resume` finds
//! a stage journaled as started and not finished, and applies it again; the history table
//! makes that a no-op when the stage had committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinError;

use crate::migrate::{
    self, DryRunReport, MigrateError, MigrationState as DbState, PreparedMigration, RunOptions,
    ServiceProgress, Stage, StageOutcome,
};
use crate::plan::Plan;

use super::Engine;
use super::EngineError;
use crate::engine::command::{Command, CommandReply};
use crate::engine::state::{EventKind, MigrationPhase, ReleaseStatus, ServiceStatus};

mod guards;
mod stages;

/// What happens once a contract is allowed (every listed service promoted and baked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContractMode {
    /// Wait for a `contract NAME` command (the console's confirmation dialog, `ctl`).
    #[default]
    Confirm,
    /// Run it (`--allow-contract`).
    Allow,
    /// Nobody can confirm (headless without `--allow-contract`): the release ends with
    /// the contract pending and says how to run it.
    Defer,
}

enum JobOutput {
    DryRun(Result<DryRunReport, MigrateError>),
    Stage(Stage, Result<StageOutcome, MigrateError>),
}

struct Item {
    prep: Arc<PreparedMigration>,
    /// `expand` runs before this wave starts (from the plan).
    expand_wave: usize,
    /// The stage or dry run in flight; its result arrives here (then the engine is woken).
    job: Option<oneshot::Receiver<Result<JobOutput, JoinError>>>,
}

/// The engine's runtime state for the release's migrations.
pub(super) struct Migrations {
    items: Vec<Item>,
    mode: ContractMode,
    run: RunOptions,
    /// Lint (or the resume of a stage in flight) happened.
    begun: bool,
}

impl Migrations {
    pub(super) fn new(
        prepared: &[PreparedMigration],
        plan: &Plan,
        mode: ContractMode,
        run: RunOptions,
    ) -> Migrations {
        let items = prepared
            .iter()
            .map(|p| Item {
                expand_wave: plan
                    .migrations
                    .iter()
                    .find(|m| m.name == p.name())
                    .map_or(0, |m| m.expand_before_wave),
                prep: Arc::new(p.clone()),
                job: None,
            })
            .collect();
        Migrations {
            items,
            mode,
            run,
            begun: false,
        }
    }

    /// A stage or dry run is running on the blocking pool.
    pub(super) fn busy(&self) -> bool {
        self.items.iter().any(|i| i.job.is_some())
    }
}

fn outcome_text(o: &StageOutcome) -> String {
    match o {
        StageOutcome::Applied {
            statements,
            resumed_after,
            attempts,
            duration_ms,
            ..
        } => {
            let mut t = format!("{statements} statement(s) in {duration_ms} ms");
            if *attempts > 1 {
                t.push_str(&format!(", {attempts} attempts (lock timeout, retried)"));
            }
            if *resumed_after > 0 {
                t.push_str(&format!(
                    ", resumed after {resumed_after} statement(s) an interrupted run finished"
                ));
            }
            t
        }
        StageOutcome::AlreadyApplied { applied_at, .. } => {
            format!("already applied at {applied_at} (history table); nothing ran again")
        }
    }
}

fn dry_run_lines(r: &DryRunReport) -> Vec<String> {
    let mut lines = vec![format!("copy: {}", r.method)];
    for s in &r.steps {
        lines.push(format!(
            "{} {} ({} ms){}",
            s.stage,
            if s.ok { "ok" } else { "FAILED" },
            s.duration_ms,
            s.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        for c in &s.changes {
            lines.push(format!("  {c}"));
        }
    }
    lines.extend(r.notes.iter().map(|n| format!("note: {n}")));
    lines
}

impl Engine {
    fn migration_phase(&self, name: &str) -> MigrationPhase {
        self.state
            .migration(name)
            .map_or(MigrationPhase::Pending, |m| m.phase)
    }

    fn emit_migration(
        &mut self,
        migration: &str,
        phase: MigrationPhase,
        detail: String,
        lines: Vec<String>,
    ) -> Result<(), EngineError> {
        self.emit(EventKind::Migration {
            migration: migration.to_string(),
            phase,
            detail,
            lines,
        })
    }

    /// Start a stage or the dry run of item `i` on the blocking pool.
    fn spawn_migration_job(&mut self, i: usize, stage: Option<Stage>) {
        let item = &mut self.mig.items[i];
        let prep = item.prep.clone();
        let mut opts = self.mig.run.clone();
        opts.actor = self.options.operator.clone();
        let wake = self.wake.clone();
        let (tx, rx) = oneshot::channel();
        let blocking = tokio::task::spawn_blocking(move || match stage {
            None => JobOutput::DryRun(prep.dry_run(&opts)),
            Some(s) => JobOutput::Stage(s, prep.apply(s, &opts)),
        });
        tokio::spawn(async move {
            let _ = tx.send(blocking.await);
            wake.notify_one();
        });
        item.job = Some(rx);
    }

    /// Skip every service not started yet: a migration they need cannot run.
    async fn halt_for_migration(&mut self, reason: &str) -> Result<(), EngineError> {
        for name in self.order.clone().iter().cloned() {
            if self.status(&name) == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: name,
                    reason: reason.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Engine {
    /// A migration stage or dry run is running (tests wait for it).
    pub(crate) fn migrations_busy(&self) -> bool {
        self.mig.busy()
    }
}
