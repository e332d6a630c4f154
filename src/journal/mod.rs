//! The journal: a durable, hash-chained, append-only log of every command and decision
//! of a release run. It is the audit trail (`cutover history`, `cutover audit`) and what
//! `cutover resume` replays after a crash.
//!
//! Layout under a state directory:
//!
//! ```text
//! <state_dir>/runs/<run_id>/journal.jsonl   one entry per line, fsync'd per append
//!                          /run.json        release, file sha256, start, finish record,
//!                                           sealed with a SHA-256 of its fields
//!                          /lock            flock'd by the one process writing the run
//!                          /torn-<offset>.bin  bytes of an interrupted write, cut off
//!                                           by `open` and kept as evidence
//! ```
//!
//! Durability: `append` writes the whole line with one `write_all` and returns only after
//! `fdatasync`; new files and directories are made durable by fsyncing their parent
//! directory; `run.json` is replaced atomically (write temporary, fsync, rename, fsync
//! directory). A crash (SIGKILL, power cut) at any byte leaves at worst an incomplete last
//! line, which `open` cuts off and records as a `journal` entry: never silently, and never
//! a broken chain. The journal is content-agnostic: redacting secrets is the engine's job.

mod chain;
mod entry;
mod fs;
pub mod inspect;
pub mod pg;
pub mod release_entry;
mod runs;
mod store;
pub mod timefmt;
pub mod transfer;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chain::{ChainProblem, ProblemKind, TornTail};
pub use entry::{Entry, GENESIS_HASH, NewEntry, sha256_hex};
pub use release_entry::{RELEASE_ENTRY, ReleaseOrigin, origin_of_run, release_of_run};
pub use runs::{LeaseHeld, RunRecord, RunState, RunSummary, RunVerification, VerifyReport};
pub use store::{
    JOURNAL_ENV, JournalStore, StoreRef, latest_unfinished, list_runs, newest_entry, read_run,
    run_dir, verify,
};

use fs::{LockOutcome, RunLock, io_err};

/// Name of the runs directory under a state directory.
const RUNS_DIR: &str = "runs";
const JOURNAL_FILE: &str = "journal.jsonl";
const META_FILE: &str = "run.json";
const LOCK_FILE: &str = "lock";
/// Prefix of a run directory still being created (renamed into place when complete).
const CREATING_PREFIX: &str = ".creating-";

/// `kind` of the entry the journal itself appends when it cuts off a torn last line.
pub const RECOVERY_KIND: &str = "journal";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no run `{run_id}` under {}: `cutover history --state-dir {}` lists the runs",
        state_dir.display(),
        state_dir.display()
    )]
    UnknownRun { state_dir: PathBuf, run_id: String },
    #[error(
        "`{}` is not a run id: run ids look like 20261127T031500Z-checkout-1a2b (letters, digits, `.`, `_`, `-`); `cutover history` lists them",
        .0.escape_debug()
    )]
    InvalidRunId(String),
    #[error(
        "run {run_id} is being written by another cutover process{}: wait for it to finish, or stop that process and resume",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { run_id: String, pid: Option<u32> },
    #[error("run {run_id} already finished ({outcome}); it cannot be appended to: start a new run")]
    Finished { run_id: String, outcome: String },
    #[error(
        "the journal of run {run_id} is damaged ({problem}) in {}: it will not be appended to; `cutover audit verify {run_id}` shows the details",
        path.display()
    )]
    Corrupt {
        run_id: String,
        path: PathBuf,
        problem: ChainProblem,
    },
    #[error(
        "{} is unreadable ({detail}); move the directory {} aside to continue",
        path.display(),
        path.parent().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    BadMeta { path: PathBuf, detail: String },
    #[error(
        "the journal of run {run_id} stopped accepting entries after a failed write ({cause}); the engine must stop: its state on disk is uncertain"
    )]
    Poisoned { run_id: String, cause: String },
    #[error("invalid journal entry: {0}")]
    InvalidEntry(String),
    #[error("{0}")]
    BadJournalUrl(String),
    #[error("cannot {action} the journal {journal}: {detail}")]
    Database {
        action: &'static str,
        /// `postgres://HOST:PORT/DB`: never the user or the password.
        journal: String,
        detail: String,
    },
    #[error(
        "no run `{run_id}` in the journal {journal}: `cutover history --journal {journal}` lists the runs"
    )]
    UnknownPgRun { journal: String, run_id: String },
    #[error(
        "run {run_id} is held by {holder} (lease epoch {epoch}, {left_ms} ms left): wait for that engine to finish or for its lease to expire, then resume"
    )]
    Leased {
        run_id: String,
        holder: String,
        epoch: i64,
        left_ms: u64,
    },
    #[error("{0}")]
    LeaseLost(String),
    #[error("cannot encode a journal entry as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

