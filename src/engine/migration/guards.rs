//! What the migrations say to the rest of the engine: a wave held until expand, the
//! release kept open, a rollback refused after contract, the `contract` command, abort.

use super::*;

impl Engine {
    /// `abort`: a contract not yet running is left pending (nobody confirms it in this
    /// run any more), so the release can finish.
    pub(in crate::engine) fn migrations_on_abort(
        &mut self,
        operator: &str,
    ) -> Result<(), EngineError> {
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

    pub(super) fn defer_contract(&mut self, name: &str) -> Result<(), EngineError> {
        let detail = format!(
            "not confirmed (headless without --allow-contract); the schema stays expanded. Run it once the bake has passed: `cutover migrate contract RELEASE_FILE --migration {name}`"
        );
        self.emit_migration(name, MigrationPhase::ContractPending, detail, vec![])
    }

    /// Services of a wave wait until every migration due before that wave is expanded
    /// (expand runs before the wave starts, whichever of its services it lists).
    pub(in crate::engine) fn migration_holds(&self, service: &str) -> bool {
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
    pub(in crate::engine) fn migrations_pending(&self) -> bool {
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
    pub(in crate::engine) fn migration_refuses_rollback(&self, service: &str) -> Option<String> {
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
    pub(in crate::engine) fn migration_blocks_rollback(
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
    pub(in crate::engine) async fn confirm_contract(
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
