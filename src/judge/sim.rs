//! The seeded judge benchmark behind `cutover judge-bench`.
//!
//! Each trial simulates per-second windows of a canary analysis: requests per arm are
//! Poisson (the router's split of Poisson traffic), errors and slow requests binomial
//! per arm, latency lognormal (median 50 ms, σ 0.6: p90 108 ms, p99 202 ms) plus the
//! scenario's effect. A trial's windows are generated once from its own seed and fed to
//! every judge, so judges are compared on identical traffic, and the same seed gives the
//! same table on any run (for a given build of the `rand` crates).

use std::time::Duration;

use rand::{SeedableRng, rngs::SmallRng};
use rand_distr::{Binomial, Distribution, Gamma, Poisson};
use serde::Serialize;

use super::calibrate::{Calibration, JudgeParams};
use super::comparators::{KayentaJudge, ZPeekJudge};
use super::stats::{Prior, quantile_sorted, wilson};
use super::{
    AnalysisConfig, AnalysisWindow, ArmCounts, Judge, JudgeError, NoDataPolicy, Outcome,
    SequentialJudge, ThresholdJudge,
};

/// Latency model: lognormal with this median (ms) and log-sd.
pub const LATENCY_MEDIAN_MS: f64 = 50.0;
pub const LATENCY_SIGMA: f64 = 0.6;
/// The largest latency threshold the simulator counts requests above (Flagger's
/// documentation example `request-duration` `thresholdRange.max: 500`).
pub const MAX_P99_MS: u64 = 500;
/// Latency thresholds the simulator counts slow requests at, as multiples of the
/// baseline p99 (the last entry is [`MAX_P99_MS`]): the p99 bounds the Argo- and
/// Flagger-style judges can be given, documented or tuned.
pub const P99_MARGINS: [f64; 11] = [1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4, 1.5, 1.75, 2.0];
/// Number of latency thresholds per tick: the margins and [`MAX_P99_MS`].
pub const LADDER: usize = P99_MARGINS.len() + 1;

/// The latency thresholds (ms) slow requests are counted at, ascending: index 0 is the
/// frozen baseline p99 the sequential judge uses.
pub fn ladder_ms() -> [u64; LADDER] {
    let p99 = frozen_p99_ms() as f64;
    let mut t = [MAX_P99_MS; LADDER];
    for (v, m) in t.iter_mut().zip(P99_MARGINS) {
        *v = (p99 * m).ceil() as u64;
    }
    t
}

/// A simulated situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Canary identical to baseline: every rollback is a false rollback.
    Aa,
    /// Canary error rate × multiplier.
    Errors,
    /// Canary requests above the baseline p90 take `latency_shift_ms` longer (p99 + shift).
    Latency,
    /// Canary fails 50 % of requests.
    Crash,
    /// A/A with a common-mode incident: both arms at 5 % errors in minutes 10–12.
    Incident,
    /// A/A with per-arm, per-minute Gamma(k = 4) noise on the error rate.
    Overdispersed,
    /// Error regression (× multiplier) at 5 rps and 5 % canary weight.
    LowTraffic,
    /// A/A at 5 rps and 5 % canary weight.
    LowTrafficAa,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Aa,
        Scenario::Errors,
        Scenario::Latency,
        Scenario::Crash,
        Scenario::Incident,
        Scenario::Overdispersed,
        Scenario::LowTraffic,
        Scenario::LowTrafficAa,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Aa => "aa",
            Scenario::Errors => "errors",
            Scenario::Latency => "latency",
            Scenario::Crash => "crash",
            Scenario::Incident => "incident",
            Scenario::Overdispersed => "overdispersed",
            Scenario::LowTraffic => "low-traffic",
            Scenario::LowTrafficAa => "low-traffic-aa",
        }
    }

    pub fn parse(text: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == text)
    }

    /// What the canary does in this scenario, for the table.
    pub fn describe(&self, p: &SimParams) -> String {
        let m = p.multiplier;
        let base = p.base_error * 100.0;
        match self {
            Scenario::Aa | Scenario::LowTrafficAa => format!("canary = baseline ({base} % errors)"),
            Scenario::Errors | Scenario::LowTraffic => {
                format!("canary errors ×{m} ({base} % → {} %)", base * m)
            }
            Scenario::Latency => format!(
                "canary requests above the baseline p90 take +{} ms (p99 +{0} ms)",
                p.latency_shift_ms
            ),
            Scenario::Crash => "canary fails 50 % of requests".into(),
            Scenario::Incident => {
                format!("both arms at 5 % errors in minutes 10–12, else {base} %")
            }
            Scenario::Overdispersed => {
                format!("canary = baseline ({base} %), per-arm-minute Gamma(k=4) error-rate noise")
            }
        }
    }

    /// Is any rollback in this scenario a false one?
    pub fn is_aa(&self) -> bool {
        matches!(
            self,
            Scenario::Aa | Scenario::Incident | Scenario::Overdispersed | Scenario::LowTrafficAa
        )
    }

    fn id(&self) -> u64 {
        Scenario::ALL.iter().position(|s| s == self).unwrap_or(0) as u64 + 1
    }
}

