//! The journal reader on torn and hostile files. The first byte picks the mode:
//!
//! * even: the rest is a whole `journal.jsonl` as found on disk (torn tails, edited
//!   lines, bad hashes, invalid UTF-8), checked as `open` and `audit verify` check it;
//! * odd: each line of the rest that is JSON becomes the payload of an entry of a valid
//!   hash chain (so the reader gets past the hashes), the last line without its newline
//!   becomes a torn tail; the chain must read back whole, and its events are folded into a
//!   `ReleaseState` as `resume` and late-joining consoles do.
#![no_main]

use cutover::engine::{ReleaseState, describe, events_from_entries};
use cutover::journal::NewEntry;
use cutover::journal::inspect::{chain_bytes, check_bytes};
use libfuzzer_sys::fuzz_target;

fn read(bytes: &[u8]) {
    let c = check_bytes(bytes);
    assert!(c.valid_len as usize <= bytes.len());
    if let Some(p) = &c.problem {
        let _ = p.to_string();
    }
    let events = events_from_entries(&c.entries);
    let state = ReleaseState::replay(&events);
    for e in &events {
        let _ = describe(e);
    }
    let _ = serde_json::to_string(&state);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        read(rest);
        return;
    }
    let mut lines: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let torn = if rest.ends_with(b"\n") {
        lines.pop();
        None
    } else {
        lines.pop()
    };
    let entries: Vec<NewEntry> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let payload: serde_json::Value = serde_json::from_slice(l).ok()?;
            let service = payload
                .pointer("/event/service")
                .and_then(|s| s.as_str())
                .map(str::to_owned);
            Some(NewEntry {
                at_ms: 1_795_000_000_000 + i as u64,
                operator: None,
                kind: "decision".into(),
                service,
                payload,
            })
        })
        .collect();
    let n = entries.len();
    let Ok(mut bytes) = chain_bytes(entries) else {
        return;
    };
    let whole = bytes.len();
    if let Some(t) = torn {
        bytes.extend_from_slice(t);
    }
    let c = check_bytes(&bytes);
    assert!(
        c.problem.is_none(),
        "a valid chain read as damaged: {:?}",
        c.problem
    );
    assert_eq!(c.entries.len(), n, "entries lost from a valid chain");
    assert_eq!(
        c.valid_len as usize, whole,
        "the torn tail was not cut where it starts"
    );
    read(&bytes);
});
