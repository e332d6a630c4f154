//! Connections, the history table `cutover_migrations`, schema fingerprints and the
//! exactly-once application of a stage.
//!
//! A transactional stage (the default) runs as one transaction: take the migration lock,
//! re-read the history, check drift, run the file, record the schema fingerprint and the
//! history row, commit. A crash anywhere before the commit leaves nothing; after it, the
//! row says the stage is done, so a resume skips it.
//!
//! A file whose first line is `-- cutover:no-transaction` runs statement by statement. A
//! `running` history row counts finished statements; a resume continues after the last
//! one. On SQLite each statement commits with its progress update; on PostgreSQL (where
//! such files exist for `CREATE INDEX CONCURRENTLY`) a crash between a statement and its
//! progress update re-runs that one statement, so write them with `IF NOT EXISTS`.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::sql::SqlFile;
use super::url::{DbTarget, Dialect, RedactedUrl, resolve, scrub};
use super::{MigrateError, MigrationFiles, Stage};

/// The history table's name.
pub const HISTORY_TABLE: &str = "cutover_migrations";
/// Key of the PostgreSQL advisory lock that serialises cutover runners on one database.
const PG_LOCK_KEY: i64 = 0x0063_7574_6f76_6572; // "cutover"

/// How a stage runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// PostgreSQL `lock_timeout` (SQLite: busy timeout) for the migration session.
    pub lock_timeout: Duration,
    /// PostgreSQL `statement_timeout` for the migration session.
    pub statement_timeout: Duration,
    /// Attempts when the lock is not granted in time (1 = no retry).
    pub max_attempts: u32,
    /// First backoff between attempts; doubles each time, capped at 10 s.
    pub backoff: Duration,
    /// Who applies it (recorded in the history table), e.g. `alice@laptop`.
    pub actor: String,
    /// Run even though the schema changed outside migrations since the last stage.
    pub accept_schema_drift: bool,
    /// Test hook: fail (as a crash would) after this many statements ran, before commit.
    #[doc(hidden)]
    pub failpoint_after_statements: Option<usize>,
    /// Added to the environment of the client programs a dry run starts (`pg_dump`,
    /// `psql`): the run's `TRACEPARENT` when it is traced (`crate::trace`).
    pub child_env: Vec<(String, String)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(15 * 60),
            max_attempts: 5,
            backoff: Duration::from_millis(250),
            actor: default_actor(),
            accept_schema_drift: false,
            failpoint_after_statements: None,
            child_env: Vec::new(),
        }
    }
}

/// `$USER@hostname`.
pub fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for 256 bytes; gethostname writes a NUL-terminated name.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    };
    format!("{user}@{host}")
}

/// One row of `cutover_migrations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub name: String,
    pub stage: Stage,
    /// `applied` or `running` (a no-transaction stage in progress or interrupted).
    pub status: String,
    pub file: String,
    pub checksum: String,
    pub statements_done: i64,
    /// Schema fingerprint after this stage (or after its last finished statement).
    pub schema_after: String,
    pub applied_at: String,
    pub applied_by: String,
    pub attempts: i64,
    pub duration_ms: i64,
}

/// Where a migration stands, from its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Nothing applied (or expand was undone).
    Pending,
    /// A no-transaction stage was interrupted; a resume continues it.
    Interrupted(Stage),
    Expanded,
    Contracted,
    /// `undo_expand` ran; expand may be applied again.
    Undone,
}

impl MigrationState {
    fn from_rows(rows: &[HistoryRow]) -> MigrationState {
        match rows.last() {
            None => MigrationState::Pending,
            Some(r) if r.status != "applied" => MigrationState::Interrupted(r.stage),
            Some(r) => match r.stage {
                Stage::Expand => MigrationState::Expanded,
                Stage::Contract => MigrationState::Contracted,
                Stage::UndoExpand => MigrationState::Undone,
            },
        }
    }
}

/// A migration's history and drift, for `cutover migrate status` and the engine.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub database: RedactedUrl,
    pub migration: String,
    pub state: MigrationState,
    pub history: Vec<HistoryRow>,
    /// Applied files whose checksum changed since: (stage, file, recorded, current).
    pub checksum_drift: Vec<(Stage, String, String, String)>,
    /// The schema fingerprint recorded after the last stage on this database, and now,
    /// when they differ.
    pub schema_drift: Option<(String, String)>,
}

/// What [`Database::apply`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StageOutcome {
    Applied {
        stage: Stage,
        statements: usize,
        /// Statements skipped because an interrupted run had finished them.
        resumed_after: usize,
        attempts: u32,
        duration_ms: u64,
        fingerprint: String,
    },
    /// Already applied with the same checksum: nothing ran.
    AlreadyApplied { stage: Stage, applied_at: String },
}

/// A hash of the schema (tables, columns, indexes, constraints, triggers, views), without
/// the history table, and the objects it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    pub hash: String,
    pub objects: Vec<String>,
}