/// Simulation parameters (the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimParams {
    /// Requests per second to baseline + canary.
    pub rps: f64,
    /// The canary's share, 0–1.
    pub weight: f64,
    pub base_error: f64,
    pub multiplier: f64,
    pub latency_shift_ms: f64,
    /// Seconds simulated per trial.
    pub horizon_s: u32,
    pub trials: u32,
    pub seed: u64,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            rps: 100.0,
            weight: 0.10,
            base_error: 0.005,
            multiplier: 4.0,
            latency_shift_ms: 50.0,
            horizon_s: 1800,
            trials: 2000,
            seed: 1,
        }
    }
}

impl SimParams {
    /// Check ranges; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rps.is_finite() && self.rps > 0.0 && self.rps <= 1e6) {
            return Err(format!(
                "--rps {} must be above 0 (and at most 1,000,000)",
                self.rps
            ));
        }
        if !(self.weight > 0.0 && self.weight < 1.0) {
            return Err(format!(
                "--weight {} must be a percentage strictly between 0 and 100",
                self.weight * 100.0
            ));
        }
        if !(self.base_error >= 0.0 && self.base_error < 1.0) {
            return Err(format!(
                "--base-error {} must be a share in [0, 1), e.g. 0.005",
                self.base_error
            ));
        }
        if !(self.multiplier > 0.0 && self.base_error * self.multiplier <= 1.0) {
            return Err(format!(
                "--multiplier {} must be above 0 and keep base-error × multiplier ≤ 1",
                self.multiplier
            ));
        }
        if !(self.latency_shift_ms >= 0.0 && self.latency_shift_ms.is_finite()) {
            return Err(format!(
                "--latency-shift-ms {} must be 0 or more",
                self.latency_shift_ms
            ));
        }
        if self.horizon_s == 0 || self.trials == 0 {
            return Err("--horizon and --trials must be above 0".into());
        }
        Ok(())
    }

    /// The canary's true rate ratios against the baseline in a scenario: errors, and
    /// requests slower than the frozen p99.
    pub fn true_ratios(&self, s: Scenario) -> (f64, f64) {
        let errors = match s {
            Scenario::Errors | Scenario::LowTraffic => self.multiplier,
            Scenario::Crash if self.base_error > 0.0 => 0.5 / self.base_error,
            _ => 1.0,
        };
        let latency = match s {
            Scenario::Latency => {
                let t = frozen_p99_ms() as f64;
                p_slower_tail_shift(t, self.latency_shift_ms) / p_slower(t)
            }
            _ => 1.0,
        };
        (errors, latency)
    }

    /// Traffic and split for a scenario (the low-traffic ones use 5 rps and 5 %).
    pub fn traffic(&self, s: Scenario) -> (f64, f64) {
        match s {
            Scenario::LowTraffic | Scenario::LowTrafficAa => (5.0, 0.05),
            _ => (self.rps, self.weight),
        }
    }
}

