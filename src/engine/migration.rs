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

    /// Where each listed service stands, for [`migrate::contract_allowed`].
    fn listed_progress(&self, prep: &PreparedMigration) -> BTreeMap<String, ServiceProgress> {
        let now_ms = self.clock.now_ms();
        let now = Instant::now();
        prep.migration
            .services
            .iter()
            .filter_map(|name| {
                let s = self.state.service(name)?;
                Some((name.clone(), super::state::service_progress(s, now_ms, now)))
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

#[cfg(test)]
impl Engine {
    /// A migration stage or dry run is running (tests wait for it).
    pub(crate) fn migrations_busy(&self) -> bool {
        self.mig.busy()
    }
}
