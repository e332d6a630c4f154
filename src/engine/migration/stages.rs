//! The stages in order, one tick at a time: lint when the release starts (or resume a
//! stage in flight), collect finished jobs, then dry run and expand before the listed wave,
//! undo_expand after a rollback, and contract once allowed.

use super::*;

impl Engine {
    /// The engine's migration work for one tick (called before services are scheduled).
    pub(in crate::engine) async fn migrations_tick(&mut self) -> Result<(), EngineError> {
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
    pub(super) async fn begin_migrations(&mut self) -> Result<(), EngineError> {
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

    pub(super) async fn collect_migration_jobs(&mut self) -> Result<(), EngineError> {
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
    pub(super) fn listed_progress(
        &self,
        prep: &PreparedMigration,
    ) -> BTreeMap<String, ServiceProgress> {
        let now_ms = self.clock.now_ms();
        let now = Instant::now();
        prep.migration
            .services
            .iter()
            .filter_map(|name| {
                let s = self.state.service(name)?;
                Some((
                    name.clone(),
                    crate::engine::state::service_progress(s, now_ms, now),
                ))
            })
            .collect()
    }

    pub(super) async fn advance_migrations(&mut self) -> Result<(), EngineError> {
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
            // An expand changes the database: a freeze window that opened mid-release
            // holds it as it holds a service's start (a dry run does not: it touches a copy).
            let expands = matches!(phase, MigrationPhase::DryRunOk | MigrationPhase::Undone);
            let due = due && !(expands && self.frozen_now()?);
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
    pub(super) async fn after_expand(
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
            // A contract given in advance (--allow-contract) waits out a freeze window.
            Ok(()) if self.frozen_now()? => {}
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
    pub(super) fn expanded_schema_user(&self, m: &crate::release::Migration) -> Option<String> {
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
}
