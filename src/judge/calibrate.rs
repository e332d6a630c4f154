//! The comparators' parameters in `cutover judge-bench`, and the two ways they are set.
//!
//! * **Documented** ([`JudgeSpec::documented`]): as each tool's own documentation tells a
//!   user to set it, relative to what the simulated service does (0.5 % errors, p99
//!   202 ms). Argo Rollouts and Flagger check absolute bounds per interval; their docs
//!   frame the bounds as the service's objectives (Flagger: "validate service level
//!   objectives (SLOs) like availability, error rate percentage, average response
//!   time"; its example `request-success-rate` `thresholdRange.min: 99`,
//!   `request-duration` `max: 500` ms, `interval: 1m`; Argo's example `success-rate`
//!   template `successCondition: result[0] >= 0.95` with `failureLimit: 3`). A careful
//!   user of this service therefore sets the error bound from its SLO, 99 % success
//!   (1 % errors), and the p99 bound from the baseline's observed p99 with a 20 % margin
//!   (243 ms), not the examples' 95 % and 500 ms, which this service could never break
//!   with a 202 → 252 ms shift. Kayenta keeps its documented defaults (Mann-Whitney at
//!   98 % confidence, effect-size tolerance 0.25); the z-test peeks at 95 %.
//! * **Equal A/A** ([`tune`]): each judge's strictness is bisected on the A/A scenario
//!   (a fixed seed set of its own, apart from the table's) to the same false-rollback
//!   rate, so the table can compare time to detect at equal false alarms. Judges with
//!   two bounds (Argo, Flagger) get half the target per metric, tuned one at a time with
//!   the other metric off, the way the sequential judge spends α/2 per family.

use serde::Serialize;

use super::JudgeError;
use super::comparators::{Z_95, Z_98};
use super::sim::{
    JudgeSpec, LADDER, P99_MARGINS, Scenario, SimParams, Tick, generate, ladder_ms, run_trial,
};

/// The documented p99 margin over the baseline's p99 (an index into
/// [`P99_MARGINS`]: ×1.2).
pub const DOC_P99_MARGIN_INDEX: usize = 4;
/// The documented error bound: the SLO's error budget (99 % success).
pub const DOC_SLO_ERROR_RATE: f64 = 0.01;

/// How a judge's parameters were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    Documented,
    EqualAa,
}

impl Calibration {
    pub fn name(&self) -> &'static str {
        match self {
            Calibration::Documented => "documented",
            Calibration::EqualAa => "equal-aa",
        }
    }
}

/// A benchmarked judge's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JudgeParams {
    /// The sequential judge (and the oracle): its error level α.
    Sequential { alpha: f64 },
    /// Argo / Flagger: per-minute bounds on the canary alone.
    Threshold {
        max_error_rate: f64,
        /// Index into [`ladder_ms`] of the p99 bound; `None` = latency not checked.
        p99_ladder: Option<usize>,
        failure_limit: u32,
        /// Flagger: an interval without data counts as a failed check.
        no_data_failed: bool,
    },
    /// Kayenta: Mann-Whitney interval quantile and effect-size tolerance.
    Kayenta { z: f64, effect: f64, every_s: u64 },
    /// Two-proportion z-test peeking every `every_s`.
    ZPeek { z: f64, every_s: u64 },
}

fn pct(v: f64) -> String {
    let s = format!("{:.3}", v * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} %")
}

/// Two-sided confidence level of a normal quantile, in percent.
fn confidence_of(z: f64) -> f64 {
    100.0 * (1.0 - 2.0 * super::sim::normal_upper_tail(z))
}

impl JudgeParams {
    /// The slow-request threshold (index into [`ladder_ms`]) the judge reads, if any.
    pub fn latency_threshold(&self) -> Option<usize> {
        match self {
            JudgeParams::Threshold { p99_ladder, .. } => p99_ladder.map(|i| i.min(LADDER - 1)),
            _ => Some(0),
        }
    }

