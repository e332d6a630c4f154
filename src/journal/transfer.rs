//! Moving finished runs between the file journal and PostgreSQL (`cutover journal export`
//! and `import`), the chain checked both ways: every run is verified where it is read
//! (a run that does not verify stops the move before anything is written), written
//! byte for byte (the stored lines and the sealed record), then read back where it was
//! written and verified again to the same entry count and last hash. A run already at the
//! destination with the same last hash is left as it is; one with another is refused.
//! Unfinished runs are left where they are (an engine may still resume them there) and
//! named in the result.

use std::path::Path;

use serde::Serialize;

use super::pg::PgStore;
use super::runs::RunRecord;
use super::{
    CREATING_PREFIX, JOURNAL_FILE, JournalError, RunMeta, StoreRef, fs, list_runs, read_run,
    runs_dir, write_meta,
};

/// What happened to one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    pub run_id: String,
    pub entries: u64,
    pub last_hash: String,
    /// `copied`, `already there` or `unfinished: left where it is`.
    pub result: String,
}

/// The finished runs of `from` (or run `only`), each verified, and the unfinished left out.
fn sources(
    from: StoreRef<'_>,
    only: Option<&str>,
) -> Result<(Vec<RunRecord>, Vec<Moved>), JournalError> {
    let mut runs = list_runs(from)?;
    if let Some(id) = only {
        runs.retain(|r| r.run_id == id);
        if runs.is_empty() {
            // Names the run and the journal, as every other reader does.
            read_run(from, id)?;
        }
    }
    let (mut records, mut left) = (Vec::new(), Vec::new());
    for s in runs.into_iter().rev() {
        if let Some(damage) = &s.damage {
            return Err(JournalError::InvalidEntry(format!(
                "run {} in {} is damaged ({damage}); nothing was moved: `cutover audit verify {}` shows why, or move the others one by one with --run",
                s.run_id,
                from.label(),
                s.run_id
            )));
        }
        if !s.is_finished() {
            left.push(Moved {
                run_id: s.run_id,
                entries: s.entries,
                last_hash: String::new(),
                result: "unfinished: left where it is".into(),
            });
            continue;
        }
        let rec = read_run(from, &s.run_id)?;
        if let Some(p) = &rec.verification.problem {
            return Err(JournalError::InvalidEntry(format!(
                "run {} in {} does not verify ({} at seq {}: {}); nothing was moved",
                s.run_id,
                from.label(),
                p.kind,
                p.seq,
                p.detail
            )));
        }
        records.push(rec);
    }
    Ok((records, left))
}

/// The sealed record of a verified, finished run (equal to the one it was read from: the
/// verification checked the seal, the entry count and the last hash against it).
fn meta_of(rec: &RunRecord) -> RunMeta {
    let s = &rec.summary;
    let mut meta = RunMeta::started(&s.run_id, &s.release, &s.release_file_sha256, s.started_ms);
    meta.finished_ms = s.finished_ms;
    meta.outcome = s.outcome.clone();
    meta.entries_at_finish = Some(rec.verification.entries);
    meta.last_hash_at_finish = Some(rec.verification.last_hash.clone());
    meta.seal = meta.compute_seal();
    meta
}

/// Read `run_id` back at `to` and compare it with what was written.
fn check_written(to: StoreRef<'_>, rec: &RunRecord) -> Result<(), JournalError> {
    let back = read_run(to, &rec.summary.run_id)?;
    let (w, b) = (&rec.verification, &back.verification);
    if b.problem.is_some() || b.entries != w.entries || b.last_hash != w.last_hash {
        return Err(JournalError::InvalidEntry(format!(
            "run {} read back from {} does not match what was written ({} entries, last hash {}; read {} entries, last hash {}, {:?})",
            w.run_id,
            to.label(),
            w.entries,
            w.last_hash,
            b.entries,
            b.last_hash,
            b.problem
        )));
    }
    Ok(())
}

/// Whether `rec` is already at `to`: `Some(true)` the same, `Some(false)` another run
/// under its id (refused), `None` not there.
fn already(to: StoreRef<'_>, rec: &RunRecord) -> Option<bool> {
    let there = read_run(to, &rec.summary.run_id).ok()?;
    Some(
        there.verification.last_hash == rec.verification.last_hash
            && there.verification.entries == rec.verification.entries,
    )
}

fn moved(rec: &RunRecord, result: &str) -> Moved {
    Moved {
        run_id: rec.summary.run_id.clone(),
        entries: rec.verification.entries,
        last_hash: rec.verification.last_hash.clone(),
        result: result.into(),
    }
}

/// Copy `from`'s finished runs (or run `only`) to `to`, checked both ways.
pub fn copy(
    from: StoreRef<'_>,
    to: StoreRef<'_>,
    only: Option<&str>,
) -> Result<Vec<Moved>, JournalError> {
    let (records, mut out) = sources(from, only)?;
    let mut done = Vec::new();
    for rec in &records {
        match already(to, rec) {
            Some(true) => {
                done.push(moved(rec, "already there"));
                continue;
            }
            Some(false) => {
                return Err(JournalError::InvalidEntry(format!(
                    "{} already holds another run {} (a different chain); it was not replaced",
                    to.label(),
                    rec.summary.run_id
                )));
            }
            None => {}
        }
        let meta = meta_of(rec);
        match to {
            StoreRef::File(dir) => write_file_run(dir, meta, rec)?,
            StoreRef::Postgres(pg) => write_pg_run(pg, &meta, rec)?,
        }
        check_written(to, rec)?;
        done.push(moved(rec, "copied"));
    }
    done.append(&mut out);
    Ok(done)
}

/// A finished run as files: built under `.creating-<id>`, renamed into place, durable.
fn write_file_run(
    state_dir: &Path,
    mut meta: RunMeta,
    rec: &RunRecord,
) -> Result<(), JournalError> {
    let runs = runs_dir(state_dir);
    fs::create_dir_durable(&runs)?;
    let id = &rec.summary.run_id;
    let staging = runs.join(format!("{CREATING_PREFIX}{id}"));
    let _ = std::fs::remove_dir_all(&staging);
    fs::create_dir_durable(&staging)?;
    let mut bytes = Vec::new();
    for line in &rec.raw_lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    fs::write_atomic(&staging.join(JOURNAL_FILE), &bytes)?;
    write_meta(&staging, &mut meta)?;
    let dir = runs.join(id);
    std::fs::rename(&staging, &dir).map_err(fs::io_err("rename into place", &dir))?;
    fs::sync_dir(&runs)
}

fn write_pg_run(pg: &PgStore, meta: &RunMeta, rec: &RunRecord) -> Result<(), JournalError> {
    super::pg::insert_finished(pg, meta, &rec.raw_lines)
}
