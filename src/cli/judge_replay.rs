//! `cutover judge replay FILE`: run a judge over recorded windows (the JSON lines the
//! engine journals) and print the verdict timeline, to try a judge in shadow on past
//! deployments before trusting it with automatic rollback.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::duration::{format_duration, parse_duration};
use crate::judge::{AnalysisConfig, AnalysisWindow, JudgeKind, Outcome, Verdict, new_judge};

use super::{EXIT_INVALID, EXIT_ROLLED_BACK};

#[derive(Debug, Subcommand)]
pub enum JudgeCommand {
    /// Run a judge over recorded per-window counts (JSON lines) and print the timeline.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A file with one analysis window per line, e.g.
    /// {"at_ms":1000,"duration_ms":1000,"canary_weight":0.1,"slow_threshold_ms":202,
    /// "baseline":{"requests":90,"errors":0,"slow":1},"canary":{"requests":10,"errors":0,"slow":0}}
    pub file: PathBuf,
    /// Which judge to run.
    #[arg(long, value_enum, default_value_t = ReplayJudge::Sequential)]
    pub judge: ReplayJudge,
    /// The canary may be this many times worse than the baseline (sequential).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Canary requests needed before a pass.
    #[arg(long)]
    pub min_requests: Option<u64>,
    /// Time needed before a pass, e.g. "5m".
    #[arg(long)]
    pub min_duration: Option<String>,
    /// Threshold judge's error-rate bound (sequential: never pass above it).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Threshold judge's p99 bound, e.g. "500ms".
    #[arg(long)]
    pub max_p99: Option<String>,
    /// False-rollback budget per deployment (sequential).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Threshold judge: failed checks allowed before failing.
    #[arg(long)]
    pub failure_limit: Option<u32>,
    /// Print a status line at least this often (window time), e.g. "30s".
    #[arg(long, default_value = "1m")]
    pub every: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReplayOutput::Text)]
    pub output: ReplayOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayJudge {
    Sequential,
    Threshold,
}

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

fn config_from(args: &ReplayArgs) -> Result<AnalysisConfig, ReplayError> {
    let mut c = AnalysisConfig {
        judge: match args.judge {
            ReplayJudge::Sequential => JudgeKind::Sequential,
            ReplayJudge::Threshold => JudgeKind::Threshold,
        },
        ..Default::default()
    };
    let dur = |flag: &str, v: &str| {
        parse_duration(v).map_err(|e| ReplayError::Input(format!("--{flag}: {e}")))
    };
    if let Some(v) = args.tolerance {
        c.tolerance = v;
    }
    if let Some(v) = args.min_requests {
        c.min_requests = v;
    }
    if let Some(v) = &args.min_duration {
        c.min_duration = dur("min-duration", v)?;
    }
    if let Some(v) = args.max_error_rate {
        c.max_error_rate = v;
    }
    if let Some(v) = &args.max_p99 {
        c.max_p99 = dur("max-p99", v)?;
    }
    if let Some(v) = args.alpha {
        c.alpha = v;
    }
    if let Some(v) = args.failure_limit {
        c.failure_limit = v;
    }
    c.validate()
        .map_err(|e| ReplayError::Input(e.to_string()))?;
    Ok(c)
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

pub fn run(cmd: JudgeCommand) -> ExitCode {
    match cmd {
        JudgeCommand::Replay(args) => {
            let every = match parse_duration(&args.every) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: --every: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            let result = config_from(&args).and_then(|c| replay_file(&args.file, &c, every));
            match result {
                Ok(r) => {
                    match args.output {
                        ReplayOutput::Text => print!("{}", render(&r)),
                        ReplayOutput::Json => match serde_json::to_string(&r) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("error: cannot encode the replay as JSON: {e}");
                                return ExitCode::from(super::EXIT_INTERNAL);
                            }
                        },
                    }
                    if r.final_verdict.outcome == Outcome::Fail {
                        ExitCode::from(EXIT_ROLLED_BACK)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
    }
}
