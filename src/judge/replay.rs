//! Replaying recorded analysis windows through a judge (`cutover judge replay`): to try a
//! judge in shadow on past deployments before trusting it with automatic rollback.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::duration::format_duration;
use crate::judge::{AnalysisConfig, AnalysisWindow, Outcome, Verdict, new_judge};

/// One point of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub line: usize,
    pub at_ms: u64,
    pub elapsed_ms: u64,
    pub outcome: Outcome,
    pub summary: String,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    pub file: String,
    pub windows: u64,
    /// Windows after a failure that were not judged.
    pub skipped_after_fail: u64,
    pub timeline: Vec<TimelineEntry>,
    #[serde(rename = "final")]
    pub final_verdict: Verdict,
}

/// Why a replay could not run; `Display` names the place and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
}

/// Replay the JSON lines in `text` (named `file` in messages) through a judge.
pub fn replay_text(
    file: &str,
    text: &str,
    config: &AnalysisConfig,
    every: Duration,
) -> Result<Replay, ReplayError> {
    let mut judge = new_judge(config).map_err(|e| ReplayError::Input(e.to_string()))?;
    let every_ms = every.as_millis().max(1) as u64;
    let mut timeline: Vec<TimelineEntry> = Vec::new();
    let mut last: Option<(Outcome, u64)> = None;
    let (mut windows, mut skipped) = (0u64, 0u64);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        if matches!(last, Some((Outcome::Fail, _))) {
            skipped += 1;
            continue;
        }
        let w: AnalysisWindow = serde_json::from_str(raw).map_err(|e| {
            ReplayError::Input(format!(
                "{file}:{line}: not an analysis window ({e}); each line must be one JSON object like \
                 {{\"at_ms\":1000,\"duration_ms\":1000,\"canary_weight\":0.1,\
                 \"baseline\":{{\"requests\":90,\"errors\":0,\"slow\":1}},\
                 \"canary\":{{\"requests\":10,\"errors\":0,\"slow\":0}}}}"
            ))
        })?;
        let outcome = judge
            .observe(&w)
            .map_err(|e| ReplayError::Input(format!("{file}:{line}: {e}")))?;
        windows += 1;
        let due = match last {
            None => true,
            Some((o, at)) => o != outcome || w.at_ms >= at + every_ms,
        };
        if due {
            let v = judge.verdict();
            timeline.push(TimelineEntry {
                line,
                at_ms: w.at_ms,
                elapsed_ms: v.elapsed_ms,
                outcome,
                summary: v.summary,
            });
            last = Some((outcome, w.at_ms));
        }
    }
    if windows == 0 {
        return Err(ReplayError::Input(format!(
            "{file} has no analysis windows; expected one JSON object per line (see `cutover judge replay --help`)"
        )));
    }
    Ok(Replay {
        file: file.to_string(),
        windows,
        skipped_after_fail: skipped,
        timeline,
        final_verdict: judge.verdict(),
    })
}

/// Replay a file.
pub fn replay_file(
    path: &Path,
    config: &AnalysisConfig,
    every: Duration,
) -> Result<Replay, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ReplayError::Input(format!(
            "cannot read {}: {e}; give the path of a JSON-lines file of analysis windows",
            path.display()
        ))
    })?;
    replay_text(&path.display().to_string(), &text, config, every)
}

/// Render the timeline for people.
pub fn render(r: &Replay) -> String {
    let mut out = format!("replaying {} ({} windows)\n", r.file, r.windows);
    for e in &r.timeline {
        out.push_str(&format!(
            "  +{:<8} {:<12} {}\n",
            format_duration(Duration::from_millis(e.elapsed_ms)),
            e.outcome.as_str(),
            e.summary
        ));
    }
    if r.skipped_after_fail > 0 {
        out.push_str(&format!(
            "  (stopped at the rollback; {} later windows not judged)\n",
            r.skipped_after_fail
        ));
    }
    out.push_str(&format!("\n{}\n", r.final_verdict));
    out
}
