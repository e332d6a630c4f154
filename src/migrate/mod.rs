//! Database migrations that go with a release: lint, dry run on a copy, expand before the
//! rollout, contract after every listed service is promoted and baked, `undo_expand` when
//! a listed service rolls back before contract.
//!
//! The deployment engine drives this module; it owns the order (lint → dry run → expand →
//! rollout → bake → confirmation → contract) and calls:
//!
//! * [`MigrationFiles::load`] and [`lint()`] before anything touches a database;
//! * [`dry_run()`] on a copy (SQLite: `VACUUM INTO` a temp file; PostgreSQL:
//!   `CREATE DATABASE ... TEMPLATE`, or a schema-only copy when the real one is in use);
//! * [`Database::connect`] then [`Database::apply`] (or [`Database::expand`] /
//!   [`Database::contract`] / [`Database::undo_expand`]) — each stage and its history row
//!   commit together, so a crash and `resume` never apply anything twice;
//! * the guards [`contract_allowed`], [`rollback_allowed`] and [`on_service_rolled_back`].
//!
//! The API is synchronous (rusqlite, the `postgres` crate). From async code call it inside
//! `tokio::task::spawn_blocking`; the `postgres` client panics if driven from a runtime
//! thread.

pub mod db;
pub mod dry_run;
pub mod guard;
pub mod lint;
pub mod sql;
pub mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use db::{
    Database, Fingerprint, HistoryRow, MigrationState, MigrationStatus, RunOptions, StageOutcome,
};
pub use dry_run::{DryRunReport, DryRunStep, dry_run};
pub use guard::{
    ContractRefusal, RollbackAction, RollbackRefusal, ServiceProgress, contract_allowed,
    on_service_rolled_back, rollback_allowed,
};
pub use lint::{Finding, LintReport, Rule, Severity, lint, lint_file};
pub use sql::{SqlFile, checksum};
pub use url::{Dialect, RedactedUrl};

use crate::release::{LoadedRelease, Migration};

/// A release's migration with its files read and linted: what the engine holds through a
/// deploy. Nothing here has touched a database (an `env:` URL is looked up).
#[derive(Debug, Clone)]
pub struct PreparedMigration {
    pub migration: Migration,
    pub files: MigrationFiles,
    pub dialect: Dialect,
    /// The database, fit for printing.
    pub database: RedactedUrl,
    pub lint: LintReport,
    base_dir: PathBuf,
}

