//! `cutover migrate lint|dry-run|status|contract`: the migration tools for people. The engine runs
//! the same library calls in the release's order; these commands let an engineer check a
//! migration before the deploy window.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{EXIT_INTERNAL, EXIT_INVALID, Output};
use crate::migrate::{self, Dialect, MigrateError, PreparedMigration, RunOptions, SqlFile, Stage};
use crate::release::{self, Migration};

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Lint a release's migrations (or one .sql file) without touching a database; exit 2
    /// when a finding refuses the migration.
    Lint {
        /// A release file, or a .sql file (then give --dialect and --stage).
        file: PathBuf,
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

pub fn run(cmd: MigrateCommand) -> ExitCode {
    match cmd {
        MigrateCommand::Lint {
            file,
            migration,
            dialect,
            stage,
            output,
        } => lint(&file, migration.as_deref(), dialect, stage, output),
        MigrateCommand::DryRun {
            file,
            migration,
            output,
        } => dry_run(&file, migration.as_deref(), output),
        MigrateCommand::Status {
            file,
            migration,
            output,
        } => status(&file, migration.as_deref(), output),
        MigrateCommand::Contract {
            file,
            migration,
            state,
        } => contract(&file, &migration, &state.resolve()),
    }
}

fn contract(file: &Path, name: &str, state_dir: &Path) -> ExitCode {
    let (picked, base_dir) = match load(file, Some(name)) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let release_name = match release::load(file) {
        Ok(l) => l.release.release.name,
        Err(d) => return super::report_diagnostics(&d),
    };
    let Some(m) = picked.first() else {
        return ExitCode::from(EXIT_INVALID);
    };
    let prep = match PreparedMigration::new(m, &base_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cutover: {e}");
            return error_code(&e);
        }
    };
    if let Err(e) = prep.check_lint() {
        eprintln!("cutover: {e}");
        return ExitCode::from(EXIT_INVALID);
    }
    let (run_id, progress) =
        match crate::session::contract::progress_from_runs(state_dir, &release_name, m) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("cutover: migration \"{name}\": {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        };
    let db_state = match prep.state() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cutover: {e}");
            return error_code(&e);
        }
    };
    if let Err(r) =
        migrate::contract_allowed(m, db_state, &progress, std::time::Instant::now(), true)
    {
        eprintln!("cutover: {r} (run {run_id})");
        return ExitCode::from(EXIT_INVALID);
    }
    let opts = RunOptions {
        actor: crate::engine::operator_name(None),
        ..RunOptions::default()
    };
    match prep.apply(Stage::Contract, &opts) {
        Ok(outcome) => {
            println!(
                "migration \"{name}\": contract applied to {} ({}); the listed services can no longer roll back to their old revision",
                prep.database,
                match outcome {
                    migrate::StageOutcome::Applied {
                        statements,
                        duration_ms,
                        ..
                    } => format!("{statements} statement(s) in {duration_ms} ms"),
                    migrate::StageOutcome::AlreadyApplied { applied_at, .. } =>
                        format!("already applied at {applied_at}; nothing ran"),
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cutover: {e}");
            error_code(&e)
        }
    }
}

/// Load a release and pick its migrations.
fn load(file: &Path, only: Option<&str>) -> Result<(Vec<Migration>, PathBuf), ExitCode> {
    let loaded = release::load(file).map_err(|d| super::report_diagnostics(&d))?;
    let all = loaded.release.migrations.clone();
    let picked: Vec<Migration> = match only {
        Some(name) => all.iter().filter(|m| m.name == name).cloned().collect(),
        None => all.clone(),
    };
    if picked.is_empty() {
        match only {
            Some(name) => eprintln!(
                "{}: no migration named \"{name}\"; the release has: {}",
                file.display(),
                all.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => eprintln!("{}: the release has no [[migration]]", file.display()),
        }
        return Err(ExitCode::from(EXIT_INVALID));
    }
    Ok((picked, loaded.base_dir))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => {
            eprintln!("cutover: cannot encode JSON: {e}");
            Err(ExitCode::from(EXIT_INTERNAL))
        }
    }
}

fn error_code(e: &MigrateError) -> ExitCode {
    match e {
        MigrateError::Connect { .. }
        | MigrateError::Db { .. }
        | MigrateError::DryRun { .. }
        | MigrateError::LockTimeout { .. } => ExitCode::from(EXIT_INTERNAL),
        _ => ExitCode::from(EXIT_INVALID),
    }
}

fn lint(
    file: &Path,
    only: Option<&str>,
    dialect: DialectArg,
    stage: StageArg,
    output: Output,
) -> ExitCode {
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
        let sql = match SqlFile::load(dir, &name) {
            Ok(s) => SqlFile {
                shown: file.display().to_string(),
                ..s
            },
            Err(e) => {
                eprintln!("cutover: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
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
        let (migrations, base) = match load(file, only) {
            Ok(x) => x,
            Err(code) => return code,
        };
        for m in &migrations {
            match PreparedMigration::new(m, &base) {
                Ok(p) => reports.push((m.name.clone(), p.lint)),
                Err(e) => {
                    eprintln!("cutover: migration \"{}\": {e}", m.name);
                    return error_code(&e);
                }
            }
        }
    }
    let blocking: usize = reports.iter().map(|(_, r)| r.blocking().count()).sum();
    match output {
        Output::Json => {
            let v: Vec<_> = reports
                .iter()
                .map(|(name, r)| serde_json::json!({ "migration": name, "findings": r.findings, "refused": !r.is_clean() }))
                .collect();
            if let Err(c) = print_json(&v) {
                return c;
            }
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
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

fn dry_run(file: &Path, only: Option<&str>, output: Output) -> ExitCode {
    let (migrations, base) = match load(file, only) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut failed = false;
    let mut json = Vec::new();
    for m in &migrations {
        let p = match PreparedMigration::new(m, &base) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cutover: migration \"{}\": {e}", m.name);
                return error_code(&e);
            }
        };
        if !p.lint.is_clean() {
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
        match p.dry_run(&RunOptions::default()) {
            Ok(report) => {
                failed |= !report.ok;
                match output {
                    Output::Text => println!("{report}"),
                    Output::Json => json.push(report),
                }
            }
            Err(e) => {
                eprintln!("cutover: {e}");
                return error_code(&e);
            }
        }
    }
    if output == Output::Json
        && let Err(c) = print_json(&json)
    {
        return c;
    }
    if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

fn status(file: &Path, only: Option<&str>, output: Output) -> ExitCode {
    let (migrations, base) = match load(file, only) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut drift = false;
    let mut json = Vec::new();
    for m in &migrations {
        let st = match PreparedMigration::new(m, &base)
            .and_then(|p| p.connect()?.status(&m.name, &p.files))
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cutover: {e}");
                return error_code(&e);
            }
        };
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
    if output == Output::Json
        && let Err(c) = print_json(&json)
    {
        return c;
    }
    if drift {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}
