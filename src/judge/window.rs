//! One analysis window: what the judge reads, what the engine journals and what
//! `cutover judge replay` reads back (one JSON object per line).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{LatencyQuantiles, RevisionCounters};

use super::JudgeError;
use super::config::{AnalysisConfig, JudgeKind};

/// Counts of one arm (baseline or canary) during one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmCounts {
    /// Requests that got an answer or failed to connect.
    pub requests: u64,
    /// Bad answers: 5xx plus connection errors.
    pub errors: u64,
    /// Requests slower than the frozen slow threshold.
    #[serde(default)]
    pub slow: u64,
}

impl ArmCounts {
    /// The window counts of one revision from two cumulative readings.
    pub fn between(earlier: &RevisionCounters, later: &RevisionCounters) -> ArmCounts {
        let d = later.since(earlier);
        ArmCounts {
            requests: d.requests,
            errors: d.errors(),
            slow: d.slow,
        }
    }

    pub fn add(&mut self, other: &ArmCounts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.slow = self.slow.saturating_add(other.slow);
    }

    /// Errors per request, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// Share of requests slower than the threshold, `None` without requests.
    pub fn slow_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.slow as f64 / self.requests as f64)
    }
}

/// One window of baseline-versus-canary counts, measured over the same period.
///
/// As a JSON line:
/// `{"at_ms":61000,"duration_ms":1000,"canary_weight":0.1,"slow_threshold_ms":202,
///   "baseline":{"requests":91,"errors":0,"slow":1},"canary":{"requests":9,"errors":0,"slow":0}}`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisWindow {
    /// When the window ended, in milliseconds on any clock that does not go backwards
    /// (the engine writes milliseconds since the analysis started).
    pub at_ms: u64,
    /// How long the window lasted, in milliseconds.
    pub duration_ms: u64,
    /// The canary's configured share of the traffic between canary and baseline, 0–1.
    pub canary_weight: f64,
    /// The frozen latency threshold the `slow` counts refer to, if latency is analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_threshold_ms: Option<u64>,
    pub baseline: ArmCounts,
    pub canary: ArmCounts,
}

impl AnalysisWindow {
    /// A window from two cumulative readings of each arm (see [`RevisionCounters::since`]).
    #[allow(clippy::too_many_arguments)]
    pub fn from_readings(
        at_ms: u64,
        duration_ms: u64,
        canary_weight: f64,
        slow_threshold: Option<Duration>,
        baseline_before: &RevisionCounters,
        baseline_now: &RevisionCounters,
        canary_before: &RevisionCounters,
        canary_now: &RevisionCounters,
    ) -> AnalysisWindow {
        AnalysisWindow {
            at_ms,
            duration_ms,
            canary_weight,
            slow_threshold_ms: slow_threshold.map(|d| d.as_millis() as u64),
            baseline: ArmCounts::between(baseline_before, baseline_now),
            canary: ArmCounts::between(canary_before, canary_now),
        }
    }

    /// The window's start.
    pub fn start_ms(&self) -> u64 {
        self.at_ms.saturating_sub(self.duration_ms)
    }

    /// The canary's share of this window's requests; `None` when either arm had none,
    /// because such a window says nothing about canary versus baseline.
    pub fn realized_share(&self) -> Option<f64> {
        let (c, b) = (self.canary.requests, self.baseline.requests);
        (c > 0 && b > 0).then(|| c as f64 / (c + b) as f64)
    }

    /// Check the record is self-consistent; the error says what is wrong and how to fix it.
    pub fn validate(&self) -> Result<(), JudgeError> {
        if !self.canary_weight.is_finite() || !(0.0..=1.0).contains(&self.canary_weight) {
            return Err(JudgeError::InvalidWindow(format!(
                "canary_weight {} is not a share between 0 and 1 (write 0.1 for 10 %)",
                self.canary_weight
            )));
        }
        for (arm, c) in [("baseline", &self.baseline), ("canary", &self.canary)] {
            if c.errors > c.requests {
                return Err(JudgeError::InvalidWindow(format!(
                    "{arm} has {} errors but only {} requests; errors are counted among requests",
                    c.errors, c.requests
                )));
            }
            if c.slow > c.requests {
                return Err(JudgeError::InvalidWindow(format!(
                    "{arm} has {} slow requests but only {} requests; slow requests are counted among requests",
                    c.slow, c.requests
                )));
            }
        }
        Ok(())
    }
}

/// Where a frozen slow threshold came from, for the explanation and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum ThresholdSource {
    /// The baseline's p99 before the analysis started, rounded up to a whole millisecond.
    BaselineP99 { p99_ms: f64, samples: u64 },
    /// The release's `max_p99`: the threshold judge's bound, or the sequential judge's
    /// fallback when the baseline had too few requests to measure its p99.
    MaxP99,
}

/// A latency threshold fixed before the analysis starts. "Slow" means slower than this.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlowThreshold {
    #[serde(with = "super::config::duration_text")]
    pub threshold: Duration,
    pub source: ThresholdSource,
}

