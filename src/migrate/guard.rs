//! The checks the engine makes before contract and before rolling a service back. The
//! engine owns the state (which service is where, since when); these functions own the
//! rules and the reason strings shown to people.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::db::MigrationState;
use crate::duration::format_duration;
use crate::release::Migration;

/// Where a listed service stands in the rollout, as the engine knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceProgress {
    /// Not started yet.
    Pending,
    /// Shifting traffic, analysing, paused.
    RollingOut,
    /// Fully promoted at this instant.
    Promoted { at: Instant },
    /// Rolled back to its previous revision.
    RolledBack,
}

/// Why contract may not run yet. `Display` is the reason to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractRefusal {
    NoContractFile {
        migration: String,
    },
    /// The migration is not in the `Expanded` state (nothing to contract, or done).
    NotExpanded {
        migration: String,
        state: MigrationState,
    },
    UnknownService {
        migration: String,
        service: String,
    },
    NotPromoted {
        migration: String,
        service: String,
        progress: &'static str,
    },
    RolledBack {
        migration: String,
        service: String,
    },
    Baking {
        migration: String,
        service: String,
        remaining: Duration,
    },
    /// Everything else holds; a person must confirm (console dialog, `--allow-contract`).
    NeedsConfirmation {
        migration: String,
    },
}

impl fmt::Display for ContractRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractRefusal::NoContractFile { migration } => {
                write!(
                    f,
                    "migration \"{migration}\" has no contract file; nothing to contract"
                )
            }
            ContractRefusal::NotExpanded { migration, state } => write!(
                f,
                "migration \"{migration}\" is {state:?}, not expanded; contract runs only after expand"
            ),
            ContractRefusal::UnknownService { migration, service } => write!(
                f,
                "migration \"{migration}\" lists service \"{service}\" but the release does not track it; contract would break it"
            ),
            ContractRefusal::NotPromoted {
                migration,
                service,
                progress,
            } => write!(
                f,
                "contract of \"{migration}\" waits: service \"{service}\" is {progress}, and its old revision may still use the old schema"
            ),
            ContractRefusal::RolledBack { migration, service } => write!(
                f,
                "contract of \"{migration}\" refused: service \"{service}\" rolled back and runs the revision that needs the old schema"
            ),
            ContractRefusal::Baking {
                migration,
                service,
                remaining,
            } => write!(
                f,
                "contract of \"{migration}\" waits for the bake: service \"{service}\" needs {} more without rollback",
                format_duration(*remaining)
            ),
            ContractRefusal::NeedsConfirmation { migration } => write!(
                f,
                "contract of \"{migration}\" is allowed and needs confirmation: it is one-way (confirm in the console, or pass --allow-contract)"
            ),
        }
    }
}

impl ContractRefusal {
    /// Whether waiting can resolve it (promotion or bake pending) rather than a person
    /// or a fix.
    pub fn is_wait(&self) -> bool {
        matches!(
            self,
            ContractRefusal::NotPromoted { .. } | ContractRefusal::Baking { .. }
        )
    }
}

/// Contract may run only when the migration is expanded, every listed service is promoted
/// and has been for `bake`, and a person confirmed. Returns the first unmet condition;
/// `NeedsConfirmation` comes last, so the engine asks only when everything else holds.
pub fn contract_allowed(
    m: &Migration,
    state: MigrationState,
    services: &BTreeMap<String, ServiceProgress>,
    now: Instant,
    confirmed: bool,
) -> Result<(), ContractRefusal> {
    let migration = m.name.clone();
    if m.contract.is_none() {
        return Err(ContractRefusal::NoContractFile { migration });
    }
    if state != MigrationState::Expanded {
        return Err(ContractRefusal::NotExpanded { migration, state });
    }
    let mut promoted = Vec::new();
    for s in &m.services {
        let progress = services
            .get(s)
            .ok_or_else(|| ContractRefusal::UnknownService {
                migration: migration.clone(),
                service: s.clone(),
            })?;
        match *progress {
            ServiceProgress::Pending => {
                return Err(ContractRefusal::NotPromoted {
                    migration,
                    service: s.clone(),
                    progress: "not rolled out yet",
                });
            }
            ServiceProgress::RollingOut => {
                return Err(ContractRefusal::NotPromoted {
                    migration,
                    service: s.clone(),
                    progress: "still rolling out",
                });
            }
            ServiceProgress::RolledBack => {
                return Err(ContractRefusal::RolledBack {
                    migration,
                    service: s.clone(),
                });
            }
            ServiceProgress::Promoted { at } => promoted.push((s, at)),
        }
    }
    // The service promoted last decides how long the bake still runs.
    if let Some((s, at)) = promoted.into_iter().max_by_key(|(_, at)| *at) {
        let baked = now.saturating_duration_since(at);
        if baked < *m.bake {
            return Err(ContractRefusal::Baking {
                migration,
                service: s.clone(),
                remaining: *m.bake - baked,
            });
        }
    }
    if !confirmed {
        return Err(ContractRefusal::NeedsConfirmation { migration });
    }
    Ok(())
}

/// Why a service may not roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRefusal {
    pub service: String,
    /// Contracted migrations that list the service.
    pub migrations: Vec<String>,
}