impl PreparedMigration {
    /// Read and lint one migration of a release whose relative paths resolve against
    /// `base_dir`.
    pub fn new(m: &Migration, base_dir: &Path) -> Result<PreparedMigration, MigrateError> {
        let (target, database) = url::resolve(&m.database, base_dir)?;
        let files = MigrationFiles::load(m, base_dir)?;
        let dialect = target.dialect();
        let lint = lint::lint(&files, dialect);
        Ok(PreparedMigration {
            migration: m.clone(),
            files,
            dialect,
            database,
            lint,
            base_dir: base_dir.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.migration.name
    }

    /// `Err(LintRefused)` naming the first blocking finding, when lint refuses it.
    pub fn check_lint(&self) -> Result<(), MigrateError> {
        let blocking: Vec<&Finding> = self.lint.blocking().collect();
        match blocking.first() {
            None => Ok(()),
            Some(first) => Err(MigrateError::LintRefused {
                migration: self.migration.name.clone(),
                stage: first.stage,
                count: blocking.len(),
                first: format!(
                    "{}:{} [{}] {}",
                    first.file, first.line, first.rule, first.message
                ),
            }),
        }
    }

    /// Connect to the migration's database.
    pub fn connect(&self) -> Result<Database, MigrateError> {
        Database::connect(&self.migration.database, &self.base_dir)
    }

    /// Dry run on a copy (see [`dry_run()`]).
    pub fn dry_run(&self, opts: &RunOptions) -> Result<DryRunReport, MigrateError> {
        dry_run::dry_run(&self.migration, &self.files, &self.base_dir, opts)
    }

    /// Apply a stage (connects, applies, disconnects). See [`Database::apply`].
    pub fn apply(&self, stage: Stage, opts: &RunOptions) -> Result<StageOutcome, MigrateError> {
        self.connect()?
            .apply(&self.migration.name, &self.files, stage, opts)
    }

    /// The migration's state from the database's history table.
    pub fn state(&self) -> Result<MigrationState, MigrateError> {
        self.connect()?.state(&self.migration.name)
    }
}

/// Read and lint every migration of a loaded release, in release order.
pub fn prepare(release: &LoadedRelease) -> Result<Vec<PreparedMigration>, MigrateError> {
    release
        .release
        .migrations
        .iter()
        .map(|m| PreparedMigration::new(m, &release.base_dir))
        .collect()
}

/// A stage of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Expand,
    Contract,
    UndoExpand,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Expand => "expand",
            Stage::Contract => "contract",
            Stage::UndoExpand => "undo_expand",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "expand" => Some(Stage::Expand),
            "contract" => Some(Stage::Contract),
            "undo_expand" => Some(Stage::UndoExpand),
            _ => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A migration's SQL files, read from disk (paths relative to the release file).
#[derive(Debug, Clone)]
pub struct MigrationFiles {
    pub expand: SqlFile,
    pub contract: Option<SqlFile>,
    pub undo_expand: Option<SqlFile>,
}

impl MigrationFiles {
    pub fn load(m: &Migration, base_dir: &Path) -> Result<MigrationFiles, MigrateError> {
        Ok(MigrationFiles {
            expand: SqlFile::load(base_dir, &m.expand)?,
            contract: m
                .contract
                .as_deref()
                .map(|c| SqlFile::load(base_dir, c))
                .transpose()?,
            undo_expand: m
                .undo_expand
                .as_deref()
                .map(|u| SqlFile::load(base_dir, u))
                .transpose()?,
        })
    }

    pub fn get(&self, stage: Stage) -> Option<&SqlFile> {
        match stage {
            Stage::Expand => Some(&self.expand),
            Stage::Contract => self.contract.as_ref(),
            Stage::UndoExpand => self.undo_expand.as_ref(),
        }
    }
}

fn committed_note(partial: bool) -> &'static str {
    if partial {
        "statements before it are committed (no-transaction file) and a re-run resumes after them"
    } else {
        "nothing of this stage was committed"
    }
}

/// Errors of the migration module. Every message names the database by its
/// [`RedactedUrl`]; none contains a password.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database {url}: {reason}")]
    BadUrl { url: RedactedUrl, reason: String },
    #[error(
        "environment variable {var} is not set; export it with the database URL (e.g. {var}=postgres://user@host/db)"
    )]
    EnvMissing { var: String },
    #[error("cannot read migration file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("migration file {} is not UTF-8 text; save it as UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("cannot open database {url}: {message}")]
    Connect { url: RedactedUrl, message: String },
    #[error("database {url}: {message}")]
    Db { url: RedactedUrl, message: String },
    #[error(
        "{stage} of migration \"{migration}\" failed on {url} at {file}{}: {message}; {}",
        statement_line.map(|l| format!(":{l}")).unwrap_or_default(),
        committed_note(*partial)
    )]
    Apply {
        url: RedactedUrl,
        migration: String,
        stage: Stage,
        file: String,
        statement_line: Option<usize>,
        message: String,
        /// A no-transaction file: statements before the failing one are committed.
        partial: bool,
    },
    #[error(
        "{stage} of migration \"{migration}\" on {url} could not get its lock after {attempts} attempt(s) (lock_timeout {lock_timeout:?} each): another session holds the table; {}; retry later or find the blocking session",
        committed_note(*partial)
    )]
    LockTimeout {
        url: RedactedUrl,
        migration: String,
        stage: Stage,
        attempts: u32,
        lock_timeout: Duration,
        partial: bool,
    },
    #[error(
        "migration \"{migration}\": {file} was changed after its {stage} was applied to {url} (recorded {recorded}, now {current}); restore the applied version, or write a new migration for the new change"
    )]
    ChecksumDrift {
        url: RedactedUrl,
        migration: String,
        stage: Stage,
        file: String,
        recorded: String,
        current: String,
    },
    #[error(
        "schema of {url} changed outside migrations since {after} (recorded fingerprint {recorded}, now {current}); find who changed it, then re-run with the drift accepted once you have checked it"
    )]
    SchemaDrift {
        url: RedactedUrl,
        after: String,
        recorded: String,
        current: String,
    },
    #[error("{stage} of migration \"{migration}\" cannot run on {url}: {reason}")]
    Order {
        url: RedactedUrl,
        migration: String,
        stage: Stage,
        reason: String,
    },
    #[error("migration \"{migration}\" has no {stage} file")]
    NoFile { migration: String, stage: Stage },
    #[error(
        "lint refused {stage} of migration \"{migration}\": {count} blocking finding(s), first at {first}"
    )]
    LintRefused {
        migration: String,
        stage: Stage,
        count: usize,
        first: String,
    },
    #[error("dry run of migration \"{migration}\": {message}")]
    DryRun { migration: String, message: String },
    #[error("failpoint {0} triggered (test only)")]
    Failpoint(String),
}