/// The judges the benchmark knows. Their parameters are a [`JudgeParams`], either as
/// each tool's documentation tells a user to set them ([`JudgeSpec::documented`]) or tuned
/// to a common A/A false-rollback rate ([`super::calibrate::tune`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JudgeSpec {
    /// The default judge with default settings.
    Sequential,
    /// Argo: per-minute success-rate and p99 checks, failureLimit 0.
    ArgoFl0,
    /// Argo with failureLimit 3.
    ArgoFl3,
    /// Flagger: same checks, cumulative threshold 5, no data = failed.
    Flagger5,
    /// Flagger with threshold 10.
    Flagger10,
    /// Kayenta-like Mann-Whitney on per-minute points every 5 minutes.
    Kayenta5m,
    /// Naive two-proportion z-test every 60 s.
    ZPeek60s,
    /// Not a judge but a yardstick: the default judge told the scenario's true rate
    /// ratios (a sequential probability ratio test), which bounds how fast any
    /// anytime-valid test at the same α and tolerance can be.
    Oracle,
    /// Not a judge to use: the default judge with a prior concentrated on the two
    /// regressions this benchmark simulates ([`Prior::NARROW`]), to show what coming
    /// within 1.05× of the oracle there costs elsewhere.
    SeqNarrow,
    /// The default judge with `bursty = true`: its bar raised by
    /// [`BURSTY_MARGIN`](super::sequential::BURSTY_MARGIN) until it has three minutes to
    /// measure how bursty bad events are, to show what fewer false rollbacks under
    /// overdispersion cost in time to detect.
    SeqWary,
}

