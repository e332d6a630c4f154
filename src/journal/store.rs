//! Where runs are journaled: the file journal under a state directory (the default) or
//! PostgreSQL (`--journal postgres://…`, `--journal env:VAR`, or `CUTOVER_JOURNAL`). The
//! readers (`list_runs`, `read_run`, `verify`, `latest_unfinished`, `run_dir`) and
//! `Journal::create`/`open` take either; a `&Path` still means the file journal there.

use std::path::{Path, PathBuf};

use super::JournalError;
use super::chain::{self, ChainProblem};
use super::pg::PgStore;
use super::runs::{self, RunRecord, RunSummary, RunVerification, VerifyReport};

/// The environment variable naming the journal when `--journal` is not given.
pub const JOURNAL_ENV: &str = "CUTOVER_JOURNAL";

/// A journal, owned (what a command resolved from its flags).
#[derive(Debug, Clone)]
pub enum JournalStore {
    /// Files under a state directory.
    File(PathBuf),
    Postgres(PgStore),
}

/// A journal, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum StoreRef<'a> {
    File(&'a Path),
    Postgres(&'a PgStore),
}

impl<'a> From<&'a Path> for StoreRef<'a> {
    fn from(p: &'a Path) -> Self {
        StoreRef::File(p)
    }
}
impl<'a> From<&'a PathBuf> for StoreRef<'a> {
    fn from(p: &'a PathBuf) -> Self {
        StoreRef::File(p)
    }
}
impl<'a> From<&'a JournalStore> for StoreRef<'a> {
    fn from(s: &'a JournalStore) -> Self {
        match s {
            JournalStore::File(p) => StoreRef::File(p),
            JournalStore::Postgres(pg) => StoreRef::Postgres(pg),
        }
    }
}
impl<'a> From<&'a PgStore> for StoreRef<'a> {
    fn from(s: &'a PgStore) -> Self {
        StoreRef::Postgres(s)
    }
}

impl JournalStore {
    /// `--journal SPEC` (or `CUTOVER_JOURNAL`): a PostgreSQL URL or `env:VAR`; none: the
    /// file journal under `state_dir`. The state directory still holds what a run keeps on
    /// this machine (the local platform's pid file, reports, the control socket).
    pub fn resolve(spec: Option<&str>, state_dir: &Path) -> Result<JournalStore, JournalError> {
        match spec.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(JournalStore::File(state_dir.to_path_buf())),
            Some(s) => PgStore::parse(s, state_dir).map(JournalStore::Postgres),
        }
    }

    /// How to name the journal in messages: the state directory, or
    /// `postgres://HOST:PORT/DB` (never the URL's user or password).
    pub fn label(&self) -> String {
        match self {
            JournalStore::File(p) => p.display().to_string(),
            JournalStore::Postgres(pg) => pg.label().to_string(),
        }
    }

    /// The flag that selects this journal again, for advice printed to the user
    /// (`--state-dir DIR` or `--journal postgres://HOST:PORT/DB`).
    pub fn flag(&self) -> String {
        match self {
            JournalStore::File(p) => format!("--state-dir {}", p.display()),
            JournalStore::Postgres(pg) => format!("--journal {}", pg.label()),
        }
    }
}

impl StoreRef<'_> {
    /// The state directory, or `postgres://HOST:PORT/DB`.
    pub fn label(&self) -> String {
        match self {
            StoreRef::File(p) => p.display().to_string(),
            StoreRef::Postgres(pg) => pg.label().to_string(),
        }
    }
}

/// Every run, newest first (see [`runs::list_file_runs`]).
pub fn list_runs<'a>(store: impl Into<StoreRef<'a>>) -> Result<Vec<RunSummary>, JournalError> {
    match store.into() {
        StoreRef::File(dir) => runs::list_file_runs(dir),
        StoreRef::Postgres(pg) => super::pg::list_runs(pg),
    }
}

/// Read one run: its summary, entries and chain verification. Read-only.
pub fn read_run<'a>(
    store: impl Into<StoreRef<'a>>,
    run_id: &str,
) -> Result<RunRecord, JournalError> {
    super::check_run_id(run_id)?;
    match store.into() {
        StoreRef::File(dir) => runs::read_file_run(dir, run_id),
        StoreRef::Postgres(pg) => super::pg::read_run(pg, run_id),
    }
}

/// The newest entry of `kind` in run `run_id`, if any (PostgreSQL reads that one entry;
/// the file journal reads the run). An unknown run is an error, as in [`read_run`].
pub fn newest_entry<'a>(
    store: impl Into<StoreRef<'a>>,
    run_id: &str,
    kind: &str,
) -> Result<Option<super::Entry>, JournalError> {
    super::check_run_id(run_id)?;
    match store.into() {
        StoreRef::File(dir) => Ok(runs::read_file_run(dir, run_id)?
            .entries
            .into_iter()
            .rev()
            .find(|e| e.kind == kind)),
        StoreRef::Postgres(pg) => super::pg::newest_entry(pg, run_id, kind),
    }
}

/// The newest run that is neither finished nor damaged (for `cutover resume`); it may be
/// running if an engine is still writing it, which `Journal::open` reports.
pub fn latest_unfinished<'a>(
    store: impl Into<StoreRef<'a>>,
) -> Result<Option<RunSummary>, JournalError> {
    Ok(list_runs(store)?
        .into_iter()
        .find(|r| r.damage.is_none() && !r.is_finished()))
}

/// The directory of run `run_id`'s files on this machine (the release report beside the
/// journal; for PostgreSQL, `<state_dir>/pg-runs/<run_id>`, made on demand).
pub fn run_dir<'a>(store: impl Into<StoreRef<'a>>, run_id: &str) -> Result<PathBuf, JournalError> {
    match store.into() {
        StoreRef::File(dir) => super::file_run_dir(dir, run_id),
        StoreRef::Postgres(pg) => {
            super::check_run_id(run_id)?;
            let dir = pg.side_dir(run_id);
            super::fs::create_dir_durable(&dir)?;
            Ok(dir)
        }
    }
}

/// Verify the chain of one run, or of every run (oldest first) when `run_id` is `None`.
/// An unknown or invalid run id is an error; damage is reported in the result. A run
/// whose record is unreadable is reported as a malformed chain.
pub fn verify<'a>(
    store: impl Into<StoreRef<'a>>,
    run_id: Option<&str>,
) -> Result<VerifyReport, JournalError> {
    let store = store.into();
    if let Some(id) = run_id {
        let rec = read_run(store, id)?;
        return Ok(VerifyReport {
            runs: vec![rec.verification],
        });
    }
    let mut out = Vec::new();
    for s in list_runs(store)?.into_iter().rev() {
        let v = match read_run(store, &s.run_id) {
            Ok(rec) => rec.verification,
            Err(e) => RunVerification {
                run_id: s.run_id.clone(),
                release: s.release.clone(),
                entries: 0,
                last_hash: String::new(),
                finished: s.is_finished(),
                torn_tail: None,
                problem: Some(ChainProblem {
                    kind: chain::ProblemKind::Malformed,
                    seq: 0,
                    line: 0,
                    detail: e.to_string(),
                }),
            },
        };
        out.push(v);
    }
    Ok(VerifyReport { runs: out })
}
