//! The journal: round trip, durability ordering, recovery after a crash at any byte
//! (including SIGKILLs of a real child process), tamper detection, the writer lock, and
//! the `history` / `audit` / `audit verify` commands.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cutover::journal::{
    self, Entry, Journal, JournalError, NewEntry, ProblemKind, RECOVERY_KIND, RunState,
};
use serde_json::json;

const T0: u64 = 1_795_749_300_000; // 2026-11-27T03:15:00Z

fn new(
    kind: &str,
    operator: Option<&str>,
    service: Option<&str>,
    payload: serde_json::Value,
) -> NewEntry {
    NewEntry {
        at_ms: T0,
        operator: operator.map(str::to_owned),
        kind: kind.into(),
        service: service.map(str::to_owned),
        payload,
    }
}

fn step(n: u64) -> NewEntry {
    NewEntry {
        at_ms: T0 + n * 1000,
        operator: None,
        kind: "step".into(),
        service: Some("api".into()),
        payload: json!({ "summary": format!("step {n}"), "weight": n }),
    }
}

fn journal_path(state: &Path, run_id: &str) -> PathBuf {
    state.join("runs").join(run_id).join("journal.jsonl")
}

/// Remove the saved torn tails of a run (tests that rewrite a journal by hand start over).
fn forget_torn(state: &Path, run_id: &str) {
    for d in fs::read_dir(state.join("runs").join(run_id)).unwrap() {
        let p = d.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("torn-")
        {
            fs::remove_file(p).unwrap();
        }
    }
}

fn lines(state: &Path, run_id: &str) -> Vec<String> {
    fs::read_to_string(journal_path(state, run_id))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(state: &Path, run_id: &str, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    fs::write(journal_path(state, run_id), s).unwrap();
}

/// A run with `n` step entries, finished or not; returns its id.
fn run_with(state: &Path, release: &str, n: u64, finish: bool) -> String {
    let mut j = Journal::create_at(state, release, "f00d", T0).unwrap();
    for i in 1..=n {
        j.append(step(i)).unwrap();
    }
    if finish {
        j.finish_at("succeeded", T0 + 60_000).unwrap();
    }
    j.run_id().to_owned()
}

fn problem(state: &Path, run_id: &str) -> journal::ChainProblem {
    let report = journal::verify(state, Some(run_id)).unwrap();
    assert!(!report.is_ok(), "expected damage: {report:?}");
    report.runs[0].problem.clone().unwrap()
}

#[test]
fn append_then_reopen_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create(state, "checkout", "ab12").unwrap();
    let id = j.run_id().to_owned();
    let mut written: Vec<Entry> = vec![
        j.append(new(
            "command",
            Some("alice"),
            None,
            json!({"summary": "start", "reason": "window open"}),
        ))
        .unwrap(),
        j.append(new(
            "decision",
            None,
            Some("api"),
            json!({"weight": 10, "p": 0.125, "nested": {"z": 1, "a": [true, null]}}),
        ))
        .unwrap(),
        j.append(new("verdict", None, Some("api"), json!("pass")))
            .unwrap(),
    ];
    assert_eq!(written.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(written[0].prev_hash, journal::GENESIS_HASH);
    assert_eq!(written[1].prev_hash, written[0].hash);
    assert_eq!(written[2].prev_hash, written[1].hash);
    assert_eq!(j.entries().unwrap(), written);
    assert_eq!(j.last_hash(), written[2].hash);
    drop(j);

    let mut j = Journal::open(state, &id).unwrap();
    assert_eq!(j.recovered_tail(), None);
    assert_eq!(j.entries().unwrap(), written);
    assert_eq!(j.release(), "checkout");
    written.push(j.append(step(4)).unwrap());
    assert_eq!(written[3].seq, 4);
    assert_eq!(written[3].prev_hash, written[2].hash);
    j.finish("succeeded").unwrap();
    assert!(matches!(
        j.append(step(5)),
        Err(JournalError::Finished { .. })
    ));
    assert!(matches!(
        j.finish("again"),
        Err(JournalError::Finished { .. })
    ));
    drop(j);

    let err = Journal::open(state, &id).unwrap_err();
    assert!(matches!(err, JournalError::Finished { .. }), "{err}");
    assert!(err.is_invalid_input());
    let rec = journal::read_run(state, &id).unwrap();
    assert_eq!(rec.entries, written);
    assert_eq!(rec.summary.outcome.as_deref(), Some("succeeded"));
    assert_eq!(rec.summary.release_file_sha256, "ab12");
    let report = journal::verify(state, None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.runs[0].entries, 4);
    assert_eq!(report.runs[0].last_hash, written[3].hash);
    let runs = journal::list_runs(state).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Finished);
    assert_eq!(runs[0].entries, 4);
}