impl JudgeSpec {
    pub const ALL: [JudgeSpec; 8] = [
        JudgeSpec::Sequential,
        JudgeSpec::ArgoFl0,
        JudgeSpec::ArgoFl3,
        JudgeSpec::Flagger5,
        JudgeSpec::Flagger10,
        JudgeSpec::Kayenta5m,
        JudgeSpec::ZPeek60s,
        JudgeSpec::Oracle,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            JudgeSpec::Sequential => "sequential",
            JudgeSpec::ArgoFl0 => "argo-fl0",
            JudgeSpec::ArgoFl3 => "argo-fl3",
            JudgeSpec::Flagger5 => "flagger-5",
            JudgeSpec::Flagger10 => "flagger-10",
            JudgeSpec::Kayenta5m => "kayenta-5m",
            JudgeSpec::ZPeek60s => "z-peek-60s",
            JudgeSpec::Oracle => "oracle",
            JudgeSpec::SeqNarrow => "seq-narrow",
            JudgeSpec::SeqWary => "seq-wary",
        }
    }

    /// Variants of the sequential judge run only when named (`--judge`), to measure
    /// trade-offs; not in the default table.
    pub const EXTRA: [JudgeSpec; 2] = [JudgeSpec::SeqNarrow, JudgeSpec::SeqWary];

    pub fn parse(text: &str) -> Option<JudgeSpec> {
        JudgeSpec::ALL
            .into_iter()
            .chain(JudgeSpec::EXTRA)
            .find(|j| j.name() == text)
    }

    /// `params` as text, with what sets this judge apart (for the legend and JSON).
    pub fn describe(&self, params: &JudgeParams) -> String {
        format!("{}{}", params.describe(), self.note())
    }

    /// What sets this judge apart from its parameters, for the legend.
    fn note(&self) -> &'static str {
        match self {
            JudgeSpec::SeqNarrow => {
                ", prior centred on this benchmark's two regressions (ln(r/r0) 1.1 ± 0.15)"
            }
            JudgeSpec::SeqWary => {
                ", bursty = true (log-evidence bar ×1.15 until the dispersion is measured)"
            }
            _ => "",
        }
    }

    /// The judge with its documented parameters; `truth` is the scenario's true (error,
    /// slow-request) rate ratios, which only the oracle reads.
    pub fn build(&self, truth: (f64, f64)) -> Result<Box<dyn Judge>, JudgeError> {
        self.build_with(&self.documented(), truth)
    }

    /// The judge with the given parameters (of its own kind).
    pub fn build_with(
        &self,
        params: &JudgeParams,
        truth: (f64, f64),
    ) -> Result<Box<dyn Judge>, JudgeError> {
        let base = AnalysisConfig::default();
        let mismatch = || {
            JudgeError::InvalidConfig(format!(
                "parameters {} do not fit judge {}",
                params.describe(),
                self.name()
            ))
        };
        Ok(match (self, *params) {
            (JudgeSpec::Sequential, JudgeParams::Sequential { alpha }) => {
                Box::new(SequentialJudge::new(AnalysisConfig { alpha, ..base })?)
            }
            (JudgeSpec::SeqNarrow, JudgeParams::Sequential { alpha }) => {
                Box::new(SequentialJudge::variant(
                    self.name(),
                    AnalysisConfig { alpha, ..base },
                    Prior::NARROW,
                )?)
            }
            (JudgeSpec::SeqWary, JudgeParams::Sequential { alpha }) => {
                Box::new(SequentialJudge::named(
                    self.name(),
                    AnalysisConfig {
                        alpha,
                        bursty: true,
                        ..base
                    },
                )?)
            }
            (JudgeSpec::Oracle, JudgeParams::Sequential { alpha }) => {
                Box::new(SequentialJudge::oracle(
                    self.name(),
                    AnalysisConfig { alpha, ..base },
                    truth.0,
                    truth.1,
                )?)
            }
            (
                JudgeSpec::ArgoFl0
                | JudgeSpec::ArgoFl3
                | JudgeSpec::Flagger5
                | JudgeSpec::Flagger10,
                JudgeParams::Threshold {
                    max_error_rate,
                    p99_ladder,
                    failure_limit,
                    no_data_failed,
                    ..
                },
            ) => Box::new(ThresholdJudge::new(
                self.name(),
                AnalysisConfig {
                    judge: super::JudgeKind::Threshold,
                    max_error_rate: max_error_rate.min(1.0),
                    max_p99: Duration::from_millis(
                        p99_ladder
                            .map(|i| ladder_ms()[i.min(LADDER - 1)])
                            .unwrap_or(MAX_P99_MS),
                    ),
                    failure_limit,
                    no_data: if no_data_failed {
                        NoDataPolicy::Failed
                    } else {
                        NoDataPolicy::Error
                    },
                    guard_error_rate: None,
                    ..base
                },
            )?),
            (JudgeSpec::Kayenta5m, JudgeParams::Kayenta { z, effect, every_s }) => Box::new(
                KayentaJudge::new(self.name(), base, Duration::from_secs(every_s))?
                    .with_test(z, effect),
            ),
            (JudgeSpec::ZPeek60s, JudgeParams::ZPeek { z, every_s }) => Box::new(
                ZPeekJudge::new(self.name(), base, Duration::from_secs(every_s))?.with_z(z),
            ),
            _ => return Err(mismatch()),
        })
    }
}

/// Upper tail of the standard normal, `P(Z > z)` (complementary error function after
/// Numerical Recipes' `erfcc`, relative error below 1.2e-7).
pub fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let r = t
        * (-a * a - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    0.5 * if x >= 0.0 { r } else { 2.0 - r }
}

/// `P(latency > t_ms)` for the baseline model.
pub fn p_slower(t_ms: f64) -> f64 {
    if t_ms <= 0.0 {
        return 1.0;
    }
    normal_upper_tail((t_ms / LATENCY_MEDIAN_MS).ln() / LATENCY_SIGMA)
}

/// A quantile of the baseline latency model, in ms.
pub fn latency_quantile_ms(z: f64) -> f64 {
    LATENCY_MEDIAN_MS * (LATENCY_SIGMA * z).exp()
}

/// The baseline p99, frozen as a whole millisecond (what the engine would freeze).
pub fn frozen_p99_ms() -> u64 {
    latency_quantile_ms(2.326_347_874).ceil() as u64
}