impl Fingerprint {
    fn of(mut objects: Vec<String>) -> Fingerprint {
        objects.sort();
        let mut h = Sha256::new();
        for o in &objects {
            h.update(o.as_bytes());
            h.update(b"\n");
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Fingerprint {
            hash: format!("sha256:{}", &hex[..16]),
            objects,
        }
    }

    /// Objects added and removed going from `self` to `after`.
    pub fn diff(&self, after: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.objects {
            if !after.objects.contains(o) {
                out.push(format!("- {o}"));
            }
        }
        for o in &after.objects {
            if !self.objects.contains(o) {
                out.push(format!("+ {o}"));
            }
        }
        out
    }
}

/// A database error, classified.
struct DbErr {
    message: String,
    lock_timeout: bool,
}

impl DbErr {
    fn msg(message: impl Into<String>) -> DbErr {
        DbErr {
            message: message.into(),
            lock_timeout: false,
        }
    }
}

impl From<rusqlite::Error> for DbErr {
    fn from(e: rusqlite::Error) -> DbErr {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        DbErr {
            message: e.to_string(),
            lock_timeout: busy,
        }
    }
}

impl From<postgres::Error> for DbErr {
    fn from(e: postgres::Error) -> DbErr {
        let lock = e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE);
        let message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{} ({})", db.message(), db.code().code());
                if let Some(d) = db.detail() {
                    m.push_str(&format!("; {d}"));
                }
                m
            }
            None => pg_message(&e),
        };
        DbErr {
            message,
            lock_timeout: lock,
        }
    }
}

/// A PostgreSQL client error with its cause ("error connecting to server: Connection
/// refused"), which the driver's Display leaves out.
pub(crate) fn pg_message(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

/// What runs the SQL: a SQLite connection or a PostgreSQL client/transaction.
trait Exec {
    fn dialect(&self) -> Dialect;
    fn batch(&mut self, sql: &str) -> Result<(), DbErr>;
    fn rows(&mut self, name: Option<&str>) -> Result<Vec<HistoryRow>, DbErr>;
    fn last_row(&mut self) -> Result<Option<HistoryRow>, DbErr>;
    fn insert(&mut self, row: &HistoryRow) -> Result<i64, DbErr>;
    fn progress(
        &mut self,
        id: i64,
        done: i64,
        fp: &str,
        status: &str,
        dur: i64,
    ) -> Result<(), DbErr>;
    fn fingerprint(&mut self) -> Result<Fingerprint, DbErr>;
}

const SELECT_ROWS: &str = "SELECT id, name, stage, status, file, checksum, statements_done, \
     schema_after, applied_at, applied_by, attempts, duration_ms FROM cutover_migrations";

fn row_from(
    id: i64,
    name: String,
    stage: String,
    rest: (
        String,
        String,
        String,
        i64,
        String,
        String,
        String,
        i64,
        i64,
    ),
) -> Result<HistoryRow, DbErr> {
    let stage = Stage::parse(&stage).ok_or_else(|| {
        DbErr::msg(format!(
            "history table row {id} has unknown stage \"{stage}\" (edited by hand?)"
        ))
    })?;
    let (
        status,
        file,
        checksum,
        statements_done,
        schema_after,
        applied_at,
        applied_by,
        attempts,
        duration_ms,
    ) = rest;
    Ok(HistoryRow {
        id,
        name,
        stage,
        status,
        file,
        checksum,
        statements_done,
        schema_after,
        applied_at,
        applied_by,
        attempts,
        duration_ms,
    })
}

struct Lite<'a>(&'a rusqlite::Connection);

impl Lite<'_> {
    fn query_rows(
        &mut self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<HistoryRow>, DbErr> {
        let mut st = self.0.prepare(sql)?;
        let raw = st
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    (
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                    ),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(a, b, c, d)| row_from(a, b, c, d))
            .collect()
    }
}

