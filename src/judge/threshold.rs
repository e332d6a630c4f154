//! The `threshold` judge: absolute bounds checked once per interval on the canary alone,
//! with Argo Rollouts / Flagger semantics.
//!
//! * Every `interval` (default 1 m) it measures the canary's error rate and its share of
//!   requests slower than the frozen threshold (`max_p99`, see
//!   [`super::freeze_slow_threshold`]). A measurement fails when the error rate is above
//!   `max_error_rate`, or when more than 1 % of requests were slower than `max_p99`
//!   (that is, the canary's p99 is above `max_p99`).
//! * A metric fails when more than `failure_limit` of its measurements failed, counted
//!   over the whole analysis, not in a row (Argo `failureLimit`, default 0; Flagger's
//!   cumulative `threshold: N` is `failure_limit = N − 1`).
//! * An interval without canary requests is a measurement error (Argo; the analysis fails
//!   after more than `consecutive_error_limit` in a row) or a failed check
//!   (`no_data = "failed"`, Flagger's "no values found").
//! * Pass after `min_duration` and `min_requests` canary requests without failing;
//!   before that, inconclusive. The catastrophic guard applies as in the sequential judge.
//!
//! The baseline is shown for context only; this judge does not compare with it, which is
//! why a common-mode incident (both arms failing) fails it.

use std::time::Duration;

use super::explain::{
    ArmRate, CheckCounts, Metric, MetricExplanation, Outcome, Verdict, count, percent,
};
use super::guard::Guard;
use super::{
    AnalysisConfig, AnalysisWindow, ArmCounts, Judge, JudgeError, NoDataPolicy, WindowClock,
};
use crate::duration::format_duration;

/// "p99 ≤ max_p99" as a count: at most this share of requests slower than `max_p99`.
pub const P99_SHARE: f64 = 0.01;

#[derive(Debug, Clone, Default)]
struct Checks {
    bound: f64,
    measured: u32,
    failed: u32,
    no_data: u32,
    consecutive_no_data: u32,
    last: Option<f64>,
}

impl Checks {
    fn measure(&mut self, bad: u64, requests: u64, policy: NoDataPolicy) {
        if requests == 0 {
            self.no_data += 1;
            self.consecutive_no_data += 1;
            if policy == NoDataPolicy::Failed {
                self.failed += 1;
            }
            return;
        }
        self.consecutive_no_data = 0;
        self.measured += 1;
        let v = bad as f64 / requests as f64;
        self.last = Some(v);
        if v > self.bound {
            self.failed += 1;
        }
    }

