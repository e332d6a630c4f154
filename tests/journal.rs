//! The journal: durability, recovery after a crash at any byte, tamper detection, the
//! writer lock, and the `history` / `audit` / `audit verify` commands.

use std::path::{Path, PathBuf};

use cutover::journal::{self, Entry, Journal, JournalError, NewEntry, RunState};
use serde_json::json;

fn new(
    kind: &str,
    operator: Option<&str>,
    service: Option<&str>,
    payload: serde_json::Value,
) -> NewEntry {
    NewEntry {
        at_ms: 1_795_749_300_000,
        operator: operator.map(str::to_owned),
        kind: kind.into(),
        service: service.map(str::to_owned),
        payload,
    }
}

fn journal_path(state: &Path, run_id: &str) -> PathBuf {
    state.join("runs").join(run_id).join("journal.jsonl")
}

#[test]
fn append_then_reopen_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create(state, "checkout", "ab12").unwrap();
    let id = j.run_id().to_owned();
    let mut written: Vec<Entry> = Vec::new();
    written.push(
        j.append(new(
            "command",
            Some("alice"),
            None,
            json!({"summary": "start", "reason": "window open"}),
        ))
        .unwrap(),
    );
    written.push(
        j.append(new(
            "decision",
            None,
            Some("api"),
            json!({"weight": 10, "p": 0.125}),
        ))
        .unwrap(),
    );
    written.push(
        j.append(new("verdict", None, Some("api"), json!("pass")))
            .unwrap(),
    );
    assert_eq!(written.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(written[0].prev_hash, journal::GENESIS_HASH);
    assert_eq!(written[1].prev_hash, written[0].hash);
    assert_eq!(j.entries().unwrap(), written);
    drop(j);

    let mut j = Journal::open(state, &id).unwrap();
    assert_eq!(j.recovered_tail(), None);
    assert_eq!(j.entries().unwrap(), written);
    assert_eq!(j.release(), "checkout");
    let e4 = j.append(new("step", None, Some("api"), json!({}))).unwrap();
    assert_eq!(
        (e4.seq, e4.prev_hash.as_str()),
        (4, written[2].hash.as_str())
    );
    j.finish("succeeded").unwrap();
    assert!(matches!(
        j.append(new("step", None, None, json!({}))),
        Err(JournalError::Finished { .. })
    ));
    drop(j);

    assert!(matches!(
        Journal::open(state, &id),
        Err(JournalError::Finished { .. })
    ));
    let report = journal::verify(state, None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.runs[0].entries, 4);
    assert_eq!(report.runs[0].last_hash, e4.hash);
    let runs = journal::list_runs(state).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Finished);
    assert_eq!(runs[0].entries, 4);
    assert!(journal_path(state, &id).is_file());
}