impl JournalError {
    /// Whether this is the caller's mistake (bad run id, unknown run, busy or finished
    /// run) rather than damage or an I/O failure: the CLI exits 2 for these.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            JournalError::UnknownRun { .. }
                | JournalError::UnknownPgRun { .. }
                | JournalError::BadJournalUrl(_)
                | JournalError::Leased { .. }
                | JournalError::InvalidRunId(_)
                | JournalError::Locked { .. }
                | JournalError::Finished { .. }
        )
    }
}

/// `run.json`: what a run is and how it ended. Replaced atomically.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunMeta {
    pub format: u32,
    pub run_id: String,
    pub release: String,
    pub release_file_sha256: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub outcome: Option<String>,
    /// Entry count when the run finished: lets `verify` notice entries removed at the end.
    pub entries_at_finish: Option<u64>,
    /// Hash of the last entry when the run finished.
    pub last_hash_at_finish: Option<String>,
    /// SHA-256 over all the fields above (see [`RunMeta::compute_seal`]), so an edit of
    /// the outcome, release or counts shows in `verify` like an edited entry does.
    pub seal: String,
}

impl RunMeta {
    /// The record of a run just created: unfinished, not yet sealed.
    pub(crate) fn started(
        run_id: &str,
        release: &str,
        release_file_sha256: &str,
        started_ms: u64,
    ) -> Self {
        RunMeta {
            format: META_FORMAT,
            run_id: run_id.to_owned(),
            release: release.to_owned(),
            release_file_sha256: release_file_sha256.to_owned(),
            started_ms,
            finished_ms: None,
            outcome: None,
            entries_at_finish: None,
            last_hash_at_finish: None,
            seal: String::new(),
        }
    }

    /// Hex SHA-256 of the compact JSON of every field but `seal`, in declaration order.
    pub(crate) fn compute_seal(&self) -> String {
        #[derive(Serialize)]
        struct Sealed<'a> {
            format: u32,
            run_id: &'a str,
            release: &'a str,
            release_file_sha256: &'a str,
            started_ms: u64,
            finished_ms: Option<u64>,
            outcome: Option<&'a str>,
            entries_at_finish: Option<u64>,
            last_hash_at_finish: Option<&'a str>,
        }
        let bytes = serde_json::to_vec(&Sealed {
            format: self.format,
            run_id: &self.run_id,
            release: &self.release,
            release_file_sha256: &self.release_file_sha256,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            outcome: self.outcome.as_deref(),
            entries_at_finish: self.entries_at_finish,
            last_hash_at_finish: self.last_hash_at_finish.as_deref(),
        })
        // Serialising strings and integers cannot fail; an empty seal never matches.
        .unwrap_or_default();
        sha256_hex(&bytes)
    }

    pub(crate) fn seal_ok(&self) -> bool {
        self.seal == self.compute_seal()
    }
}

const META_FORMAT: u32 = 1;

pub(crate) fn read_meta(path: &Path) -> Result<RunMeta, JournalError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    parse_meta(path, &bytes)
}

/// A run record's bytes (`run.json`, or its copy in PostgreSQL), read from `path`.
pub(crate) fn parse_meta(path: &Path, bytes: &[u8]) -> Result<RunMeta, JournalError> {
    let meta: RunMeta = serde_json::from_slice(bytes).map_err(|e| JournalError::BadMeta {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if meta.format != META_FORMAT {
        return Err(JournalError::BadMeta {
            path: path.to_path_buf(),
            detail: format!(
                "format {} (this cutover reads format {META_FORMAT})",
                meta.format
            ),
        });
    }
    Ok(meta)
}

/// Seal `meta` and replace `run.json` with it atomically.
fn write_meta(dir: &Path, meta: &mut RunMeta) -> Result<(), JournalError> {
    meta.seal = meta.compute_seal();
    let mut bytes = serde_json::to_vec_pretty(meta)?;
    bytes.push(b'\n');
    fs::write_atomic(&dir.join(META_FILE), &bytes)
}

/// Default state dir: the `directories` data dir of cutover (on Linux
/// `$XDG_DATA_HOME/cutover` or `~/.local/share/cutover`). Without a home directory,
/// `.cutover` in the working directory. `--state-dir` / `CUTOVER_STATE_DIR` override it.
pub fn default_state_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "cutover")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".cutover"))
}