impl Exec for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn batch(&mut self, sql: &str) -> Result<(), DbErr> {
        Ok(self.0.execute_batch(sql)?)
    }
    fn rows(&mut self, name: Option<&str>) -> Result<Vec<HistoryRow>, DbErr> {
        match name {
            Some(n) => {
                self.query_rows(&format!("{SELECT_ROWS} WHERE name = ?1 ORDER BY id"), &[&n])
            }
            None => self.query_rows(&format!("{SELECT_ROWS} ORDER BY id"), &[]),
        }
    }
    fn last_row(&mut self) -> Result<Option<HistoryRow>, DbErr> {
        Ok(self
            .query_rows(&format!("{SELECT_ROWS} ORDER BY id DESC LIMIT 1"), &[])?
            .pop())
    }
    fn insert(&mut self, r: &HistoryRow) -> Result<i64, DbErr> {
        self.0.execute(
            "INSERT INTO cutover_migrations (name, stage, status, file, checksum, statements_done, \
             schema_after, applied_at, applied_by, attempts, duration_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![
                r.name,
                r.stage.as_str(),
                r.status,
                r.file,
                r.checksum,
                r.statements_done,
                r.schema_after,
                r.applied_at,
                r.applied_by,
                r.attempts,
                r.duration_ms
            ],
        )?;
        Ok(self.0.last_insert_rowid())
    }
    fn progress(
        &mut self,
        id: i64,
        done: i64,
        fp: &str,
        status: &str,
        dur: i64,
    ) -> Result<(), DbErr> {
        self.0.execute(
            "UPDATE cutover_migrations SET statements_done = ?2, schema_after = ?3, status = ?4, \
             duration_ms = ?5, applied_at = ?6 WHERE id = ?1",
            rusqlite::params![id, done, fp, status, dur, now_rfc3339()],
        )?;
        Ok(())
    }
    fn fingerprint(&mut self) -> Result<Fingerprint, DbErr> {
        let mut objects = Vec::new();
        let mut st = self.0.prepare(
            "SELECT m.name, p.name, p.type, p.\"notnull\", coalesce(p.dflt_value, ''), p.pk \
             FROM sqlite_schema m JOIN pragma_table_info(m.name) p \
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> 'cutover_migrations'",
        )?;
        let cols = st.query_map([], |r| {
            Ok(format!(
                "column {}.{} {}{}{}{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                if r.get::<_, i64>(3)? != 0 {
                    " NOT NULL"
                } else {
                    ""
                },
                {
                    let d: String = r.get(4)?;
                    if d.is_empty() {
                        String::new()
                    } else {
                        format!(" DEFAULT {d}")
                    }
                },
                if r.get::<_, i64>(5)? != 0 {
                    " PRIMARY KEY"
                } else {
                    ""
                },
            ))
        })?;
        for c in cols {
            objects.push(c?);
        }
        let mut st = self.0.prepare(
            "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema \
             WHERE type IN ('index', 'trigger', 'view') AND name NOT LIKE 'sqlite_%' \
             AND tbl_name <> 'cutover_migrations'",
        )?;
        let others = st.query_map([], |r| {
            let sql: String = r.get(3)?;
            Ok(format!(
                "{} {} on {}: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })?;
        for o in others {
            objects.push(o?);
        }
        Ok(Fingerprint::of(objects))
    }
}

struct Pg<'a, C: postgres::GenericClient>(&'a mut C);

impl<C: postgres::GenericClient> Pg<'_, C> {
    fn query_rows(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<HistoryRow>, DbErr> {
        let rows = self.0.query(sql, params)?;
        rows.into_iter()
            .map(|r| {
                row_from(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    (
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                        r.try_get(6)?,
                        r.try_get(7)?,
                        r.try_get(8)?,
                        r.try_get(9)?,
                        r.try_get(10)?,
                        r.try_get(11)?,
                    ),
                )
            })
            .collect()
    }

    fn strings(&mut self, sql: &str) -> Result<Vec<String>, DbErr> {
        Ok(self
            .0
            .query(sql, &[])?
            .into_iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

const PG_USER_SCHEMAS: &str = "NOT IN ('pg_catalog', 'information_schema', 'pg_toast')";

impl<C: postgres::GenericClient> Exec for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn batch(&mut self, sql: &str) -> Result<(), DbErr> {
        Ok(self.0.batch_execute(sql)?)
    }
    fn rows(&mut self, name: Option<&str>) -> Result<Vec<HistoryRow>, DbErr> {
        match name {
            Some(n) => {
                self.query_rows(&format!("{SELECT_ROWS} WHERE name = $1 ORDER BY id"), &[&n])
            }
            None => self.query_rows(&format!("{SELECT_ROWS} ORDER BY id"), &[]),
        }
    }
    fn last_row(&mut self) -> Result<Option<HistoryRow>, DbErr> {
        Ok(self
            .query_rows(&format!("{SELECT_ROWS} ORDER BY id DESC LIMIT 1"), &[])?
            .pop())
    }
    fn insert(&mut self, r: &HistoryRow) -> Result<i64, DbErr> {
        let row = self.0.query_one(
            "INSERT INTO cutover_migrations (name, stage, status, file, checksum, statements_done, \
             schema_after, applied_at, applied_by, attempts, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &r.name,
                &r.stage.as_str(),
                &r.status,
                &r.file,
                &r.checksum,
                &r.statements_done,
                &r.schema_after,
                &r.applied_at,
                &r.applied_by,
                &r.attempts,
                &r.duration_ms,
            ],
        )?;
        Ok(row.try_get(0)?)
    }
    fn progress(
        &mut self,
        id: i64,
        done: i64,
        fp: &str,
        status: &str,
        dur: i64,
    ) -> Result<(), DbErr> {
        self.0.execute(
            "UPDATE cutover_migrations SET statements_done = $2, schema_after = $3, status = $4, \
             duration_ms = $5, applied_at = $6 WHERE id = $1",
            &[&id, &done, &fp, &status, &dur, &now_rfc3339()],
        )?;
        Ok(())
    }
    fn fingerprint(&mut self) -> Result<Fingerprint, DbErr> {
        let mut objects = self.strings(&format!(
            "SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' \
             || data_type || CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END \
             || coalesce(' DEFAULT ' || column_default, '') \
             FROM information_schema.columns WHERE table_schema {PG_USER_SCHEMAS} \
             AND table_name <> 'cutover_migrations'"
        ))?;
        objects.extend(self.strings(&format!(
            "SELECT 'index ' || schemaname || '.' || indexname || ': ' || indexdef \
             FROM pg_indexes WHERE schemaname {PG_USER_SCHEMAS} AND tablename <> 'cutover_migrations'"
        ))?);
        objects.extend(self.strings(&format!(
            "SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || con.conname || ': ' \
             || pg_get_constraintdef(con.oid) FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname {PG_USER_SCHEMAS} AND c.relname <> 'cutover_migrations'"
        ))?);
        objects.extend(self.strings(&format!(
            "SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND n.nspname {PG_USER_SCHEMAS}"
        ))?);
        Ok(Fingerprint::of(objects))
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

/// A connection to the database a migration targets.
pub struct Database {
    url: RedactedUrl,
    conn: Conn,
    /// PostgreSQL conninfo (private; used to scrub driver messages and for dry runs).
    conninfo: Option<String>,
    sqlite_path: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.url)
    }
}

impl Database {
    /// Connect to `sqlite://PATH` (relative to `base_dir`; the file must exist),
    /// `postgres://...` or `env:VAR`, and make sure the history table exists.
    pub fn connect(spec: &str, base_dir: &Path) -> Result<Database, MigrateError> {
        let (target, url) = resolve(spec, base_dir)?;
        match target {
            DbTarget::Sqlite { path } => Database::open_sqlite(&path, url),
            DbTarget::Postgres { conninfo } => Database::connect_postgres(&conninfo, url),
        }
    }

    pub(crate) fn open_sqlite(path: &Path, url: RedactedUrl) -> Result<Database, MigrateError> {
        if !path.is_file() {
            return Err(MigrateError::Connect {
                url,
                message: format!(
                    "{} does not exist; create the database first or fix the path (relative paths are relative to the release file)",
                    path.display()
                ),
            });
        }
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| MigrateError::Connect {
            url: url.clone(),
            message: e.to_string(),
        })?;
        Ok(Database {
            url,
            conn: Conn::Sqlite(conn),
            conninfo: None,
            sqlite_path: Some(path.to_path_buf()),
        })
    }

    pub(crate) fn connect_postgres(
        conninfo: &str,
        url: RedactedUrl,
    ) -> Result<Database, MigrateError> {
        let tls = crate::tls::postgres().map_err(|e| MigrateError::Connect {
            url: url.clone(),
            message: e,
        })?;
        let client =
            postgres::Client::connect(conninfo, tls).map_err(|e| MigrateError::Connect {
                url: url.clone(),
                message: crate::tls::postgres_error(scrub(&DbErr::from(e).message, conninfo)),
            })?;
        Ok(Database {
            url,
            conn: Conn::Postgres(Box::new(client)),
            conninfo: Some(conninfo.to_string()),
            sqlite_path: None,
        })
    }

    /// Wrap a connected client (the dry run's scratch database).
    pub(crate) fn from_pg_client(
        client: postgres::Client,
        url: RedactedUrl,
        conninfo: &str,
    ) -> Result<Database, MigrateError> {
        Ok(Database {
            url,
            conn: Conn::Postgres(Box::new(client)),
            conninfo: Some(conninfo.to_string()),
            sqlite_path: None,
        })
    }

    /// The database, fit for printing.
    pub fn url(&self) -> &RedactedUrl {
        &self.url
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite file, for a SQLite database.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref()
    }

    fn err(&self, e: DbErr) -> MigrateError {
        MigrateError::Db {
            url: self.url.clone(),
            message: self.scrubbed(&e.message),
        }
    }

    fn scrubbed(&self, m: &str) -> String {
        match &self.conninfo {
            Some(c) => scrub(m, c),
            None => m.to_string(),
        }
    }

    fn create_history(&mut self) -> Result<(), DbErr> {
        match &mut self.conn {
            Conn::Sqlite(c) => c
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS cutover_migrations (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        name TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL,
                        file TEXT NOT NULL, checksum TEXT NOT NULL,
                        statements_done INTEGER NOT NULL, schema_after TEXT NOT NULL,
                        applied_at TEXT NOT NULL, applied_by TEXT NOT NULL,
                        attempts INTEGER NOT NULL, duration_ms INTEGER NOT NULL)",
                )
                .map_err(DbErr::from),
            Conn::Postgres(c) => c
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS cutover_migrations (
                        id BIGSERIAL PRIMARY KEY,
                        name TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL,
                        file TEXT NOT NULL, checksum TEXT NOT NULL,
                        statements_done BIGINT NOT NULL, schema_after TEXT NOT NULL,
                        applied_at TEXT NOT NULL, applied_by TEXT NOT NULL,
                        attempts BIGINT NOT NULL, duration_ms BIGINT NOT NULL)",
                )
                .map_err(DbErr::from),
        }
    }

    fn history_exists(&mut self) -> Result<bool, MigrateError> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => c
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'cutover_migrations'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n > 0)
                .map_err(DbErr::from),
            Conn::Postgres(c) => c
                .query_one("SELECT to_regclass('cutover_migrations') IS NOT NULL", &[])
                .and_then(|r| r.try_get::<_, bool>(0))
                .map_err(DbErr::from),
        };
        r.map_err(|e| self.err(e))
    }

    /// Every history row (all migrations), oldest first. Empty when nothing was ever
    /// applied (the table is created by the first stage, not by reading).
    pub fn history(&mut self) -> Result<Vec<HistoryRow>, MigrateError> {
        if !self.history_exists()? {
            return Ok(Vec::new());
        }
        let r = match &mut self.conn {
            Conn::Sqlite(c) => Lite(c).rows(None),
            Conn::Postgres(c) => Pg(&mut **c).rows(None),
        };
        r.map_err(|e| self.err(e))
    }

    /// The current schema fingerprint.
    pub fn fingerprint(&mut self) -> Result<Fingerprint, MigrateError> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => Lite(c).fingerprint(),
            Conn::Postgres(c) => Pg(&mut **c).fingerprint(),
        };
        r.map_err(|e| self.err(e))
    }

    /// Run arbitrary SQL outside the migration machinery (tests, benchmarks, tools).
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), MigrateError> {
        let r = match &mut self.conn {
            Conn::Sqlite(c) => Lite(c).batch(sql),
            Conn::Postgres(c) => Pg(&mut **c).batch(sql),
        };
        r.map_err(|e| self.err(e))
    }

    /// History, state and drift of one migration.
    pub fn status(
        &mut self,
        name: &str,
        files: &MigrationFiles,
    ) -> Result<MigrationStatus, MigrateError> {
        let all = self.history()?;
        let history: Vec<HistoryRow> = all.iter().filter(|r| r.name == name).cloned().collect();
        let checksum_drift = checksum_drift(&history, files).into_iter().collect();
        let schema_drift = match all.last() {
            Some(last) => {
                let now = self.fingerprint()?;
                (now.hash != last.schema_after).then(|| (last.schema_after.clone(), now.hash))
            }
            None => None,
        };
        Ok(MigrationStatus {
            database: self.url.clone(),
            migration: name.to_string(),
            state: MigrationState::from_rows(&history),
            history,
            checksum_drift,
            schema_drift,
        })
    }

    /// The migration's state from its history.
    pub fn state(&mut self, name: &str) -> Result<MigrationState, MigrateError> {
        let rows: Vec<HistoryRow> = self
            .history()?
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        Ok(MigrationState::from_rows(&rows))
    }

    pub fn expand(
        &mut self,
        name: &str,
        files: &MigrationFiles,
        opts: &RunOptions,
    ) -> Result<StageOutcome, MigrateError> {
        self.apply(name, files, Stage::Expand, opts)
    }

    pub fn contract(
        &mut self,
        name: &str,
        files: &MigrationFiles,
        opts: &RunOptions,
    ) -> Result<StageOutcome, MigrateError> {
        self.apply(name, files, Stage::Contract, opts)
    }

    pub fn undo_expand(
        &mut self,
        name: &str,
        files: &MigrationFiles,
        opts: &RunOptions,
    ) -> Result<StageOutcome, MigrateError> {
        self.apply(name, files, Stage::UndoExpand, opts)
    }

    /// Apply one stage exactly once: skipped when the history already has it (same
    /// checksum), refused on checksum or schema drift and on a wrong order (contract
    /// before expand, undo after contract), retried with backoff when the lock is not
    /// granted within `lock_timeout`.
    pub fn apply(
        &mut self,
        name: &str,
        files: &MigrationFiles,
        stage: Stage,
        opts: &RunOptions,
    ) -> Result<StageOutcome, MigrateError> {
        let file = files.get(stage).ok_or_else(|| MigrateError::NoFile {
            migration: name.to_string(),
            stage,
        })?;
        let ctx = Ctx {
            url: self.url.clone(),
            name,
            files,
            stage,
            file,
            opts,
        };
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut backoff = opts.backoff;
        loop {
            attempt += 1;
            if let Conn::Sqlite(c) = &self.conn
                && let Err(e) = c.busy_timeout(opts.lock_timeout)
            {
                return Err(self.err(e.into()));
            }
            let r = if let Err(e) = self.create_history() {
                Err(ctx.lock_or_db(e))
            } else if file.no_transaction() {
                self.run_stepwise(&ctx, attempt, started)
            } else {
                self.run_transactional(&ctx, attempt, started)
            };
            match r {
                Err(Failure::Lock(e)) => {
                    if attempt >= opts.max_attempts.max(1) {
                        tracing::warn!(database = %self.url, migration = name, %stage, attempts = attempt, "lock not granted: {}", self.scrubbed(&e));
                        return Err(MigrateError::LockTimeout {
                            url: self.url.clone(),
                            migration: name.to_string(),
                            stage,
                            attempts: attempt,
                            lock_timeout: opts.lock_timeout,
                            partial: file.no_transaction(),
                        });
                    }
                    tracing::info!(database = %self.url, migration = name, %stage, attempt, "lock timeout; retrying in {backoff:?}");
                    sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(Failure::Other(e)) => {
                    let e = match *e {
                        MigrateError::Apply {
                            url,
                            migration,
                            stage,
                            file,
                            statement_line,
                            message,
                            partial,
                        } => MigrateError::Apply {
                            url,
                            migration,
                            stage,
                            file,
                            statement_line,
                            message: self.scrubbed(&message),
                            partial,
                        },
                        MigrateError::Db { url, message } => MigrateError::Db {
                            url,
                            message: self.scrubbed(&message),
                        },
                        other => other,
                    };
                    return Err(e);
                }
                Ok(o) => {
                    tracing::info!(database = %self.url, migration = name, %stage, outcome = ?o, "migration stage done");
                    return Ok(o);
                }
            }
        }
    }

    fn run_transactional(
        &mut self,
        ctx: &Ctx,
        attempt: u32,
        started: Instant,
    ) -> Result<StageOutcome, Failure> {
        match &mut self.conn {
            Conn::Sqlite(c) => {
                c.busy_timeout(ctx.opts.lock_timeout)
                    .map_err(|e| ctx.db(e.into()))?;
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| ctx.lock_or_db(e.into()))?;
                let out = stage_in_tx(&mut Lite(&tx), ctx, attempt, started)?;
                if matches!(out, StageOutcome::Applied { .. }) {
                    tx.commit().map_err(|e| ctx.lock_or_db(e.into()))?;
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let mut tx = c.transaction().map_err(|e| ctx.db(e.into()))?;
                let setup = format!(
                    "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
                    ctx.opts.lock_timeout.as_millis(),
                    ctx.opts.statement_timeout.as_millis()
                );
                tx.batch_execute(&setup).map_err(|e| ctx.db(e.into()))?;
                tx.query("SELECT pg_advisory_xact_lock($1)", &[&PG_LOCK_KEY])
                    .map_err(|e| ctx.lock_or_db(e.into()))?;
                let out = stage_in_tx(&mut Pg(&mut tx), ctx, attempt, started)?;
                if matches!(out, StageOutcome::Applied { .. }) {
                    tx.commit().map_err(|e| ctx.lock_or_db(e.into()))?;
                }
                Ok(out)
            }
        }
    }

    fn run_stepwise(
        &mut self,
        ctx: &Ctx,
        attempt: u32,
        started: Instant,
    ) -> Result<StageOutcome, Failure> {
        match &mut self.conn {
            Conn::Sqlite(c) => {
                c.busy_timeout(ctx.opts.lock_timeout)
                    .map_err(|e| ctx.db(e.into()))?;
                stepwise(&mut Lite(c), ctx, attempt, started)
            }
            Conn::Postgres(c) => {
                let setup = format!(
                    "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
                    ctx.opts.lock_timeout.as_millis(),
                    ctx.opts.statement_timeout.as_millis()
                );
                c.batch_execute(&setup).map_err(|e| ctx.db(e.into()))?;
                c.query("SELECT pg_advisory_lock($1)", &[&PG_LOCK_KEY])
                    .map_err(|e| ctx.lock_or_db(e.into()))?;
                let r = stepwise(&mut Pg(&mut **c), ctx, attempt, started);
                let unlock = c
                    .query("SELECT pg_advisory_unlock($1)", &[&PG_LOCK_KEY])
                    .and_then(|_| c.batch_execute("RESET lock_timeout; RESET statement_timeout"));
                if let Err(e) = unlock
                    && r.is_ok()
                {
                    return Err(ctx.db(e.into()));
                }
                r
            }
        }
    }
}