    /// The parameters as a person would write them.
    pub fn describe(&self) -> String {
        match *self {
            JudgeParams::Sequential { alpha } => {
                format!("α {alpha:.4}, tolerance ×1.25, slow = above baseline p99")
            }
            JudgeParams::Threshold {
                max_error_rate,
                p99_ladder,
                failure_limit,
                no_data_failed,
            } => {
                let lat = match p99_ladder {
                    Some(i) => {
                        let i = i.min(LADDER - 1);
                        let margin = P99_MARGINS
                            .get(i)
                            .map(|m| format!(" (baseline p99 ×{m})"))
                            .unwrap_or_default();
                        format!("p99 ≤ {} ms{margin}", ladder_ms()[i])
                    }
                    None => "p99 not checked".into(),
                };
                let limit = if no_data_failed {
                    format!("threshold {} (no data = failed)", failure_limit + 1)
                } else {
                    format!("failureLimit {failure_limit}")
                };
                format!(
                    "success ≥ {} per 1m, {lat}, {limit}",
                    pct(1.0 - max_error_rate)
                )
            }
            JudgeParams::Kayenta { z, effect, every_s } => format!(
                "Mann-Whitney {:.2} % confidence (z {z:.2}), effect tolerance {effect}, every {} m",
                confidence_of(z),
                every_s / 60
            ),
            JudgeParams::ZPeek { z, every_s } => format!(
                "two-proportion z > {z:.2} (one look at {:.2} %), every {every_s} s",
                100.0 * (1.0 - super::sim::normal_upper_tail(z))
            ),
        }
    }
}

impl JudgeSpec {
    /// The parameters each tool's documentation tells a user to set (module docs).
    pub fn documented(&self) -> JudgeParams {
        let threshold = |failure_limit: u32, no_data_failed: bool| JudgeParams::Threshold {
            max_error_rate: DOC_SLO_ERROR_RATE,
            p99_ladder: Some(DOC_P99_MARGIN_INDEX),
            failure_limit,
            no_data_failed,
        };
        match self {
            JudgeSpec::Sequential
            | JudgeSpec::Oracle
            | JudgeSpec::SeqNarrow
            | JudgeSpec::SeqWary => JudgeParams::Sequential { alpha: 0.01 },
            JudgeSpec::ArgoFl0 => threshold(0, false),
            JudgeSpec::ArgoFl3 => threshold(3, false),
            JudgeSpec::Flagger5 => threshold(4, true),
            JudgeSpec::Flagger10 => threshold(9, true),
            JudgeSpec::Kayenta5m => JudgeParams::Kayenta {
                z: Z_98,
                effect: 0.25,
                every_s: 300,
            },
            JudgeSpec::ZPeek60s => JudgeParams::ZPeek {
                z: Z_95,
                every_s: 60,
            },
        }
    }
}

/// A/A trials generated once and judged many times while tuning.
pub struct TuneSet {
    trials: Vec<Vec<Tick>>,
    weight: f64,
    threads: usize,
}

impl TuneSet {
    /// `trials` A/A trials from `seed` (which should differ from the table's seed).
    pub fn new(p: &SimParams, trials: u32, seed: u64, threads: usize) -> TuneSet {
        let p = SimParams { seed, trials, ..*p };
        let mut out = Vec::with_capacity(trials as usize);
        for t in 0..trials {
            let mut ticks = Vec::with_capacity(p.horizon_s as usize);
            generate(Scenario::Aa, &p, t, &mut ticks);
            out.push(ticks);
        }
        TuneSet {
            trials: out,
            weight: p.traffic(Scenario::Aa).1,
            threads: threads.max(1),
        }
    }

