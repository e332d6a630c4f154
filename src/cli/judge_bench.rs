//! `cutover judge-bench`: compare canary judges on seeded simulated traffic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum, builder::PossibleValuesParser};

use crate::duration::parse_duration;
use crate::judge::calibrate::{Calibration, TuneSet, Tuned, tune};
use crate::judge::explain::count;
use crate::judge::sim::{
    BenchJudge, JudgeSpec, Scenario, SimParams, Summary, record_trial, run_scenario_with,
};

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Which calibrations of the comparators to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalibrationArg {
    /// As each tool's documentation tells a user to set it.
    Documented,
    /// Tuned so that every judge has the same A/A false-rollback rate.
    EqualAa,
    /// Both, one block after the other.
    Both,
}

#[derive(Debug, Args)]
pub struct JudgeBenchArgs {
    /// The comparators' parameters: documented, tuned to equal A/A false rollbacks, or both.
    #[arg(long, value_enum, default_value_t = CalibrationArg::Both)]
    pub calibration: CalibrationArg,
    /// A/A false-rollback rate (percent) every judge is tuned to with `equal-aa`.
    #[arg(long, default_value_t = 1.0)]
    pub target_aa: f64,
    /// A/A trials the tuning bisects on (a seed set apart from the table's).
    #[arg(long, default_value_t = 400)]
    pub tune_trials: u32,
    /// Seed of the tuning trials.
    #[arg(long, default_value_t = 1001)]
    pub tune_seed: u64,
    /// Scenario to run (repeatable; default: all).
    #[arg(long, value_parser = PossibleValuesParser::new(Scenario::ALL.map(|s| s.name())))]
    pub scenario: Vec<String>,
    /// Requests per second to baseline and canary together.
    #[arg(long, default_value_t = 100.0)]
    pub rps: f64,
    /// Canary weight in percent.
    #[arg(long, default_value_t = 10.0)]
    pub weight: f64,
    /// Baseline error rate as a share (0.005 = 0.5 %).
    #[arg(long, default_value_t = 0.005)]
    pub base_error: f64,
    /// Canary error rate ÷ baseline error rate in the `errors` and `low-traffic` scenarios.
    #[arg(long, default_value_t = 4.0)]
    pub multiplier: f64,
    /// Extra latency of canary requests above the baseline p90 in the `latency` scenario.
    #[arg(long, default_value_t = 50.0)]
    pub latency_shift_ms: f64,
    /// Trials per scenario.
    #[arg(long, default_value_t = 2000)]
    pub trials: u32,
    /// Base seed; the same seed gives the same table.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Judge to run (repeatable; default: all but the variants `seq-narrow` and `seq-wary`,
    /// which show trade-offs and run only when named).
    #[arg(long = "judge", value_parser = PossibleValuesParser::new(JudgeSpec::ALL.into_iter().chain(JudgeSpec::EXTRA).map(|j| j.name())))]
    pub judges: Vec<String>,
    /// Simulated time per trial.
    #[arg(long, default_value = "30m")]
    pub horizon: String,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Instead of benchmarking, write one trial of the (first) scenario as JSON lines
    /// that `cutover judge replay` reads.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// The trial to record with `--record`.
    #[arg(long, default_value_t = 0)]
    pub trial: u32,
}