/// `P(latency > t)` for a canary whose requests above the baseline p90 take `shift` longer.
fn p_slower_tail_shift(t_ms: f64, shift_ms: f64) -> f64 {
    let p90 = latency_quantile_ms(1.281_551_566);
    if t_ms < p90 {
        p_slower(t_ms)
    } else {
        p_slower((t_ms - shift_ms).max(p90))
    }
}

/// One simulated second: counts per arm, slow counts at each threshold of
/// [`ladder_ms`] (`[0]` the frozen p99, `[LADDER - 1]` [`MAX_P99_MS`]). Slow requests are
/// counted among requests that did not fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub baseline: (u64, u64, [u64; LADDER]),
    pub canary: (u64, u64, [u64; LADDER]),
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn binomial(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        0
    } else if p >= 1.0 {
        n
    } else {
        Binomial::new(n, p).map(|b| b.sample(rng)).unwrap_or(0)
    }
}

fn poisson(rng: &mut SmallRng, d: &Option<Poisson<f64>>) -> u64 {
    d.as_ref().map(|d| d.sample(rng) as u64).unwrap_or(0)
}

/// Generate one trial's ticks into `out` (cleared first).
pub fn generate(s: Scenario, p: &SimParams, trial: u32, out: &mut Vec<Tick>) {
    out.clear();
    // Chained hashing, so that (seed, trial) pairs never collide the way a plain
    // `seed ^ trial` would (seed 1 trial 6 = seed 7 trial 0).
    let seed = splitmix64(splitmix64(splitmix64(p.seed) ^ s.id()) ^ trial as u64);
    let mut rng = SmallRng::seed_from_u64(seed);
    // The thresholds between the frozen p99 and MAX_P99_MS are drawn from a stream of
    // their own, so the counts at those two (and every earlier table) stay as they were.
    let mut ladder_rng = SmallRng::seed_from_u64(splitmix64(seed ^ 0x001a_dde7));
    let ladder = ladder_ms().map(|t| t as f64);
    let (rps, w) = p.traffic(s);
    let pc = Poisson::new(rps * w).ok();
    let pb = Poisson::new(rps * (1.0 - w)).ok();
    let gamma = Gamma::new(4.0, 0.25).ok();
    let base_slow = ladder.map(p_slower);
    let canary_slow = match s {
        Scenario::Latency => ladder.map(|t| p_slower_tail_shift(t, p.latency_shift_ms)),
        _ => base_slow,
    };
    let (mut noise_b, mut noise_c) = (1.0, 1.0);
    for sec in 0..p.horizon_s {
        if s == Scenario::Overdispersed
            && sec % 60 == 0
            && let Some(g) = gamma.as_ref()
        {
            noise_b = g.sample(&mut rng);
            noise_c = g.sample(&mut rng);
        }
        let (mut eb, mut ec) = (p.base_error, p.base_error);
        match s {
            Scenario::Errors | Scenario::LowTraffic => ec = p.base_error * p.multiplier,
            Scenario::Crash => ec = 0.5,
            Scenario::Incident if (600..780).contains(&sec) => {
                eb = 0.05;
                ec = 0.05;
            }
            _ => {}
        }
        eb = (eb * noise_b).min(1.0);
        ec = (ec * noise_c).min(1.0);
        let arm = |n: u64, e: f64, slow: [f64; LADDER], rng: &mut SmallRng| {
            let errors = binomial(rng, n, e);
            let s0 = binomial(rng, n - errors, slow[0]);
            let last = if slow[0] > 0.0 {
                binomial(rng, s0, slow[LADDER - 1] / slow[0])
            } else {
                0
            };
            (n, errors, s0, last)
        };
        // Requests slower than the frozen p99 but not than MAX_P99_MS, thinned step by
        // step into the thresholds between.
        let fill = |(n, errors, s0, last): (u64, u64, u64, u64),
                    slow: [f64; LADDER],
                    rng: &mut SmallRng| {
            let mut counts = [last; LADDER];
            counts[0] = s0;
            let mut band = s0 - last;
            for i in 1..LADDER - 1 {
                let (above, prev) = (slow[i] - slow[LADDER - 1], slow[i - 1] - slow[LADDER - 1]);
                band = if prev > 0.0 {
                    binomial(rng, band, (above / prev).clamp(0.0, 1.0))
                } else {
                    0
                };
                counts[i] = last + band;
            }
            (n, errors, counts)
        };
        let nc = poisson(&mut rng, &pc);
        let nb = poisson(&mut rng, &pb);
        let canary = arm(nc, ec, canary_slow, &mut rng);
        let baseline = arm(nb, eb, base_slow, &mut rng);
        let canary = fill(canary, canary_slow, &mut ladder_rng);
        let baseline = fill(baseline, base_slow, &mut ladder_rng);
        out.push(Tick { baseline, canary });
    }
}

