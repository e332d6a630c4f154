//! The journal backend a test's runs are written to, so one test body runs on both: the
//! file journal under the run's `--state-dir`, or PostgreSQL (a server the test starts,
//! [`super::pg::PgServer`], and a database of its own for each [`Backend::journal`]).
//!
//! `Journal::args` is what every `cutover` command of the run gets: nothing for files,
//! `--journal postgres://…` for PostgreSQL (with a short lease, [`LEASE`], so that a
//! killed engine's run can be resumed seconds later). After a crash, `after_crash` waits
//! for the dead engine's lease to expire on the database's clock, as an operator would
//! before `cutover resume` (which is refused while the lease holds); for files there is
//! nothing to wait for (the kernel released the dead process's `flock`).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::pg::PgServer;

/// The lease of a PostgreSQL-journaled run in these tests: renewed every second.
pub const LEASE: &str = "3s";

/// One test of a binary at a time holds this: the crash tests run processes under an
/// outside load or kill them at wall-clock times, and each backend's figures are its own,
/// so the file and PostgreSQL variants of a test take turns rather than share the CPU.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub enum Backend {
    File,
    Postgres(PgServer),
}

impl Backend {
    /// The file journal.
    pub fn file() -> Backend {
        Backend::File
    }

    /// PostgreSQL: starts a server of the test's own (stopped on drop).
    pub fn postgres() -> Backend {
        Backend::Postgres(PgServer::start())
    }

    /// `file` or `postgres`, for messages and printed figures.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A journal of its own for one run (for PostgreSQL a new database).
    pub fn journal(&self) -> Journal {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        match self {
            Backend::File => Journal { url: None },
            Backend::Postgres(server) => {
                let db = format!("journal_{}", NEXT.fetch_add(1, Ordering::SeqCst));
                Journal {
                    url: Some(server.create_db(&db)),
                }
            }
        }
    }
}

/// Where one run is journaled (the state directory is the caller's, given as always).
pub struct Journal {
    /// For PostgreSQL: the run's database.
    url: Option<String>,
}

impl Journal {
    /// Select this journal on `cmd` (`--journal URL` and the test's lease, or the file
    /// journal with `CUTOVER_JOURNAL` cleared).
    pub fn select(&self, cmd: &mut Command) {
        cmd.env_remove("CUTOVER_JOURNAL")
            .env_remove("CUTOVER_JOURNAL_LEASE");
        if let Some(url) = &self.url {
            cmd.arg("--journal")
                .arg(url)
                .env("CUTOVER_JOURNAL_LEASE", LEASE);
        }
    }

    /// `--journal`'s value: the URL for PostgreSQL, none for files.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The entries of the only run journaled here (the file journal under `state`, or the
    /// database), read through the journal API.
    pub fn entries(&self, state: &std::path::Path) -> Vec<cutover::journal::Entry> {
        let store = cutover::journal::JournalStore::resolve(self.url(), state).unwrap();
        let runs = cutover::journal::list_runs(&store).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        cutover::journal::read_run(&store, &runs[0].run_id)
            .unwrap()
            .entries
    }

    /// Whether some run's lease is still held (PostgreSQL only).
    pub fn lease_held(&self) -> bool {
        let Some(mut db) = self.db() else {
            return false;
        };
        db.query_one(
            "SELECT coalesce(bool_or(expires_at > clock_timestamp()), false)
               FROM cutover_journal_leases",
            &[],
        )
        .is_ok_and(|r| r.get::<_, bool>(0))
    }

    /// After the engine was killed: wait until no run's lease is held any more (at most
    /// the lease plus a margin), so `cutover resume` may take the run over.
    pub fn after_crash(&self) {
        let Some(mut db) = self.db() else {
            return;
        };
        super::wait_for(
            "the killed engine's journal lease to expire",
            Duration::from_secs(30),
            || {
                db.query_one(
                    "SELECT coalesce(bool_and(expires_at <= clock_timestamp()), true)
                       FROM cutover_journal_leases",
                    &[],
                )
                // No table yet: the engine died before it created its schema.
                .map_or(true, |r| r.get::<_, bool>(0))
            },
        );
    }

    /// Distinct epochs that wrote entries (PostgreSQL only; empty for files): a run
    /// crashed once and resumed has entries of epochs 1 and 2.
    pub fn epochs(&self) -> Vec<i64> {
        let Some(mut db) = self.db() else {
            return Vec::new();
        };
        db.query(
            "SELECT DISTINCT epoch FROM cutover_journal_entries ORDER BY epoch",
            &[],
        )
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
    }

    fn db(&self) -> Option<postgres::Client> {
        let url = self.url.as_ref()?;
        Some(postgres::Client::connect(url, postgres::NoTls).unwrap())
    }
}