/// The schema fingerprint of a SQLite connection (read-only is fine).
pub(crate) fn sqlite_fingerprint(c: &rusqlite::Connection) -> Result<Fingerprint, String> {
    Lite(c).fingerprint().map_err(|e| e.message)
}

/// The schema fingerprint of a PostgreSQL database.
pub(crate) fn pg_fingerprint(c: &mut postgres::Client) -> Result<Fingerprint, String> {
    Pg(c).fingerprint().map_err(|e| e.message)
}

enum Failure {
    Lock(String),
    Other(Box<MigrateError>),
}

struct Ctx<'a> {
    url: RedactedUrl,
    name: &'a str,
    files: &'a MigrationFiles,
    stage: Stage,
    file: &'a SqlFile,
    opts: &'a RunOptions,
}

impl Ctx<'_> {
    fn db(&self, e: DbErr) -> Failure {
        Failure::Other(Box::new(MigrateError::Db {
            url: self.url.clone(),
            message: e.message,
        }))
    }
    fn lock_or_db(&self, e: DbErr) -> Failure {
        if e.lock_timeout {
            Failure::Lock(e.message)
        } else {
            self.db(e)
        }
    }
    fn apply_err(&self, e: DbErr, line: Option<usize>) -> Failure {
        if e.lock_timeout {
            return Failure::Lock(e.message);
        }
        Failure::Other(Box::new(MigrateError::Apply {
            url: self.url.clone(),
            migration: self.name.to_string(),
            stage: self.stage,
            file: self.file.shown.clone(),
            statement_line: line,
            message: e.message,
            partial: self.file.no_transaction(),
        }))
    }
    fn order(&self, reason: String) -> Failure {
        Failure::Other(Box::new(MigrateError::Order {
            url: self.url.clone(),
            migration: self.name.to_string(),
            stage: self.stage,
            reason,
        }))
    }
}