/// The window a judge sees for one tick, with slow requests counted above threshold
/// `which` of [`ladder_ms`] (0 = the frozen p99), or no latency at all (`None`).
pub fn window_of(tick: &Tick, sec: u32, weight: f64, which: Option<usize>) -> AnalysisWindow {
    let idx = which.unwrap_or(0).min(LADDER - 1);
    let arm = |a: &(u64, u64, [u64; LADDER])| ArmCounts {
        requests: a.0,
        errors: a.1,
        slow: if which.is_some() { a.2[idx] } else { 0 },
    };
    AnalysisWindow {
        at_ms: (sec as u64 + 1) * 1000,
        duration_ms: 1000,
        canary_weight: weight,
        slow_threshold_ms: which.map(|_| ladder_ms()[idx]),
        baseline: arm(&tick.baseline),
        canary: arm(&tick.canary),
    }
}

/// What happened to one judge in one trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialResult {
    /// Seconds until the judge failed the canary, if it did.
    pub detect_s: Option<u32>,
    /// Canary requests served until the rollback (or the horizon).
    pub canary_requests: u64,
    /// Canary requests that failed or were slower than the baseline p99, until then.
    pub bad_requests: u64,
    /// The outcome at the end (rollback or horizon).
    pub outcome: Outcome,
    /// Windows the judge read.
    pub windows: u32,
    /// Wall-clock nanoseconds the judge spent on them (the only non-deterministic field).
    pub cpu_ns: u64,
}

/// Run one judge over one trial's ticks.
pub fn run_trial(
    spec: JudgeSpec,
    params: &JudgeParams,
    ticks: &[Tick],
    weight: f64,
    truth: (f64, f64),
) -> Result<TrialResult, JudgeError> {
    let started = std::time::Instant::now();
    let mut judge = spec.build_with(params, truth)?;
    let which = params.latency_threshold();
    let (mut served, mut bad) = (0u64, 0u64);
    let mut outcome = Outcome::Inconclusive;
    for (sec, tick) in ticks.iter().enumerate() {
        served += tick.canary.0;
        bad += tick.canary.1 + tick.canary.2[0];
        outcome = judge.observe(&window_of(tick, sec as u32, weight, which))?;
        if outcome == Outcome::Fail {
            return Ok(TrialResult {
                detect_s: Some(sec as u32 + 1),
                canary_requests: served,
                bad_requests: bad,
                outcome,
                windows: sec as u32 + 1,
                cpu_ns: started.elapsed().as_nanos() as u64,
            });
        }
    }
    Ok(TrialResult {
        detect_s: None,
        canary_requests: served,
        bad_requests: bad,
        outcome,
        windows: ticks.len() as u32,
        cpu_ns: started.elapsed().as_nanos() as u64,
    })
}

