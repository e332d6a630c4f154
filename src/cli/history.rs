//! `cutover history [--state-dir D] [--journal URL] [--output json]`

use std::process::ExitCode;

use super::{Error, Output, printable};
use crate::journal::{self, JournalStore, RunSummary, timefmt};

fn outcome(r: &RunSummary) -> String {
    if r.damage.is_some() {
        return "DAMAGED".into();
    }
    match (&r.state, &r.outcome) {
        (_, Some(o)) => printable(o),
        (state, None) => state
            .running_text()
            .unwrap_or_else(|| "interrupted (resumable)".into()),
    }
}

pub fn run(store: &JournalStore, output: Output) -> Result<ExitCode, Error> {
    let runs = journal::list_runs(store)?;
    if output == Output::Json {
        let s = serde_json::to_string_pretty(&runs)
            .map_err(|e| Error::Internal(format!("cannot encode the run list as JSON: {e}")))?;
        println!("{s}");
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs under {}", store.label());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|r| {
            // Unreadable run.json: only the id is known.
            let damaged = r.damage.is_some() && r.started_ms == 0 && r.release.is_empty();
            [
                r.run_id.clone(),
                if damaged {
                    "?".into()
                } else {
                    printable(&r.release)
                },
                r.environment
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "-".into()),
                r.change
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "-".into()),
                if damaged {
                    "?".into()
                } else {
                    timefmt::iso8601_s(r.started_ms)
                },
                r.finished_ms
                    .map(timefmt::iso8601_s)
                    .unwrap_or_else(|| "-".into()),
                outcome(r),
                if damaged {
                    "?".into()
                } else {
                    r.entries.to_string()
                },
            ]
        })
        .collect();
    let header = [
        "RUN", "RELEASE", "ENV", "CHANGE", "STARTED", "FINISHED", "OUTCOME", "ENTRIES",
    ];
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 8]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 7 {
                s.push_str(&format!("{c:>w$}", w = width[i]));
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s
    };
    println!("{}", line(header));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    let damaged: Vec<_> = runs
        .iter()
        .filter_map(|r| r.damage.as_ref().map(|d| (r, d)))
        .collect();
    // Warnings beside a listing that succeeds (exit 0), not errors.
    for (r, d) in &damaged {
        eprintln!("cutover: run {} is damaged: {}", r.run_id, d);
    }
    Ok(ExitCode::SUCCESS)
}
