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
    #[arg(
        required_unless_present = "from_prometheus",
        conflicts_with = "from_prometheus"
    )]
    pub file: Option<PathBuf>,
    /// Read the windows of a past interval back from this Prometheus (base URL) instead of
    /// a file: range queries of the template's counts for --baseline and --canary of
    /// --service between --since and --until, one window per --step.
    #[arg(long, value_name = "URL", value_hint = clap::ValueHint::Url, requires_all = ["service", "baseline", "canary", "since"])]
    pub from_prometheus: Option<String>,
    /// With --from-prometheus: the query set (`cutover`, `http_server`, `istio`, `linkerd`).
    #[arg(long, default_value = "cutover", value_hint = clap::ValueHint::Other)]
    pub template: String,
    /// With --from-prometheus: the service.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub service: Option<String>,
    /// With --from-prometheus: the baseline's revision.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub baseline: Option<String>,
    /// With --from-prometheus: the canary's revision.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub canary: Option<String>,
    /// With --from-prometheus: the start, unix seconds or how long ago (e.g. 30m).
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub since: Option<String>,
    /// With --from-prometheus: the end, unix seconds or how long ago (default now).
    #[arg(long, default_value = "0s", value_hint = clap::ValueHint::Other)]
    pub until: String,
    /// With --from-prometheus: one window per step, e.g. "10s".
    #[arg(long, default_value = "10s", value_hint = clap::ValueHint::Other)]
    pub step: String,
    /// With --from-prometheus: the canary's share of traffic in percent, when Prometheus has
    /// no `cutover_traffic_weight` for it.
    #[arg(long)]
    pub canary_weight: Option<f64>,
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
    /// Sequential judge: the service's bad events come in bursts (`bursty = true` in
    /// `[service.analysis]`): a higher bar until three minutes with bad events have
    /// measured how bursty they are.
    #[arg(long)]
    pub bursty: bool,
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
    c.bursty = args.bursty;
    c.validate()
        .map_err(|e| ReplayError::Input(e.to_string()))?;
    Ok(c)
}

pub fn run(cmd: JudgeCommand) -> Result<ExitCode, Error> {
    match cmd {
        JudgeCommand::Replay(args) => {
            let every = parse_duration(&args.every)
                .map_err(|e| Error::ToolInvalid(format!("--every: {e}")))?;
            let config = config_from(&args).map_err(|e| Error::ToolInvalid(e.to_string()))?;
            let r = match (&args.from_prometheus, &args.file) {
                (Some(url), _) => from_prometheus(url, &args, &config, every)?,
                (None, Some(file)) => replay_file(file, &config, every)
                    .map_err(|e| Error::ToolInvalid(e.to_string()))?,
                (None, None) => {
                    return Err(Error::ToolInvalid(
                        "name a windows file or --from-prometheus URL".into(),
                    ));
                }
            };
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

/// `--from-prometheus`: the windows read back, then replayed like a file's.
fn from_prometheus(
    url: &str,
    args: &ReplayArgs,
    config: &AnalysisConfig,
    every: std::time::Duration,
) -> Result<crate::judge::replay::Replay, Error> {
    use crate::judge::replay_prometheus::{PromReplay, parse_time, windows};
    use crate::release::PrometheusTemplate;
    let invalid = |m: String| Error::ToolInvalid(m);
    let template = PrometheusTemplate::NAMES
        .iter()
        .position(|n| *n == args.template)
        .map(|i| PrometheusTemplate::ALL[i])
        .ok_or_else(|| {
            invalid(format!(
                "--template `{}`: valid values: {}",
                args.template,
                PrometheusTemplate::NAMES.join(", ")
            ))
        })?;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| invalid(format!("--from-prometheus needs --{flag}")))
    };
    let spec = PromReplay {
        template: crate::metrics::prometheus_templates::template(template),
        service: need(&args.service, "service")?,
        baseline: need(&args.baseline, "baseline")?,
        canary: need(&args.canary, "canary")?,
        since_s: parse_time("since", &need(&args.since, "since")?, now_s).map_err(invalid)?,
        until_s: parse_time("until", &args.until, now_s).map_err(invalid)?,
        step: parse_duration(&args.step).map_err(|e| invalid(format!("--step: {e}")))?,
        slow_threshold: config.max_p99,
        canary_weight: args.canary_weight,
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(invalid(
            "--from-prometheus: write the server's base URL, e.g. http://127.0.0.1:9090".into(),
        ));
    }
    let client = crate::metrics::prometheus::PrometheusClient::new(
        url,
        Vec::new(),
        std::time::Duration::from_secs(30),
    );
    let rt = crate::session::runtime().map_err(Error::from)?;
    let ws = rt.block_on(windows(&client, &spec)).map_err(|e| {
        Error::ToolInvalid(format!(
            "judge replay --from-prometheus {}: {e}",
            client.shown()
        ))
    })?;
    let mut text = String::new();
    for w in &ws {
        let line = serde_json::to_string(w)
            .map_err(|e| Error::ToolInternal(format!("cannot encode a window: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    let label = format!(
        "{} ({} {} vs {})",
        client.shown(),
        spec.service,
        spec.canary,
        spec.baseline
    );
    crate::judge::replay::replay_text(&label, &text, config, every)
        .map_err(|e| Error::ToolInvalid(e.to_string()))
}
