//! Read-only views of the runs under a state directory: listing (`history`), reading one
//! run with its entries (`audit`), verifying chains (`audit verify`). Nothing here
//! modifies a file or holds the writer lock (a momentary shared `flock` tells a running
//! run from an interrupted one), so it is safe next to a running engine, whose in-flight
//! last line then shows as a torn tail.

use std::io;
use std::path::Path;

use serde::Serialize;

use super::chain::{self, ChainProblem, FinishAnchor, TornTail};
use super::entry::Entry;
use super::fs::{RunLock, io_err};
use super::{
    CREATING_PREFIX, JOURNAL_FILE, JournalError, LOCK_FILE, META_FILE, RunMeta, check_run_id,
    read_meta, runs_dir,
};

/// Whether a run is done, being written now, or was left unfinished by a stopped engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RunState {
    Finished,
    /// A live process holds the run's writer lock (file journal: `pid`), or an engine
    /// holds its lease, perhaps on another machine (PostgreSQL: `lease`).
    Running {
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseHeld>,
    },
    /// Not finished and nobody writing it: `cutover resume` picks it up.
    Interrupted,
}

/// The lease a running PostgreSQL-journaled run is held by, as the database sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseHeld {
    /// The fencing epoch of the engine writing the run.
    pub epoch: i64,
    /// When the lease expires unless renewed, Unix milliseconds on the database's clock.
    pub until_ms: u64,
}

impl RunState {
    /// `running (pid 4242)`, `running (leased, epoch 2, until 2026-12-05T05:10:00Z)` or
    /// `running` for a running run; `None` otherwise.
    pub fn running_text(&self) -> Option<String> {
        match self {
            RunState::Running { pid: Some(pid), .. } => Some(format!("running (pid {pid})")),
            RunState::Running {
                lease: Some(l),
                pid: None,
            } => Some(format!(
                "running (leased, epoch {}, until {})",
                l.epoch,
                super::timefmt::iso8601_s(l.until_ms)
            )),
            RunState::Running { .. } => Some("running".into()),
            _ => None,
        }
    }
}

/// One run, as `history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub release: String,
    pub release_file_sha256: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub outcome: Option<String>,
    /// The environment the run deployed to (`--env`), from its release entry; `None`
    /// for a release without environments.
    pub environment: Option<String>,
    /// The change ticket the run shipped under (`[release] change`, `--change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// Complete lines in the journal (not verified; `verify` does that).
    pub entries: u64,
    #[serde(flatten)]
    pub state: RunState,
    /// Why the run cannot be trusted or read, if so: `run.json` unreadable (the other
    /// fields are then empty placeholders) or edited after it was written.
    pub damage: Option<String>,
}

impl RunSummary {
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }
}

/// The verified chain of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunVerification {
    pub run_id: String,
    pub release: String,
    /// Entries verified (up to the first problem).
    pub entries: u64,
    /// Hash of the last verified entry: note it elsewhere (ticket, CI log) to anchor the
    /// chain, since anyone able to edit the files could rewrite the whole chain.
    pub last_hash: String,
    pub finished: bool,
    /// An incomplete last line (interrupted write) of an unfinished run: not an entry,
    /// not damage; `open` cuts it off on resume.
    pub torn_tail: Option<TornTail>,
    pub problem: Option<ChainProblem>,
}

impl RunVerification {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub runs: Vec<RunVerification>,
}

impl VerifyReport {
    /// Every chain intact.
    pub fn is_ok(&self) -> bool {
        self.runs.iter().all(RunVerification::is_ok)
    }

    /// The runs with a problem.
    pub fn failures(&self) -> impl Iterator<Item = &RunVerification> {
        self.runs.iter().filter(|r| !r.is_ok())
    }
}

/// One run read in full: its summary, the verified entries and the verification.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub summary: RunSummary,
    /// Entries up to the first problem (all of them when the chain is intact).
    pub entries: Vec<Entry>,
    /// The stored lines of `entries`, byte for byte (what `audit --output json` prints,
    /// so a third party can recompute every hash).
    pub raw_lines: Vec<String>,
    pub verification: RunVerification,
}

