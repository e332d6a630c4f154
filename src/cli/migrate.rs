//! `cutover migrate lint|dry-run|status|contract`: the migration tools for people. The engine runs
//! the same library calls in the release's order; these commands let an engineer check a
//! migration before the deploy window.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{EXIT_INVALID, Error, Output};
use crate::migrate::{self, Dialect, PreparedMigration, RunOptions, SqlFile, Stage};
use crate::release::{self, Migration};

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Lint a release's migrations (or one .sql file) without touching a database; exit 2
    /// when a finding refuses the migration.
    Lint {
        /// A release file, or a .sql file (then give --dialect and --stage).
        file: PathBuf,
        #[command(flatten)]
        release: super::ReleaseArgs,
        /// Only this migration of the release.
        #[arg(long)]
        migration: Option<String>,
        /// For a .sql file: the database it targets.
        #[arg(long, value_enum, default_value_t = DialectArg::Postgres)]
        dialect: DialectArg,
        /// For a .sql file: the stage it is.
        #[arg(long, value_enum, default_value_t = StageArg::Expand)]
        stage: StageArg,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Lint, then apply each migration to a copy of its database and report; the real
    /// database is only read. Exit 2 when lint refuses or a stage fails on the copy.
    DryRun {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: super::ReleaseArgs,
        #[arg(long)]
        migration: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show each migration's history and drift (edited files, schema changed outside
    /// migrations). Exit 2 when there is drift.
    Status {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: super::ReleaseArgs,
        #[arg(long)]
        migration: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the contract a deploy left pending (headless without --allow-contract). The
    /// release's newest finished run must show every listed service promoted, and the
    /// bake passed since the last promotion; contract is one-way. Exit 2 when refused.
    Contract {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: super::ReleaseArgs,
        /// The migration to contract.
        #[arg(long)]
        migration: String,
        #[command(flatten)]
        state: super::StateDirArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DialectArg {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StageArg {
    Expand,
    Contract,
    UndoExpand,
}

pub fn run(cmd: MigrateCommand) -> Result<ExitCode, Error> {
    match cmd {
        MigrateCommand::Lint {
            file,
            release,
            migration,
            dialect,
            stage,
            output,
        } => lint(
            &file,
            &release,
            migration.as_deref(),
            dialect,
            stage,
            output,
        ),
        MigrateCommand::DryRun {
            file,
            release,
            migration,
            output,
        } => dry_run(&file, &release, migration.as_deref(), output),
        MigrateCommand::Status {
            file,
            release,
            migration,
            output,
        } => status(&file, &release, migration.as_deref(), output),
        MigrateCommand::Contract {
            file,
            release,
            migration,
            state,
        } => contract(&file, &release, &migration, &state.resolve()),
    }
}

fn contract(
    file: &Path,
    rel: &super::ReleaseArgs,
    name: &str,
    state_dir: &Path,
) -> Result<ExitCode, Error> {
    let (picked, base_dir) = load(file, rel, Some(name))?;
    let release_name = release::load(file, &rel.options())?.release.release.name;
    let Some(m) = picked.first() else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let prep = PreparedMigration::new(m, &base_dir)?;
    prep.check_lint()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let (run_id, progress) =
        crate::session::contract::progress_from_runs(state_dir, &release_name, m)
            .map_err(|e| Error::Invalid(format!("migration \"{name}\": {e}")))?;
    let db_state = prep.state()?;
    migrate::contract_allowed(m, db_state, &progress, std::time::Instant::now(), true)
        .map_err(|r| Error::Invalid(format!("{r} (run {run_id})")))?;
    let opts = RunOptions {
        actor: crate::engine::operator_name(None),
        ..RunOptions::default()
    };
    let done = match prep.apply(Stage::Contract, &opts)? {
        migrate::StageOutcome::Applied {
            statements,
            duration_ms,
            ..
        } => format!("{statements} statement(s) in {duration_ms} ms"),
        migrate::StageOutcome::AlreadyApplied { applied_at, .. } => {
            format!("already applied at {applied_at}; nothing ran")
        }
    };
    println!(
        "migration \"{name}\": contract applied to {} ({done}); the listed services can no longer roll back to their old revision",
        prep.database
    );
    Ok(ExitCode::SUCCESS)
}

/// Load a release and pick its migrations.
fn load(
    file: &Path,
    rel: &super::ReleaseArgs,
    only: Option<&str>,
) -> Result<(Vec<Migration>, PathBuf), Error> {
    let loaded = release::load(file, &rel.options())?;
    let all = loaded.release.migrations.clone();
    let picked: Vec<Migration> = match only {
        Some(name) => all.iter().filter(|m| m.name == name).cloned().collect(),
        None => all.clone(),
    };
    if picked.is_empty() {
        let text = match only {
            Some(name) => format!(
                "{}: no migration named \"{name}\"; the release has: {}",
                file.display(),
                all.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("{}: the release has no [[migration]]", file.display()),
        };
        return Err(Error::Verbatim {
            text,
            code: EXIT_INVALID,
        });
    }
    Ok((picked, loaded.base_dir))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Error> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Error::Internal(format!("cannot encode JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// A migration error about migration `name`, worded `migration "NAME": …`.
fn in_migration(name: &str, e: migrate::MigrateError) -> Error {
    let message = format!("migration \"{name}\": {e}");
    Error::migrate(&e, message)
}

fn lint(
    file: &Path,
    rel: &super::ReleaseArgs,
    only: Option<&str>,
    dialect: DialectArg,
    stage: StageArg,
    output: Output,
) -> Result<ExitCode, Error> {
    let is_sql = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"));
    let mut reports = Vec::new();
    if is_sql {
        let dir = file.parent().unwrap_or(Path::new("."));
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sql = SqlFile {
            shown: file.display().to_string(),
            ..SqlFile::load(dir, &name).map_err(|e| Error::Invalid(e.to_string()))?
        };
        let dialect = match dialect {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Sqlite => Dialect::Sqlite,
        };
        let stage = match stage {
            StageArg::Expand => Stage::Expand,
            StageArg::Contract => Stage::Contract,
            StageArg::UndoExpand => Stage::UndoExpand,
        };
        reports.push((
            file.display().to_string(),
            migrate::LintReport {
                findings: migrate::lint_file(&sql, stage, dialect),
            },
        ));
    } else {
        let (migrations, base) = load(file, rel, only)?;
        for m in &migrations {
            let p = PreparedMigration::new(m, &base).map_err(|e| in_migration(&m.name, e))?;
            reports.push((m.name.clone(), p.lint));
        }
    }
    let blocking: usize = reports.iter().map(|(_, r)| r.blocking().count()).sum();
    match output {
        Output::Json => {
            let v: Vec<_> = reports
                .iter()
                .map(|(name, r)| serde_json::json!({ "migration": name, "findings": r.findings, "refused": !r.is_clean() }))
                .collect();
            print_json(&v)?;
        }
        Output::Text => {
            for (name, r) in &reports {
                for f in &r.findings {
                    print!("{f}");
                }
                let n = r.blocking().count();
                if n == 0 {
                    println!(
                        "{name}: ok ({} finding(s), none blocking)",
                        r.findings.len()
                    );
                } else {
                    println!("{name}: REFUSED ({n} blocking finding(s))");
                }
            }
        }
    }
    if blocking > 0 {
        Ok(ExitCode::from(EXIT_INVALID))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn dry_run(
    file: &Path,
    rel: &super::ReleaseArgs,
    only: Option<&str>,
    output: Output,
) -> Result<ExitCode, Error> {
    let (migrations, base) = load(file, rel, only)?;
    let mut failed = false;
    let mut json = Vec::new();
    for m in &migrations {
        let p = PreparedMigration::new(m, &base).map_err(|e| in_migration(&m.name, e))?;
        if !p.lint.is_clean() {
            // A refused migration is reported and the next one still tried; the exit code
            // says so at the end.
            for f in p.lint.blocking() {
                eprint!("{f}");
            }
            eprintln!(
                "migration \"{}\": lint refused it; nothing was run (fix the findings or add `-- cutover:allow RULE` to a deliberate statement)",
                m.name
            );
            failed = true;
            continue;
        }
        let report = p.dry_run(&RunOptions::default())?;
        failed |= !report.ok;
        match output {
            Output::Text => println!("{report}"),
            Output::Json => json.push(report),
        }
    }
    if output == Output::Json {
        print_json(&json)?;
    }
    if failed {
        Ok(ExitCode::from(EXIT_INVALID))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn status(
    file: &Path,
    rel: &super::ReleaseArgs,
    only: Option<&str>,
    output: Output,
) -> Result<ExitCode, Error> {
    let (migrations, base) = load(file, rel, only)?;
    let mut drift = false;
    let mut json = Vec::new();
    for m in &migrations {
        let st = PreparedMigration::new(m, &base)
            .and_then(|p| p.connect()?.status(&m.name, &p.files))?;
        drift |= !st.checksum_drift.is_empty() || st.schema_drift.is_some();
        match output {
            Output::Json => json.push(st),
            Output::Text => {
                println!(
                    "migration \"{}\" on {}: {:?}",
                    st.migration, st.database, st.state
                );
                for h in &st.history {
                    println!(
                        "  {:<4} {:<11} {:<8} {}  by {}  {} ms  {} ({} statement(s))",
                        h.id,
                        h.stage.as_str(),
                        h.status,
                        h.applied_at,
                        h.applied_by,
                        h.duration_ms,
                        h.file,
                        h.statements_done
                    );
                }
                if st.history.is_empty() {
                    println!("  nothing applied yet");
                }
                for (stage, f, rec, cur) in &st.checksum_drift {
                    println!(
                        "  DRIFT: {f} changed after its {stage} was applied (recorded {rec}, now {cur})"
                    );
                }
                if let Some((rec, cur)) = &st.schema_drift {
                    println!(
                        "  DRIFT: schema changed outside migrations (recorded {rec}, now {cur})"
                    );
                }
            }
        }
    }
    if output == Output::Json {
        print_json(&json)?;
    }
    if drift {
        Ok(ExitCode::from(EXIT_INVALID))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
