//! Judges that exist to be compared with, in `cutover judge-bench`: a Kayenta-style
//! Mann-Whitney judge on per-minute points and a naive z-test that peeks repeatedly.
//! Both implement [`Judge`], so they see exactly the same windows as the real judges.

use std::time::Duration;

use super::explain::{ArmRate, Metric, MetricExplanation, Outcome, Verdict, count, percent};
use super::{AnalysisConfig, AnalysisWindow, ArmCounts, Judge, JudgeError, WindowClock};
use crate::duration::format_duration;

/// Normal quantile of a two-sided 98 % interval (Kayenta's `confLevel = 0.98`).
pub const Z_98: f64 = 2.326_347_874;
/// Normal quantile of a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_985;

/// A Mann-Whitney classification of canary vs baseline points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// Hodges-Lehmann estimate of canary − baseline: the median pairwise difference.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Canary is worse: lower bound above `tolerance·|estimate|` and mean ratio ≥ 1.
    pub high: bool,
}

/// Kayenta-style classification of a "higher is worse" metric: a two-sided interval for
/// the shift canary − baseline from the ordered pairwise differences (normal
/// approximation to the Wilcoxon rank-sum distribution, no tie correction), with a
/// Hodges-Lehmann estimate. `None` when either side has no points.
pub fn mann_whitney(
    canary: &[f64],
    baseline: &[f64],
    z: f64,
    tolerance: f64,
) -> Option<MannWhitney> {
    let (n, m) = (canary.len(), baseline.len());
    if n == 0 || m == 0 {
        return None;
    }
    let mut diffs: Vec<f64> = Vec::with_capacity(n * m);
    for c in canary {
        for b in baseline {
            diffs.push(c - b);
        }
    }
    diffs.sort_by(f64::total_cmp);
    let nm = diffs.len();
    let estimate = if nm % 2 == 1 {
        diffs[nm / 2]
    } else {
        0.5 * (diffs[nm / 2 - 1] + diffs[nm / 2])
    };
    let sd = ((n * m * (n + m + 1)) as f64 / 12.0).sqrt();
    let k = ((nm as f64 / 2.0 - z * sd).floor().max(0.0) as usize).min(nm - 1);
    let (lower, upper) = (diffs[k], diffs[nm - 1 - k]);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mc, mb) = (mean(canary), mean(baseline));
    let ratio_ok = if mb > 0.0 { mc / mb >= 1.0 } else { mc > 0.0 };
    let high = lower > tolerance * estimate.abs() && lower > 0.0 && ratio_ok;
    Some(MannWhitney {
        estimate,
        lower,
        upper,
        high,
    })
}

/// Kayenta-style judge: per-minute error rate and slow share per arm, classified with
/// Mann-Whitney (98 %, tolerance 0.25) on the growing window every `every`; both metrics
/// are critical, so one High fails the canary. Pass after the usual minimum exposure if
/// the last judgement passed.
#[derive(Debug, Clone)]
pub struct KayentaJudge {
    name: String,
    config: AnalysisConfig,
    every_ms: u64,
    clock: WindowClock,
    minutes: Vec<(u64, ArmCounts, ArmCounts)>,
    next_ms: Option<u64>,
    last: Vec<(Metric, Option<MannWhitney>)>,
    failed: bool,
    outcome: Outcome,
    canary: ArmCounts,
    baseline: ArmCounts,
    /// Interval quantile (default [`Z_98`]) and effect-size tolerance (default 0.25).
    z: f64,
    effect: f64,
}

impl KayentaJudge {
    /// The same judge with another interval quantile and effect-size tolerance.
    pub fn with_test(mut self, z: f64, effect: f64) -> KayentaJudge {
        self.z = z;
        self.effect = effect;
        self
    }

    pub fn new(
        name: &str,
        config: AnalysisConfig,
        every: Duration,
    ) -> Result<KayentaJudge, JudgeError> {
        config.validate()?;
        Ok(KayentaJudge {
            name: name.into(),
            config,
            every_ms: every.as_millis().max(60_000) as u64,
            clock: WindowClock::default(),
            minutes: Vec::new(),
            next_ms: None,
            last: Vec::new(),
            failed: false,
            outcome: Outcome::Inconclusive,
            canary: ArmCounts::default(),
            baseline: ArmCounts::default(),
            z: Z_98,
            effect: 0.25,
        })
    }

    fn judge_now(&mut self) {
        let points = |f: fn(&ArmCounts) -> Option<f64>, arm: usize| -> Vec<f64> {
            self.minutes
                .iter()
                .filter_map(|(_, b, c)| f(if arm == 0 { b } else { c }))
                .collect()
        };
        let mut last = Vec::new();
        let err = mann_whitney(
            &points(ArmCounts::error_rate, 1),
            &points(ArmCounts::error_rate, 0),
            self.z,
            self.effect,
        );
        last.push((Metric::Errors, err));
        if let Some(t) = self.clock.slow_threshold_ms() {
            let slow = mann_whitney(
                &points(ArmCounts::slow_rate, 1),
                &points(ArmCounts::slow_rate, 0),
                self.z,
                self.effect,
            );
            last.push((
                Metric::Latency {
                    threshold_ms: Some(t),
                },
                slow,
            ));
        }
        if last.iter().any(|(_, mw)| mw.is_some_and(|m| m.high)) {
            self.failed = true;
        }
        self.last = last;
    }

