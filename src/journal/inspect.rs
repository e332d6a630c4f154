//! The journal reader as pure functions of a file's bytes, for tools and the fuzz target
//! `journal_read` (see `fuzz/`): the same check `open`, `read_run` and `audit verify` run
//! on `journal.jsonl`, and the bytes `append` would write for a list of entries.

use super::chain::{self, ChainProblem, TornTail};
use super::entry::{self, Entry, GENESIS_HASH, NewEntry};

/// The human part of an entry: the payload's `summary` (or `message`), with its
/// `reason`; compact JSON when it has neither (`audit`, the release report).
pub fn payload_text(payload: &serde_json::Value) -> String {
    use serde_json::Value;
    fn text(v: Option<&serde_json::Value>) -> Option<&str> {
        v.and_then(serde_json::Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }
    match payload {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let main = text(m.get("summary")).or_else(|| text(m.get("message")));
            let reason = text(m.get("reason"));
            match (main, reason) {
                (Some(main), Some(reason)) if main != reason => {
                    format!("{main} (reason: {reason})")
                }
                (Some(main), _) => main.to_owned(),
                (None, Some(reason)) => format!("reason: {reason}"),
                (None, None) => payload.to_string(),
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What the reader makes of a journal file's bytes.
#[derive(Debug, Clone)]
pub struct BytesCheck {
    /// The entries up to (not including) the first problem.
    pub entries: Vec<Entry>,
    /// Bytes covered by `entries` (where `open` cuts a torn tail).
    pub valid_len: u64,
    pub last_hash: String,
    /// An incomplete last line.
    pub tail: Option<TornTail>,
    /// The first problem, if any.
    pub problem: Option<ChainProblem>,
}

/// Check the bytes of a `journal.jsonl` of an unfinished run, as `Journal::open` does
/// before it appends (it refuses on `problem` and cuts `tail`).
pub fn check_bytes(bytes: &[u8]) -> BytesCheck {
    let c = chain::check(bytes, None);
    BytesCheck {
        entries: c.entries,
        valid_len: c.valid_len,
        last_hash: c.last_hash,
        tail: c.tail,
        problem: c.problem,
    }
}

/// The lines `append` writes for `entries`, numbered from 1 and chained from the genesis
/// hash: a valid journal whose content is whatever the caller chose.
pub fn chain_bytes(
    entries: impl IntoIterator<Item = NewEntry>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in entries.into_iter().enumerate() {
        let (entry, line) = entry::encode(i as u64 + 1, &prev, e)?;
        out.extend_from_slice(&line);
        prev = entry.hash;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(kind: &str) -> NewEntry {
        NewEntry {
            at_ms: 1,
            operator: None,
            kind: kind.into(),
            service: None,
            payload: serde_json::json!({"k": kind}),
        }
    }

    #[test]
    fn chained_bytes_read_back_and_a_torn_tail_is_reported_not_read() {
        let mut bytes = chain_bytes([new("a"), new("b")]).unwrap();
        let whole = bytes.len() as u64;
        let c = check_bytes(&bytes);
        assert_eq!(c.entries.len(), 2);
        assert!(c.problem.is_none() && c.tail.is_none());
        assert_eq!(c.valid_len, whole);
        bytes.extend_from_slice(b"{\"seq\":3,\"at");
        let c = check_bytes(&bytes);
        assert_eq!(c.entries.len(), 2);
        assert_eq!(
            c.tail,
            Some(TornTail {
                offset: whole,
                len: 12
            })
        );
        assert_eq!(c.valid_len, whole);
    }

    #[test]
    fn a_hostile_line_is_the_first_problem_at_its_line() {
        let mut bytes = chain_bytes([new("a")]).unwrap();
        bytes.extend_from_slice("\u{feff}not json at all\n".as_bytes());
        let c = check_bytes(&bytes);
        assert_eq!(c.entries.len(), 1);
        let p = c.problem.unwrap();
        assert_eq!(p.line, 2);
        assert_eq!(p.seq, 2);
    }
}
