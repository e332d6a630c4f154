//! `cutover audit [RUN|RELEASE]` and `cutover audit verify [RUN|RELEASE]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{EXIT_INTERNAL, Error, Output, StateDirArg, printable};
use crate::journal::{self, Entry, JournalStore, RunRecord, RunSummary, RunVerification, timefmt};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// A run id, or a release name for all of its runs [default: the newest run]
    #[arg(value_name = "RUN|RELEASE")]
    pub target: Option<String>,
    /// Where runs are journaled [default: cutover's data directory, e.g.
    /// ~/.local/share/cutover]
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        env = "CUTOVER_STATE_DIR",
        value_parser = super::parse_state_dir,
        global = true
    )]
    pub state_dir: Option<PathBuf>,
    /// Journal runs in PostgreSQL: postgres://USER@HOST:PORT/DB, or env:VAR naming a
    /// variable that holds the URL (never printed). See docs/postgres-journal.md
    /// [default: files under the state directory]
    #[arg(
        long = "journal",
        value_name = "URL",
        env = "CUTOVER_JOURNAL",
        hide_env_values = true,
        global = true
    )]
    pub journal: Option<String>,
    /// `json`: `audit` prints the stored entries as JSON lines, byte for byte; `verify`
    /// prints its report as JSON
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chains: exit 0 when intact, 1 when an entry was altered, removed or
    /// reordered, 2 for an unknown run.
    Verify {
        /// A run id, or a release name for all of its runs [default: every run]
        #[arg(value_name = "RUN|RELEASE")]
        target: Option<String>,
    },
}

pub fn run(args: AuditArgs) -> Result<ExitCode, Error> {
    let state_dir = StateDirArg {
        state_dir: args.state_dir,
    }
    .resolve();
    let store = super::JournalArg {
        journal: args.journal,
    }
    .store(&state_dir)?;
    let state_dir = &store;
    match (args.action, args.target) {
        (Some(AuditAction::Verify { .. }), Some(before)) => Err(Error::Invalid(format!(
            "put the run after `verify`: cutover audit verify {}",
            printable(&before)
        ))),
        (Some(AuditAction::Verify { target }), None) => {
            verify(state_dir, target.as_deref(), args.output)
        }
        (None, target) => audit(state_dir, target.as_deref(), args.output),
    }
}

/// Which runs a RUN|RELEASE argument names, oldest first. `None` when `target` is
/// `None` means "the newest run" for `audit` and "every run" for `verify`, so the caller
/// decides.
fn resolve(state_dir: &JournalStore, target: &str) -> Result<Vec<RunSummary>, Error> {
    let runs = journal::list_runs(state_dir)?;
    if let Some(r) = runs.iter().find(|r| r.run_id == target) {
        return Ok(vec![r.clone()]);
    }
    let mut of_release: Vec<_> = runs.into_iter().filter(|r| r.release == target).collect();
    if of_release.is_empty() {
        return Err(Error::Invalid(format!(
            "no run or release named `{}` under {}: `cutover history {}` lists them",
            printable(target),
            state_dir.label(),
            state_dir.flag()
        )));
    }
    of_release.reverse();
    Ok(of_release)
}

/// The human part of an audit line ([`journal::inspect::payload_text`]), control
/// characters escaped.
pub(crate) fn describe(payload: &serde_json::Value) -> String {
    printable(&journal::inspect::payload_text(payload))
}

fn header(s: &RunSummary) -> String {
    let end = match (&s.finished_ms, &s.outcome) {
        (Some(t), Some(o)) => format!("finished {} ({})", timefmt::iso8601_s(*t), printable(o)),
        _ => s
            .state
            .running_text()
            .unwrap_or_else(|| "interrupted (resumable)".into()),
    };
    format!(
        "run {}  release {}  started {}  {end}",
        s.run_id,
        printable(&s.release),
        timefmt::iso8601_s(s.started_ms)
    )
}

fn render_entries(entries: &[Entry]) -> String {
    let op = |e: &Entry| printable(e.operator.as_deref().unwrap_or("engine"));
    let svc = |e: &Entry| printable(e.service.as_deref().unwrap_or("-"));
    let cap = |w: usize| w.min(24);
    let w_seq = entries.last().map_or(3, |e| e.seq.to_string().len()).max(3);
    let w_op = cap(entries
        .iter()
        .map(|e| op(e).chars().count())
        .max()
        .unwrap_or(0)
        .max(8));
    let w_kind = cap(entries
        .iter()
        .map(|e| printable(&e.kind).chars().count())
        .max()
        .unwrap_or(0)
        .max(4));
    let w_svc = cap(entries
        .iter()
        .map(|e| svc(e).chars().count())
        .max()
        .unwrap_or(0)
        .max(7));
    let mut out = format!(
        "{:>w_seq$}  {:<24}  {:<w_op$}  {:<w_kind$}  {:<w_svc$}  WHAT\n",
        "SEQ", "TIME (UTC)", "OPERATOR", "KIND", "SERVICE"
    );
    for e in entries {
        out.push_str(&format!(
            "{:>w_seq$}  {:<24}  {:<w_op$}  {:<w_kind$}  {:<w_svc$}  {}\n",
            e.seq,
            timefmt::iso8601_ms(e.at_ms),
            op(e),
            printable(&e.kind),
            svc(e),
            describe(&e.payload)
        ));
    }
    out
}

