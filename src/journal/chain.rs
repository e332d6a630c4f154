//! Checking a journal file's bytes: split into lines, decode each, follow the hash chain,
//! compare with what `finish` recorded, and say precisely what is wrong where.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::entry::{self, Entry, GENESIS_HASH, LineFault};

/// An incomplete final line: bytes after the last newline, left by a write that was
/// interrupted (crash, SIGKILL, power cut). It never was an entry: `append` returns only
/// after the whole line, newline included, is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    /// Byte offset where the incomplete line starts (= the length of the valid journal).
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// What kind of damage a chain has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A line that is not a journal entry (edited by hand, or overwritten).
    Malformed,
    /// An entry whose bytes no longer hash to its stored hash: its content was changed.
    Altered,
    /// Entries missing: a gap in `seq`, or fewer entries than the run recorded at finish.
    Removed,
    /// Entries out of order.
    Reordered,
    /// The same `seq` twice.
    Duplicated,
    /// An entry's `prev_hash` is not the previous entry's hash although both hash
    /// correctly on their own: an entry was replaced wholesale (hash recomputed), or
    /// entries were removed/reordered and renumbered.
    BrokenLink,
    /// Data after the last entry of a finished run.
    TrailingData,
    /// `run.json` (release, times, outcome, finish counts) was edited: its seal does not
    /// match its content.
    MetaAltered,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Duplicated => "duplicated",
            ProblemKind::BrokenLink => "broken link",
            ProblemKind::TrailingData => "trailing data",
            ProblemKind::MetaAltered => "run.json altered",
        })
    }
}

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainProblem {
    pub kind: ProblemKind,
    /// The first bad sequence number (the one expected at that point when the entry
    /// itself is unreadable).
    pub seq: u64,
    /// 1-based line of `journal.jsonl` where it shows (one past the last line for
    /// problems found at the end, such as entries removed from the end).
    pub line: u64,
    pub detail: String,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ProblemKind::MetaAltered {
            return write!(f, "{}: {}", self.kind, self.detail);
        }
        write!(
            f,
            "{} at seq {} (line {}): {}",
            self.kind, self.seq, self.line, self.detail
        )
    }
}

/// The problem of a `run.json` whose seal does not match.
pub(crate) fn meta_altered() -> ChainProblem {
    ChainProblem {
        kind: ProblemKind::MetaAltered,
        seq: 0,
        line: 0,
        detail: "its seal does not match its content: the release, times, outcome or finish counts were edited".into(),
    }
}

/// What `finish` recorded in `run.json`, which lets a check notice removals at the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishAnchor<'a> {
    pub entries: u64,
    pub last_hash: &'a str,
}