/// Baseline requests needed to trust its p99 as a threshold.
pub const MIN_FREEZE_SAMPLES: u64 = 200;

/// Freeze the slow threshold before the analysis starts.
///
/// * `sequential`: the baseline's p99 (rounded up to a whole millisecond) measured over a
///   window that ended before the canary took traffic, when it rests on at least
///   [`MIN_FREEZE_SAMPLES`] requests. Under "no regression" a request of either arm is
///   equally likely to be slower than a fixed threshold, so counting "slower than T" turns
///   latency into the same kind of bad event as an error. Fewer samples: `max_p99`.
/// * `threshold`: always `max_p99`, so "at most 1 % of canary requests slower than
///   `max_p99`" is exactly "canary p99 ≤ max_p99" (Argo/Flagger semantics).
///
/// The threshold must not change during an analysis (the judges refuse windows that do).
pub fn freeze_slow_threshold(
    config: &AnalysisConfig,
    baseline: Option<&LatencyQuantiles>,
) -> SlowThreshold {
    match (config.judge, baseline) {
        (JudgeKind::Sequential, Some(q))
            if q.samples >= MIN_FREEZE_SAMPLES && q.p99_ms.is_finite() && q.p99_ms > 0.0 =>
        {
            SlowThreshold {
                threshold: Duration::from_millis(q.p99_ms.ceil() as u64),
                source: ThresholdSource::BaselineP99 {
                    p99_ms: q.p99_ms,
                    samples: q.samples,
                },
            }
        }
        _ => SlowThreshold {
            threshold: config.max_p99,
            source: ThresholdSource::MaxP99,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_from_cumulative_readings() {
        let b0 = RevisionCounters {
            requests: 1000,
            errors_5xx: 5,
            connection_errors: 0,
            slow: 10,
        };
        let b1 = RevisionCounters {
            requests: 1090,
            errors_5xx: 6,
            connection_errors: 1,
            slow: 11,
        };
        let c0 = RevisionCounters::default();
        let c1 = RevisionCounters {
            requests: 10,
            errors_5xx: 1,
            connection_errors: 2,
            slow: 0,
        };
        let w = AnalysisWindow::from_readings(
            5000,
            1000,
            0.1,
            Some(Duration::from_millis(202)),
            &b0,
            &b1,
            &c0,
            &c1,
        );
        assert_eq!(
            w.baseline,
            ArmCounts {
                requests: 90,
                errors: 2,
                slow: 1
            }
        );
        assert_eq!(
            w.canary,
            ArmCounts {
                requests: 10,
                errors: 3,
                slow: 0
            }
        );
        assert_eq!(w.slow_threshold_ms, Some(202));
        assert_eq!(w.start_ms(), 4000);
        assert!((w.realized_share().unwrap() - 0.1).abs() < 1e-12);
        w.validate().unwrap();
    }

    #[test]
    fn validation_names_the_problem() {
        let mut w = AnalysisWindow {
            at_ms: 1000,
            duration_ms: 1000,
            canary_weight: 10.0,
            slow_threshold_ms: None,
            baseline: ArmCounts::default(),
            canary: ArmCounts::default(),
        };
        assert!(w.validate().unwrap_err().to_string().contains("write 0.1"));
        w.canary_weight = 0.1;
        w.canary = ArmCounts {
            requests: 1,
            errors: 2,
            slow: 0,
        };
        assert!(
            w.validate()
                .unwrap_err()
                .to_string()
                .contains("canary has 2 errors")
        );
    }

    #[test]
    fn json_line_shape_round_trips() {
        let line = r#"{"at_ms":61000,"duration_ms":1000,"canary_weight":0.1,"slow_threshold_ms":202,"baseline":{"requests":91,"errors":0,"slow":1},"canary":{"requests":9,"errors":0,"slow":0}}"#;
        let w: AnalysisWindow = serde_json::from_str(line).unwrap();
        assert_eq!(w.canary.requests, 9);
        assert_eq!(serde_json::to_string(&w).unwrap(), line);
    }

    #[test]
    fn freezes_baseline_p99_or_falls_back_to_max_p99() {
        let mut cfg = AnalysisConfig::default();
        let q = LatencyQuantiles {
            p50_ms: 50.0,
            p90_ms: 108.0,
            p99_ms: 201.3,
            samples: 5000,
        };
        let t = freeze_slow_threshold(&cfg, Some(&q));
        assert_eq!(t.threshold, Duration::from_millis(202));
        assert!(matches!(t.source, ThresholdSource::BaselineP99 { .. }));
        let few = LatencyQuantiles { samples: 20, ..q };
        assert_eq!(
            freeze_slow_threshold(&cfg, Some(&few)).source,
            ThresholdSource::MaxP99
        );
        assert_eq!(freeze_slow_threshold(&cfg, None).threshold, cfg.max_p99);
        cfg.judge = JudgeKind::Threshold;
        assert_eq!(freeze_slow_threshold(&cfg, Some(&q)).threshold, cfg.max_p99);
    }
}