/// Applied files whose content changed since.
fn checksum_drift(
    rows: &[HistoryRow],
    files: &MigrationFiles,
) -> Vec<(Stage, String, String, String)> {
    let mut out = Vec::new();
    for stage in [Stage::Expand, Stage::Contract, Stage::UndoExpand] {
        let Some(file) = files.get(stage) else {
            continue;
        };
        if let Some(r) = rows.iter().rev().find(|r| r.stage == stage)
            && r.checksum != file.checksum
        {
            out.push((
                stage,
                file.shown.clone(),
                r.checksum.clone(),
                file.checksum.clone(),
            ));
        }
    }
    out
}

enum Decision {
    Skip(HistoryRow),
    Run { resume: Option<HistoryRow> },
}

/// Decide from the migration's history what applying `stage` means.
fn decide(rows: &[HistoryRow], ctx: &Ctx) -> Result<Decision, Failure> {
    if let Some((stage, file, recorded, current)) =
        checksum_drift(rows, ctx.files).into_iter().next()
    {
        return Err(Failure::Other(Box::new(MigrateError::ChecksumDrift {
            url: ctx.url.clone(),
            migration: ctx.name.to_string(),
            stage,
            file,
            recorded,
            current,
        })));
    }
    let state = MigrationState::from_rows(rows);
    let last = rows.last().cloned();
    use MigrationState as S;
    match (ctx.stage, state) {
        (stage, S::Interrupted(s)) if s == stage => Ok(Decision::Run { resume: last }),
        (_, S::Interrupted(s)) => Err(ctx.order(format!(
            "its {s} stage was interrupted; resume {s} first"
        ))),
        (Stage::Expand, S::Pending | S::Undone) => Ok(Decision::Run { resume: None }),
        (Stage::Expand, S::Expanded | S::Contracted) => {
            let row = rows.iter().rev().find(|r| r.stage == Stage::Expand).cloned();
            row.map(Decision::Skip)
                .ok_or_else(|| ctx.order("history has no expand row".into()))
        }
        (Stage::Contract, S::Expanded) => Ok(Decision::Run { resume: None }),
        (Stage::Contract, S::Contracted) => Ok(Decision::Skip(last.ok_or_else(|| ctx.order("empty history".into()))?)),
        (Stage::Contract, S::Pending | S::Undone) => Err(ctx.order(
            "expand has not been applied (or was undone); contract only runs after expand and the rollout".into(),
        )),
        (Stage::UndoExpand, S::Expanded) => Ok(Decision::Run { resume: None }),
        (Stage::UndoExpand, S::Undone) => Ok(Decision::Skip(last.ok_or_else(|| ctx.order("empty history".into()))?)),
        (Stage::UndoExpand, S::Pending) => Err(ctx.order("expand was never applied; there is nothing to undo".into())),
        (Stage::UndoExpand, S::Contracted) => Err(ctx.order(
            "contract already ran and is one-way; roll forward with a new migration or restore a snapshot".into(),
        )),
    }
}