    fn waiting_for(&self) -> Vec<String> {
        let mut w = Vec::new();
        let elapsed = Duration::from_millis(self.clock.elapsed_ms());
        if elapsed < self.config.min_duration {
            w.push(format!(
                "{} of {}",
                format_duration(elapsed),
                format_duration(self.config.min_duration)
            ));
        }
        if self.canary.requests < self.config.min_requests {
            w.push(format!(
                "{} of {} canary requests",
                count(self.canary.requests),
                count(self.config.min_requests)
            ));
        }
        if self.last.is_empty() {
            w.push("the first judgement".into());
        }
        w
    }
}

impl Judge for KayentaJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, w: &AnalysisWindow) -> Result<Outcome, JudgeError> {
        self.clock.accept(w)?;
        self.canary.add(&w.canary);
        self.baseline.add(&w.baseline);
        let start = self.clock.start_ms.unwrap_or(0);
        let minute = w.at_ms.saturating_sub(start).saturating_sub(1) / 60_000;
        if self.minutes.last().is_none_or(|(m, _, _)| *m != minute) {
            self.minutes
                .push((minute, ArmCounts::default(), ArmCounts::default()));
        }
        if let Some((_, b, c)) = self.minutes.last_mut() {
            b.add(&w.baseline);
            c.add(&w.canary);
        }
        let next = *self.next_ms.get_or_insert(start + self.every_ms);
        if !self.failed && w.at_ms >= next {
            self.judge_now();
            self.next_ms = Some(next + self.every_ms * ((w.at_ms - next) / self.every_ms + 1));
        }
        self.outcome = if self.failed {
            Outcome::Fail
        } else if self.waiting_for().is_empty() {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        Ok(self.outcome)
    }

