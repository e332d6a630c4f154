//! Dry run: apply the migration's stages to a copy of the database and report; the real
//! database is only read.
//!
//! * SQLite: `VACUUM INTO` a temporary file (a consistent snapshot, safe while services
//!   write), then expand → undo_expand → expand again (when an undo file exists, proving the
//!   undo works) → contract on the copy.
//! * PostgreSQL: `CREATE DATABASE scratch TEMPLATE real` (schema and data, so data-dependent
//!   failures such as SET NOT NULL over NULLs show up). PostgreSQL refuses a template that
//!   has other sessions; then the copy is schema-only, made with `pg_dump --schema-only |
//!   psql` (the report says so). The scratch database is dropped afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::db::{Database, RunOptions, StageOutcome};
use super::url::{DbTarget, RedactedUrl, resolve, scrub};
use super::{MigrateError, MigrationFiles, Stage};
use crate::release::Migration;

/// One stage applied to the copy.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunStep {
    pub stage: Stage,
    pub ok: bool,
    pub duration_ms: u64,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Schema objects added (`+`) and removed (`-`).
    pub changes: Vec<String>,
}

/// What a dry run found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    pub migration: String,
    pub database: RedactedUrl,
    /// How the copy was made.
    pub method: String,
    pub steps: Vec<DryRunStep>,
    /// Every step succeeded.
    pub ok: bool,
    /// The real database's schema fingerprint was the same before and after.
    pub real_untouched: bool,
    /// Caveats (e.g. a schema-only copy cannot catch data-dependent failures).
    pub notes: Vec<String>,
}

impl std::fmt::Display for DryRunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "dry run of migration \"{}\" on a copy of {} ({})",
            self.migration, self.database, self.method
        )?;
        for s in &self.steps {
            let status = if s.ok { "ok" } else { "FAILED" };
            writeln!(
                f,
                "  {:<12} {status:<6} {} ms",
                s.stage.as_str(),
                s.duration_ms
            )?;
            if let Some(e) = &s.error {
                writeln!(f, "      {e}")?;
            }
            for c in &s.changes {
                writeln!(f, "      {c}")?;
            }
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        writeln!(
            f,
            "  real database {}",
            if self.real_untouched {
                "untouched"
            } else {
                "CHANGED during the dry run (by someone else: the dry run only reads it)"
            }
        )?;
        write!(f, "  result: {}", if self.ok { "ok" } else { "FAILED" })
    }
}

/// The stages a dry run applies, in order.
fn plan(files: &MigrationFiles) -> Vec<Stage> {
    let mut v = vec![Stage::Expand];
    if files.undo_expand.is_some() {
        v.extend([Stage::UndoExpand, Stage::Expand]);
    }
    if files.contract.is_some() {
        v.push(Stage::Contract);
    }
    v
}