pub(crate) fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(RUNS_DIR)
}

/// The directory of run `run_id` (which must exist), for files written beside its journal
/// (the release report).
fn file_run_dir(state_dir: &Path, run_id: &str) -> Result<PathBuf, JournalError> {
    check_run_id(run_id)?;
    let dir = runs_dir(state_dir).join(run_id);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(JournalError::UnknownRun {
            state_dir: state_dir.to_path_buf(),
            run_id: run_id.to_owned(),
        })
    }
}

/// A run id is a plain directory name: no separators, no leading dot, bounded length.
pub(crate) fn check_run_id(run_id: &str) -> Result<(), JournalError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 160
        && !run_id.starts_with('.')
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(JournalError::InvalidRunId(run_id.to_owned()))
    }
}

/// The release name as it appears in run ids: ASCII letters, digits, `_`, `-`, `.`,
/// at most 48 characters.
fn id_safe_name(release: &str) -> String {
    let s: String = release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let s = s.trim_matches(|c| c == '-' || c == '.').to_owned();
    if s.is_empty() { "release".into() } else { s }
}

fn new_run_id(release: &str, started_ms: u64) -> String {
    format!(
        "{}-{}-{:04x}",
        timefmt::compact_stamp(started_ms),
        id_safe_name(release),
        rand::random::<u16>()
    )
}

/// `torn-000000012345.bin`: the bytes `open` cut off at that offset.
fn torn_file_name(offset: u64) -> String {
    format!("torn-{offset:012}.bin")
}

fn parse_torn_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("torn-")?
        .strip_suffix(".bin")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// Fill a staging run directory: lock, empty journal, `run.json`, all durable.
fn populate(staging: &Path, meta: &mut RunMeta) -> Result<(RunLock, File), JournalError> {
    let lock = match RunLock::acquire(&staging.join(LOCK_FILE))? {
        LockOutcome::Acquired(l) => l,
        LockOutcome::Held(pid) => {
            return Err(JournalError::Locked {
                run_id: meta.run_id.clone(),
                pid,
            });
        }
    };
    let path = staging.join(JOURNAL_FILE);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("create", &path))?;
    file.sync_all().map_err(io_err("fsync", &path))?;
    write_meta(staging, meta)?; // fsyncs `staging` too
    Ok((lock, file))
}

/// Where an open run's entries go: its file (held by the writer lock), or PostgreSQL
/// (held by the lease).
#[derive(Debug)]
enum Sink {
    File {
        path: PathBuf,
        file: File,
        _lock: RunLock,
    },
    Postgres(Box<pg::PgWriter>),
}

/// An open run, held exclusively for appending.
#[derive(Debug)]
pub struct Journal {
    run_id: String,
    dir: PathBuf,
    sink: Sink,
    meta: RunMeta,
    entries: Vec<Entry>,
    len: u64,
    last_hash: String,
    poisoned: Option<String>,
    recovered: Option<TornTail>,
}

