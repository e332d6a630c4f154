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
use std::time::{Duration, Instant};

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
use crate::engine::state::{EventKind, MigrationPhase, ReleaseStatus, ServiceState, ServiceStatus};

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
        for name in self.order.clone() {
            if self.status(&name) == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: name,
                    reason: reason.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// The engine's migration work for one tick (called before services are scheduled).
    pub(super) async fn migrations_tick(&mut self) -> Result<(), EngineError> {
        if self.mig.items.is_empty() || self.state.status == ReleaseStatus::Ready {
            return Ok(());
        }
        self.collect_migration_jobs().await?;
        if !self.mig.begun {
            self.mig.begun = true;
            self.begin_migrations().await?;
        }
        if self.state.status == ReleaseStatus::Running {
            self.advance_migrations().await?;
        }
        Ok(())
    }

    /// First tick of a run: lint what has not been linted; on resume, apply again a stage
    /// the journal says started and did not finish (the history table makes a committed
    /// one a no-op).
    async fn begin_migrations(&mut self) -> Result<(), EngineError> {
        for i in 0..self.mig.items.len() {
            let prep = self.mig.items[i].prep.clone();
            let name = prep.name().to_string();
            match self.migration_phase(&name) {
                MigrationPhase::Pending | MigrationPhase::Linted | MigrationPhase::DryRunOk => {
                    let lines: Vec<String> = prep
                        .lint
                        .findings
                        .iter()
                        .map(|f| {
                            let sev = if f.blocks() {
                                "error"
                            } else if f.allowed {
                                "allowed"
                            } else {
                                "warning"
                            };
                            format!(
                                "{}:{}: {sev}[{}] ({}) {} — {}; fix: {}",
                                f.file, f.line, f.rule, f.stage, f.message, f.why, f.hint
                            )
                        })
                        .collect();
                    if let Err(e) = prep.check_lint() {
                        let reason = format!("{e}; nothing touched {}", prep.database);
                        self.emit_migration(&name, MigrationPhase::Failed, reason.clone(), lines)?;
                        self.halt_for_migration(&format!("migration {name}: {reason}"))
                            .await?;
                        return Ok(());
                    }
                    if self.migration_phase(&name) == MigrationPhase::Pending {
                        let detail = format!(
                            "no blocking finding ({} other finding(s)); database {}",
                            lines.len(),
                            prep.database
                        );
                        self.emit_migration(&name, MigrationPhase::Linted, detail, lines)?;
                    }
                }
                MigrationPhase::Expanding => self.spawn_migration_job(i, Some(Stage::Expand)),
                MigrationPhase::Contracting => self.spawn_migration_job(i, Some(Stage::Contract)),
                MigrationPhase::UndoingExpand => {
                    self.spawn_migration_job(i, Some(Stage::UndoExpand))
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn collect_migration_jobs(&mut self) -> Result<(), EngineError> {
        for i in 0..self.mig.items.len() {
            let Some(job) = self.mig.items[i].job.as_mut() else {
                continue;
            };
            let result = match job.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => continue,
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(oneshot::error::TryRecvError::Closed) => {
                    Err("the task running it was dropped".to_string())
                }
            };
            self.mig.items[i].job = None;
            let prep = self.mig.items[i].prep.clone();
            let name = prep.name().to_string();
            let out = match result {
                Ok(o) => o,
                Err(e) => {
                    let reason = format!("the migration task stopped: {e}");
                    self.emit_migration(&name, MigrationPhase::Failed, reason.clone(), vec![])?;
                    self.halt_for_migration(&format!("migration {name}: {reason}"))
                        .await?;
                    continue;
                }
            };
            match out {
                JobOutput::DryRun(Ok(report)) if report.ok => {
                    let detail = format!(
                        "applied to a copy of {} ({}); the real database untouched",
                        prep.database, report.method
                    );
                    self.emit_migration(
                        &name,
                        MigrationPhase::DryRunOk,
                        detail,
                        dry_run_lines(&report),
                    )?;
                }
                JobOutput::DryRun(Ok(report)) => {
                    let first = report
                        .steps
                        .iter()
                        .find(|s| !s.ok)
                        .map(|s| {
                            format!(
                                "{} failed on the copy: {}",
                                s.stage,
                                s.error.clone().unwrap_or_default()
                            )
                        })
                        .unwrap_or_else(|| "a step failed on the copy".into());
                    let reason = format!("dry run: {first}; nothing touched {}", prep.database);
                    self.emit_migration(
                        &name,
                        MigrationPhase::Failed,
                        reason.clone(),
                        dry_run_lines(&report),
                    )?;
                    self.halt_for_migration(&format!("migration {name}: {reason}"))
                        .await?;
                }
                JobOutput::DryRun(Err(e)) => {
                    let reason = format!("dry run: {e}; nothing touched {}", prep.database);
                    self.emit_migration(&name, MigrationPhase::Failed, reason.clone(), vec![])?;
                    self.halt_for_migration(&format!("migration {name}: {reason}"))
                        .await?;
                }
                JobOutput::Stage(stage, Ok(outcome)) => {
                    let (phase, what) = match stage {
                        Stage::Expand => (
                            MigrationPhase::Expanded,
                            "expand applied: old and new revisions both work on this schema",
                        ),
                        Stage::Contract => (
                            MigrationPhase::Contracted,
                            "contract applied: the listed services can no longer roll back to their old revision",
                        ),
                        Stage::UndoExpand => (
                            MigrationPhase::Undone,
                            "undo_expand applied: the schema is as before the release",
                        ),
                    };
                    let detail = format!("{what} ({})", outcome_text(&outcome));
                    self.emit_migration(&name, phase, detail, vec![])?;
                }
                JobOutput::Stage(stage, Err(e)) => {
                    self.emit_migration(&name, MigrationPhase::Failed, e.to_string(), vec![])?;
                    if stage == Stage::Expand {
                        self.halt_for_migration(&format!("migration {name}: expand failed: {e}"))
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The wave that starts next (`usize::MAX` when every service finished).
    pub(super) fn open_wave(&self) -> usize {
        self.state
            .services
            .iter()
            .filter(|s| !s.status.is_terminal())
            .map(|s| s.wave)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Where each listed service stands, for [`migrate::contract_allowed`].
    fn listed_progress(&self, prep: &PreparedMigration) -> BTreeMap<String, ServiceProgress> {
        let now_ms = self.clock.now_ms();
        let now = Instant::now();
        prep.migration
            .services
            .iter()
            .filter_map(|name| {
                let s = self.state.service(name)?;
                Some((name.clone(), service_progress(s, now_ms, now)))
            })
            .collect()
    }

    async fn advance_migrations(&mut self) -> Result<(), EngineError> {
        let open = self.open_wave();
        for i in 0..self.mig.items.len() {
            if self.mig.items[i].job.is_some() {
                continue;
            }
            let prep = self.mig.items[i].prep.clone();
            let name = prep.name().to_string();
            let phase = self.migration_phase(&name);
            let listed = &prep.migration.services;
            let due = open != usize::MAX
                && self.mig.items[i].expand_wave <= open
                && listed
                    .iter()
                    .any(|s| self.status(s) == ServiceStatus::Pending);
            match phase {
                MigrationPhase::Linted if due => self.spawn_migration_job(i, None),
                MigrationPhase::DryRunOk if due => {
                    let detail = format!(
                        "applying {} to {} before {} start",
                        prep.migration.expand,
                        prep.database,
                        listed.join(", ")
                    );
                    self.emit_migration(&name, MigrationPhase::Expanding, detail, vec![])?;
                    self.spawn_migration_job(i, Some(Stage::Expand));
                }
                // A listed service retried after undo_expand: its new revision needs the
                // expanded schema again (the dry run already proved expand after undo).
                MigrationPhase::Undone if due => {
                    let detail = format!(
                        "applying {} to {} again before the retried {} start",
                        prep.migration.expand,
                        prep.database,
                        listed.join(", ")
                    );
                    self.emit_migration(&name, MigrationPhase::Expanding, detail, vec![])?;
                    self.spawn_migration_job(i, Some(Stage::Expand));
                }
                MigrationPhase::Expanded
                | MigrationPhase::ContractAwaiting
                | MigrationPhase::ContractPending
                | MigrationPhase::KeptExpanded => {
                    self.after_expand(i, phase, open).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An expanded migration: undo or keep on a rollback, otherwise the contract gate.
    async fn after_expand(
        &mut self,
        i: usize,
        phase: MigrationPhase,
        open: usize,
    ) -> Result<(), EngineError> {
        let prep = self.mig.items[i].prep.clone();
        let name = prep.name().to_string();
        let m = &prep.migration;
        if let Some(rolled) = m
            .services
            .iter()
            .find(|s| self.status(s) == ServiceStatus::RolledBack)
            .cloned()
        {
            match migrate::on_service_rolled_back(m, DbState::Expanded, &rolled) {
                migrate::RollbackAction::RunUndoExpand => {
                    // Every new revision of a listed service must be stopped before what it
                    // uses is dropped, and none may be promoted, rolling out or still to
                    // start: those keep the expanded schema.
                    if let Some(user) = self.expanded_schema_user(m) {
                        if phase != MigrationPhase::KeptExpanded {
                            let detail = format!(
                                "{rolled} rolled back before contract, but {user} ({}) uses the expanded schema: it stays, undo_expand waits until no listed service needs it",
                                self.status(&user)
                            );
                            self.emit_migration(
                                &name,
                                MigrationPhase::KeptExpanded,
                                detail,
                                vec![],
                            )?;
                        }
                        return Ok(());
                    }
                    if m.services
                        .iter()
                        .any(|s| self.state.service(s).is_some_and(|x| x.candidate_running))
                    {
                        return Ok(()); // a new revision is still stopping
                    }
                    let detail = format!(
                        "{rolled} rolled back before contract: applying {} to {}",
                        m.undo_expand.clone().unwrap_or_default(),
                        prep.database
                    );
                    self.emit_migration(&name, MigrationPhase::UndoingExpand, detail, vec![])?;
                    self.spawn_migration_job(i, Some(Stage::UndoExpand));
                }
                migrate::RollbackAction::KeepExpanded => {
                    if phase != MigrationPhase::KeptExpanded {
                        let detail = format!(
                            "{rolled} rolled back before contract and there is no undo_expand file: the additive schema stays (the old revision works with it); contract will not run"
                        );
                        self.emit_migration(&name, MigrationPhase::KeptExpanded, detail, vec![])?;
                    }
                }
                migrate::RollbackAction::Nothing => {}
            }
            return Ok(());
        }
        if m.contract.is_none() || phase == MigrationPhase::ContractPending {
            return Ok(());
        }
        let progress = self.listed_progress(&prep);
        let confirmed = self.mig.mode == ContractMode::Allow;
        match migrate::contract_allowed(m, DbState::Expanded, &progress, Instant::now(), confirmed)
        {
            Ok(()) => {
                let detail = format!(
                    "every listed service promoted and baked; --allow-contract given: applying {} to {}",
                    m.contract.clone().unwrap_or_default(),
                    prep.database
                );
                self.emit_migration(&name, MigrationPhase::Contracting, detail, vec![])?;
                self.spawn_migration_job(i, Some(Stage::Contract));
            }
            Err(migrate::ContractRefusal::NeedsConfirmation { .. }) => match self.mig.mode {
                ContractMode::Confirm if phase != MigrationPhase::ContractAwaiting => {
                    let detail = format!(
                        "every listed service is promoted and baked; contract is one-way: confirm it (console dialog, `contract {name}`), or roll back"
                    );
                    self.emit_migration(&name, MigrationPhase::ContractAwaiting, detail, vec![])?;
                }
                ContractMode::Defer if open == usize::MAX => self.defer_contract(&name)?,
                _ => {}
            },
            Err(_) if self.mig.mode == ContractMode::Defer && open == usize::MAX => {
                self.defer_contract(&name)?;
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// A listed service that is promoted, rolling out or still to start: it needs the
    /// expanded schema, so undo_expand must wait.
    fn expanded_schema_user(&self, m: &crate::release::Migration) -> Option<String> {
        m.services
            .iter()
            .find(|s| {
                !matches!(
                    self.status(s),
                    ServiceStatus::RolledBack | ServiceStatus::Skipped | ServiceStatus::Failed
                )
            })
            .cloned()
    }

    /// `abort`: a contract not yet running is left pending (nobody confirms it in this
    /// run any more), so the release can finish.
    pub(super) fn migrations_on_abort(&mut self, operator: &str) -> Result<(), EngineError> {
        self.mig.mode = ContractMode::Defer;
        for i in 0..self.mig.items.len() {
            let it = &self.mig.items[i];
            let name = it.prep.name().to_string();
            // A listed service still rolling out will roll back now: its undo_expand
            // (if any) decides what happens to the schema, not a pending contract.
            let rolling = it
                .prep
                .migration
                .services
                .iter()
                .any(|s| !self.status(s).is_terminal());
            let waiting = it.job.is_none()
                && it.prep.migration.contract.is_some()
                && !rolling
                && matches!(
                    self.migration_phase(&name),
                    MigrationPhase::Expanded | MigrationPhase::ContractAwaiting
                );
            if waiting {
                let detail = format!(
                    "release aborted by {operator} before contract; the schema stays expanded. Run it later, once every listed service is promoted and baked: `cutover migrate contract RELEASE_FILE --migration {name}`"
                );
                self.emit_migration(&name, MigrationPhase::ContractPending, detail, vec![])?;
            }
        }
        Ok(())
    }

    fn defer_contract(&mut self, name: &str) -> Result<(), EngineError> {
        let detail = format!(
            "not confirmed (headless without --allow-contract); the schema stays expanded. Run it once the bake has passed: `cutover migrate contract RELEASE_FILE --migration {name}`"
        );
        self.emit_migration(name, MigrationPhase::ContractPending, detail, vec![])
    }

    /// Services of a wave wait until every migration due before that wave is expanded
    /// (expand runs before the wave starts, whichever of its services it lists).
    pub(super) fn migration_holds(&self, service: &str) -> bool {
        let Some(wave) = self.state.service(service).map(|s| s.wave) else {
            return false;
        };
        self.mig.items.iter().any(|it| {
            let phase = self.migration_phase(it.prep.name());
            let listed = &it.prep.migration.services;
            // Expand happens only for a listed service still to start: when none will
            // (skipped, rolled back), nothing is held.
            let will_expand = listed
                .iter()
                .any(|s| self.status(s) == ServiceStatus::Pending);
            it.expand_wave <= wave
                && (will_expand
                    && matches!(
                        phase,
                        MigrationPhase::Pending
                            | MigrationPhase::Linted
                            | MigrationPhase::DryRunOk
                            | MigrationPhase::Expanding
                    )
                    || matches!(
                        phase,
                        MigrationPhase::Undone | MigrationPhase::UndoingExpand
                    ) && listed.iter().any(|s| s == service))
        })
    }

    /// The release must not finish yet: a migration step runs or will run.
    pub(super) fn migrations_pending(&self) -> bool {
        if self.mig.busy() {
            return true;
        }
        self.mig.items.iter().any(|it| {
            let m = &it.prep.migration;
            let phase = self.migration_phase(&m.name);
            if !matches!(
                phase,
                MigrationPhase::Expanded
                    | MigrationPhase::ContractAwaiting
                    | MigrationPhase::ContractPending
                    | MigrationPhase::KeptExpanded
            ) {
                return false;
            }
            let statuses: Vec<ServiceStatus> = m.services.iter().map(|s| self.status(s)).collect();
            if statuses.contains(&ServiceStatus::RolledBack) {
                // undo_expand still to run (it waits for the candidates to stop), unless
                // another listed service keeps the expanded schema.
                return m.undo_expand.is_some() && self.expanded_schema_user(m).is_none();
            }
            m.contract.is_some()
                && statuses.iter().all(|s| *s == ServiceStatus::Promoted)
                && self.mig.mode != ContractMode::Defer
        })
    }

    /// Why a rollback of `service` to its old revision is refused (a migration listing it
    /// contracted, or is contracting).
    pub(super) fn migration_refuses_rollback(&self, service: &str) -> Option<String> {
        let states: Vec<(&crate::release::Migration, DbState)> = self
            .mig
            .items
            .iter()
            .map(|it| {
                let st = match self.migration_phase(it.prep.name()) {
                    MigrationPhase::Contracted | MigrationPhase::Contracting => DbState::Contracted,
                    _ => DbState::Expanded,
                };
                (&it.prep.migration, st)
            })
            .collect();
        migrate::rollback_allowed(service, &states)
            .err()
            .map(|r| r.to_string())
    }

    /// An automatic or policy rollback of a service whose migration contracted: refused,
    /// and the refusal journaled on the migration. True when refused.
    pub(super) fn migration_blocks_rollback(
        &mut self,
        service: &str,
        why: &str,
    ) -> Result<bool, EngineError> {
        let Some(reason) = self.migration_refuses_rollback(service) else {
            return Ok(false);
        };
        let names: Vec<String> = self
            .mig
            .items
            .iter()
            .filter(|it| it.prep.migration.services.iter().any(|s| s == service))
            .map(|it| it.prep.name().to_string())
            .collect();
        for name in names {
            let phase = self.migration_phase(&name);
            if matches!(
                phase,
                MigrationPhase::Contracted | MigrationPhase::Contracting
            ) {
                self.emit_migration(&name, phase, format!("{why}: {reason}"), vec![])?;
            }
        }
        Ok(true)
    }

    /// `contract NAME`: the confirmation a waiting contract needs.
    pub(super) async fn confirm_contract(
        &mut self,
        command: &Command,
        operator: &str,
        migration: &str,
    ) -> Result<CommandReply, EngineError> {
        let Some(i) = self
            .mig
            .items
            .iter()
            .position(|it| it.prep.name() == migration)
        else {
            let known: Vec<&str> = self.mig.items.iter().map(|it| it.prep.name()).collect();
            let reason = if known.is_empty() {
                format!("no migration `{migration}`: this release has none")
            } else {
                format!(
                    "no migration `{migration}` in this release (migrations: {})",
                    known.join(", ")
                )
            };
            return self.refuse(command, operator, reason);
        };
        let prep = self.mig.items[i].prep.clone();
        let phase = self.migration_phase(migration);
        if self.mig.items[i].job.is_some() {
            return self.refuse(
                command,
                operator,
                format!("migration {migration} is {phase}; wait for it to finish"),
            );
        }
        if phase != MigrationPhase::ContractAwaiting {
            let reason = match phase {
                MigrationPhase::Expanded => {
                    let progress = self.listed_progress(&prep);
                    match migrate::contract_allowed(
                        &prep.migration,
                        DbState::Expanded,
                        &progress,
                        Instant::now(),
                        true,
                    ) {
                        Err(r) => r.to_string(),
                        Ok(()) => format!(
                            "contract of {migration} is about to be offered; confirm again in a moment"
                        ),
                    }
                }
                MigrationPhase::Contracted => {
                    format!("migration {migration} is already contracted")
                }
                other => format!(
                    "migration {migration} is {other}; contract runs only after expand, once every listed service is promoted and baked"
                ),
            };
            return self.refuse(command, operator, reason);
        }
        // The gate was offered earlier: check again that every listed service is still
        // promoted and baked (one may have been rolled back since).
        let progress = self.listed_progress(&prep);
        if let Err(r) = migrate::contract_allowed(
            &prep.migration,
            DbState::Expanded,
            &progress,
            Instant::now(),
            true,
        ) {
            self.emit_migration(
                migration,
                MigrationPhase::Expanded,
                format!("contract no longer possible: {r}"),
                vec![],
            )?;
            return self.refuse(command, operator, r.to_string());
        }
        self.accept(command, operator)?;
        let detail = format!(
            "confirmed by {operator}: applying {} to {}",
            prep.migration.contract.clone().unwrap_or_default(),
            prep.database
        );
        self.emit_migration(migration, MigrationPhase::Contracting, detail, vec![])?;
        self.spawn_migration_job(i, Some(Stage::Contract));
        Ok(Ok(format!("contract of {migration} confirmed: applying")))
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

#[cfg(test)]
impl Engine {
    /// A migration stage or dry run is running (tests wait for it).
    pub(crate) fn migrations_busy(&self) -> bool {
        self.mig.busy()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::ContractMode;
    use crate::engine::testing::{FakePlatform, ScriptedSmoke};
    use crate::engine::tests::{H, START};
    use crate::engine::{
        Engine, EngineOptions, EventKind, FakeClock, MemoryRecorder, MigrationPhase, ReleaseStatus,
        ServiceStatus,
    };
    use crate::migrate::{RunOptions, Stage};
    use crate::platform::InstanceState;
    use crate::release::Release;

    const EXPAND: &str = "ALTER TABLE customers ADD COLUMN first_name TEXT;\nALTER TABLE customers ADD COLUMN last_name TEXT;\nUPDATE customers SET first_name = full_name WHERE first_name IS NULL;\n";
    const CONTRACT: &str = "ALTER TABLE customers DROP COLUMN full_name;\n";
    const UNDO: &str = "ALTER TABLE customers DROP COLUMN first_name;\nALTER TABLE customers DROP COLUMN last_name;\n";
    /// `web` (wave 1) is not listed; `customers` (wave 2) is.
    const CUSTOMERS: &str = "depends_on = [\"web\"]\nstrategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
    const WEB: &str =
        "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";

    struct Db {
        dir: tempfile::TempDir,
    }

    impl Db {
        fn new(expand: &str, undo: Option<&str>) -> Db {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("m")).unwrap();
            std::fs::write(dir.path().join("m/expand.sql"), expand).unwrap();
            std::fs::write(dir.path().join("m/contract.sql"), CONTRACT).unwrap();
            if let Some(u) = undo {
                std::fs::write(dir.path().join("m/undo.sql"), u).unwrap();
            }
            let c = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
            c.execute_batch(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL DEFAULT '');
                 INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Ada Lovelace');",
            )
            .unwrap();
            Db { dir }
        }

        fn columns(&self) -> Vec<String> {
            let c = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
            let mut st = c
                .prepare("SELECT name FROM pragma_table_info('customers') ORDER BY cid")
                .unwrap();
            st.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        }

        /// `stage` of every history row, in order (empty when there is no history table).
        fn history(&self) -> Vec<String> {
            let c = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
            let Ok(mut st) = c.prepare("SELECT stage, status FROM cutover_migrations ORDER BY id")
            else {
                return Vec::new();
            };
            st.query_map([], |r| {
                Ok(format!(
                    "{} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
        }

        fn release(&self, customers: &str, undo: bool) -> Release {
            self.release_listing(customers, undo, "[\"customers\"]")
        }

        /// The same release with `services = LISTED` in the migration.
        fn release_listing(&self, customers: &str, undo: bool, listed: &str) -> Release {
            let mut text = String::from("[release]\nname = \"t\"\nplatform = \"local\"\n");
            for (i, (name, body)) in [("web", WEB), ("customers", customers)].iter().enumerate() {
                text.push_str(&format!(
                    "\n[[service]]\nname = \"{name}\"\n{body}\n[service.local]\nlisten = \"127.0.0.1:{}\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n",
                    19100 + i
                ));
            }
            text.push_str("\n[[migration]]\nname = \"split-name\"\ndatabase = \"sqlite://app.db\"\nexpand = \"m/expand.sql\"\ncontract = \"m/contract.sql\"\nbake = \"2m\"\n");
            text.push_str(&format!("services = {listed}\n"));
            if undo {
                text.push_str("undo_expand = \"m/undo.sql\"\n");
            }
            match crate::release::load_str(Path::new("t.toml"), &text, self.dir.path()) {
                Ok(r) => r,
                Err(d) => panic!("{}", d.iter().map(|x| x.to_string()).collect::<String>()),
            }
        }

        fn options(&self, r: &Release, mode: ContractMode) -> EngineOptions {
            let migrations = r
                .migrations
                .iter()
                .map(|m| crate::migrate::PreparedMigration::new(m, self.dir.path()).unwrap())
                .collect();
            EngineOptions {
                operator: "tester".into(),
                migrations,
                contract: mode,
                migrate: RunOptions {
                    actor: "tester".into(),
                    ..RunOptions::default()
                },
                ..Default::default()
            }
        }

        fn harness(&self, r: Release, mode: ContractMode) -> H {
            let clock = FakeClock::new(START);
            let platform = FakePlatform::new(Arc::new(clock.clone()));
            let smoke = ScriptedSmoke::new();
            let rec = MemoryRecorder::new();
            let plan = crate::plan::plan(&r);
            let options = self.options(&r, mode);
            let engine = Engine::new(
                r,
                &plan,
                platform.clone(),
                Arc::new(clock.clone()),
                Box::new(rec.clone()),
                Arc::new(smoke.clone()),
                options,
            )
            .unwrap();
            H {
                engine,
                clock,
                platform,
                smoke,
                rec,
            }
        }
    }

    fn phases(h: &H) -> Vec<MigrationPhase> {
        h.events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Migration { phase, .. } => Some(*phase),
                _ => None,
            })
            .collect()
    }

    fn position(h: &H, f: impl Fn(&EventKind) -> bool) -> usize {
        h.events()
            .iter()
            .position(|e| f(&e.kind))
            .expect("event not found")
    }

    fn phase(h: &H) -> MigrationPhase {
        h.engine.state().migration("split-name").unwrap().phase
    }

    #[tokio::test]
    async fn expand_runs_before_the_listed_wave_and_contract_waits_for_confirmation() {
        let db = Db::new(EXPAND, Some(UNDO));
        let r = db.release(CUSTOMERS, true);
        let mut h = db.harness(r, ContractMode::Confirm);
        h.start().await;
        h.run_for(Duration::from_secs(120)).await;
        assert_eq!(h.status("customers"), ServiceStatus::Promoted);
        // Expand sat between the two waves: after web started, before customers started.
        let expanded = position(&h, |k| {
            matches!(
                k,
                EventKind::Migration {
                    phase: MigrationPhase::Expanded,
                    ..
                }
            )
        });
        let web = position(
            &h,
            |k| matches!(k, EventKind::ServiceStarted { service } if service == "web"),
        );
        let customers = position(
            &h,
            |k| matches!(k, EventKind::ServiceStarted { service } if service == "customers"),
        );
        assert!(web < expanded && expanded < customers, "{:#?}", h.events());
        assert_eq!(
            db.columns(),
            ["id", "full_name", "first_name", "last_name"],
            "expand applied"
        );
        // Bake not over yet: no contract offered, and confirming early is refused.
        assert_eq!(phase(&h), MigrationPhase::Expanded);
        let early = h.cmd("contract split-name").await.unwrap_err();
        assert!(early.reason.contains("bake"), "{}", early.reason);
        h.run_for(Duration::from_secs(121)).await;
        assert_eq!(phase(&h), MigrationPhase::ContractAwaiting);
        assert_ne!(
            h.engine.state().status,
            ReleaseStatus::Finished,
            "waits for the person"
        );
        let wrong = h.cmd("contract nope").await.unwrap_err();
        assert!(wrong.reason.contains("split-name"), "{}", wrong.reason);
        h.cmd("contract split-name").await.unwrap();
        for _ in 0..200 {
            h.settle().await;
            if h.engine.state().status == ReleaseStatus::Finished {
                break;
            }
            h.run_for(Duration::from_secs(1)).await;
        }
        assert_eq!(phase(&h), MigrationPhase::Contracted);
        assert_eq!(
            db.columns(),
            ["id", "first_name", "last_name"],
            "contract applied"
        );
        assert_eq!(
            phases(&h),
            [
                MigrationPhase::Linted,
                MigrationPhase::DryRunOk,
                MigrationPhase::Expanding,
                MigrationPhase::Expanded,
                MigrationPhase::ContractAwaiting,
                MigrationPhase::Contracting,
                MigrationPhase::Contracted,
            ]
        );
        assert_eq!(db.history(), ["expand applied", "contract applied"]);
        assert_eq!(h.engine.state().exit_code(), 0);
        // After contract a rollback to the old revision is refused, with the reason.
        let r = h.cmd("rollback customers").await.unwrap_err();
        assert!(
            r.reason.contains("split-name") && r.reason.contains("old schema"),
            "{}",
            r.reason
        );
    }

    #[tokio::test]
    async fn abort_while_contract_awaits_confirmation_leaves_it_pending() {
        let db = Db::new(EXPAND, Some(UNDO));
        let mut h = db.harness(db.release(CUSTOMERS, true), ContractMode::Confirm);
        h.start().await;
        h.run_for(Duration::from_secs(300)).await;
        assert_eq!(phase(&h), MigrationPhase::ContractAwaiting);
        h.cmd("abort").await.unwrap();
        h.settle().await;
        // The release finishes instead of waiting for a person nobody will be.
        assert_eq!(h.engine.state().status, ReleaseStatus::Finished);
        assert_eq!(phase(&h), MigrationPhase::ContractPending);
        let detail = &h.engine.state().migration("split-name").unwrap().detail;
        assert!(detail.contains("aborted by alice"), "{detail}");
        assert_eq!(db.history(), ["expand applied"]);
    }

    #[tokio::test]
    async fn a_lint_finding_stops_the_release_before_the_database_is_touched() {
        let db = Db::new("ALTER TABLE customers DROP COLUMN full_name;\n", None);
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        h.finish(Duration::from_secs(60)).await;
        assert_eq!(h.status("web"), ServiceStatus::Skipped);
        assert_eq!(h.status("customers"), ServiceStatus::Skipped);
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::Failed);
        assert!(m.refused);
        assert!(
            m.detail.contains("lint refused") && m.detail.contains("m/expand.sql:1"),
            "{}",
            m.detail
        );
        assert!(
            m.lines
                .iter()
                .any(|l| l.contains("drop-column") && l.contains("fix:")),
            "{:?}",
            m.lines
        );
        let reason = h.svc("web").reason.unwrap();
        assert!(reason.contains("split-name"), "{reason}");
        assert_eq!(h.engine.state().exit_code(), 2);
        assert!(db.history().is_empty(), "no history table: nothing touched");
        assert_eq!(db.columns(), ["id", "full_name"]);
        assert!(
            !h.platform.calls().iter().any(|c| c.contains("v2")),
            "no candidate launched"
        );
    }

    #[tokio::test]
    async fn a_failed_dry_run_stops_the_release_and_leaves_the_database_alone() {
        // Two rows share a name: the unique index fails on the copy.
        let db = Db::new(
            "CREATE UNIQUE INDEX customers_name ON customers (full_name);\n",
            None,
        );
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        h.finish(Duration::from_secs(120)).await;
        assert_eq!(h.status("customers"), ServiceStatus::Skipped);
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::Failed);
        assert!(
            m.detail.contains("dry run") && m.detail.to_lowercase().contains("unique"),
            "{}",
            m.detail
        );
        assert_eq!(h.engine.state().exit_code(), 2);
        assert!(db.history().is_empty());
        assert!(!phases(&h).contains(&MigrationPhase::Expanding));
    }

    /// Once the candidate takes traffic, its health checks start failing.
    async fn fail_customers_mid_rollout(h: &mut H) {
        for _ in 0..120 {
            if h.svc("customers").candidate_weight == 50 {
                break;
            }
            h.run_for(Duration::from_secs(1)).await;
        }
        assert_eq!(h.svc("customers").candidate_weight, 50);
        h.platform.set_state(
            "customers",
            "v2",
            InstanceState::Unhealthy {
                reason: "GET /healthz answered 503".into(),
            },
        );
    }

    #[tokio::test]
    async fn a_listed_service_rolling_back_before_contract_undoes_expand() {
        let db = Db::new(EXPAND, Some(UNDO));
        let r = db.release(CUSTOMERS, true);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        fail_customers_mid_rollout(&mut h).await;
        h.finish(Duration::from_secs(300)).await;
        assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
        assert_eq!(phase(&h), MigrationPhase::Undone);
        assert_eq!(db.columns(), ["id", "full_name"], "undo_expand applied");
        assert_eq!(db.history(), ["expand applied", "undo_expand applied"]);
        // The undo ran after the candidate was stopped.
        let retired = position(
            &h,
            |k| matches!(k, EventKind::Retired { service, revision } if service == "customers" && revision == "v2"),
        );
        let undoing = position(&h, |k| {
            matches!(
                k,
                EventKind::Migration {
                    phase: MigrationPhase::UndoingExpand,
                    ..
                }
            )
        });
        assert!(retired < undoing);
    }

    #[tokio::test]
    async fn undo_waits_while_another_listed_service_uses_the_expanded_schema() {
        // web (promoted, listed) runs its new revision on the expanded schema: when
        // customers rolls back, undo_expand must not drop what web uses.
        let db = Db::new(EXPAND, Some(UNDO));
        let r = db.release_listing(CUSTOMERS, true, "[\"web\", \"customers\"]");
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        fail_customers_mid_rollout(&mut h).await;
        h.finish(Duration::from_secs(300)).await;
        assert_eq!(h.status("web"), ServiceStatus::Promoted);
        assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
        assert_eq!(phase(&h), MigrationPhase::KeptExpanded);
        assert_eq!(
            db.columns(),
            ["id", "full_name", "first_name", "last_name"],
            "the schema web uses stays"
        );
        assert_eq!(db.history(), ["expand applied"]);
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert!(m.detail.contains("web"), "{}", m.detail);
    }

    #[tokio::test]
    async fn a_listed_service_that_never_starts_holds_nothing() {
        // web fails, so customers (the only listed service, next wave) is skipped: expand
        // never comes due, and the release must still finish.
        let db = Db::new(EXPAND, Some(UNDO));
        let r = db.release(CUSTOMERS, true);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        for _ in 0..60 {
            if h.svc("web").candidate_weight == 50 {
                break;
            }
            h.run_for(Duration::from_secs(1)).await;
        }
        h.platform.set_state(
            "web",
            "v2",
            InstanceState::Unhealthy {
                reason: "GET /healthz answered 503".into(),
            },
        );
        h.finish(Duration::from_secs(300)).await;
        assert_eq!(h.engine.state().status, ReleaseStatus::Finished);
        assert_eq!(h.status("customers"), ServiceStatus::Skipped);
        assert!(db.history().is_empty(), "nothing applied");
        assert_eq!(db.columns(), ["id", "full_name"]);
    }

    #[tokio::test]
    async fn a_retry_after_undo_expands_again_before_the_service_starts() {
        let db = Db::new(EXPAND, Some(UNDO));
        let r = db.release(CUSTOMERS, true);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        fail_customers_mid_rollout(&mut h).await;
        h.finish(Duration::from_secs(300)).await;
        assert_eq!(phase(&h), MigrationPhase::Undone);
        h.cmd("retry customers").await.unwrap();
        h.finish(Duration::from_secs(600)).await;
        assert_eq!(h.status("customers"), ServiceStatus::Promoted);
        assert_eq!(phase(&h), MigrationPhase::Contracted);
        let events = h.events();
        let retried = events
            .iter()
            .rposition(|e| matches!(e.kind, EventKind::Retrying { .. }))
            .unwrap();
        let expanded = events
            .iter()
            .rposition(|e| {
                matches!(
                    e.kind,
                    EventKind::Migration {
                        phase: MigrationPhase::Expanded,
                        ..
                    }
                )
            })
            .unwrap();
        let started = events
            .iter()
            .rposition(|e| matches!(&e.kind, EventKind::ServiceStarted { service } if service == "customers"))
            .unwrap();
        assert!(retried < expanded && expanded < started, "{events:#?}");
        assert_eq!(
            db.history(),
            [
                "expand applied",
                "undo_expand applied",
                "expand applied",
                "contract applied"
            ]
        );
    }

    #[tokio::test]
    async fn without_undo_expand_the_additive_schema_stays_and_the_journal_says_so() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        fail_customers_mid_rollout(&mut h).await;
        h.finish(Duration::from_secs(300)).await;
        assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::KeptExpanded);
        assert!(m.detail.contains("no undo_expand"), "{}", m.detail);
        assert_eq!(db.columns(), ["id", "full_name", "first_name", "last_name"]);
        assert_eq!(db.history(), ["expand applied"]);
    }

    #[tokio::test]
    async fn a_failed_contract_is_journaled_and_the_release_exits_3() {
        let db = Db::new(EXPAND, None);
        std::fs::write(
            db.dir.path().join("m/contract.sql"),
            "ALTER TABLE no_such_table DROP COLUMN full_name;\n",
        )
        .unwrap();
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        // The dry run proves contract too: it fails on the copy, before expand.
        h.finish(Duration::from_secs(600)).await;
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::Failed);
        assert!(
            m.detail.contains("contract failed on the copy"),
            "{}",
            m.detail
        );
        assert_eq!(h.engine.state().exit_code(), 2);
        assert!(db.history().is_empty());
    }

    #[tokio::test]
    async fn a_schema_changed_outside_migrations_stops_contract_and_the_release_exits_3() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        h.run_for(Duration::from_secs(30)).await;
        assert_eq!(phase(&h), MigrationPhase::Expanded);
        rusqlite::Connection::open(db.dir.path().join("app.db"))
            .unwrap()
            .execute_batch("CREATE TABLE intruder (x INTEGER);")
            .unwrap();
        h.finish(Duration::from_secs(600)).await;
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::Failed);
        assert!(
            m.detail.contains("changed outside migrations"),
            "{}",
            m.detail
        );
        assert!(!m.refused);
        assert_eq!(h.engine.state().exit_code(), 3);
        assert_eq!(db.history(), ["expand applied"], "contract did not run");
        assert!(db.columns().contains(&"full_name".to_string()));
    }

    #[tokio::test]
    async fn allow_contract_runs_it_after_the_bake_without_asking() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Allow);
        h.start().await;
        h.finish(Duration::from_secs(600)).await;
        assert_eq!(phase(&h), MigrationPhase::Contracted);
        let promoted = h.svc("customers").finished_at_ms.unwrap();
        let contracting = h
            .events()
            .iter()
            .find(|e| {
                matches!(
                    e.kind,
                    EventKind::Migration {
                        phase: MigrationPhase::Contracting,
                        ..
                    }
                )
            })
            .unwrap()
            .at_ms;
        assert!(contracting >= promoted + 120_000, "bake of 2m respected");
        assert!(!phases(&h).contains(&MigrationPhase::ContractAwaiting));
        assert_eq!(db.history(), ["expand applied", "contract applied"]);
    }

    #[tokio::test]
    async fn headless_without_confirmation_ends_with_the_contract_pending() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        let mut h = db.harness(r, ContractMode::Defer);
        h.start().await;
        h.finish(Duration::from_secs(120)).await;
        let m = h.engine.state().migration("split-name").unwrap().clone();
        assert_eq!(m.phase, MigrationPhase::ContractPending);
        assert!(
            m.detail.contains("cutover migrate contract"),
            "{}",
            m.detail
        );
        assert_eq!(h.engine.state().exit_code(), 0);
        assert_eq!(db.history(), ["expand applied"]);
        assert!(db.columns().contains(&"full_name".to_string()));
    }

    /// Restore an engine from `events` (the journal a killed process left).
    fn resumed(db: &Db, r: Release, events: &[crate::engine::Event], mode: ContractMode) -> H {
        let clock = FakeClock::new(events.last().map_or(START, |e| e.at_ms) + 5_000);
        let platform = FakePlatform::new(Arc::new(clock.clone()));
        let smoke = ScriptedSmoke::new();
        let rec = MemoryRecorder::new();
        rec.events.lock().unwrap().extend(events.iter().cloned());
        let plan = crate::plan::plan(&r);
        let options = db.options(&r, mode);
        let engine = Engine::restore(
            r,
            &plan,
            platform.clone(),
            Arc::new(clock.clone()),
            Box::new(rec.clone()),
            Arc::new(smoke.clone()),
            options,
            events,
        )
        .unwrap();
        H {
            engine,
            clock,
            platform,
            smoke,
            rec,
        }
    }

    /// The journal up to and including the first `Expanding`: the process died while
    /// expand ran.
    fn cut_at_expanding(h: &H) -> Vec<crate::engine::Event> {
        let events = h.events();
        let at = events
            .iter()
            .position(|e| {
                matches!(
                    e.kind,
                    EventKind::Migration {
                        phase: MigrationPhase::Expanding,
                        ..
                    }
                )
            })
            .unwrap();
        events[..=at].to_vec()
    }

    #[tokio::test]
    async fn a_kill_after_expand_committed_resumes_without_applying_it_again() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        let mut first = db.harness(r.clone(), ContractMode::Allow);
        first.start().await;
        first.run_for(Duration::from_secs(30)).await;
        assert_eq!(db.history(), ["expand applied"]);
        // The process died after the commit, before `Expanded` reached the journal.
        let events = cut_at_expanding(&first);
        drop(first);
        let mut h = resumed(&db, r, &events, ContractMode::Allow);
        h.finish(Duration::from_secs(600)).await;
        let expanded = h
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Migration {
                    phase: MigrationPhase::Expanded,
                    detail,
                    ..
                } => Some(detail),
                _ => None,
            })
            .collect::<Vec<_>>();
        assert_eq!(expanded.len(), 1, "{expanded:?}");
        assert!(expanded[0].contains("already applied"), "{}", expanded[0]);
        assert_eq!(
            db.history(),
            ["expand applied", "contract applied"],
            "each stage once"
        );
        assert_eq!(h.status("customers"), ServiceStatus::Promoted);
        assert_eq!(db.columns(), ["id", "first_name", "last_name"]);
    }

    #[tokio::test]
    async fn a_kill_mid_expand_resumes_and_applies_it_exactly_once() {
        let db = Db::new(EXPAND, None);
        let r = db.release(CUSTOMERS, false);
        // A first run that recorded `Expanding`; then the process dies inside the
        // expand transaction (after one statement, before the commit).
        let mut first = db.harness(r.clone(), ContractMode::Allow);
        first.start().await;
        first.run_for(Duration::from_secs(30)).await;
        let events = cut_at_expanding(&first);
        drop(first);
        let fresh = Db::new(EXPAND, None);
        std::fs::copy(
            fresh.dir.path().join("app.db"),
            db.dir.path().join("app.db"),
        )
        .unwrap();
        let prep = crate::migrate::PreparedMigration::new(&r.migrations[0], db.dir.path()).unwrap();
        let crash = RunOptions {
            failpoint_after_statements: Some(1),
            ..RunOptions::default()
        };
        assert!(prep.apply(Stage::Expand, &crash).is_err());
        assert!(
            db.history().is_empty(),
            "the interrupted transaction left nothing"
        );
        assert_eq!(db.columns(), ["id", "full_name"]);
        let mut h = resumed(&db, r, &events, ContractMode::Allow);
        h.finish(Duration::from_secs(600)).await;
        assert_eq!(db.history(), ["expand applied", "contract applied"]);
        assert_eq!(db.columns(), ["id", "first_name", "last_name"]);
        assert_eq!(h.status("customers"), ServiceStatus::Promoted);
    }
}