fn check_schema_drift<E: Exec>(e: &mut E, ctx: &Ctx) -> Result<Fingerprint, Failure> {
    let now = e.fingerprint().map_err(|x| ctx.db(x))?;
    if let Some(last) = e.last_row().map_err(|x| ctx.db(x))?
        && last.schema_after != now.hash
        && !ctx.opts.accept_schema_drift
    {
        return Err(Failure::Other(Box::new(MigrateError::SchemaDrift {
            url: ctx.url.clone(),
            after: format!("{} of \"{}\" at {}", last.stage, last.name, last.applied_at),
            recorded: last.schema_after,
            current: now.hash,
        })));
    }
    Ok(now)
}

fn new_row(
    ctx: &Ctx,
    status: &str,
    done: i64,
    fp: &str,
    attempt: u32,
    started: Instant,
) -> HistoryRow {
    HistoryRow {
        id: 0,
        name: ctx.name.to_string(),
        stage: ctx.stage,
        status: status.to_string(),
        file: ctx.file.shown.clone(),
        checksum: ctx.file.checksum.clone(),
        statements_done: done,
        schema_after: fp.to_string(),
        applied_at: now_rfc3339(),
        applied_by: ctx.opts.actor.clone(),
        attempts: i64::from(attempt),
        duration_ms: started.elapsed().as_millis() as i64,
    }
}