fn run_steps(
    copy: &mut Database,
    m: &Migration,
    files: &MigrationFiles,
    opts: &RunOptions,
) -> Result<Vec<DryRunStep>, MigrateError> {
    let mut steps = Vec::new();
    for stage in plan(files) {
        let before = copy.fingerprint()?;
        let t = Instant::now();
        let r = copy.apply(&m.name, files, stage, opts);
        let duration_ms = t.elapsed().as_millis() as u64;
        match r {
            Ok(StageOutcome::Applied { .. }) => {
                let after = copy.fingerprint()?;
                steps.push(DryRunStep {
                    stage,
                    ok: true,
                    duration_ms,
                    error: None,
                    changes: before.diff(&after),
                });
            }
            Ok(StageOutcome::AlreadyApplied { applied_at, .. }) => steps.push(DryRunStep {
                stage,
                ok: true,
                duration_ms,
                error: Some(format!("already applied at {applied_at}; nothing ran")),
                changes: Vec::new(),
            }),
            Err(e) => {
                steps.push(DryRunStep {
                    stage,
                    ok: false,
                    duration_ms,
                    error: Some(e.to_string()),
                    changes: Vec::new(),
                });
                break;
            }
        }
    }
    Ok(steps)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Apply the migration to a copy of its database and report. The real database is read
/// (fingerprint, copy) but never written.
pub fn dry_run(
    m: &Migration,
    files: &MigrationFiles,
    base_dir: &Path,
    opts: &RunOptions,
) -> Result<DryRunReport, MigrateError> {
    let (target, url) = resolve(&m.database, base_dir)?;
    match target {
        DbTarget::Sqlite { path } => dry_run_sqlite(m, files, &path, url, opts),
        DbTarget::Postgres { conninfo } => dry_run_postgres(m, files, &conninfo, url, opts),
    }
}

fn dry_run_sqlite(
    m: &Migration,
    files: &MigrationFiles,
    path: &Path,
    url: RedactedUrl,
    opts: &RunOptions,
) -> Result<DryRunReport, MigrateError> {
    let fail = |message: String| MigrateError::DryRun {
        migration: m.name.clone(),
        message,
    };
    if !path.is_file() {
        return Err(MigrateError::Connect {
            url,
            message: format!(
                "{} does not exist; fix the path in the release",
                path.display()
            ),
        });
    }
    let real =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| MigrateError::Connect {
                url: url.clone(),
                message: e.to_string(),
            })?;
    real.busy_timeout(opts.lock_timeout)
        .map_err(|e| fail(e.to_string()))?;
    let before = super::db::sqlite_fingerprint(&real)
        .map_err(|e| fail(format!("reading the schema of {url}: {e}")))?;
    let dir = std::env::temp_dir().join(format!("cutover-dry-run-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let _cleanup = RemoveDir(dir.clone());
    let copy_path = dir.join("copy.db");
    let copy_str = copy_path.to_string_lossy().into_owned();
    real.execute("VACUUM INTO ?1", [copy_str.as_str()])
        .map_err(|e| fail(format!("cannot copy {url} with VACUUM INTO: {e}")))?;
    let mut copy = Database::open_sqlite(&copy_path, RedactedUrl::new(&format!("copy of {url}")))?;
    let steps = run_steps(&mut copy, m, files, opts)?;
    drop(copy);
    let after = super::db::sqlite_fingerprint(&real)
        .map_err(|e| fail(format!("re-reading the schema of {url}: {e}")))?;
    Ok(DryRunReport {
        migration: m.name.clone(),
        database: url,
        method: "SQLite copy made with VACUUM INTO (schema and data)".into(),
        ok: steps.iter().all(|s| s.ok),
        steps,
        real_untouched: before == after,
        notes: Vec::new(),
    })
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn dry_run_postgres(
    m: &Migration,
    files: &MigrationFiles,
    conninfo: &str,
    url: RedactedUrl,
    opts: &RunOptions,
) -> Result<DryRunReport, MigrateError> {
    let fail = |message: String| MigrateError::DryRun {
        migration: m.name.clone(),
        message: scrub(&message, conninfo),
    };
    let cfg: postgres::Config =
        conninfo
            .parse()
            .map_err(|e: postgres::Error| MigrateError::BadUrl {
                url: url.clone(),
                reason: scrub(&e.to_string(), conninfo),
            })?;
    let real_name = cfg
        .get_dbname()
        .or(cfg.get_user())
        .unwrap_or("postgres")
        .to_string();
    let connect = |c: &postgres::Config| {
        let tls = crate::tls::postgres().map_err(|e| MigrateError::Connect {
            url: url.clone(),
            message: e,
        })?;
        c.connect(tls).map_err(|e| MigrateError::Connect {
            url: url.clone(),
            message: crate::tls::postgres_error(scrub(&e.to_string(), conninfo)),
        })
    };
    let before = {
        let mut real = connect(&cfg)?;
        super::db::pg_fingerprint(&mut real).map_err(fail)?
    };
    let maintenance_db = if real_name == "postgres" {
        "template1"
    } else {
        "postgres"
    };
    let mut maint_cfg = cfg.clone();
    maint_cfg.dbname(maintenance_db);
    let mut maint = connect(&maint_cfg)?;
    let scratch = format!("cutover_dry_{}", unique_suffix());
    let mut notes = Vec::new();
    let method;
    let template = maint.batch_execute(&format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(&scratch),
        quote_ident(&real_name)
    ));
    match template {
        Ok(()) => {
            method = format!(
                "scratch database {scratch} made with CREATE DATABASE ... TEMPLATE (schema and data)"
            )
        }
        Err(e) if e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE) => {
            maint
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&scratch)))
                .map_err(|e| fail(format!("cannot create scratch database: {e}")))?;
            if let Err(e) = schema_only_copy(&cfg, &scratch, &opts.child_env) {
                let _ = maint.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&scratch)
                ));
                return Err(fail(format!(
                    "the real database has other sessions, so it cannot be a template, and the schema-only copy failed: {e}"
                )));
            }
            method = format!("scratch database {scratch} with a schema-only copy (pg_dump | psql)");
            notes.push(
                "the real database had other sessions, so the copy holds the schema without data: data-dependent failures (SET NOT NULL over NULLs, UNIQUE over duplicates) cannot show here".into(),
            );
        }
        Err(e) => {
            return Err(fail(format!(
                "cannot create scratch database from template {real_name}: {e} (the migration role needs CREATEDB)"
            )));
        }
    }
    let mut scratch_cfg = cfg.clone();
    scratch_cfg.dbname(&scratch);
    let result = (|| {
        let client = connect(&scratch_cfg)?;
        let mut copy = Database::from_pg_client(
            client,
            RedactedUrl::new(&format!("scratch copy of {url}")),
            conninfo,
        )?;
        run_steps(&mut copy, m, files, opts)
    })();
    let drop_result = maint.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&scratch)
    ));
    let steps = result?;
    if let Err(e) = drop_result {
        notes.push(format!(
            "could not drop scratch database {scratch}: {}",
            scrub(&e.to_string(), conninfo)
        ));
    }
    let after = {
        let mut real = connect(&cfg)?;
        super::db::pg_fingerprint(&mut real).map_err(fail)?
    };
    Ok(DryRunReport {
        migration: m.name.clone(),
        database: url,
        method,
        ok: steps.iter().all(|s| s.ok),
        steps,
        real_untouched: before == after,
        notes,
    })
}