    fn verdict(&self) -> Verdict {
        let metrics = self
            .last
            .iter()
            .map(|(metric, mw)| {
                let (cb, bb) = match metric {
                    Metric::Latency { .. } => (self.canary.slow, self.baseline.slow),
                    _ => (self.canary.errors, self.baseline.errors),
                };
                let status = match (mw, self.outcome) {
                    (Some(m), _) if m.high => Outcome::Fail,
                    (_, Outcome::Pass) => Outcome::Pass,
                    _ => Outcome::Inconclusive,
                };
                let detail = match mw {
                    Some(m) => format!(
                        "per-minute shift {} [{}, {}] (98 %, Mann-Whitney over {} minutes)",
                        percent(m.estimate.max(0.0)),
                        percent(m.lower.max(0.0)),
                        percent(m.upper.max(0.0)),
                        self.minutes.len()
                    ),
                    None => "no per-minute points".into(),
                };
                MetricExplanation {
                    metric: *metric,
                    status,
                    canary: ArmRate::new(self.canary.requests, cb),
                    baseline: ArmRate::new(self.baseline.requests, bb),
                    ratio: None,
                    interval: None,
                    tolerance: None,
                    evidence: None,
                    checks: None,
                    dispersion: None,
                    detail,
                    waiting_for: if status == Outcome::Inconclusive {
                        self.waiting_for()
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        Verdict {
            judge: self.name.clone(),
            outcome: self.outcome,
            at_ms: self.clock.last_ms,
            elapsed_ms: self.clock.elapsed_ms(),
            windows: self.clock.windows,
            summary: match self.outcome {
                Outcome::Fail => "a critical metric classified High; roll back".into(),
                Outcome::Pass => "every metric classified Pass".into(),
                Outcome::Inconclusive => format!("waiting for {}", self.waiting_for().join(", ")),
            },
            metrics,
            notes: vec![],
        }
    }
}

/// Naive peeking: a one-sided two-proportion z-test on the cumulative counts every
/// `every`, failing when z > 1.96 on errors or slow requests. The nominal 2.5 % error
/// rate holds for one look only; repeated looks inflate it, which is the point.
#[derive(Debug, Clone)]
pub struct ZPeekJudge {
    name: String,
    config: AnalysisConfig,
    every_ms: u64,
    clock: WindowClock,
    next_ms: Option<u64>,
    canary: ArmCounts,
    baseline: ArmCounts,
    last_z: (Option<f64>, Option<f64>),
    failed: bool,
    outcome: Outcome,
    /// Fail above this z (default [`Z_95`]).
    z: f64,
}

/// The two-proportion z statistic of canary vs baseline (positive: canary worse).
pub fn two_proportion_z(xc: u64, nc: u64, xb: u64, nb: u64) -> Option<f64> {
    if nc == 0 || nb == 0 {
        return None;
    }
    let (pc, pb) = (xc as f64 / nc as f64, xb as f64 / nb as f64);
    let p = (xc + xb) as f64 / (nc + nb) as f64;
    let se = (p * (1.0 - p) * (1.0 / nc as f64 + 1.0 / nb as f64)).sqrt();
    (se > 0.0).then(|| (pc - pb) / se)
}

impl ZPeekJudge {
    pub fn new(
        name: &str,
        config: AnalysisConfig,
        every: Duration,
    ) -> Result<ZPeekJudge, JudgeError> {
        config.validate()?;
        Ok(ZPeekJudge {
            name: name.into(),
            config,
            every_ms: every.as_millis().max(1000) as u64,
            clock: WindowClock::default(),
            next_ms: None,
            canary: ArmCounts::default(),
            baseline: ArmCounts::default(),
            last_z: (None, None),
            failed: false,
            outcome: Outcome::Inconclusive,
            z: Z_95,
        })
    }

    /// The same judge failing above another z.
    pub fn with_z(mut self, z: f64) -> ZPeekJudge {
        self.z = z;
        self
    }
}

impl Judge for ZPeekJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, w: &AnalysisWindow) -> Result<Outcome, JudgeError> {
        self.clock.accept(w)?;
        self.canary.add(&w.canary);
        self.baseline.add(&w.baseline);
        let start = self.clock.start_ms.unwrap_or(0);
        let next = *self.next_ms.get_or_insert(start + self.every_ms);
        if !self.failed && w.at_ms >= next {
            let (c, b) = (self.canary, self.baseline);
            let ze = two_proportion_z(c.errors, c.requests, b.errors, b.requests);
            let zs = if self.clock.slow_threshold_ms().is_some() {
                two_proportion_z(c.slow, c.requests, b.slow, b.requests)
            } else {
                None
            };
            self.last_z = (ze, zs);
            if ze.is_some_and(|z| z > self.z) || zs.is_some_and(|z| z > self.z) {
                self.failed = true;
            }
            self.next_ms = Some(next + self.every_ms * ((w.at_ms - next) / self.every_ms + 1));
        }
        let elapsed = Duration::from_millis(self.clock.elapsed_ms());
        self.outcome = if self.failed {
            Outcome::Fail
        } else if elapsed >= self.config.min_duration
            && self.canary.requests >= self.config.min_requests
        {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        Ok(self.outcome)
    }

    fn verdict(&self) -> Verdict {
        let mut metrics = Vec::new();
        let t = self.clock.slow_threshold_ms();
        let rows = [
            (
                Metric::Errors,
                self.last_z.0,
                self.canary.errors,
                self.baseline.errors,
            ),
            (
                Metric::Latency { threshold_ms: t },
                self.last_z.1,
                self.canary.slow,
                self.baseline.slow,
            ),
        ];
        for (metric, z, cb, bb) in rows {
            if matches!(metric, Metric::Latency { threshold_ms: None }) {
                continue;
            }
            let status = match z {
                Some(z) if z > self.z => Outcome::Fail,
                _ if self.outcome == Outcome::Pass => Outcome::Pass,
                _ => Outcome::Inconclusive,
            };
            metrics.push(MetricExplanation {
                metric,
                status,
                canary: ArmRate::new(self.canary.requests, cb),
                baseline: ArmRate::new(self.baseline.requests, bb),
                ratio: None,
                interval: None,
                tolerance: None,
                evidence: None,
                checks: None,
                dispersion: None,
                detail: match z {
                    Some(z) => format!("z = {z:.2} (fails above {:.2})", self.z),
                    None => "no test yet".into(),
                },
                waiting_for: vec![],
            });
        }
        Verdict {
            judge: self.name.clone(),
            outcome: self.outcome,
            at_ms: self.clock.last_ms,
            elapsed_ms: self.clock.elapsed_ms(),
            windows: self.clock.windows,
            summary: match self.outcome {
                Outcome::Fail => "z-test significant at one look; roll back".into(),
                Outcome::Pass => "no significant z-test so far".into(),
                Outcome::Inconclusive => "not enough data yet".into(),
            },
            metrics,
            notes: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_flags_a_clear_shift_and_not_noise() {
        let base = [
            0.005, 0.004, 0.006, 0.005, 0.0055, 0.0045, 0.005, 0.006, 0.004, 0.005,
        ];
        let worse: Vec<f64> = base.iter().map(|v| v * 4.0).collect();
        let mw = mann_whitney(&worse, &base, Z_98, 0.25).unwrap();
        assert!(mw.high && mw.estimate > 0.01 && mw.lower > 0.0, "{mw:?}");
        let same = mann_whitney(&base, &base, Z_98, 0.25).unwrap();
        assert!(!same.high && same.estimate == 0.0, "{same:?}");
        assert!(mann_whitney(&[], &base, Z_98, 0.25).is_none());
    }

    #[test]
    fn z_statistic_known_value() {
        // 20/1000 vs 45/9000: pooled 0.0065, se 0.002688..., z ≈ 5.60.
        let z = two_proportion_z(20, 1000, 45, 9000).unwrap();
        assert!((z - 5.60).abs() < 0.01, "{z}");
        assert!(two_proportion_z(0, 0, 1, 10).is_none());
    }
}