fn stage_in_tx<E: Exec>(
    e: &mut E,
    ctx: &Ctx,
    attempt: u32,
    started: Instant,
) -> Result<StageOutcome, Failure> {
    let rows = e.rows(Some(ctx.name)).map_err(|x| ctx.db(x))?;
    match decide(&rows, ctx)? {
        Decision::Skip(r) => {
            return Ok(StageOutcome::AlreadyApplied {
                stage: ctx.stage,
                applied_at: r.applied_at,
            });
        }
        Decision::Run { resume: Some(_) } => {
            return Err(ctx.order(
                "an interrupted no-transaction run exists but the file no longer starts with `-- cutover:no-transaction`".into(),
            ));
        }
        Decision::Run { resume: None } => {}
    }
    check_schema_drift(e, ctx)?;
    let stmts = ctx.file.statements();
    let failpoint = ctx.opts.failpoint_after_statements;
    for (i, st) in stmts.iter().enumerate() {
        if failpoint == Some(i) {
            return Err(Failure::Other(Box::new(MigrateError::Failpoint(format!(
                "after {i} statement(s)"
            )))));
        }
        e.batch(&st.text)
            .map_err(|x| ctx.apply_err(x, Some(st.line)))?;
    }
    if failpoint.is_some_and(|n| n >= stmts.len()) {
        return Err(Failure::Other(Box::new(MigrateError::Failpoint(
            "before the history row".into(),
        ))));
    }
    let fp = e.fingerprint().map_err(|x| ctx.db(x))?;
    let row = new_row(
        ctx,
        "applied",
        stmts.len() as i64,
        &fp.hash,
        attempt,
        started,
    );
    e.insert(&row).map_err(|x| ctx.db(x))?;
    Ok(StageOutcome::Applied {
        stage: ctx.stage,
        statements: stmts.len(),
        resumed_after: 0,
        attempts: attempt,
        duration_ms: started.elapsed().as_millis() as u64,
        fingerprint: fp.hash,
    })
}

