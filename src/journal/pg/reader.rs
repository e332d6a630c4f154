//! Reading runs from PostgreSQL: the stored lines are joined back into the file journal's
//! bytes and checked by the same code (`runs::record_of`, `chain::check`), so a run reads,
//! lists and verifies the same on both backends. Nothing here takes a lease.

use std::path::PathBuf;

use super::{PgStore, off_runtime};
use crate::journal::runs::{self, LeaseHeld, RunRecord, RunState, RunSummary};
use crate::journal::{JournalError, RunMeta};

/// Where a run's record lives, for messages (`postgres://HOST:PORT/DB run ID`).
fn place(store: &PgStore, run_id: &str) -> PathBuf {
    PathBuf::from(format!("{} run {run_id}", store.label()))
}

fn meta_of(store: &PgStore, run_id: &str, text: &str) -> Result<RunMeta, JournalError> {
    crate::journal::parse_meta(&place(store, run_id), text.as_bytes())
}

/// The lease row as read: whether it holds now on the database's clock, its epoch and
/// its expiry (Unix ms on that clock).
type LeaseRow = (Option<bool>, Option<i64>, Option<i64>);

/// The lease columns every run query selects, after its own (`l` is the lease row).
const LEASE_COLUMNS: &str = "l.expires_at > clock_timestamp(), l.epoch,
                    (extract(epoch FROM l.expires_at) * 1000)::bigint";

fn lease_of(row: &postgres::Row, first: usize) -> LeaseRow {
    (row.get(first), row.get(first + 1), row.get(first + 2))
}

fn state_of(meta: &RunMeta, (leased, epoch, until): LeaseRow) -> RunState {
    if meta.outcome.is_some() {
        RunState::Finished
    } else if leased == Some(true) {
        // Held by a live engine, maybe on another machine: no pid to show, its lease.
        RunState::Running {
            pid: None,
            lease: epoch.zip(until).map(|(epoch, until)| LeaseHeld {
                epoch,
                until_ms: until.max(0) as u64,
            }),
        }
    } else {
        RunState::Interrupted
    }
}

/// A run's stored lines, in order, each followed by a newline.
pub(super) fn lines_of(
    client: &mut postgres::Client,
    run_id: &str,
) -> Result<Vec<u8>, postgres::Error> {
    let rows = off_runtime(|| {
        client.query(
            "SELECT line FROM cutover_journal_entries WHERE run_id = $1 ORDER BY seq",
            &[&run_id],
        )
    })?;
    let mut bytes = Vec::new();
    for r in rows {
        let line: &str = r.get(0);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Every run, newest first; a run whose record cannot be read is listed with `damage`.
pub(crate) fn list_runs(store: &PgStore) -> Result<Vec<RunSummary>, JournalError> {
    let mut client = store.connect()?;
    let rows = off_runtime(|| {
        client.query(
            format!(
                "SELECT r.run_id, r.meta,
                    (SELECT count(*) FROM cutover_journal_entries e WHERE e.run_id = r.run_id),
                    (SELECT line FROM cutover_journal_entries e WHERE e.run_id = r.run_id AND e.seq = 1),
                    {LEASE_COLUMNS}
               FROM cutover_journal_runs r
               LEFT JOIN cutover_journal_leases l ON l.run_id = r.run_id"
            )
            .as_str(),
            &[],
        )
    })
    .map_err(|e| store.error("list the runs in", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let run_id: String = r.get(0);
        let text: String = r.get(1);
        let entries: i64 = r.get(2);
        let first: Option<String> = r.get(3);
        let lease = lease_of(&r, 4);
        let labels = first
            .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .filter(|v| v["kind"] == crate::journal::RELEASE_ENTRY)
            .map_or((None, None), |v| runs::labels_of_payload(&v["payload"]));
        let summary = meta_of(store, &run_id, &text).and_then(|meta| {
            let state = state_of(&meta, lease);
            runs::summary_of(
                &run_id,
                meta,
                &place(store, &run_id),
                entries.max(0) as u64,
                labels,
                state,
            )
        });
        out.push(summary.unwrap_or_else(|e| runs::damaged_summary(&run_id, &e)));
    }
    runs::newest_first(&mut out);
    Ok(out)
}

/// One run read in full and verified.
pub(crate) fn read_run(store: &PgStore, run_id: &str) -> Result<RunRecord, JournalError> {
    let mut client = store.connect()?;
    let row = off_runtime(|| {
        client.query_opt(
            format!(
                "SELECT r.meta, {LEASE_COLUMNS}
                   FROM cutover_journal_runs r
                   LEFT JOIN cutover_journal_leases l ON l.run_id = r.run_id
                  WHERE r.run_id = $1"
            )
            .as_str(),
            &[&run_id],
        )
    })
    .map_err(|e| store.error("read a run from", e))?;
    let Some(row) = row else {
        return Err(JournalError::UnknownPgRun {
            journal: store.label().to_string(),
            run_id: run_id.to_string(),
        });
    };
    let (text, lease): (String, LeaseRow) = (row.get(0), lease_of(&row, 1));
    let bytes = lines_of(&mut client, run_id).map_err(|e| store.error("read a run from", e))?;
    let meta = meta_of(store, run_id, &text)?;
    let state = state_of(&meta, lease);
    runs::record_of(run_id, meta, &place(store, run_id), &bytes, state)
}

/// The newest entry of `kind` in run `run_id` (`None`: there is none; no such run is
/// an error, as in [`read_run`]),
/// without reading the rest of the run: what a client looking for the run's leader asks
/// every second or two while its server is gone. Not verified against the chain (a
/// reader who needs that reads the whole run).
pub(crate) fn newest_entry(
    store: &PgStore,
    run_id: &str,
    kind: &str,
) -> Result<Option<crate::journal::Entry>, JournalError> {
    let mut client = store.connect()?;
    // Stored lines are compact JSON with `"kind":"…"` as a member; inside a string the
    // quotes would be escaped, so the pattern only matches the member itself.
    let pattern = format!("%\"kind\":{}%", serde_json::Value::from(kind));
    let rows = off_runtime(|| {
        client.query(
            "SELECT line FROM cutover_journal_entries
              WHERE run_id = $1 AND line LIKE $2 ORDER BY seq DESC LIMIT 4",
            &[&run_id, &pattern],
        )
    })
    .map_err(|e| store.error("read a run from", e))?;
    for r in rows {
        let line: &str = r.get(0);
        let entry: crate::journal::Entry =
            serde_json::from_str(line).map_err(|e| JournalError::Database {
                action: "read a run from",
                journal: store.label().to_string(),
                detail: format!("run {run_id}: an entry that is not a journal line: {e}"),
            })?;
        if entry.kind == kind {
            return Ok(Some(entry));
        }
    }
    let known = off_runtime(|| {
        client.query_one(
            "SELECT EXISTS (SELECT 1 FROM cutover_journal_runs WHERE run_id = $1)",
            &[&run_id],
        )
    })
    .map_err(|e| store.error("read a run from", e))?;
    if !known.get::<_, bool>(0) {
        return Err(JournalError::UnknownPgRun {
            journal: store.label().to_string(),
            run_id: run_id.to_string(),
        });
    }
    Ok(None)
}