#[test]
fn a_batch_is_chained_like_single_appends() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
    let one = j.append(step(1)).unwrap();
    assert!(j.append_batch(Vec::new()).unwrap().is_empty());
    let batch = j.append_batch(vec![step(2), step(3), step(4)]).unwrap();
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(batch[0].prev_hash, one.hash);
    assert_eq!(batch[2].prev_hash, batch[1].hash);
    assert_eq!(j.last_hash(), batch[2].hash);
    let bad = j.append_batch(vec![step(5), new(" ", None, None, json!({}))]);
    assert!(matches!(bad, Err(JournalError::InvalidEntry(_))));
    assert_eq!(j.len(), 4, "a rejected batch appends nothing");
    let id = j.run_id().to_owned();
    drop(j);
    let rec = journal::read_run(state, &id).unwrap();
    assert!(rec.verification.is_ok());
    assert_eq!(rec.entries[1..], batch[..]);
}

#[test]
fn float_payloads_read_back_exactly() {
    // Resume replays verdicts with their statistics: a p-value must come back bit for
    // bit (serde_json's default float parser is off by an ulp for many values; the
    // crate enables `float_roundtrip`).
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
    let mut rng = rand::rng();
    let values: Vec<f64> = (0..2000)
        .map(|i| match i % 3 {
            0 => rng.random::<f64>(),
            1 => rng.random::<f64>() * 1e6,
            _ => f64::from_bits(rng.random::<u64>() >> 2),
        })
        .filter(|x| x.is_finite())
        .collect();
    let written = j
        .append(new(
            "verdict",
            None,
            Some("api"),
            json!({ "values": values }),
        ))
        .unwrap();
    let id = j.run_id().to_owned();
    drop(j);
    let j = Journal::open(state, &id).unwrap();
    assert_eq!(j.entries_ref()[0], written);
}

#[test]
fn every_append_is_visible_to_a_fresh_reader_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
    for n in 1..=20 {
        let e = j.append(step(n)).unwrap();
        // A separate reader (fresh file handle) sees it, completely.
        let bytes = fs::read(journal_path(state, j.run_id())).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let rec = journal::read_run(state, j.run_id()).unwrap();
        assert_eq!(rec.entries.len() as u64, n);
        assert_eq!(rec.entries.last(), Some(&e));
        assert_eq!(rec.verification.torn_tail, None);
    }
}

#[test]
fn run_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let id = run_with(dir.path(), "checkout", 1, false);
    let run_dir = dir.path().join("runs").join(&id);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run_dir), 0o700);
    assert_eq!(mode(&run_dir.join("journal.jsonl")), 0o600);
    assert_eq!(mode(&run_dir.join("run.json")), 0o600);
    // No staging directories left behind.
    let names: Vec<_> = fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [id]);
}