fn stepwise<E: Exec>(
    e: &mut E,
    ctx: &Ctx,
    attempt: u32,
    started: Instant,
) -> Result<StageOutcome, Failure> {
    let rows = e.rows(Some(ctx.name)).map_err(|x| ctx.db(x))?;
    let (id, done) = match decide(&rows, ctx)? {
        Decision::Skip(r) => {
            return Ok(StageOutcome::AlreadyApplied {
                stage: ctx.stage,
                applied_at: r.applied_at,
            });
        }
        Decision::Run { resume: Some(r) } => {
            let now = e.fingerprint().map_err(|x| ctx.db(x))?;
            if now.hash != r.schema_after && !ctx.opts.accept_schema_drift {
                return Err(Failure::Other(Box::new(MigrateError::SchemaDrift {
                    url: ctx.url.clone(),
                    after: format!(
                        "statement {} of the interrupted {} of \"{}\"",
                        r.statements_done, r.stage, r.name
                    ),
                    recorded: r.schema_after,
                    current: now.hash,
                })));
            }
            (r.id, r.statements_done.max(0) as usize)
        }
        Decision::Run { resume: None } => {
            let fp = check_schema_drift(e, ctx)?;
            let row = new_row(ctx, "running", 0, &fp.hash, attempt, started);
            (e.insert(&row).map_err(|x| ctx.db(x))?, 0)
        }
    };
    let stmts = ctx.file.statements();
    let sqlite = e.dialect() == Dialect::Sqlite;
    let mut fp_hash = String::new();
    for (i, s) in stmts.iter().enumerate().skip(done) {
        if ctx.opts.failpoint_after_statements == Some(i) {
            return Err(Failure::Other(Box::new(MigrateError::Failpoint(format!(
                "after {i} statement(s)"
            )))));
        }
        if sqlite {
            e.batch("BEGIN IMMEDIATE").map_err(|x| ctx.lock_or_db(x))?;
        }
        let r = e
            .batch(&s.text)
            .map_err(|x| ctx.apply_err(x, Some(s.line)))
            .and_then(|_| {
                let fp = e.fingerprint().map_err(|x| ctx.db(x))?;
                e.progress(
                    id,
                    (i + 1) as i64,
                    &fp.hash,
                    "running",
                    started.elapsed().as_millis() as i64,
                )
                .map_err(|x| ctx.db(x))?;
                fp_hash = fp.hash;
                Ok(())
            });
        if sqlite {
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let c = e.batch(end);
            r?;
            c.map_err(|x| ctx.db(x))?;
        } else {
            r?;
        }
    }
    if fp_hash.is_empty() {
        fp_hash = e.fingerprint().map_err(|x| ctx.db(x))?.hash;
    }
    e.progress(
        id,
        stmts.len() as i64,
        &fp_hash,
        "applied",
        started.elapsed().as_millis() as i64,
    )
    .map_err(|x| ctx.db(x))?;
    Ok(StageOutcome::Applied {
        stage: ctx.stage,
        statements: stmts.len(),
        resumed_after: done,
        attempts: attempt,
        duration_ms: started.elapsed().as_millis() as u64,
        fingerprint: fp_hash,
    })
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