fn state_of(meta: &RunMeta, dir: &Path) -> Result<RunState, JournalError> {
    if meta.outcome.is_some() {
        return Ok(RunState::Finished);
    }
    Ok(match RunLock::holder(&dir.join(LOCK_FILE))? {
        Some(pid) => RunState::Running { pid, lease: None },
        None => RunState::Interrupted,
    })
}

fn count_lines(path: &Path) -> Result<u64, JournalError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// The environment and the change ticket named by a run's first entry (the release
/// entry), if any. Read without verifying the chain (as `entries` is counted): `audit
/// verify` does that.
fn labels_of(journal: &Path) -> (Option<String>, Option<String>) {
    first_payload(journal).map_or((None, None), |p| labels_of_payload(&p))
}

fn first_payload(journal: &Path) -> Option<serde_json::Value> {
    use std::io::{BufRead, Read};
    let f = std::fs::File::open(journal).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(f)
        .take(1 << 24)
        .read_line(&mut first)
        .ok()?;
    let mut v: serde_json::Value = serde_json::from_str(&first).ok()?;
    if v["kind"] != super::RELEASE_ENTRY {
        return None;
    }
    Some(v["payload"].take())
}

/// A string field of the release entry's payload among `entries`.
fn release_field(entries: &[Entry], field: &str) -> Option<String> {
    entries
        .iter()
        .find(|e| e.kind == super::RELEASE_ENTRY)
        .and_then(|e| e.payload[field].as_str().map(str::to_string))
}

fn summarize(run_id: &str, dir: &Path) -> RunSummary {
    let read = || -> Result<RunSummary, JournalError> {
        let meta = read_meta(&dir.join(META_FILE))?;
        let entries = count_lines(&dir.join(JOURNAL_FILE))?;
        let labels = labels_of(&dir.join(JOURNAL_FILE));
        let state = state_of(&meta, dir)?;
        summary_of(run_id, meta, &dir.join(META_FILE), entries, labels, state)
    };
    read().unwrap_or_else(|e| damaged_summary(run_id, &e))
}

/// A run's summary from its record (read from `place`), counted lines, the release
/// entry's labels and its state: the same for the file and the PostgreSQL journal.
pub(super) fn summary_of(
    run_id: &str,
    meta: RunMeta,
    place: &Path,
    entries: u64,
    (environment, change): (Option<String>, Option<String>),
    state: RunState,
) -> Result<RunSummary, JournalError> {
    if meta.run_id != run_id {
        return Err(JournalError::BadMeta {
            path: place.to_path_buf(),
            detail: format!(
                "it names run {} but lives in directory {run_id}",
                meta.run_id
            ),
        });
    }
    let damage =
        (!meta.seal_ok()).then(|| format!("{}: {}", place.display(), chain::meta_altered().detail));
    Ok(RunSummary {
        run_id: run_id.to_owned(),
        release: meta.release,
        release_file_sha256: meta.release_file_sha256,
        started_ms: meta.started_ms,
        finished_ms: meta.finished_ms,
        outcome: meta.outcome,
        environment,
        change,
        entries,
        state,
        damage,
    })
}

/// A run that cannot be read, listed with why rather than hidden.
pub(super) fn damaged_summary(run_id: &str, e: &JournalError) -> RunSummary {
    RunSummary {
        run_id: run_id.to_owned(),
        release: String::new(),
        release_file_sha256: String::new(),
        started_ms: 0,
        finished_ms: None,
        outcome: None,
        environment: None,
        change: None,
        entries: 0,
        state: RunState::Interrupted,
        damage: Some(e.to_string()),
    }
}

/// The environment and change ticket of a release entry's payload.
pub(super) fn labels_of_payload(p: &serde_json::Value) -> (Option<String>, Option<String>) {
    (
        p["environment"].as_str().map(str::to_string),
        p["change"].as_str().map(str::to_string),
    )
}

