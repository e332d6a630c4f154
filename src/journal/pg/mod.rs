//! The journal in PostgreSQL: the same entries (each stored line byte for byte), the same
//! hash chain and the same sealed `run.json` record as the file journal, in three tables
//! created and migrated by cutover itself (`schema.rs`, with a version table). One writer
//! per run by a lease row with a fencing epoch (`lease.rs`); every append checks the epoch
//! in its own transaction (`writer.rs`). Readers (`reader.rs`) rebuild the file journal's
//! bytes and run the same checks, so `history`, `audit`, `audit verify`, `report` and
//! `stats` say the same on both backends.
//!
//! The database URL may hold a password: it is kept only to connect and never shown;
//! everything printed names `postgres://HOST:PORT/DB` ([`PgStore::label`]).

mod lease;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use lease::{LEASE_LOST, LeaseGuard};
pub(crate) use reader::{list_runs, newest_entry, read_run};
pub(crate) use writer::{PgWriter, insert_finished};

use super::JournalError;

/// Where the lease length comes from (default [`DEFAULT_LEASE`]).
pub const LEASE_ENV: &str = "CUTOVER_JOURNAL_LEASE";
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// A PostgreSQL journal: how to connect (secret), how to name it (not secret), the local
/// directory for a run's side files (the local platform's pid file, the report), and the
/// lease length.
#[derive(Clone)]
pub struct PgStore {
    conninfo: String,
    label: String,
    local_dir: PathBuf,
    lease: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.label)
    }
}

