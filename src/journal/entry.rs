//! One journal entry and its on-disk form: one line of compact JSON whose last member is
//! `"hash"`.
//!
//! The hash of an entry is the SHA-256 of its *canonical bytes*: the compact JSON object
//! of the fields `seq, at_ms, operator, kind, service, payload, prev_hash` in that order,
//! without `hash`. The stored line is exactly those bytes with `,"hash":"<hex>"` inserted
//! before the closing brace, so a verifier recomputes the hash from the bytes as stored
//! (never from a re-serialisation, which could differ in float formatting or key order
//! between builds) and any change to any byte of a line shows.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry of every run.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One journal entry as stored (one JSON object per line).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// 1-based, gapless.
    pub seq: u64,
    /// Unix milliseconds, from the engine's (injected) clock.
    pub at_ms: u64,
    /// Who caused it (command entries); `None` for the engine's own decisions.
    pub operator: Option<String>,
    /// Engine-defined: "command", "decision", "step", "verdict", "platform", ...
    pub kind: String,
    pub service: Option<String>,
    /// The engine's serialised event.
    pub payload: serde_json::Value,
    /// Hex SHA-256 of the previous entry's canonical bytes ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry's canonical bytes.
    pub hash: String,
}

/// What the engine hands to [`crate::journal::Journal::append`]; the journal adds `seq`,
/// `prev_hash` and `hash`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    pub at_ms: u64,
    pub operator: Option<String>,
    pub kind: String,
    pub service: Option<String>,
    pub payload: serde_json::Value,
}

/// The hashed fields, in their fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at_ms: u64,
    operator: &'a Option<String>,
    kind: &'a str,
    service: &'a Option<String>,
    payload: &'a serde_json::Value,
    prev_hash: &'a str,
}

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Lower-case hex of a byte string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

/// Hex SHA-256 of `bytes` (also handy for the engine's `release_file_sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn is_hex64(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Build the stored entry for `new` at `seq` after `prev_hash`, and its line (with the
/// trailing newline).
pub(crate) fn encode(
    seq: u64,
    prev_hash: &str,
    new: NewEntry,
) -> Result<(Entry, Vec<u8>), serde_json::Error> {
    let canonical = serde_json::to_vec(&Canonical {
        seq,
        at_ms: new.at_ms,
        operator: &new.operator,
        kind: &new.kind,
        service: &new.service,
        payload: &new.payload,
        prev_hash,
    })?;
    let hash = sha256_hex(&canonical);
    // `canonical` is a JSON object, so it ends with `}`.
    let mut line = Vec::with_capacity(canonical.len() + HASH_SUFFIX_LEN + 1);
    line.extend_from_slice(&canonical[..canonical.len() - 1]);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    let entry = Entry {
        seq,
        at_ms: new.at_ms,
        operator: new.operator,
        kind: new.kind,
        service: new.service,
        payload: new.payload,
        prev_hash: prev_hash.to_owned(),
        hash,
    };
    Ok((entry, line))
}

/// Why a stored line is not a valid entry on its own (chain links are checked elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineFault {
    /// Not an entry at all: no hash member at the end, or not the entry's JSON shape.
    Malformed(String),
    /// Well-formed, but the bytes do not hash to the stored hash: the entry was altered.
    HashMismatch {
        seq: Option<u64>,
        stored: String,
        computed: String,
    },
}

/// Decode one stored line (without its newline) and check its own hash.
pub(crate) fn decode(line: &[u8]) -> Result<Entry, LineFault> {
    if line.len() < HASH_SUFFIX_LEN + 2 {
        return Err(LineFault::Malformed(format!(
            "{} bytes, too short for an entry",
            line.len()
        )));
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    let (body, suffix) = line.split_at(split);
    let stored = &suffix[9..9 + 64];
    if !suffix.starts_with(b",\"hash\":\"") || !suffix.ends_with(b"\"}") || !is_hex64(stored) {
        return Err(LineFault::Malformed(
            "the line does not end with a `\"hash\"` member of 64 hex digits".into(),
        ));
    }
    let stored = String::from_utf8_lossy(stored).into_owned();
    let mut canonical = Vec::with_capacity(body.len() + 1);
    canonical.extend_from_slice(body);
    canonical.push(b'}');
    let computed = sha256_hex(&canonical);
    let parsed: Result<Entry, _> = serde_json::from_slice(line);
    if computed != stored {
        return Err(LineFault::HashMismatch {
            seq: parsed.as_ref().ok().map(|e| e.seq),
            stored,
            computed,
        });
    }
    let entry = parsed.map_err(|e| LineFault::Malformed(format!("not a journal entry: {e}")))?;
    if entry.hash != stored {
        // Only reachable if a key appears twice; serde rejects that, but stay strict.
        return Err(LineFault::Malformed(
            "the `hash` member is not the last one".into(),
        ));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new(kind: &str, payload: serde_json::Value) -> NewEntry {
        NewEntry {
            at_ms: 1_795_000_000_000,
            operator: Some("alice".into()),
            kind: kind.into(),
            service: Some("api".into()),
            payload,
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let (entry, line) =
            encode(1, GENESIS_HASH, new("command", json!({"a": [1, 2.5, "x"]}))).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let back = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, entry);
        assert_eq!(entry.prev_hash, GENESIS_HASH);
        assert_eq!(entry.hash.len(), 64);
    }

    #[test]
    fn hash_covers_the_canonical_fields_in_order() {
        let (entry, _) = encode(7, GENESIS_HASH, new("decision", json!({"w": 10}))).unwrap();
        let expected = sha256_hex(
            format!(
                r#"{{"seq":7,"at_ms":1795000000000,"operator":"alice","kind":"decision","service":"api","payload":{{"w":10}},"prev_hash":"{GENESIS_HASH}"}}"#
            )
            .as_bytes(),
        );
        assert_eq!(entry.hash, expected);
    }

    #[test]
    fn any_changed_byte_is_caught() {
        let (_, line) = encode(1, GENESIS_HASH, new("command", json!({"reason": "ok"}))).unwrap();
        let line = &line[..line.len() - 1];
        let text = String::from_utf8(line.to_vec()).unwrap();
        let altered = text.replace("\"ok\"", "\"OK\"");
        match decode(altered.as_bytes()) {
            Err(LineFault::HashMismatch { seq, .. }) => assert_eq!(seq, Some(1)),
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
        let spaced = text.replacen(":", ": ", 1);
        assert!(matches!(
            decode(spaced.as_bytes()),
            Err(LineFault::HashMismatch { .. })
        ));
    }

    #[test]
    fn lines_without_a_trailing_hash_are_malformed() {
        assert!(matches!(decode(b"{}"), Err(LineFault::Malformed(_))));
        let junk = format!("{{\"x\":1,\"hash\":\"{}\"}}", "g".repeat(64));
        assert!(matches!(
            decode(junk.as_bytes()),
            Err(LineFault::Malformed(_))
        ));
        // Right suffix and matching hash, but not an entry's shape.
        let body = br#"{"x":1}"#;
        let h = sha256_hex(body);
        let line = format!("{{\"x\":1,\"hash\":\"{h}\"}}");
        assert!(matches!(
            decode(line.as_bytes()),
            Err(LineFault::Malformed(_))
        ));
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