/// Print a warning for a damaged chain or a torn tail; true when damaged. Warnings, not
/// errors: they go out beside each run's entries, and `audit` carries on with the next.
fn report_damage(v: &RunVerification) -> bool {
    if let Some(p) = &v.problem {
        eprintln!(
            "cutover: the journal of run {} is damaged: {p}. Entries from seq {} on are not shown; `cutover audit verify {}` checks it",
            v.run_id, p.seq, v.run_id
        );
        return true;
    }
    if let Some(t) = &v.torn_tail {
        eprintln!(
            "cutover: note: run {} ends with an incomplete line ({} bytes at offset {}) from an interrupted write; it is not an entry and is cut off when the run is resumed",
            v.run_id, t.len, t.offset
        );
    }
    false
}

fn audit(
    state_dir: &JournalStore,
    target: Option<&str>,
    output: Output,
) -> Result<ExitCode, Error> {
    let runs = match target {
        Some(t) => resolve(state_dir, t)?,
        None => match journal::list_runs(state_dir)?.into_iter().next() {
            Some(newest) => vec![newest],
            None => {
                return Err(Error::Invalid(format!(
                    "no runs under {}: nothing to audit (give --state-dir or set CUTOVER_STATE_DIR if the runs are elsewhere)",
                    state_dir.label()
                )));
            }
        },
    };
    let mut damaged = false;
    for (i, summary) in runs.iter().enumerate() {
        let rec: RunRecord = match journal::read_run(state_dir, &summary.run_id) {
            Ok(r) => r,
            Err(e) => {
                // Reported, and the other runs still shown; the exit code says so.
                eprintln!("cutover: {e}");
                damaged = true;
                continue;
            }
        };
        match output {
            Output::Json => {
                for line in &rec.raw_lines {
                    println!("{line}");
                }
            }
            Output::Text => {
                if i > 0 {
                    println!();
                }
                println!("{}", header(&rec.summary));
                print!("{}", render_entries(&rec.entries));
            }
        }
        damaged |= report_damage(&rec.verification);
    }
    if damaged {
        Ok(ExitCode::from(EXIT_INTERNAL))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn verify(
    state_dir: &JournalStore,
    target: Option<&str>,
    output: Output,
) -> Result<ExitCode, Error> {
    let ids: Option<Vec<String>> = match target {
        Some(t) => Some(
            resolve(state_dir, t)?
                .into_iter()
                .map(|r| r.run_id)
                .collect(),
        ),
        None => None,
    };
    let report = match ids {
        None => journal::verify(state_dir, None),
        Some(ids) => {
            let mut runs = Vec::new();
            for id in ids {
                runs.extend(journal::verify(state_dir, Some(&id))?.runs);
            }
            Ok(journal::VerifyReport { runs })
        }
    };
    let report = report?;
    match output {
        Output::Json => {
            let s = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Internal(format!("cannot encode the report as JSON: {e}")))?;
            println!("{s}");
        }
        Output::Text => {
            if report.runs.is_empty() {
                println!("no runs under {}", state_dir.label());
            }
            for v in &report.runs {
                match &v.problem {
                    None => {
                        println!(
                            "OK   {}  {} {}  {}  last hash {}{}",
                            v.run_id,
                            v.entries,
                            if v.entries == 1 { "entry" } else { "entries" },
                            if v.finished { "finished" } else { "unfinished" },
                            v.last_hash,
                            v.torn_tail
                                .as_ref()
                                .map(|t| format!(
                                    "  (plus an incomplete last line of {} bytes from an interrupted write)",
                                    t.len
                                ))
                                .unwrap_or_default()
                        );
                    }
                    Some(p) => println!("BAD  {}  {p}", v.run_id),
                }
            }
            let unfinished = report
                .runs
                .iter()
                .filter(|v| v.is_ok() && !v.finished)
                .count();
            if unfinished > 0 {
                println!(
                    "note: entries cut from the end of an unfinished run look like a crash; compare its last hash with one noted earlier"
                );
            }
            let bad = report.failures().count();
            if bad > 0 {
                println!("{bad} of {} run(s) damaged", report.runs.len());
            } else if report.runs.len() > 1 {
                println!("all {} runs intact", report.runs.len());
            }
        }
    }
    if report.is_ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_INTERNAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_prefers_summary_and_adds_the_reason() {
        assert_eq!(
            describe(&json!({"summary": "promote api", "reason": "p99 fine"})),
            "promote api (reason: p99 fine)"
        );
        assert_eq!(describe(&json!({"message": "hi"})), "hi");
        assert_eq!(describe(&json!({"reason": "manual"})), "reason: manual");
        assert_eq!(describe(&json!({"weight": 5})), r#"{"weight":5}"#);
        assert_eq!(describe(&json!("a\u{1b}[31m")), "a\\u{1b}[31m");
        assert_eq!(describe(&json!(null)), "");
        assert_eq!(
            describe(&json!({"summary": " ", "w": 1})),
            r#"{"summary":" ","w":1}"#
        );
    }
}