/// One row of the benchmark table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub judge: String,
    pub scenario: String,
    pub trials: u32,
    pub rollback_rate: f64,
    pub rollback_ci_low: f64,
    pub rollback_ci_high: f64,
    /// Median seconds to rollback among trials that rolled back.
    pub median_detect_s: Option<f64>,
    pub p90_detect_s: Option<f64>,
    pub mean_canary_requests: f64,
    pub mean_bad_requests: f64,
    pub pass_rate: f64,
    pub inconclusive_rate: f64,
    /// Judge time per window in nanoseconds (median over trials, including building the
    /// judge and the window records; timed, so it varies from run to run, unlike every
    /// other field).
    pub ns_per_window: f64,
    pub false_rollbacks: bool,
    pub rps: f64,
    pub weight: f64,
    /// How the judge's parameters were chosen: `documented` or `equal-aa`.
    pub calibration: String,
    /// The judge's parameters, as text.
    pub params: String,
}

/// One judge as benchmarked: which, with what parameters, calibrated how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchJudge {
    pub spec: JudgeSpec,
    pub params: JudgeParams,
    pub calibration: Calibration,
}

impl BenchJudge {
    /// The judge's parameters as text, with what sets a variant apart.
    pub fn describe(&self) -> String {
        self.spec.describe(&self.params)
    }

    /// The judge as its documentation tells a user to set it.
    pub fn documented(spec: JudgeSpec) -> BenchJudge {
        BenchJudge {
            spec,
            params: spec.documented(),
            calibration: Calibration::Documented,
        }
    }
}

/// Aggregate per-trial results of one judge in one scenario.
pub fn summarize(j: &BenchJudge, s: Scenario, p: &SimParams, results: &[TrialResult]) -> Summary {
    let spec = j.spec;
    let n = results.len() as u64;
    let rolled = results.iter().filter(|r| r.detect_s.is_some()).count() as u64;
    let (lo, hi) = wilson(rolled, n, 1.96);
    let mut times: Vec<f64> = results
        .iter()
        .filter_map(|r| r.detect_s.map(f64::from))
        .collect();
    times.sort_by(f64::total_cmp);
    let share =
        |o: Outcome| results.iter().filter(|r| r.outcome == o).count() as f64 / n.max(1) as f64;
    let mean = |f: fn(&TrialResult) -> u64| {
        results.iter().map(|r| f(r) as f64).sum::<f64>() / n.max(1) as f64
    };
    let (rps, weight) = p.traffic(s);
    Summary {
        judge: spec.name().into(),
        scenario: s.name().into(),
        trials: n as u32,
        rollback_rate: rolled as f64 / n.max(1) as f64,
        rollback_ci_low: lo,
        rollback_ci_high: hi,
        median_detect_s: quantile_sorted(&times, 0.5),
        p90_detect_s: quantile_sorted(&times, 0.9),
        mean_canary_requests: mean(|r| r.canary_requests),
        mean_bad_requests: mean(|r| r.bad_requests),
        pass_rate: share(Outcome::Pass),
        inconclusive_rate: share(Outcome::Inconclusive),
        ns_per_window: {
            // The median over trials, so a trial that lost its core for a while does
            // not dominate.
            let mut per: Vec<f64> = results
                .iter()
                .map(|r| r.cpu_ns as f64 / f64::from(r.windows.max(1)))
                .collect();
            per.sort_by(f64::total_cmp);
            quantile_sorted(&per, 0.5).unwrap_or(0.0)
        },
        false_rollbacks: s.is_aa(),
        rps,
        weight,
        calibration: j.calibration.name().into(),
        params: j.describe(),
    }
}

/// One trial's results, one per judge, tagged with the trial number.
type TrialRow = (u32, Vec<TrialResult>);

/// Run `judges` over `p.trials` trials of scenario `s` on up to `threads` threads.
/// Every judge sees the same trials; the result does not depend on `threads`.
pub fn run_scenario(
    s: Scenario,
    judges: &[JudgeSpec],
    p: &SimParams,
    threads: usize,
) -> Result<Vec<Summary>, JudgeError> {
    let judges: Vec<BenchJudge> = judges.iter().map(|j| BenchJudge::documented(*j)).collect();
    run_scenario_with(s, &judges, p, threads)
}