/// Whether `spec` names a PostgreSQL journal (`postgres://`, `postgresql://`).
pub fn is_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// `postgres://HOST:PORT/DB` of a connection string: no user, no password, no options.
pub fn label_of(conninfo: &str) -> String {
    let Ok(config) = postgres::Config::from_str(conninfo) else {
        return "postgres://(unreadable URL)".into();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .map(str::to_string)
        .or_else(|| config.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    format!("postgres://{host}:{port}/{db}")
}

impl PgStore {
    /// `postgres://…` or `env:VAR` (a variable holding such a URL); `local_dir` is the
    /// state directory, for the side files of a run written on this machine.
    pub fn parse(spec: &str, local_dir: &Path) -> Result<PgStore, JournalError> {
        let (conninfo, label) = match spec.strip_prefix("env:") {
            Some(var) => {
                let value = std::env::var(var).map_err(|_| {
                    JournalError::BadJournalUrl(format!(
                        "--journal env:{var}: the variable {var} is not set (or not UTF-8); export it with the journal's postgres:// URL"
                    ))
                })?;
                if !is_url(&value) {
                    return Err(JournalError::BadJournalUrl(format!(
                        "--journal env:{var}: the variable does not hold a postgres:// URL"
                    )));
                }
                let label = format!("env:{var} ({})", label_of(&value));
                (value, label)
            }
            None if is_url(spec) => (spec.to_string(), label_of(spec)),
            None => {
                return Err(JournalError::BadJournalUrl(
                    "--journal takes postgres://USER@HOST:PORT/DB, or env:VAR naming a variable that holds one".into(),
                ));
            }
        };
        if let Err(e) = postgres::Config::from_str(&conninfo) {
            return Err(JournalError::BadJournalUrl(format!(
                "--journal {label}: not a PostgreSQL URL ({})",
                scrub(&e.to_string(), &conninfo)
            )));
        }
        let lease = match std::env::var(LEASE_ENV) {
            Ok(v) => crate::duration::parse_duration(&v)
                .ok()
                .filter(|d| *d >= Duration::from_millis(300))
                .ok_or_else(|| {
                    JournalError::BadJournalUrl(format!(
                        "{LEASE_ENV}={v}: not a duration of at least 300ms (e.g. 15s)"
                    ))
                })?,
            Err(_) => DEFAULT_LEASE,
        };
        Ok(PgStore {
            conninfo,
            label,
            local_dir: local_dir.to_path_buf(),
            lease,
        })
    }

    /// The journal as it may be printed: `postgres://HOST:PORT/DB`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URL itself, for a child cutover's environment only (`CUTOVER_JOURNAL`): never
    /// print it.
    pub fn secret_url(&self) -> &str {
        &self.conninfo
    }

    /// The same journal with another lease length.
    pub fn with_lease(mut self, lease: Duration) -> PgStore {
        self.lease = lease;
        self
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The local directory of a run's side files (`<state_dir>/pg-runs/<run_id>`).
    pub fn side_dir(&self, run_id: &str) -> PathBuf {
        self.local_dir.join("pg-runs").join(run_id)
    }

    /// A new session, with `synchronous_commit = on` and the schema migrated.
    pub(crate) fn connect(&self) -> Result<PgClient, JournalError> {
        let mut client = off_runtime(|| {
            let tls = crate::tls::postgres().map_err(|e| self.error("set up TLS to", e))?;
            postgres::Client::connect(&self.conninfo, tls)
                .map(|c| PgClient(Some(c)))
                .map_err(|e| self.error("connect to", e))
        })?;
        off_runtime(|| {
            // Committed means durable before the engine acts; a session stopped inside a
            // transaction (SIGSTOP, a paused VM) holding the lease row is ended by the
            // server after one lease, so a takeover never waits longer than that.
            client
                .batch_execute(&format!(
                    "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = {}",
                    self.lease.as_millis().max(1)
                ))
                .map_err(|e| self.error("configure", e))?;
            schema::migrate(&mut client).map_err(|e| self.error("migrate the schema of", e))
        })?;
        Ok(client)
    }

    /// A database error, named by the label and scrubbed of the connection string.
    pub(crate) fn error(&self, action: &'static str, e: impl Detail) -> JournalError {
        JournalError::Database {
            action,
            journal: self.label.clone(),
            detail: scrub(&e.detail(), &self.conninfo),
        }
    }
}

/// What a journal error says of its cause. The driver's own Display of a server error is
/// only "db error"; this keeps the server's message ("no pg_hba.conf entry …") and, for a
/// TLS failure, what to do about it.
pub(crate) trait Detail {
    fn detail(&self) -> String;
}

impl Detail for postgres::Error {
    fn detail(&self) -> String {
        crate::tls::postgres_error(crate::migrate::db::pg_message(self))
    }
}

impl Detail for String {
    fn detail(&self) -> String {
        self.clone()
    }
}

impl<T: Detail + ?Sized> Detail for &T {
    fn detail(&self) -> String {
        (**self).detail()
    }
}

/// A session that may be dropped anywhere: the synchronous client closes its connection
/// on its own runtime, which may not run on a tokio worker, so it is dropped off it.
pub(crate) struct PgClient(Option<postgres::Client>);

impl std::ops::Deref for PgClient {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        // Only `drop` takes the client out.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            off_runtime(move || drop(c));
        }
    }
}

/// `text` without the connection string or its password.
fn scrub(text: &str, conninfo: &str) -> String {
    let mut out = text.replace(conninfo, "***");
    if let Ok(c) = postgres::Config::from_str(conninfo)
        && let Some(pw) = c.get_password()
        && let Ok(pw) = std::str::from_utf8(pw)
        && !pw.is_empty()
    {
        out = out.replace(pw, "***");
    }
    out
}

/// Run blocking database work: the synchronous `postgres` client runs its own runtime,
/// which may not start on a tokio worker; a scoped thread takes it off the worker.
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|s| match s.spawn(work).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// `user@host:pid`: who holds a lease.
pub(crate) fn holder_name() -> String {
    format!(
        "{}:{}",
        crate::migrate::db::default_actor(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_names_host_port_and_database_only() {
        let l = label_of("postgres://alice:s3cr3t@db.example:6543/deploys?sslmode=disable");
        assert_eq!(l, "postgres://db.example:6543/deploys");
        assert!(!l.contains("s3cr3t") && !l.contains("alice"));
        assert_eq!(label_of("postgres://h/db"), "postgres://h:5432/db");
    }

    #[test]
    fn errors_never_show_the_password() {
        let url = "postgres://alice:s3cr3t@db.example:6543/deploys";
        let s = PgStore::parse(url, Path::new("/tmp")).unwrap();
        let e = s.error("connect to", format!("failed for {url} with s3cr3t"));
        let text = e.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("postgres://db.example:6543/deploys"),
            "{text}"
        );
        assert!(format!("{s:?}").contains("db.example") && !format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_spec_that_is_no_url_is_refused_with_the_fix() {
        let e = PgStore::parse("mysql://x", Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
        let e = PgStore::parse("env:CUTOVER_TEST_SURELY_UNSET_VAR", Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("is not set"), "{e}");
    }
}