#[test]
fn runs_are_listed_newest_first_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    assert!(journal::list_runs(state).unwrap().is_empty());
    assert_eq!(journal::latest_unfinished(state).unwrap(), None);

    let old = {
        let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
        j.append(step(1)).unwrap();
        j.run_id().to_owned()
    };
    let done = run_with(state, "payments", 3, true);
    let mut live = Journal::create_at(state, "search", "beef", T0 + 3_600_000).unwrap();
    live.append(step(1)).unwrap();
    // `run_with` stamps T0 too; its id sorts after `old`'s only by the random suffix, so
    // compare by content rather than assume.
    let runs = journal::list_runs(state).unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].run_id, live.run_id());
    assert_eq!(runs[0].release, "search");
    assert_eq!(
        runs[0].state,
        RunState::Running {
            pid: Some(std::process::id()),
            lease: None,
        }
    );
    let by_id = |id: &str| runs.iter().find(|r| r.run_id == id).unwrap().clone();
    assert_eq!(by_id(&old).state, RunState::Interrupted);
    assert_eq!(by_id(&done).state, RunState::Finished);
    assert_eq!(by_id(&done).entries, 3);
    assert_eq!(by_id(&done).finished_ms, Some(T0 + 60_000));
    assert_eq!(
        journal::latest_unfinished(state).unwrap().unwrap().run_id,
        live.run_id()
    );
    drop(live);
    let runs = journal::list_runs(state).unwrap();
    assert_eq!(runs[0].state, RunState::Interrupted);
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut first = Journal::create(state, "checkout", "f00d").unwrap();
    first.append(step(1)).unwrap();
    let id = first.run_id().to_owned();
    let err = Journal::open(state, &id).unwrap_err();
    match &err {
        JournalError::Locked { run_id, pid } => {
            assert_eq!(run_id, &id);
            assert_eq!(*pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id()))
    );
    // The refused opener changed nothing.
    first.append(step(2)).unwrap();
    drop(first);
    let j = Journal::open(state, &id).unwrap();
    assert_eq!(j.len(), 2);
}

#[test]
fn child_processes_do_not_inherit_the_writer_lock() {
    // The engine spawns services; if they inherited the lock's descriptor, a crashed
    // engine's services would keep the run locked against `resume`.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let j = Journal::create(state, "checkout", "f00d").unwrap();
    let id = j.run_id().to_owned();
    let mut service = Command::new("sleep").arg("30").spawn().unwrap();
    drop(j);
    let reopened = Journal::open(state, &id);
    service.kill().unwrap();
    service.wait().unwrap();
    assert!(reopened.is_ok(), "{:?}", reopened.err());
}

#[test]
fn unknown_and_invalid_run_ids_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Journal::open(dir.path(), "20261127T031500Z-nope-0000").unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun { .. }), "{err}");
    assert!(err.to_string().contains("cutover history"));
    let err = Journal::open(dir.path(), "../../etc").unwrap_err();
    assert!(matches!(err, JournalError::InvalidRunId(_)), "{err}");
    assert!(journal::verify(dir.path(), Some("x/y")).is_err());
    assert!(matches!(
        journal::read_run(dir.path(), "nope"),
        Err(JournalError::UnknownRun { .. })
    ));
}