/// [`run_scenario`] with each judge's parameters given.
pub fn run_scenario_with(
    s: Scenario,
    judges: &[BenchJudge],
    p: &SimParams,
    threads: usize,
) -> Result<Vec<Summary>, JudgeError> {
    let threads = threads.clamp(1, p.trials as usize);
    let (_, weight) = p.traffic(s);
    let truth = p.true_ratios(s);
    let per_thread: Vec<Result<Vec<TrialRow>, JudgeError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut ticks = Vec::with_capacity(p.horizon_s as usize);
                    let mut out = Vec::new();
                    let mut trial = t as u32;
                    while trial < p.trials {
                        generate(s, p, trial, &mut ticks);
                        let row = judges
                            .iter()
                            .map(|j| run_trial(j.spec, &j.params, &ticks, weight, truth))
                            .collect::<Result<Vec<_>, _>>()?;
                        out.push((trial, row));
                        trial += threads as u32;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(JudgeError::InvalidConfig(
                        "a simulation thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut rows: Vec<(u32, Vec<TrialResult>)> = Vec::with_capacity(p.trials as usize);
    for r in per_thread {
        rows.extend(r?);
    }
    rows.sort_by_key(|(t, _)| *t);
    Ok(judges
        .iter()
        .enumerate()
        .map(|(j, spec)| {
            let results: Vec<TrialResult> = rows.iter().map(|(_, r)| r[j]).collect();
            summarize(spec, s, p, &results)
        })
        .collect())
}

/// One trial as the windows the sequential judge would see, for `judge replay`.
pub fn record_trial(s: Scenario, p: &SimParams, trial: u32) -> Vec<AnalysisWindow> {
    let mut ticks = Vec::new();
    generate(s, p, trial, &mut ticks);
    let (_, weight) = p.traffic(s);
    ticks
        .iter()
        .enumerate()
        .map(|(i, t)| window_of(t, i as u32, weight, Some(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_model_matches_its_quantiles() {
        assert_eq!(frozen_p99_ms(), 202);
        assert!((p_slower(201.8) - 0.01).abs() < 2e-4);
        assert!((p_slower(LATENCY_MEDIAN_MS) - 0.5).abs() < 1e-6);
        // p99 + 50 ms on the tail: about 3.2 % slower than the old p99.
        let p = p_slower_tail_shift(202.0, 50.0);
        assert!((p - 0.032).abs() < 0.002, "{p}");
        assert!(normal_upper_tail(-1.0) > 0.84 && normal_upper_tail(-1.0) < 0.842);
    }

    #[test]
    fn streams_are_deterministic_and_differ_by_trial() {
        let p = SimParams {
            horizon_s: 120,
            ..Default::default()
        };
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        generate(Scenario::Aa, &p, 3, &mut a);
        generate(Scenario::Aa, &p, 3, &mut b);
        generate(Scenario::Aa, &p, 4, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Different base seeds do not share trials.
        let mut d = Vec::new();
        generate(Scenario::Aa, &SimParams { seed: 7, ..p }, 0, &mut d);
        let mut e = Vec::new();
        generate(Scenario::Aa, &SimParams { seed: 1, ..p }, 6, &mut e);
        assert_ne!(d, e);
        let nc: u64 = a.iter().map(|t| t.canary.0).sum();
        let nb: u64 = a.iter().map(|t| t.baseline.0).sum();
        assert!(
            (1000..1400).contains(&nc) && (10_000..11_600).contains(&nb),
            "{nc} {nb}"
        );
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let p = SimParams {
            horizon_s: 300,
            trials: 6,
            ..Default::default()
        };
        let judges = [JudgeSpec::Sequential, JudgeSpec::ArgoFl0];
        let untimed = |rows: Vec<Summary>| -> Vec<Summary> {
            rows.into_iter()
                .map(|r| Summary {
                    ns_per_window: 0.0,
                    ..r
                })
                .collect()
        };
        let one = untimed(run_scenario(Scenario::Errors, &judges, &p, 1).unwrap());
        let two = untimed(run_scenario(Scenario::Errors, &judges, &p, 2).unwrap());
        assert_eq!(one, two);
    }
}