/// Result of checking a journal file.
#[derive(Debug, Clone)]
pub(crate) struct ChainCheck {
    /// The entries up to (not including) the first problem.
    pub entries: Vec<Entry>,
    /// Where each of `entries` is in the checked bytes (without its newline).
    pub spans: Vec<std::ops::Range<usize>>,
    /// Bytes covered by `entries` (where a torn tail would be cut off).
    pub valid_len: u64,
    pub last_hash: String,
    pub tail: Option<TornTail>,
    pub problem: Option<ChainProblem>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Check `bytes` (a whole `journal.jsonl`). `finish` is what the run recorded when it
/// finished, if it did.
pub(crate) fn check(bytes: &[u8], finish: Option<FinishAnchor<'_>>) -> ChainCheck {
    // Complete lines end with '\n'; whatever follows the last one is a torn tail.
    let mut lines: Vec<(u64, &[u8])> = Vec::new();
    let mut start = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines.push((start as u64, &bytes[start..i]));
            start = i + 1;
        }
    }
    let tail = (start < bytes.len()).then(|| TornTail {
        offset: start as u64,
        len: (bytes.len() - start) as u64,
    });

    // Where each seq appears (by line index), for telling "removed" from "reordered";
    // only needed once something is out of sequence.
    let positions = || {
        let mut positions: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, (_, l)) in lines.iter().enumerate() {
            if let Ok(s) = serde_json::from_slice::<SeqOnly>(l) {
                positions.entry(s.seq).or_default().push(i);
            }
        }
        positions
    };

    let mut out = ChainCheck {
        entries: Vec::with_capacity(lines.len()),
        spans: Vec::with_capacity(lines.len()),
        valid_len: 0,
        last_hash: GENESIS_HASH.to_owned(),
        tail,
        problem: None,
    };
    for (i, (offset, line)) in lines.iter().enumerate() {
        let expected = out.entries.len() as u64 + 1;
        let lineno = i as u64 + 1;
        let problem = |kind, seq, detail: String| ChainProblem {
            kind,
            seq,
            line: lineno,
            detail,
        };
        let e = match entry::decode(line) {
            Ok(e) => e,
            Err(LineFault::Malformed(why)) => {
                out.problem = Some(problem(ProblemKind::Malformed, expected, why));
                return out;
            }
            Err(LineFault::HashMismatch {
                seq,
                stored,
                computed,
            }) => {
                out.problem = Some(problem(
                    ProblemKind::Altered,
                    seq.unwrap_or(expected),
                    format!(
                        "the entry's bytes hash to {}… but it stores {}…: its content was changed after it was written",
                        short(&computed),
                        short(&stored)
                    ),
                ));
                return out;
            }
        };
        if e.seq != expected {
            let positions = positions();
            let later = |s: u64| {
                positions
                    .get(&s)
                    .and_then(|v| v.iter().copied().find(|&j| j > i))
            };
            let p = if e.seq < expected {
                if positions
                    .get(&e.seq)
                    .is_some_and(|v| v.iter().any(|&j| j < i))
                {
                    problem(
                        ProblemKind::Duplicated,
                        e.seq,
                        format!("seq {} appears again; expected seq {expected}", e.seq),
                    )
                } else {
                    problem(
                        ProblemKind::Reordered,
                        e.seq,
                        format!("seq {} comes after seq {}", e.seq, expected - 1),
                    )
                }
            } else if let Some(j) = later(expected) {
                problem(
                    ProblemKind::Reordered,
                    expected,
                    format!(
                        "seq {} is here but seq {expected} comes later, at line {}",
                        e.seq,
                        j + 1
                    ),
                )
            } else if e.seq == expected + 1 {
                problem(
                    ProblemKind::Removed,
                    expected,
                    format!("seq {expected} is missing (the next line is seq {})", e.seq),
                )
            } else {
                problem(
                    ProblemKind::Removed,
                    expected,
                    format!(
                        "seqs {expected}..={} are missing (the next line is seq {})",
                        e.seq - 1,
                        e.seq
                    ),
                )
            };
            out.problem = Some(p);
            return out;
        }
        if e.prev_hash != out.last_hash {
            let detail = if expected == 1 {
                format!(
                    "the first entry must have prev_hash 0…0, it has {}…: entries before it were removed",
                    short(&e.prev_hash)
                )
            } else {
                format!(
                    "it records prev_hash {}… but seq {} hashes to {}…: an entry was replaced with a recomputed hash, or entries were removed and renumbered",
                    short(&e.prev_hash),
                    expected - 1,
                    short(&out.last_hash)
                )
            };
            out.problem = Some(problem(ProblemKind::BrokenLink, e.seq, detail));
            return out;
        }
        out.spans
            .push(*offset as usize..*offset as usize + line.len());
        out.valid_len = offset + line.len() as u64 + 1;
        out.last_hash = e.hash.clone();
        out.entries.push(e);
    }

    if let Some(anchor) = finish {
        let have = out.entries.len() as u64;
        let end_line = lines.len() as u64 + 1;
        if have < anchor.entries {
            out.problem = Some(ChainProblem {
                kind: ProblemKind::Removed,
                seq: have + 1,
                line: end_line,
                detail: format!(
                    "the run finished with {} entries but only {have} remain: the last {} were removed",
                    anchor.entries,
                    anchor.entries - have
                ),
            });
        } else if have > anchor.entries {
            out.problem = Some(ChainProblem {
                kind: ProblemKind::TrailingData,
                seq: anchor.entries + 1,
                line: anchor.entries + 1,
                detail: format!(
                    "the run finished with {} entries but {have} are present: entries were appended after the finish",
                    anchor.entries
                ),
            });
        } else if out.last_hash != anchor.last_hash {
            out.problem = Some(ChainProblem {
                kind: ProblemKind::BrokenLink,
                seq: have,
                line: have,
                detail: format!(
                    "the last entry hashes to {}… but the run recorded {}… at finish: entries were replaced",
                    short(&out.last_hash),
                    short(anchor.last_hash)
                ),
            });
        } else if let Some(t) = &out.tail {
            out.problem = Some(ChainProblem {
                kind: ProblemKind::TrailingData,
                seq: have + 1,
                line: end_line,
                detail: format!(
                    "{} bytes after the last entry of a finished run (offset {})",
                    t.len, t.offset
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{NewEntry, encode};
    use serde_json::json;

    fn journal(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let (e, line) = encode(
                    seq,
                    &prev,
                    NewEntry {
                        at_ms: 1000 * seq,
                        operator: None,
                        kind: "step".into(),
                        service: Some("api".into()),
                        payload: json!({ "n": seq }),
                    },
                )
                .unwrap();
                prev = e.hash;
                line
            })
            .collect()
    }

    fn cat(lines: &[Vec<u8>]) -> Vec<u8> {
        lines.concat()
    }

    #[test]
    fn intact_chain_passes() {
        let l = journal(5);
        let c = check(&cat(&l), None);
        assert_eq!(c.problem, None);
        assert_eq!(c.entries.len(), 5);
        assert_eq!(c.valid_len, cat(&l).len() as u64);
        assert_eq!(c.tail, None);
        assert_eq!(c.last_hash, c.entries[4].hash);
    }

    #[test]
    fn empty_journal_is_valid() {
        let c = check(b"", None);
        assert_eq!(c.problem, None);
        assert_eq!(c.entries.len(), 0);
        assert_eq!(c.last_hash, GENESIS_HASH);
    }

    #[test]
    fn removed_middle_entry() {
        let mut l = journal(5);
        l.remove(2);
        let p = check(&cat(&l), None).problem.unwrap();
        assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Removed, 3, 3));
    }

    #[test]
    fn removed_first_entries() {
        let l = journal(4);
        let p = check(&cat(&l[2..]), None).problem.unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::Removed, 1));
        assert!(p.detail.contains("1..=2"), "{}", p.detail);
    }

    #[test]
    fn swapped_entries_are_reordered() {
        let mut l = journal(5);
        l.swap(1, 3);
        let p = check(&cat(&l), None).problem.unwrap();
        assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Reordered, 2, 2));
    }

    #[test]
    fn moved_back_entry_is_reordered() {
        let mut l = journal(4);
        let second = l.remove(1);
        l.push(second); // 1,3,4,2
        let p = check(&cat(&l), None).problem.unwrap();
        assert_eq!(p.kind, ProblemKind::Reordered);
        assert_eq!(p.seq, 2);
    }

    #[test]
    fn duplicated_entry() {
        let mut l = journal(3);
        let dup = l[1].clone();
        l.insert(2, dup);
        let p = check(&cat(&l), None).problem.unwrap();
        assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Duplicated, 2, 3));
    }

    #[test]
    fn altered_payload() {
        let mut l = journal(3);
        let s = String::from_utf8(l[1].clone())
            .unwrap()
            .replace("\"n\":2", "\"n\":9");
        l[1] = s.into_bytes();
        let c = check(&cat(&l), None);
        let p = c.problem.unwrap();
        assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Altered, 2, 2));
        assert_eq!(c.entries.len(), 1);
    }

    #[test]
    fn garbage_line_is_malformed() {
        let mut l = journal(3);
        l[2] = b"hello\n".to_vec();
        let p = check(&cat(&l), None).problem.unwrap();
        assert_eq!((p.kind, p.seq, p.line), (ProblemKind::Malformed, 3, 3));
    }

    #[test]
    fn replaced_entry_with_recomputed_hash_breaks_the_link() {
        let l = journal(3);
        // Forge seq 2 with a valid self-hash but different content.
        let first = entry::decode(&l[0][..l[0].len() - 1]).unwrap();
        let (_, forged) = encode(
            2,
            &first.hash,
            NewEntry {
                at_ms: 2000,
                operator: Some("mallory".into()),
                kind: "step".into(),
                service: Some("api".into()),
                payload: json!({ "n": 2 }),
            },
        )
        .unwrap();
        let p = check(&cat(&[l[0].clone(), forged, l[2].clone()]), None)
            .problem
            .unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::BrokenLink, 3));
    }

    #[test]
    fn torn_tail_is_separated_not_a_problem() {
        let l = journal(3);
        let mut bytes = cat(&l);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&l[0][..20]);
        let c = check(&bytes, None);
        assert_eq!(c.problem, None);
        assert_eq!(c.entries.len(), 3);
        assert_eq!(c.valid_len, good);
        assert_eq!(
            c.tail,
            Some(TornTail {
                offset: good,
                len: 20
            })
        );
    }

    #[test]
    fn finish_anchor_catches_removed_tail_and_extra_entries() {
        let l = journal(4);
        let all = check(&cat(&l), None);
        let anchor = FinishAnchor {
            entries: 4,
            last_hash: &all.last_hash,
        };
        assert_eq!(check(&cat(&l), Some(anchor)).problem, None);

        let p = check(&cat(&l[..3]), Some(anchor)).problem.unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::Removed, 4));

        let three = FinishAnchor {
            entries: 3,
            last_hash: &all.entries[2].hash,
        };
        let p = check(&cat(&l), Some(three)).problem.unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::TrailingData, 4));

        let mut torn = cat(&l);
        torn.extend_from_slice(b"{\"se");
        let p = check(&torn, Some(anchor)).problem.unwrap();
        assert_eq!(p.kind, ProblemKind::TrailingData);

        let wrong = FinishAnchor {
            entries: 4,
            last_hash: GENESIS_HASH,
        };
        let p = check(&cat(&l), Some(wrong)).problem.unwrap();
        assert_eq!(p.kind, ProblemKind::BrokenLink);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Changing any byte of a journal (except the very last newline, which
            /// turns the last entry into what a crash leaves) is always caught.
            #[test]
            fn any_changed_byte_is_a_problem(n in 1u64..6, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let bytes = cat(&journal(n));
                let i = pos.index(bytes.len() - 1);
                prop_assume!(bytes[i] != byte);
                let mut changed = bytes.clone();
                changed[i] = byte;
                let c = check(&changed, None);
                prop_assert!(c.problem.is_some(), "byte {} -> {:?} not caught", i, byte as char);
            }

            /// Cutting a journal anywhere leaves a valid chain of the complete lines and
            /// the rest as a torn tail.
            #[test]
            fn any_cut_is_a_valid_prefix(n in 1u64..6, pos in any::<prop::sample::Index>()) {
                let bytes = cat(&journal(n));
                let cut = pos.index(bytes.len() + 1);
                let c = check(&bytes[..cut], None);
                prop_assert_eq!(c.problem, None);
                let complete = bytes[..cut].iter().filter(|b| **b == b'\n').count();
                prop_assert_eq!(c.entries.len(), complete);
                prop_assert_eq!(c.valid_len as usize + c.tail.map_or(0, |t| t.len as usize), cut);
            }

            /// Removing or swapping whole lines is always caught.
            #[test]
            fn removed_or_swapped_lines_are_problems(n in 2u64..7, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), swap in any::<bool>()) {
                let mut l = journal(n);
                let i = a.index(l.len());
                if swap {
                    let j = b.index(l.len());
                    prop_assume!(i != j);
                    l.swap(i, j);
                } else {
                    // Removing the last line of an unfinished run is indistinguishable
                    // from a crash before it was written; finished runs catch it (see
                    // finish_anchor_catches_removed_tail_and_extra_entries).
                    prop_assume!(i != l.len() - 1);
                    l.remove(i);
                }
                prop_assert!(check(&cat(&l), None).problem.is_some());
            }
        }
    }
}