impl fmt::Display for RollbackRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to roll \"{}\" back: migration(s) {} already contracted, so the old schema its previous revision needs is gone; roll forward with a fix, or restore a database snapshot first",
            self.service,
            self.migrations
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// A rollback of `service` to its previous revision is refused once a migration listing
/// it has contracted.
pub fn rollback_allowed(
    service: &str,
    migrations: &[(&Migration, MigrationState)],
) -> Result<(), RollbackRefusal> {
    let blocking: Vec<String> = migrations
        .iter()
        .filter(|(m, s)| {
            *s == MigrationState::Contracted && m.services.iter().any(|x| x == service)
        })
        .map(|(m, _)| m.name.clone())
        .collect();
    if blocking.is_empty() {
        Ok(())
    } else {
        Err(RollbackRefusal {
            service: service.to_string(),
            migrations: blocking,
        })
    }
}

/// What to do with a migration when one of its listed services rolled back before contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackAction {
    /// Run `undo_expand` (the engine calls `Database::undo_expand`).
    RunUndoExpand,
    /// No `undo_expand` file: the additive schema stays; the old revision works with it.
    KeepExpanded,
    /// The migration does not list the service, or expand is not applied.
    Nothing,
}

pub fn on_service_rolled_back(
    m: &Migration,
    state: MigrationState,
    service: &str,
) -> RollbackAction {
    if !m.services.iter().any(|s| s == service) || state != MigrationState::Expanded {
        return RollbackAction::Nothing;
    }
    if m.undo_expand.is_some() {
        RollbackAction::RunUndoExpand
    } else {
        RollbackAction::KeepExpanded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Dur;

    fn mig() -> Migration {
        Migration {
            name: "split-name".into(),
            database: "sqlite://app.db".into(),
            expand: "e.sql".into(),
            contract: Some("c.sql".into()),
            undo_expand: Some("u.sql".into()),
            services: vec!["orders".into(), "payments".into()],
            bake: Dur::from_secs(60),
        }
    }

    #[test]
    fn contract_waits_for_every_service_bake_and_confirmation() {
        let m = mig();
        let t0 = Instant::now();
        let mut s = BTreeMap::new();
        s.insert("orders".to_string(), ServiceProgress::Promoted { at: t0 });
        s.insert("payments".to_string(), ServiceProgress::RollingOut);
        let r = contract_allowed(&m, MigrationState::Expanded, &s, t0, true).unwrap_err();
        assert!(
            matches!(&r, ContractRefusal::NotPromoted { service, .. } if service == "payments")
        );
        assert!(r.to_string().contains("payments") && r.is_wait());

        s.insert(
            "payments".to_string(),
            ServiceProgress::Promoted {
                at: t0 + Duration::from_secs(30),
            },
        );
        let r = contract_allowed(
            &m,
            MigrationState::Expanded,
            &s,
            t0 + Duration::from_secs(70),
            true,
        )
        .unwrap_err();
        assert_eq!(
            r,
            ContractRefusal::Baking {
                migration: "split-name".into(),
                service: "payments".into(),
                remaining: Duration::from_secs(20)
            }
        );
        assert!(r.to_string().contains("20s"), "{r}");

        let later = t0 + Duration::from_secs(91);
        let r = contract_allowed(&m, MigrationState::Expanded, &s, later, false).unwrap_err();
        assert!(matches!(r, ContractRefusal::NeedsConfirmation { .. }));
        assert!(contract_allowed(&m, MigrationState::Expanded, &s, later, true).is_ok());
        let r = contract_allowed(&m, MigrationState::Pending, &s, later, true).unwrap_err();
        assert!(matches!(r, ContractRefusal::NotExpanded { .. }));

        s.insert("orders".to_string(), ServiceProgress::RolledBack);
        let r = contract_allowed(&m, MigrationState::Expanded, &s, later, true).unwrap_err();
        assert!(matches!(r, ContractRefusal::RolledBack { .. }) && !r.is_wait());
    }

    #[test]
    fn rollback_refused_after_contract_only_for_listed_services() {
        let m = mig();
        assert!(rollback_allowed("orders", &[(&m, MigrationState::Expanded)]).is_ok());
        let r = rollback_allowed("orders", &[(&m, MigrationState::Contracted)]).unwrap_err();
        assert_eq!(r.migrations, vec!["split-name"]);
        assert!(r.to_string().contains("old schema"));
        assert!(rollback_allowed("search", &[(&m, MigrationState::Contracted)]).is_ok());
    }

    #[test]
    fn rollback_before_contract_undoes_expand_when_possible() {
        let mut m = mig();
        assert_eq!(
            on_service_rolled_back(&m, MigrationState::Expanded, "orders"),
            RollbackAction::RunUndoExpand
        );
        assert_eq!(
            on_service_rolled_back(&m, MigrationState::Expanded, "search"),
            RollbackAction::Nothing
        );
        m.undo_expand = None;
        assert_eq!(
            on_service_rolled_back(&m, MigrationState::Expanded, "orders"),
            RollbackAction::KeepExpanded
        );
        assert_eq!(
            on_service_rolled_back(&m, MigrationState::Contracted, "orders"),
            RollbackAction::Nothing
        );
    }
}