/// Newest first: by start time, then id (ids start with the start time too).
pub(super) fn newest_first(out: &mut [RunSummary]) {
    out.sort_by(|a, b| {
        b.started_ms
            .cmp(&a.started_ms)
            .then_with(|| b.run_id.cmp(&a.run_id))
    });
}

/// All runs under a state dir, newest first. A run directory that cannot be read is
/// listed with `damage` set rather than hidden. A state dir without runs yields an empty
/// list.
pub(super) fn list_file_runs(state_dir: &Path) -> Result<Vec<RunSummary>, JournalError> {
    let runs = runs_dir(state_dir);
    let rd = match std::fs::read_dir(&runs) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &runs)(e)),
    };
    let mut out = Vec::new();
    for dent in rd {
        let dent = dent.map_err(io_err("list", &runs))?;
        let name = dent.file_name();
        let Some(name) = name.to_str() else {
            continue; // not a name cutover would create
        };
        if name.starts_with(CREATING_PREFIX) || check_run_id(name).is_err() {
            continue;
        }
        if !dent.path().is_dir() {
            continue;
        }
        out.push(summarize(name, &dent.path()));
    }
    newest_first(&mut out);
    Ok(out)
}

/// Read one run: its summary, entries and chain verification. Read-only.
pub(super) fn read_file_run(state_dir: &Path, run_id: &str) -> Result<RunRecord, JournalError> {
    check_run_id(run_id)?;
    let dir = runs_dir(state_dir).join(run_id);
    if !dir.is_dir() {
        return Err(JournalError::UnknownRun {
            state_dir: state_dir.to_path_buf(),
            run_id: run_id.to_owned(),
        });
    }
    let meta = read_meta(&dir.join(META_FILE))?;
    let path = dir.join(JOURNAL_FILE);
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    let state = state_of(&meta, &dir)?;
    record_of(run_id, meta, &dir.join(META_FILE), &bytes, state)
}

/// One run read in full from its record (read from `place`) and its journal's bytes:
/// the same checks for the file and the PostgreSQL journal.
pub(super) fn record_of(
    run_id: &str,
    meta: RunMeta,
    place: &Path,
    bytes: &[u8],
    state: RunState,
) -> Result<RunRecord, JournalError> {
    let anchor = match (&meta.entries_at_finish, &meta.last_hash_at_finish) {
        (Some(entries), Some(last_hash)) => Some(FinishAnchor {
            entries: *entries,
            last_hash,
        }),
        _ => None,
    };
    let mut checked = chain::check(bytes, anchor);
    if !meta.seal_ok() {
        // The anchors themselves are untrustworthy: that is the first thing to fix.
        checked.problem = Some(chain::meta_altered());
    }
    let finished = meta.outcome.is_some();
    if meta.outcome.is_some() && anchor.is_none() {
        return Err(JournalError::BadMeta {
            path: place.to_path_buf(),
            detail: "it records an outcome but not the entry count and last hash".into(),
        });
    }
    let verification = RunVerification {
        run_id: run_id.to_owned(),
        release: meta.release.clone(),
        entries: checked.entries.len() as u64,
        last_hash: checked.last_hash.clone(),
        finished,
        torn_tail: checked.tail.clone(),
        problem: checked.problem.clone(),
    };
    let summary = RunSummary {
        run_id: run_id.to_owned(),
        release: meta.release,
        release_file_sha256: meta.release_file_sha256,
        started_ms: meta.started_ms,
        finished_ms: meta.finished_ms,
        outcome: meta.outcome,
        environment: release_field(&checked.entries, "environment"),
        change: release_field(&checked.entries, "change"),
        entries: bytes.iter().filter(|&&b| b == b'\n').count() as u64,
        state,
        damage: None,
    };
    let raw_lines = checked
        .spans
        .iter()
        .map(|r| String::from_utf8_lossy(&bytes[r.clone()]).into_owned())
        .collect();
    Ok(RunRecord {
        summary,
        raw_lines,
        entries: checked.entries,
        verification,
    })
}