    /// Share of the set's trials the judge rolls back.
    pub fn aa_rate(&self, spec: JudgeSpec, params: &JudgeParams) -> Result<f64, JudgeError> {
        let threads = self.threads.min(self.trials.len().max(1));
        let counts: Vec<Result<usize, JudgeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut n = 0;
                        for ticks in self.trials.iter().skip(t).step_by(threads) {
                            let r = run_trial(spec, params, ticks, self.weight, (1.0, 1.0))?;
                            n += usize::from(r.detect_s.is_some());
                        }
                        Ok(n)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(JudgeError::InvalidConfig("a tuning thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut rolled = 0;
        for c in counts {
            rolled += c?;
        }
        Ok(rolled as f64 / self.trials.len().max(1) as f64)
    }
}

/// What tuning found: the parameters and the A/A rate they reach on the tuning set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tuned {
    pub params: JudgeParams,
    pub aa_rate: f64,
}

/// Steps of each continuous bisection.
const STEPS: u32 = 12;

/// The smallest `x` in `[lo, hi]` with `rate(x) ≤ target` (rates fall as `x` grows),
/// by bisection; `hi` if none is found.
fn bisect(
    mut lo: f64,
    mut hi: f64,
    target: f64,
    mut rate: impl FnMut(f64) -> Result<f64, JudgeError>,
) -> Result<f64, JudgeError> {
    if rate(lo)? <= target {
        return Ok(lo);
    }
    for _ in 0..STEPS {
        let mid = 0.5 * (lo + hi);
        if rate(mid)? <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Tune `spec` to an A/A false-rollback rate of at most `target` on `set`.
pub fn tune(spec: JudgeSpec, set: &TuneSet, target: f64) -> Result<Tuned, JudgeError> {
    let doc = spec.documented();
    let params = match doc {
        JudgeParams::Sequential { .. } => {
            // Strictness grows with ln(1/α); α stays below the config's 0.5.
            let x = bisect((1.0f64 / 0.4).ln(), (1.0f64 / 1e-4).ln(), target, |x| {
                set.aa_rate(spec, &JudgeParams::Sequential { alpha: (-x).exp() })
            })?;
            JudgeParams::Sequential { alpha: (-x).exp() }
        }
        JudgeParams::Threshold {
            failure_limit,
            no_data_failed,
            ..
        } => {
            let with = |max_error_rate: f64, p99_ladder: Option<usize>| JudgeParams::Threshold {
                max_error_rate,
                p99_ladder,
                failure_limit,
                no_data_failed,
            };
            let half = target / 2.0;
            let err = bisect(0.001, 0.2, half, |b| set.aa_rate(spec, &with(b, None)))?;
            // The p99 bound: the lowest threshold of the ladder that keeps half the target.
            let mut idx = LADDER - 1;
            for i in 0..LADDER {
                if set.aa_rate(spec, &with(1.0, Some(i)))? <= half {
                    idx = i;
                    break;
                }
            }
            with(err, Some(idx))
        }
        JudgeParams::Kayenta {
            effect, every_s, ..
        } => {
            let z = bisect(0.5, 8.0, target, |z| {
                set.aa_rate(spec, &JudgeParams::Kayenta { z, effect, every_s })
            })?;
            JudgeParams::Kayenta { z, effect, every_s }
        }
        JudgeParams::ZPeek { every_s, .. } => {
            let z = bisect(0.5, 8.0, target, |z| {
                set.aa_rate(spec, &JudgeParams::ZPeek { z, every_s })
            })?;
            JudgeParams::ZPeek { z, every_s }
        }
    };
    Ok(Tuned {
        params,
        aa_rate: set.aa_rate(spec, &params)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_bounds_are_relative_to_the_service() {
        let JudgeParams::Threshold {
            max_error_rate,
            p99_ladder: Some(i),
            ..
        } = JudgeSpec::ArgoFl3.documented()
        else {
            panic!("argo is a threshold judge");
        };
        assert_eq!(max_error_rate, 0.01);
        // Baseline p99 202 ms × 1.2, below the latency scenario's 252 ms.
        assert_eq!(ladder_ms()[i], 243);
        let text = JudgeSpec::Flagger5.documented().describe();
        assert!(
            text.contains("p99 ≤ 243 ms") && text.contains("threshold 5"),
            "{text}"
        );
        assert!(
            JudgeSpec::Kayenta5m
                .documented()
                .describe()
                .contains("98.00 %")
        );
    }

    #[test]
    fn bisection_finds_the_least_strict_setting_under_the_target() {
        // rate(x) = 1 / x: the smallest x with rate ≤ 0.01 is 100.
        let x = bisect(1.0, 1000.0, 0.01, |x| Ok(1.0 / x)).unwrap();
        assert!((x - 100.0).abs() < 0.5, "{x}");
        assert_eq!(bisect(5.0, 10.0, 0.5, |x| Ok(1.0 / x)).unwrap(), 5.0);
    }

    #[test]
    fn tuning_a_peeking_test_makes_it_stricter_and_meets_the_target() {
        let p = SimParams {
            horizon_s: 600,
            ..Default::default()
        };
        let set = TuneSet::new(&p, 60, 99, 2);
        let doc = JudgeSpec::ZPeek60s.documented();
        let tuned = tune(JudgeSpec::ZPeek60s, &set, 0.05).unwrap();
        let (JudgeParams::ZPeek { z: z0, .. }, JudgeParams::ZPeek { z, .. }) = (doc, tuned.params)
        else {
            panic!("z-peek params");
        };
        assert!(tuned.aa_rate <= 0.05, "{tuned:?}");
        assert!(set.aa_rate(JudgeSpec::ZPeek60s, &doc).unwrap() > 0.05);
        assert!(z > z0, "{z} vs {z0}");
    }
}