#[test]
fn a_torn_last_line_is_cut_off_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 3, false);
    let path = journal_path(state, &id);
    let intact = fs::read(&path).unwrap();
    // Simulate a crash in the middle of writing entry 4: cut a real line anywhere.
    let (_, line4) = {
        let mut j = Journal::open(state, &id).unwrap();
        let e = j.append(step(4)).unwrap();
        (e, fs::read(&path).unwrap()[intact.len()..].to_vec())
    };
    for cut in [1, line4.len() / 2, line4.len() - 1] {
        forget_torn(state, &id);
        let mut torn = intact.clone();
        torn.extend_from_slice(&line4[..cut]);
        fs::write(&path, &torn).unwrap();

        // A read-only reader notes the tail but calls the chain intact.
        let report = journal::verify(state, Some(&id)).unwrap();
        assert!(report.is_ok(), "{report:?}");
        let tail = report.runs[0].torn_tail.clone().unwrap();
        assert_eq!((tail.offset, tail.len), (intact.len() as u64, cut as u64));

        // Reopening cuts it off and says so, in the API and in the journal itself.
        let mut j = Journal::open(state, &id).unwrap();
        assert_eq!(j.recovered_tail(), Some(&tail));
        assert_eq!(j.len(), 4, "3 entries + the recovery record");
        let rec = j.entries_ref().last().unwrap().clone();
        assert_eq!(rec.kind, RECOVERY_KIND);
        assert_eq!(rec.operator, None);
        assert_eq!(rec.payload["torn_bytes"], json!(cut));
        // The cut bytes are kept as evidence, named in the entry.
        let saved = rec.payload["saved_as"].as_str().unwrap();
        assert_eq!(
            fs::read(state.join("runs").join(&id).join(saved)).unwrap(),
            line4[..cut]
        );
        assert!(
            rec.payload["summary"]
                .as_str()
                .unwrap()
                .contains("interrupted write")
        );
        let e = j.append(step(5)).unwrap();
        assert_eq!(e.seq, 5);
        drop(j);
        let report = journal::verify(state, Some(&id)).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.runs[0].torn_tail, None);
        assert_eq!(report.runs[0].entries, 5);
        fs::write(&path, &intact).unwrap();
    }
}

#[test]
fn a_crash_at_any_byte_reopens_to_a_valid_chain() {
    // Cut a journal at every byte of its last line and around every earlier line end
    // (what a crash mid-write can leave), and reopen. (Every byte of the whole file
    // would be the same cases again, at ~30 ms of fsyncs each.)
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 3, false);
    let path = journal_path(state, &id);
    let full = fs::read(&path).unwrap();
    let ends: Vec<usize> = full
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let last_start = ends[ends.len() - 2];
    let mut cuts: Vec<usize> = (last_start..=full.len()).collect();
    cuts.push(0);
    for e in &ends[..ends.len() - 1] {
        cuts.extend([e - 1, *e, e + 1]);
    }
    for cut in cuts {
        forget_torn(state, &id);
        fs::write(&path, &full[..cut]).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count() as u64;
        let torn = !ends.contains(&cut) && cut != 0;
        let mut j = Journal::open(state, &id).unwrap_or_else(|e| panic!("cut at byte {cut}: {e}"));
        assert_eq!(j.recovered_tail().is_some(), torn, "cut at byte {cut}");
        assert_eq!(j.len(), complete + u64::from(torn), "cut at byte {cut}");
        j.append(step(9)).unwrap();
        drop(j);
        let report = journal::verify(state, Some(&id)).unwrap();
        assert!(report.is_ok(), "cut at byte {cut}: {report:?}");
    }
}

#[test]
fn a_crash_during_recovery_still_gets_the_cut_reported() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 2, false);
    let path = journal_path(state, &id);
    let intact = fs::read(&path).unwrap();
    // The state a crash leaves between "save the torn bytes" and "append the report":
    // the journal already cut, the bytes saved, no entry yet.
    let saved = format!("torn-{:012}.bin", intact.len());
    fs::write(
        state.join("runs").join(&id).join(&saved),
        b"{\"seq\":3,\"at",
    )
    .unwrap();
    let j = Journal::open(state, &id).unwrap();
    assert_eq!(j.len(), 3);
    let rec = &j.entries_ref()[2];
    assert_eq!(rec.kind, RECOVERY_KIND);
    assert_eq!(rec.payload["saved_as"], json!(saved));
    assert_eq!(rec.payload["torn_offset"], json!(intact.len()));
    assert_eq!(rec.payload["torn_bytes"], json!(12));
    drop(j);
    // Reported once, not again on every open.
    let j = Journal::open(state, &id).unwrap();
    assert_eq!(j.len(), 3);
    assert_eq!(j.recovered_tail(), None);
}