/// Find a PostgreSQL client binary: on PATH, else the newest /usr/lib/postgresql/*/bin.
pub fn pg_binary(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// Connection settings as libpq environment variables (never on the command line, where
/// `ps` would show a password).
fn pg_env(cfg: &postgres::Config, dbname: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("PGDATABASE", dbname.to_string())];
    if let Some(h) = cfg.get_hosts().first() {
        match h {
            postgres::config::Host::Tcp(h) => env.push(("PGHOST", h.clone())),
            postgres::config::Host::Unix(p) => {
                env.push(("PGHOST", p.to_string_lossy().into_owned()))
            }
        }
    }
    if let Some(p) = cfg.get_ports().first() {
        env.push(("PGPORT", p.to_string()));
    }
    if let Some(u) = cfg.get_user() {
        env.push(("PGUSER", u.to_string()));
    }
    if let Some(pw) = cfg.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(pw).into_owned()));
    }
    env
}

fn schema_only_copy(
    cfg: &postgres::Config,
    scratch: &str,
    child_env: &[(String, String)],
) -> Result<(), String> {
    let dump = pg_binary("pg_dump").ok_or("pg_dump not found (install postgresql-client)")?;
    let psql = pg_binary("psql").ok_or("psql not found (install postgresql-client)")?;
    let real = cfg.get_dbname().or(cfg.get_user()).unwrap_or("postgres");
    let out = Command::new(&dump)
        .args(["--schema-only", "--no-owner", "--no-privileges"])
        .envs(pg_env(cfg, real))
        .envs(child_env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", dump.display()))?;
    if !out.status.success() {
        return Err(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut child = Command::new(&psql)
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1"])
        .envs(pg_env(cfg, scratch))
        .envs(child_env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&out.stdout)
            .map_err(|e| format!("writing the schema to psql: {e}"))?;
    }
    let r = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
    if !r.status.success() {
        return Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&r.stderr).trim()
        ));
    }
    Ok(())
}