pub fn run(args: JudgeBenchArgs) -> Result<ExitCode, Error> {
    let horizon = match parse_duration(&args.horizon) {
        Ok(d) if d.as_secs() >= 1 => d,
        Ok(_) => return Err(Error::ToolInvalid("--horizon must be at least 1s".into())),
        Err(e) => return Err(Error::ToolInvalid(format!("--horizon: {e}"))),
    };
    let params = SimParams {
        rps: args.rps,
        weight: args.weight / 100.0,
        base_error: args.base_error,
        multiplier: args.multiplier,
        latency_shift_ms: args.latency_shift_ms,
        horizon_s: horizon.as_secs().min(u32::MAX as u64) as u32,
        trials: args.trials,
        seed: args.seed,
    };
    params
        .validate()
        .map_err(|e| Error::ToolInvalid(e.to_string()))?;
    let scenarios: Vec<Scenario> = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario
            .iter()
            .filter_map(|s| Scenario::parse(s))
            .collect()
    };
    let judges: Vec<JudgeSpec> = if args.judges.is_empty() {
        JudgeSpec::ALL.to_vec()
    } else {
        args.judges
            .iter()
            .filter_map(|j| JudgeSpec::parse(j))
            .collect()
    };
    if let Some(path) = &args.record {
        return record(path, scenarios[0], &params, args.trial);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    if !(args.target_aa > 0.0 && args.target_aa < 50.0) {
        return Err(Error::ToolInvalid(format!(
            "--target-aa {} must be a percentage above 0 and below 50, e.g. 1",
            args.target_aa
        )));
    }
    if args.tune_trials == 0 {
        return Err(Error::ToolInvalid("--tune-trials must be above 0".into()));
    }
    let started = Instant::now();
    let mut bench: Vec<BenchJudge> = Vec::new();
    if args.calibration != CalibrationArg::EqualAa {
        bench.extend(judges.iter().map(|j| BenchJudge::documented(*j)));
    }
    let mut tuned: Vec<(JudgeSpec, Tuned)> = Vec::new();
    if args.calibration != CalibrationArg::Documented {
        let set = TuneSet::new(&params, args.tune_trials, args.tune_seed, threads);
        let target = args.target_aa / 100.0;
        let mut sequential: Option<Tuned> = None;
        for j in &judges {
            let t = match (j, sequential) {
                // The oracle is the sequential judge's yardstick: it gets the same α.
                (JudgeSpec::Oracle, Some(seq)) => Tuned {
                    aa_rate: set
                        .aa_rate(*j, &seq.params)
                        .map_err(|e| Error::ToolInternal(format!("tuning oracle: {e}")))?,
                    params: seq.params,
                },
                _ => tune(*j, &set, target)
                    .map_err(|e| Error::ToolInternal(format!("tuning {} failed: {e}", j.name())))?,
            };
            if *j == JudgeSpec::Sequential {
                sequential = Some(t);
            }
            tuned.push((*j, t));
            bench.push(BenchJudge {
                spec: *j,
                params: t.params,
                calibration: Calibration::EqualAa,
            });
        }
    }
    let mut rows: Vec<Summary> = Vec::new();
    for s in &scenarios {
        let r = run_scenario_with(*s, &bench, &params, threads)
            .map_err(|e| Error::ToolInternal(format!("simulation of {} failed: {e}", s.name())))?;
        rows.extend(r);
    }
    let took = started.elapsed();
    match args.output {
        OutputFormat::Json => {
            let tuning: Vec<serde_json::Value> = tuned
                .iter()
                .map(|(j, t)| {
                    serde_json::json!({
                        "judge": j.name(),
                        "params": j.describe(&t.params),
                        "aa_rate": t.aa_rate,
                        "target_aa": args.target_aa / 100.0,
                        "trials": args.tune_trials,
                        "seed": args.tune_seed,
                    })
                })
                .collect();
            let doc = serde_json::json!({ "results": rows, "tuning": tuning });
            println!("{doc}");
        }
        OutputFormat::Text => {
            print!("{}", table(&rows, &params));
            print!(
                "{}",
                legend(
                    &bench,
                    &tuned,
                    args.target_aa,
                    args.tune_trials,
                    args.tune_seed
                )
            );
            println!(
                "{} scenarios × {} judges × {} trials of {} s in {:.1} s on {threads} threads (seed {})",
                scenarios.len(),
                bench.len(),
                count(params.trials as u64),
                params.horizon_s,
                took.as_secs_f64(),
                params.seed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn record(path: &PathBuf, s: Scenario, p: &SimParams, trial: u32) -> Result<ExitCode, Error> {
    let windows = record_trial(s, p, trial);
    let result = File::create(path).and_then(|f| {
        let mut out = BufWriter::new(f);
        for w in &windows {
            let line = serde_json::to_string(w).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        }
        out.flush()
    });
    match result {
        Ok(()) => {
            // What was written, on stderr beside the recording: not an error.
            eprintln!(
                "wrote {} windows of scenario {} (trial {trial}, seed {}) to {}",
                windows.len(),
                s.name(),
                p.seed,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Error::ToolInvalid(format!(
            "cannot write {}: {e}; check the directory exists and is writable",
            path.display()
        ))),
    }
}

/// A row's judge as the table shows it: tuned judges carry `=aa`.
fn label(r: &Summary) -> String {
    if r.calibration == Calibration::EqualAa.name() {
        format!("{}=aa", r.judge)
    } else {
        r.judge.clone()
    }
}

/// Every judge's parameters under the table, per calibration.
pub fn legend(
    bench: &[BenchJudge],
    tuned: &[(JudgeSpec, Tuned)],
    target_pct: f64,
    trials: u32,
    seed: u64,
) -> String {
    let mut out = String::from("\nparameters:\n");
    for b in bench {
        let name = match b.calibration {
            Calibration::Documented => b.spec.name().to_string(),
            Calibration::EqualAa => format!("{}=aa", b.spec.name()),
        };
        let tuning = match b.calibration {
            Calibration::Documented => "documented".to_string(),
            Calibration::EqualAa => tuned
                .iter()
                .find(|(j, _)| *j == b.spec)
                .map(|(_, t)| {
                    format!(
                        "tuned to A/A ≤ {target_pct} %: {:.2} % on {trials} trials of seed {seed}",
                        t.aa_rate * 100.0
                    )
                })
                .unwrap_or_default(),
        };
        out.push_str(&format!("  {name:<15} {} [{tuning}]\n", b.describe()));
    }
    out.push_str(
        "  documented: as each tool's docs tell a user to set it for this service (0.5 % errors,\n\
         \x20 p99 202 ms): error bound from the 99 % success SLO, p99 bound = baseline p99 × 1.2,\n\
         \x20 Argo failureLimit / Flagger threshold as named, Kayenta's defaults; see docs/judge.md.\n\
         \x20 =aa: bisected on A/A trials of their own seed to the same false-rollback rate.\n",
    );
    out
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.0}")).unwrap_or_else(|| "–".into())
}

/// The human table: one block per scenario.
pub fn table(rows: &[Summary], p: &SimParams) -> String {
    let mut out = String::new();
    let mut scenario = "";
    for r in rows {
        if r.scenario != scenario {
            scenario = &r.scenario;
            let kind = if r.false_rollbacks {
                "every rollback is false"
            } else {
                "rollbacks are detections"
            };
            let scn = Scenario::parse(&r.scenario)
                .map(|s| s.describe(p))
                .unwrap_or_default();
            out.push_str(&format!(
                "\n{} — {} rps, {} % canary, {}-second horizon: {scn}; {kind}\n",
                r.scenario,
                r.rps,
                r.weight * 100.0,
                p.horizon_s,
            ));
            out.push_str(&format!(
                "  {:<15} {:>7} {:>22} {:>8} {:>8} {:>11} {:>9} {:>7} {:>8} {:>7}\n",
                "judge",
                "trials",
                "rollback % [95% CI]",
                "median s",
                "p90 s",
                "canary req",
                "bad req",
                "pass %",
                "inconcl %",
                "ns/win"
            ));
        }
        let rb = format!(
            "{:.1} [{:.1}–{:.1}]",
            r.rollback_rate * 100.0,
            r.rollback_ci_low * 100.0,
            r.rollback_ci_high * 100.0
        );
        out.push_str(&format!(
            "  {:<15} {:>7} {:>22} {:>8} {:>8} {:>11} {:>9} {:>7.1} {:>8.1} {:>7.0}\n",
            label(r),
            r.trials,
            rb,
            secs(r.median_detect_s),
            secs(r.p90_detect_s),
            count(r.mean_canary_requests.round() as u64),
            format!("{:.1}", r.mean_bad_requests),
            r.pass_rate * 100.0,
            r.inconclusive_rate * 100.0,
            r.ns_per_window
        ));
    }
    out.push_str(
        "\nrollback %: share of trials the judge failed within the horizon (Wilson 95 % interval);\n\
         median/p90 s: time to that rollback; canary req / bad req: mean canary requests served,\n\
         and of them failed or slower than the baseline p99, until the rollback or the horizon;\n\
         pass % / inconcl %: the verdict at the horizon when not rolled back;\n\
         ns/win: judge CPU per one-second window (timed, so it varies between runs);\n\
         oracle: not a judge but the yardstick, the sequential test told the true rate ratio\n\
         (no anytime-valid test at the same α and tolerance is much faster).\n",
    );
    out
}