#[test]
fn verify_detects_an_altered_payload_and_open_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 5, false);
    let mut l = lines(state, &id);
    assert!(l[2].contains("\"weight\":3"));
    l[2] = l[2].replace("\"weight\":3", "\"weight\":100");
    write_lines(state, &id, &l);
    let p = problem(state, &id);
    assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Altered, 3, 3));
    let err = Journal::open(state, &id).unwrap_err();
    match &err {
        JournalError::Corrupt { problem, .. } => assert_eq!(problem.seq, 3),
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(!err.is_invalid_input());
}

#[test]
fn verify_detects_a_removed_middle_entry() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 5, false);
    let mut l = lines(state, &id);
    l.remove(1);
    write_lines(state, &id, &l);
    let p = problem(state, &id);
    assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Removed, 2, 2));
}

#[test]
fn verify_detects_a_removed_last_entry_of_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 5, true);
    let mut l = lines(state, &id);
    l.pop();
    write_lines(state, &id, &l);
    let p = problem(state, &id);
    assert_eq!((p.kind, p.seq), (ProblemKind::Removed, 5));
    assert!(p.detail.contains("finished with 5"), "{}", p.detail);
}

#[test]
fn verify_detects_reordered_lines() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 5, false);
    let mut l = lines(state, &id);
    l.swap(2, 3);
    write_lines(state, &id, &l);
    let p = problem(state, &id);
    assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Reordered, 3, 3));
}

#[test]
fn verify_detects_entries_appended_after_finish() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 2, true);
    let other = run_with(state, "checkout", 3, false);
    let l3 = lines(state, &other).pop().unwrap();
    let mut l = lines(state, &id);
    l.push(l3);
    write_lines(state, &id, &l);
    let p = problem(state, &id);
    assert_eq!(p.seq, 3);
    assert!(
        matches!(p.kind, ProblemKind::TrailingData | ProblemKind::BrokenLink),
        "{p}"
    );
}

#[test]
fn verify_detects_an_edited_outcome_or_release() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let finished = {
        let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
        j.append(step(1)).unwrap();
        j.finish_at("rolled_back", T0 + 1000).unwrap();
        j.run_id().to_owned()
    };
    let meta = state.join("runs").join(&finished).join("run.json");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, text.replace("rolled_back", "succeeded")).unwrap();
    let p = problem(state, &finished);
    assert_eq!(p.kind, ProblemKind::MetaAltered);
    assert!(p.to_string().starts_with("run.json altered"), "{p}");
    let out = cutover(state, &["audit", "verify", &finished]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run.json altered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let open = run_with(state, "payments", 1, false);
    let meta = state.join("runs").join(&open).join("run.json");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, text.replace("payments", "payroll")).unwrap();
    assert_eq!(problem(state, &open).kind, ProblemKind::MetaAltered);
    let runs = journal::list_runs(state).unwrap();
    assert!(runs.iter().all(|r| r.damage.is_some()), "{runs:?}");
    assert_eq!(journal::latest_unfinished(state).unwrap(), None);
    let err = Journal::open(state, &open).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

#[test]
fn damaged_run_metadata_is_listed_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let good = run_with(state, "checkout", 1, true);
    let bad = run_with(state, "payments", 1, true);
    fs::write(state.join("runs").join(&bad).join("run.json"), "{ not json").unwrap();
    let runs = journal::list_runs(state).unwrap();
    assert_eq!(runs.len(), 2);
    let b = runs.iter().find(|r| r.run_id == bad).unwrap();
    assert!(b.damage.as_ref().unwrap().contains("run.json"), "{b:?}");
    assert!(runs.iter().any(|r| r.run_id == good && r.damage.is_none()));
    let report = journal::verify(state, None).unwrap();
    assert_eq!(report.failures().count(), 1);
    assert_eq!(report.failures().next().unwrap().run_id, bad);
}

// ---------------------------------------------------------------------------------
// Crash test: a child process (this test binary, re-executed) appends in a loop and is
// SIGKILLed at random moments; every time, the run must reopen with a valid chain that
// holds every entry the child saw acknowledged.