impl Journal {
    /// Start a new run of a release under `state_dir` (creating directories), stamped
    /// with the wall clock. Writing a header entry is the engine's job.
    pub fn create<'a>(
        store: impl Into<StoreRef<'a>>,
        release_name: &str,
        release_file_sha256: &str,
    ) -> Result<Journal, JournalError> {
        Self::create_at(store, release_name, release_file_sha256, timefmt::now_ms())
    }

    /// [`Journal::create`] with the start time given (unix ms), for injected clocks.
    pub fn create_at<'a>(
        store: impl Into<StoreRef<'a>>,
        release_name: &str,
        release_file_sha256: &str,
        started_ms: u64,
    ) -> Result<Journal, JournalError> {
        let state_dir = match store.into() {
            StoreRef::File(dir) => dir,
            StoreRef::Postgres(pg) => {
                return Self::create_pg(pg, release_name, release_file_sha256, started_ms);
            }
        };
        let runs = runs_dir(state_dir);
        fs::create_dir_durable(&runs)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run_id = new_run_id(release_name, started_ms);
            let dir = runs.join(&run_id);
            let staging = runs.join(format!("{CREATING_PREFIX}{run_id}"));
            if dir.exists() {
                if attempt >= 16 {
                    return Err(io_err("create directory", &dir)(io::Error::from(
                        io::ErrorKind::AlreadyExists,
                    )));
                }
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(&staging) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => continue,
                Err(e) => return Err(io_err("create directory", &staging)(e)),
            }
            let mut meta = RunMeta::started(&run_id, release_name, release_file_sha256, started_ms);
            let (lock, file) = match populate(&staging, &mut meta) {
                Ok(v) => v,
                Err(e) => {
                    // Nothing refers to the half-made directory: remove it.
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e);
                }
            };
            match std::fs::rename(&staging, &dir) {
                Ok(()) => {}
                // Another process took this id in the meantime (the directory exists and
                // is not empty): try another id.
                Err(e) if dir.exists() && attempt < 16 => {
                    tracing::debug!(%run_id, error = %e, "run id taken, picking another");
                    let _ = std::fs::remove_dir_all(&staging);
                    continue;
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(io_err("rename into place", &dir)(e));
                }
            }
            fs::sync_dir(&runs)?;
            tracing::info!(%run_id, release = release_name, "journal run created");
            let sink = Sink::File {
                path: dir.join(JOURNAL_FILE),
                file,
                _lock: lock,
            };
            return Ok(Journal::empty(run_id, dir, sink, meta));
        }
    }

    /// A run just created, with no entry yet.
    fn empty(run_id: String, dir: PathBuf, sink: Sink, meta: RunMeta) -> Journal {
        Journal {
            run_id,
            dir,
            sink,
            meta,
            entries: Vec::new(),
            len: 0,
            last_hash: GENESIS_HASH.to_owned(),
            poisoned: None,
            recovered: None,
        }
    }

    /// A new run in PostgreSQL: its record and its lease (epoch 1) in one transaction.
    fn create_pg(
        pg: &pg::PgStore,
        release_name: &str,
        release_file_sha256: &str,
        started_ms: u64,
    ) -> Result<Journal, JournalError> {
        for _ in 0..16 {
            let run_id = new_run_id(release_name, started_ms);
            let mut meta = RunMeta::started(&run_id, release_name, release_file_sha256, started_ms);
            meta.seal = meta.compute_seal();
            let Some(writer) = pg::PgWriter::create(pg, &meta)? else {
                continue; // the id is taken: pick another
            };
            let dir = pg.side_dir(&run_id);
            fs::create_dir_durable(&dir)?;
            tracing::info!(%run_id, release = release_name, journal = pg.label(), "journal run created");
            let sink = Sink::Postgres(Box::new(writer));
            return Ok(Journal::empty(run_id, dir, sink, meta));
        }
        Err(JournalError::InvalidEntry(
            "no free run id after 16 attempts".into(),
        ))
    }

    /// Take a run in PostgreSQL over (a higher epoch) and check its whole chain.
    fn open_pg(pg: &pg::PgStore, run_id: &str) -> Result<Journal, JournalError> {
        let (writer, meta_text, bytes) = pg::PgWriter::open(pg, run_id)?;
        let place = PathBuf::from(format!("{} run {run_id}", pg.label()));
        let meta = parse_meta(&place, meta_text.as_bytes())?;
        if !meta.seal_ok() {
            return Err(JournalError::Corrupt {
                run_id: run_id.to_owned(),
                path: place,
                problem: chain::meta_altered(),
            });
        }
        if let Some(outcome) = &meta.outcome {
            return Err(JournalError::Finished {
                run_id: run_id.to_owned(),
                outcome: outcome.clone(),
            });
        }
        let checked = chain::check(&bytes, None);
        if let Some(problem) = checked.problem.or_else(|| {
            // Rows are whole transactions: a torn line here is damage, not a crash.
            checked.tail.map(|t| ChainProblem {
                kind: ProblemKind::Malformed,
                seq: checked.entries.len() as u64 + 1,
                line: checked.entries.len() as u64 + 1,
                detail: format!("an incomplete entry of {} bytes", t.len),
            })
        }) {
            return Err(JournalError::Corrupt {
                run_id: run_id.to_owned(),
                path: place,
                problem,
            });
        }
        let dir = pg.side_dir(run_id);
        fs::create_dir_durable(&dir)?;
        Ok(Journal {
            run_id: run_id.to_owned(),
            dir,
            sink: Sink::Postgres(Box::new(writer)),
            meta,
            len: checked.valid_len,
            last_hash: checked.last_hash,
            entries: checked.entries,
            poisoned: None,
            recovered: None,
        })
    }

    /// The lease this run is written under (PostgreSQL only): the fenced platform checks
    /// it before every acting call.
    pub fn lease(&self) -> Option<pg::LeaseGuard> {
        match &self.sink {
            Sink::File { .. } => None,
            Sink::Postgres(w) => Some(w.guard().clone()),
        }
    }

    /// Whether this writer may still write: always for the file journal (its lock is
    /// the kernel's), while the lease holds for PostgreSQL.
    pub fn still_writer(&self) -> Result<(), JournalError> {
        match &self.sink {
            Sink::File { .. } => Ok(()),
            Sink::Postgres(w) => w.guard().check().map_err(JournalError::LeaseLost),
        }
    }

    /// Reopen an unfinished run to resume it: takes the writer lock, validates the whole
    /// chain, and cuts off an incomplete last line left by a crash. A cut is logged and
    /// recorded as an entry of kind [`RECOVERY_KIND`] (see [`Journal::recovered_tail`]).
    pub fn open<'a>(store: impl Into<StoreRef<'a>>, run_id: &str) -> Result<Journal, JournalError> {
        check_run_id(run_id)?;
        let state_dir = match store.into() {
            StoreRef::File(dir) => dir,
            StoreRef::Postgres(pg) => return Self::open_pg(pg, run_id),
        };
        let dir = runs_dir(state_dir).join(run_id);
        if !dir.is_dir() {
            return Err(JournalError::UnknownRun {
                state_dir: state_dir.to_path_buf(),
                run_id: run_id.to_owned(),
            });
        }
        let lock = match RunLock::acquire(&dir.join(LOCK_FILE))? {
            LockOutcome::Acquired(l) => l,
            LockOutcome::Held(pid) => {
                return Err(JournalError::Locked {
                    run_id: run_id.to_owned(),
                    pid,
                });
            }
        };
        let meta = read_meta(&dir.join(META_FILE))?;
        if !meta.seal_ok() {
            return Err(JournalError::Corrupt {
                run_id: run_id.to_owned(),
                path: dir.join(META_FILE),
                problem: chain::meta_altered(),
            });
        }
        if let Some(outcome) = &meta.outcome {
            return Err(JournalError::Finished {
                run_id: run_id.to_owned(),
                outcome: outcome.clone(),
            });
        }
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_err("read", &path))?;
        let checked = chain::check(&bytes, None);
        if let Some(problem) = checked.problem {
            return Err(JournalError::Corrupt {
                run_id: run_id.to_owned(),
                path,
                problem,
            });
        }
        if let Some(tail) = &checked.tail {
            // Keep the cut bytes as evidence *before* cutting, so that a crash during
            // this recovery still gets reported by the next open.
            let torn = &bytes[checked.valid_len as usize..];
            fs::write_atomic(&dir.join(torn_file_name(tail.offset)), torn)?;
            file.set_len(checked.valid_len)
                .map_err(io_err("truncate the torn last line of", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
            tracing::warn!(
                run_id,
                offset = tail.offset,
                bytes = tail.len,
                "journal: cut off an incomplete last line left by an interrupted write"
            );
        }
        let mut journal = Journal {
            run_id: run_id.to_owned(),
            dir,
            sink: Sink::File {
                path,
                file,
                _lock: lock,
            },
            meta,
            len: checked.valid_len,
            last_hash: checked.last_hash,
            entries: checked.entries,
            poisoned: None,
            recovered: checked.tail,
        };
        journal.record_pending_recoveries()?;
        Ok(journal)
    }

    /// Append a [`RECOVERY_KIND`] entry for every saved torn tail (`torn-*.bin`) that no
    /// entry reports yet: the one this open cut, and any whose report a crash prevented.
    fn record_pending_recoveries(&mut self) -> Result<(), JournalError> {
        if matches!(self.sink, Sink::Postgres(_)) {
            return Ok(()); // rows are whole transactions: nothing is ever torn
        }
        let reported: std::collections::HashSet<String> = self
            .entries
            .iter()
            .filter(|e| e.kind == RECOVERY_KIND)
            .filter_map(|e| e.payload.get("saved_as")?.as_str().map(str::to_owned))
            .collect();
        let mut pending = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for dent in rd {
            let dent = dent.map_err(io_err("list", &self.dir))?;
            let Some(name) = dent.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(offset) = parse_torn_file_name(&name) else {
                continue;
            };
            if !reported.contains(&name) {
                pending.push((offset, name, dent.path()));
            }
        }
        pending.sort();
        for (offset, name, path) in pending {
            let torn = std::fs::read(&path).map_err(io_err("read", &path))?;
            tracing::warn!(run_id = %self.run_id, offset, file = %name, "journal: recording a torn last line");
            self.recovered = Some(TornTail {
                offset,
                len: torn.len() as u64,
            });
            self.append(NewEntry {
                at_ms: timefmt::now_ms(),
                operator: None,
                kind: RECOVERY_KIND.into(),
                service: None,
                payload: serde_json::json!({
                    "summary": format!(
                        "discarded an incomplete last line ({} bytes at offset {offset}) left by an interrupted write; it was never acknowledged, so never acted on (bytes kept in {name})",
                        torn.len()
                    ),
                    "torn_offset": offset,
                    "torn_bytes": torn.len(),
                    "torn_sha256": sha256_hex(&torn),
                    "saved_as": name,
                }),
            })?;
        }
        Ok(())
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The release this run deploys.
    pub fn release(&self) -> &str {
        &self.meta.release
    }

    /// SHA-256 of the release file, as given to `create`.
    pub fn release_file_sha256(&self) -> &str {
        &self.meta.release_file_sha256
    }

    /// When the run started (unix ms).
    pub fn started_ms(&self) -> u64 {
        self.meta.started_ms
    }

    /// The run's directory (`<state_dir>/runs/<run_id>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of entries (= the seq of the last one).
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hash of the last entry ([`GENESIS_HASH`] when empty).
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    /// The incomplete last line `open` cut off, if it did.
    pub fn recovered_tail(&self) -> Option<&TornTail> {
        self.recovered.as_ref()
    }

    /// Append an entry. When this returns `Ok`, the entry is on stable storage
    /// (`fdatasync` returned). On a failed write the partial line is cut off again; on a
    /// failed fsync the journal refuses further appends ([`JournalError::Poisoned`]),
    /// because the kernel may have dropped the data and the chain can no longer be
    /// trusted to match what the engine did.
    pub fn append(&mut self, e: NewEntry) -> Result<Entry, JournalError> {
        let mut stored = self.append_batch(vec![e])?;
        stored
            .pop()
            .ok_or_else(|| JournalError::InvalidEntry("nothing was appended".into()))
    }

    /// Append several entries with one write and one `fdatasync` (for events that belong
    /// together, e.g. a command and the decision it causes). None of them is
    /// acknowledged until this returns; a crash during the call can leave a prefix of
    /// the batch in the journal (each such entry complete and chained), never a part of
    /// an entry.
    pub fn append_batch(&mut self, batch: Vec<NewEntry>) -> Result<Vec<Entry>, JournalError> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                run_id: self.run_id.clone(),
                cause: cause.clone(),
            });
        }
        if let Some(outcome) = &self.meta.outcome {
            return Err(JournalError::Finished {
                run_id: self.run_id.clone(),
                outcome: outcome.clone(),
            });
        }
        if let Some(i) = batch.iter().position(|e| e.kind.trim().is_empty()) {
            return Err(JournalError::InvalidEntry(format!(
                "entry {} of the batch has an empty `kind`",
                i + 1
            )));
        }
        let mut stored = Vec::with_capacity(batch.len());
        let mut bytes = Vec::new();
        let mut prev = self.last_hash.clone();
        for (i, e) in batch.into_iter().enumerate() {
            let (entry, line) = entry::encode(self.len() + 1 + i as u64, &prev, e)?;
            bytes.extend_from_slice(&line);
            prev.clone_from(&entry.hash);
            stored.push(entry);
        }
        if stored.is_empty() {
            return Ok(stored);
        }
        match &mut self.sink {
            Sink::File { path, file, .. } => {
                #[cfg(feature = "crash-hooks")]
                if let Some(err) = crate::faults::before_append() {
                    return Err(io_err("append to", path)(err));
                }
                if let Err(err) = file.write_all(&bytes) {
                    // Cut the partial line off so the next append does not glue onto it.
                    let restored = file.set_len(self.len).and_then(|()| file.sync_all());
                    if let Err(cut) = restored {
                        self.poisoned = Some(format!(
                            "write failed ({err}), then truncate failed ({cut})"
                        ));
                    }
                    return Err(io_err("append to", path)(err));
                }
                #[cfg(feature = "crash-hooks")]
                crate::faults::before_fsync();
                if let Err(err) = file.sync_data() {
                    // After a failed fsync the kernel may have dropped the dirty pages and
                    // cleared the error: retrying could "succeed" without the data on disk.
                    self.poisoned = Some(format!("fsync failed: {err}"));
                    return Err(io_err("fsync", path)(err));
                }
            }
            Sink::Postgres(w) => {
                let lines: Vec<&[u8]> = bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                // Committed when this returns; any failure leaves the chain uncertain
                // (or the lease lost): no further appends.
                if let Err(e) = w.append(self.entries.len() as u64 + 1, &lines) {
                    self.poisoned = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        self.len += bytes.len() as u64;
        self.last_hash = prev;
        self.entries.extend(stored.iter().cloned());
        #[cfg(feature = "crash-hooks")]
        crate::faults::after_append();
        Ok(stored)
    }

    /// All entries of the run, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>, JournalError> {
        Ok(self.entries.clone())
    }

    /// Borrow the entries without copying.
    pub fn entries_ref(&self) -> &[Entry] {
        &self.entries
    }

    /// Mark the run finished with an outcome (e.g. "succeeded", "rolled_back",
    /// "aborted"), stamped with the wall clock, so `resume` skips it. Records the entry
    /// count and last hash so `verify` notices entries removed from the end.
    pub fn finish(&mut self, outcome: &str) -> Result<(), JournalError> {
        self.finish_at(outcome, timefmt::now_ms())
    }

    /// [`Journal::finish`] with the finish time given (unix ms).
    pub fn finish_at(&mut self, outcome: &str, finished_ms: u64) -> Result<(), JournalError> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                run_id: self.run_id.clone(),
                cause: cause.clone(),
            });
        }
        if let Some(done) = &self.meta.outcome {
            return Err(JournalError::Finished {
                run_id: self.run_id.clone(),
                outcome: done.clone(),
            });
        }
        if outcome.trim().is_empty() {
            return Err(JournalError::InvalidEntry("the outcome is empty".into()));
        }
        let mut meta = self.meta.clone();
        meta.finished_ms = Some(finished_ms);
        meta.outcome = Some(outcome.to_owned());
        meta.entries_at_finish = Some(self.len());
        meta.last_hash_at_finish = Some(self.last_hash.clone());
        match &mut self.sink {
            Sink::File { .. } => write_meta(&self.dir, &mut meta)?,
            Sink::Postgres(w) => {
                meta.seal = meta.compute_seal();
                w.finish(&meta)?;
            }
        }
        self.meta = meta;
        tracing::info!(run_id = %self.run_id, outcome, "journal run finished");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_can_move_into_an_engine_task() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Journal>();
        send_sync::<JournalError>();
    }

    #[test]
    fn torn_file_names_round_trip() {
        assert_eq!(torn_file_name(1234), "torn-000000001234.bin");
        assert_eq!(parse_torn_file_name(&torn_file_name(1234)), Some(1234));
        for other in ["torn-.bin", "torn-12x.bin", "lock", "torn-1.bin.tmp"] {
            assert_eq!(parse_torn_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn run_ids_are_plain_names() {
        assert!(check_run_id("20261127T031500Z-checkout-1a2b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x\0y"] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn release_names_become_safe_id_parts() {
        assert_eq!(id_safe_name("checkout"), "checkout");
        assert_eq!(id_safe_name("Pay ments/v2"), "Pay-ments-v2");
        assert_eq!(id_safe_name("../.."), "release");
        assert_eq!(id_safe_name(&"x".repeat(100)).len(), 48);
        let id = new_run_id("checkout", 1_795_749_300_000);
        assert!(id.starts_with("20261127T031500Z-checkout-"), "{id}");
        assert!(check_run_id(&id).is_ok());
    }
}