    fn failing(&self, c: &AnalysisConfig) -> bool {
        self.failed > c.failure_limit
            || (c.no_data == NoDataPolicy::Error
                && self.consecutive_no_data > c.consecutive_error_limit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    Errors,
    Latency,
    Guard,
}

/// Argo/Flagger-style judge (see the module docs).
#[derive(Debug, Clone)]
pub struct ThresholdJudge {
    name: String,
    config: AnalysisConfig,
    clock: WindowClock,
    guard: Option<Guard>,
    interval_ms: u64,
    interval_start: Option<u64>,
    acc_canary: ArmCounts,
    errors: Checks,
    latency: Checks,
    canary: ArmCounts,
    baseline: ArmCounts,
    failed: Option<Failure>,
    outcome: Outcome,
}

impl ThresholdJudge {
    pub fn new(name: &str, config: AnalysisConfig) -> Result<ThresholdJudge, JudgeError> {
        config.validate()?;
        Ok(ThresholdJudge {
            name: name.to_string(),
            guard: config
                .guard_error_rate
                .map(|g| Guard::new(g, config.guard_min_requests)),
            interval_ms: config.interval.as_millis() as u64,
            interval_start: None,
            acc_canary: ArmCounts::default(),
            errors: Checks {
                bound: config.max_error_rate,
                ..Default::default()
            },
            latency: Checks {
                bound: P99_SHARE,
                ..Default::default()
            },
            clock: WindowClock::default(),
            canary: ArmCounts::default(),
            baseline: ArmCounts::default(),
            failed: None,
            outcome: Outcome::Inconclusive,
            config,
        })
    }

    fn close_interval(&mut self) {
        let c = self.acc_canary;
        self.errors
            .measure(c.errors, c.requests, self.config.no_data);
        if self.clock.slow_threshold_ms().is_some() {
            self.latency
                .measure(c.slow, c.requests, self.config.no_data);
        }
        self.acc_canary = ArmCounts::default();
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
        w
    }

    fn explain(
        &self,
        metric: Metric,
        checks: &Checks,
        bad_c: u64,
        bad_b: u64,
        failed: bool,
    ) -> MetricExplanation {
        let every = format_duration(self.config.interval);
        let what = match metric {
            Metric::Latency { threshold_ms } => format!(
                "slower than {}ms in the last {every} (p99 ≤ {}ms means at most {})",
                threshold_ms.unwrap_or(0),
                threshold_ms.unwrap_or(0),
                percent(checks.bound)
            ),
            _ => format!("in the last {every} (bound {})", percent(checks.bound)),
        };
        let last = checks.last.map(percent).unwrap_or_else(|| "no data".into());
        let limit = self.config.failure_limit;
        let mut detail = format!(
            "{last} {what}, {} of {} checks failed (fail above {limit})",
            checks.failed,
            checks.measured + checks.no_data
        );
        if checks.consecutive_no_data > 0 {
            detail.push_str(&format!(
                ", {} intervals in a row without canary requests",
                checks.consecutive_no_data
            ));
        }
        let status = if failed {
            Outcome::Fail
        } else if self.outcome == Outcome::Pass {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        let canary = ArmRate::new(self.canary.requests, bad_c);
        let baseline = ArmRate::new(self.baseline.requests, bad_b);
        MetricExplanation {
            metric,
            status,
            canary,
            baseline,
            ratio: None,
            interval: None,
            tolerance: None,
            evidence: None,
            checks: Some(CheckCounts {
                bound: checks.bound,
                measured: checks.measured,
                failed: checks.failed,
                no_data: checks.no_data,
                failure_limit: limit,
                last: checks.last,
            }),
            dispersion: None,
            detail,
            waiting_for: if status == Outcome::Inconclusive && self.failed.is_none() {
                self.waiting_for()
            } else {
                vec![]
            },
        }
    }
}

impl Judge for ThresholdJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, w: &AnalysisWindow) -> Result<Outcome, JudgeError> {
        self.clock.accept(w)?;
        let start = *self
            .interval_start
            .get_or_insert(self.clock.start_ms.unwrap_or(0));
        self.canary.add(&w.canary);
        self.baseline.add(&w.baseline);
        self.acc_canary.add(&w.canary);
        let mut start = start;
        // Close every interval that has ended; later ones without windows had no data.
        let mut closed = 0;
        while w.at_ms >= start + self.interval_ms && closed < 10_000 {
            self.close_interval();
            start += self.interval_ms;
            closed += 1;
        }
        self.interval_start = Some(start);
        if self.failed.is_none()
            && let Some(g) = self.guard.as_mut()
            && g.observe(w.at_ms, w.canary.requests, w.canary.errors)
        {
            self.failed = Some(Failure::Guard);
        }
        if self.failed.is_none() {
            if self.errors.failing(&self.config) {
                self.failed = Some(Failure::Errors);
            } else if self.latency.failing(&self.config) {
                self.failed = Some(Failure::Latency);
            }
        }
        self.outcome = if self.failed.is_some() {
            Outcome::Fail
        } else if self.waiting_for().is_empty() {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        Ok(self.outcome)
    }

    fn verdict(&self) -> Verdict {
        let mut metrics = Vec::new();
        if let Some(trip) = self.guard.as_ref().and_then(|g| g.tripped()) {
            metrics.push(MetricExplanation {
                metric: Metric::Guard,
                status: Outcome::Fail,
                canary: ArmRate::new(trip.requests, trip.errors),
                baseline: ArmRate::new(self.baseline.requests, self.baseline.errors),
                ratio: None,
                interval: None,
                tolerance: None,
                evidence: None,
                checks: None,
                dispersion: None,
                detail: format!(
                    "{} of the canary's last {} requests failed, at or over the catastrophic bound {}",
                    count(trip.errors),
                    count(trip.requests),
                    percent(trip.bound)
                ),
                waiting_for: vec![],
            });
        }
        metrics.push(self.explain(
            Metric::Errors,
            &self.errors,
            self.canary.errors,
            self.baseline.errors,
            self.failed == Some(Failure::Errors),
        ));
        let threshold = self.clock.slow_threshold_ms();
        if threshold.is_some() {
            metrics.push(self.explain(
                Metric::Latency {
                    threshold_ms: threshold,
                },
                &self.latency,
                self.canary.slow,
                self.baseline.slow,
                self.failed == Some(Failure::Latency),
            ));
        }
        let summary = match (self.outcome, self.failed) {
            (Outcome::Fail, Some(Failure::Guard)) => {
                "catastrophic guard: the canary is failing its requests; roll back".to_string()
            }
            (Outcome::Fail, Some(Failure::Errors)) => format!(
                "canary error rate above {} {}; roll back",
                percent(self.config.max_error_rate),
                more_checks_than(self.config.failure_limit)
            ),
            (Outcome::Fail, _) => {
                let c = &self.latency;
                if c.consecutive_no_data > self.config.consecutive_error_limit
                    || self.errors.consecutive_no_data > self.config.consecutive_error_limit
                {
                    "no canary requests for too many intervals in a row; roll back".to_string()
                } else {
                    let bound = threshold
                        .map(|t| format!("{t}ms"))
                        .unwrap_or_else(|| format_duration(self.config.max_p99));
                    format!(
                        "canary p99 above {bound} {}; roll back",
                        more_checks_than(self.config.failure_limit)
                    )
                }
            }
            (Outcome::Pass, _) => format!(
                "canary within bounds for {} checks",
                self.errors.measured + self.errors.no_data
            ),
            (Outcome::Inconclusive, _) => {
                let waiting = self.waiting_for();
                if waiting.is_empty() {
                    "no decision yet".to_string()
                } else {
                    format!("not enough data yet: {}", waiting.join(", "))
                }
            }
        };
        let mut notes = Vec::new();
        let max_p99_ms = self.config.max_p99.as_millis() as u64;
        if let Some(t) = threshold.filter(|t| *t != max_p99_ms) {
            notes.push(format!(
                "the windows count requests slower than {t}ms, not max_p99 ({max_p99_ms}ms): the latency check is p99 ≤ {t}ms"
            ));
        }
        if threshold.is_none() && self.clock.windows > 0 {
            notes.push("latency not checked: the windows carry no slow_threshold_ms".to_string());
        }
        Verdict {
            judge: self.name.clone(),
            outcome: self.outcome,
            at_ms: self.clock.last_ms,
            elapsed_ms: self.clock.elapsed_ms(),
            windows: self.clock.windows,
            summary,
            metrics,
            notes,
        }
    }
}

/// "in any check" (a limit of 0), "in more than 1 check", "in more than N checks".
fn more_checks_than(limit: u32) -> String {
    match limit {
        0 => "in any check".to_string(),
        1 => "in more than 1 check".to_string(),
        n => format!("in more than {n} checks"),
    }
}

#[cfg(test)]
mod wording_tests {
    use super::more_checks_than;

    #[test]
    fn a_limit_of_zero_reads_as_any_check() {
        assert_eq!(more_checks_than(0), "in any check");
        assert_eq!(more_checks_than(1), "in more than 1 check");
        assert_eq!(more_checks_than(3), "in more than 3 checks");
    }
}