const CHILD_STATE: &str = "CUTOVER_JOURNAL_CRASH_STATE";
const CHILD_RUN: &str = "CUTOVER_JOURNAL_CRASH_RUN";

fn crash_child(state: &Path, run_id: &str) {
    let mut j = Journal::open(state, run_id).expect("child: open");
    let out = std::io::stdout();
    let started = Instant::now();
    let mut n = 0u64;
    // Bounded: the parent kills us long before either limit.
    while n < 200_000 && started.elapsed() < Duration::from_secs(30) {
        n += 1;
        // Sizes from tiny to 1 MiB, so kills land inside large writes too.
        let size = match n % 4 {
            0 => 10,
            1 => 600,
            2 => 20_000,
            _ => 1024 * 1024,
        };
        let e = j
            .append(NewEntry {
                at_ms: T0 + n,
                operator: Some("crash-test".into()),
                kind: "step".into(),
                service: Some("api".into()),
                payload: json!({ "n": n, "pad": "x".repeat(size) }),
            })
            .expect("child: append");
        let mut out = out.lock();
        writeln!(out, "acked {}", e.seq).expect("child: stdout");
        out.flush().expect("child: flush");
    }
}

#[test]
fn crash_recovery_after_sigkill() {
    if let (Ok(state), Ok(run)) = (std::env::var(CHILD_STATE), std::env::var(CHILD_RUN)) {
        crash_child(Path::new(&state), &run);
        return;
    }
    use rand::Rng;
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = {
        let mut j = Journal::create(state, "crash", "f00d").unwrap();
        j.append(new(
            "command",
            Some("tester"),
            None,
            json!({"summary": "start"}),
        ))
        .unwrap();
        j.run_id().to_owned()
    };
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut torn_seen = 0;
    let rounds = 8;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_recovery_after_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_STATE, state)
            .env(CHILD_RUN, &id)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix("acked ").and_then(|s| s.parse().ok())
                    && tx.send(seq).is_err()
                {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement, then kill at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(60));
        assert!(first.is_ok(), "round {round}: the child never appended");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..250)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child must die by SIGKILL, not finish: {status:?}"
        );
        reader.join().unwrap();
        let max_acked = rx.try_iter().fold(first.unwrap(), u64::max);

        // No orphan: the child is reaped and gone.
        // SAFETY: kill with signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(child.id() as libc::pid_t, 0) } == 0;
        assert!(!alive, "round {round}: child still exists");

        // Reopen: valid chain, every acknowledged entry present.
        let j = Journal::open(state, &id).unwrap();
        if j.recovered_tail().is_some() {
            torn_seen += 1;
        }
        assert!(
            j.len() >= max_acked,
            "round {round}: acknowledged seq {max_acked} lost (journal has {})",
            j.len()
        );
        let entries = j.entries_ref();
        assert_eq!(entries[max_acked as usize - 1].seq, max_acked);
        for w in entries.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        drop(j);
        let report = journal::verify(state, Some(&id)).unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        assert_eq!(report.runs[0].torn_tail, None);
    }
    eprintln!("crash test: {rounds} SIGKILLs, {torn_seen} left a torn last line");
    let mut j = Journal::open(state, &id).unwrap();
    j.finish("aborted").unwrap();
    assert!(journal::verify(state, None).unwrap().is_ok());
}

// ---------------------------------------------------------------------------------
// A write that fails half-way (here: the file-size limit, in a child process so the
// limit does not touch other tests) must leave no partial line behind.

const FSIZE_STATE: &str = "CUTOVER_JOURNAL_FSIZE_STATE";
const FSIZE_RUN: &str = "CUTOVER_JOURNAL_FSIZE_RUN";

