//! `cutover judge replay FILE`: run a judge over recorded windows (the JSON lines the
//! engine journals) and print the verdict timeline, to try a judge in shadow on past
//! deployments before trusting it with automatic rollback.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::duration::parse_duration;
use crate::judge::replay::{ReplayError, render, replay_file};
use crate::judge::{AnalysisConfig, JudgeKind, Outcome};
use clap::{Args, Subcommand, ValueEnum};

use super::{EXIT_ROLLED_BACK, Error};

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

pub fn run(cmd: JudgeCommand) -> Result<ExitCode, Error> {
    match cmd {
        JudgeCommand::Replay(args) => {
            let every = parse_duration(&args.every)
                .map_err(|e| Error::ToolInvalid(format!("--every: {e}")))?;
            let r = config_from(&args)
                .and_then(|c| replay_file(&args.file, &c, every))
                .map_err(|e| Error::ToolInvalid(e.to_string()))?;
            match args.output {
                ReplayOutput::Text => print!("{}", render(&r)),
                ReplayOutput::Json => {
                    let s = serde_json::to_string(&r).map_err(|e| {
                        Error::ToolInternal(format!("cannot encode the replay as JSON: {e}"))
                    })?;
                    println!("{s}");
                }
            }
            if r.final_verdict.outcome == Outcome::Fail {
                Ok(ExitCode::from(EXIT_ROLLED_BACK))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