fn fsize_child(state: &Path, run_id: &str) {
    let mut j = Journal::open(state, run_id).expect("child: open");
    let size = fs::metadata(journal_path(state, run_id)).unwrap().len();
    // SAFETY: plain libc calls on this process: ignore SIGXFSZ so an oversized write
    // fails with EFBIG instead of killing us, and cap file sizes 2000 bytes above now.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: size + 2000,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let big = j.append(new(
        "step",
        None,
        None,
        json!({ "pad": "x".repeat(64 * 1024) }),
    ));
    assert!(
        matches!(big, Err(JournalError::Io { .. })),
        "child: the oversized append must fail: {big:?}"
    );
    assert_eq!(
        fs::metadata(journal_path(state, run_id)).unwrap().len(),
        size,
        "child: the partial line must be cut off"
    );
    let small = j
        .append(step(99))
        .expect("child: a small append after the failure");
    assert_eq!(small.seq, 3);
}

#[test]
fn a_failed_write_leaves_no_partial_line() {
    if let (Ok(state), Ok(run)) = (std::env::var(FSIZE_STATE), std::env::var(FSIZE_RUN)) {
        fsize_child(Path::new(&state), &run);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = run_with(state, "checkout", 2, false);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_failed_write_leaves_no_partial_line",
            "--test-threads=1",
        ])
        .env(FSIZE_STATE, state)
        .env(FSIZE_RUN, &id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 passed"),
        "{}",
        text(&out.stdout)
    );
    let rec = journal::read_run(state, &id).unwrap();
    assert!(rec.verification.is_ok(), "{:?}", rec.verification);
    assert_eq!(rec.verification.torn_tail, None);
    assert_eq!(rec.entries.len(), 3);
}

// ---------------------------------------------------------------------------------
// The CLI.

fn cutover(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env("CUTOVER_STATE_DIR", state)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A finished run with commands by operators and engine decisions.
fn audited_run(state: &Path) -> String {
    let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
    j.append(new(
        "command",
        Some("alice"),
        None,
        json!({"summary": "start release", "reason": "CHG-1234 window"}),
    ))
    .unwrap();
    j.append(NewEntry {
        at_ms: T0 + 61_500,
        operator: None,
        kind: "decision".into(),
        service: Some("api".into()),
        payload: json!({"summary": "shift 10% to canary", "weight": 10}),
    })
    .unwrap();
    j.append(NewEntry {
        at_ms: T0 + 120_000,
        operator: Some("bob".into()),
        kind: "command".into(),
        service: Some("api".into()),
        payload: json!({"action": "promote", "step": 2}),
    })
    .unwrap();
    j.finish_at("succeeded", T0 + 300_000).unwrap();
    j.run_id().to_owned()
}

#[test]
fn cli_history_lists_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let out = cutover(state, &["history"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no runs"));

    let id = audited_run(state);
    let interrupted = {
        let mut j = Journal::create_at(state, "payments", "beef", T0 + 3_600_000).unwrap();
        j.append(step(1)).unwrap();
        j.run_id().to_owned()
    };
    let out = cutover(state, &["history"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0].starts_with("RUN"));
    assert!(rows[1].starts_with(&interrupted), "newest first: {stdout}");
    assert!(rows[1].contains("payments") && rows[1].contains("interrupted"));
    assert!(rows[2].starts_with(&id));
    for cell in [
        "checkout",
        "2026-11-27T03:15:00Z",
        "2026-11-27T03:20:00Z",
        "succeeded",
    ] {
        assert!(rows[2].contains(cell), "{cell} missing: {}", rows[2]);
    }
    assert!(rows[2].trim_end().ends_with(" 3"));

    // --state-dir beats the environment.
    let empty = tempfile::tempdir().unwrap();
    let out = cutover(
        state,
        &["history", "--state-dir", empty.path().to_str().unwrap()],
    );
    assert!(text(&out.stdout).contains("no runs"));

    let out = cutover(state, &["history", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1]["run_id"], json!(id));
    assert_eq!(v[1]["outcome"], json!("succeeded"));
    assert_eq!(v[1]["entries"], json!(3));
    assert_eq!(v[0]["state"], json!("interrupted"));
}

#[test]
fn cli_audit_prints_time_operator_kind_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = audited_run(state);
    for target in [None, Some(id.as_str()), Some("checkout")] {
        let mut args = vec!["audit"];
        args.extend(target);
        let out = cutover(state, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let l: Vec<&str> = stdout.lines().collect();
        assert_eq!(l.len(), 5, "{stdout}");
        assert!(l[0].contains(&id) && l[0].contains("succeeded"), "{}", l[0]);
        for (line, cells) in [
            (
                l[2],
                &[
                    "2026-11-27T03:15:00.000Z",
                    "alice",
                    "command",
                    "start release (reason: CHG-1234 window)",
                ][..],
            ),
            (
                l[3],
                &[
                    "2026-11-27T03:16:01.500Z",
                    "engine",
                    "decision",
                    "api",
                    "shift 10% to canary",
                ][..],
            ),
            (
                l[4],
                &["bob", "command", r#"{"action":"promote","step":2}"#][..],
            ),
        ] {
            for c in cells {
                assert!(line.contains(c), "{c:?} missing from {line:?}");
            }
        }
    }

    // JSON: the stored lines byte for byte.
    let out = cutover(state, &["audit", &id, "--output", "json"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        lines(state, &id)
    );

    let out = cutover(state, &["audit", "no-such-release"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cutover history"));
}

#[test]
fn cli_audit_verify_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = audited_run(state);
    let last = journal::read_run(state, &id)
        .unwrap()
        .verification
        .last_hash;

    let out = cutover(state, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("OK"), "{stdout}");
    assert!(
        stdout.contains("3 entries") && stdout.contains(&last),
        "{stdout}"
    );

    let out = cutover(state, &["audit", "verify", &id, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["last_hash"], json!(last));

    let out = cutover(state, &["audit", "verify", "20261127T031500Z-nope-0000"]);
    assert_eq!(out.status.code(), Some(2));

    // Alter the reason of the first command.
    let mut l = lines(state, &id);
    l[0] = l[0].replace("CHG-1234", "CHG-9999");
    write_lines(state, &id, &l);
    let out = cutover(state, &["audit", "verify", &id]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("BAD") && stdout.contains("altered at seq 1"),
        "{stdout}"
    );
    // `audit` still shows what it can but warns and fails.
    let out = cutover(state, &["audit", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("damaged"),
        "{}",
        text(&out.stderr)
    );

    // Remove the middle entry instead.
    let mut l = lines(state, &id);
    l[0] = l[0].replace("CHG-9999", "CHG-1234");
    l.remove(1);
    write_lines(state, &id, &l);
    let out = cutover(state, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("removed at seq 2"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn cli_state_dir_flag_works_before_and_after_verify() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let id = audited_run(state);
    let d = state.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .env_remove("CUTOVER_STATE_DIR")
            .env("XDG_DATA_HOME", state.join("not-here"))
            .output()
            .unwrap()
    };
    for args in [
        &["audit", "--state-dir", d, "verify"][..],
        &["audit", "verify", "--state-dir", d],
        &["audit", "verify", &id, "--state-dir", d],
        &["audit", "--output", "json", "verify", "--state-dir", d],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(&id),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    // A run named before `verify` is refused, not silently ignored.
    let out = run(&["audit", &id, "verify", "--state-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cutover audit verify"));
    // An empty CUTOVER_STATE_DIR is an error that says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["history"])
        .env("CUTOVER_STATE_DIR", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unset CUTOVER_STATE_DIR"));
}

#[test]
fn cli_output_escapes_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut j = Journal::create_at(state, "checkout", "f00d", T0).unwrap();
    j.append(new(
        "command",
        Some("eve\u{1b}[2J"),
        None,
        json!({"summary": "line1\nline2"}),
    ))
    .unwrap();
    drop(j);
    let out = cutover(state, &["audit"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(!stdout.contains('\u{1b}'));
    assert!(
        stdout.contains("eve\\u{1b}[2J") && stdout.contains("line1\\nline2"),
        "{stdout}"
    );
}
