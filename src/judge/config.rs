//! The analysis settings of one service: the release's `[service.analysis]` table.
//!
//! ```toml
//! [service.analysis]
//! judge = "sequential"       # | "threshold"
//! tolerance = 1.25           # the canary may be this many times worse before it fails
//! min_requests = 1000        # canary (and baseline) requests before a pass is possible
//! min_duration = "5m"        # and this much time
//! max_error_rate = 0.05      # threshold judge's bound; sequential: never pass above it
//! max_p99 = "500ms"          # threshold judge's bound; sequential: fallback slow threshold
//! alpha = 0.01               # false-rollback budget per deployment (sequential)
//! bursty = false             # bad events come in bursts: a higher bar until measured
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::JudgeError;

/// Which judge decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    /// Anytime-valid sequential comparison of canary and baseline (the default).
    #[default]
    Sequential,
    /// Absolute bounds checked per interval, Argo/Flagger style.
    Threshold,
}

impl JudgeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            JudgeKind::Sequential => "sequential",
            JudgeKind::Threshold => "threshold",
        }
    }
}

/// What the threshold judge does with an interval in which the canary got no requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// Argo: the measurement is an error; more than `consecutive_error_limit` in a row fail.
    #[default]
    Error,
    /// Flagger: "no values found" counts as a failed check.
    Failed,
}

/// Settings of one analysis. Every field has a default, so `[service.analysis]` may be
/// empty. Durations are written as in release files (`"30s"`, `"5m"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    pub judge: JudgeKind,
    /// H0 of the sequential test: canary rate ≤ `tolerance` × baseline rate.
    pub tolerance: f64,
    /// Canary requests (and baseline requests) needed before any pass.
    pub min_requests: u64,
    /// Analysis time needed before any pass.
    #[serde(with = "duration_text")]
    pub min_duration: Duration,
    /// Threshold judge: the canary's error rate per interval must stay at or below this.
    /// Sequential judge: the canary never passes while its error rate is above it
    /// (inconclusive instead, because the baseline may be just as bad).
    pub max_error_rate: f64,
    /// Threshold judge: the canary's p99 per interval must stay at or below this.
    /// Sequential judge: the slow threshold when the baseline's p99 is unknown.
    #[serde(with = "duration_text")]
    pub max_p99: Duration,
    /// False-rollback probability per deployment of the sequential judge, split evenly
    /// between the error and the latency test.
    pub alpha: f64,
    /// Sequential judge: this service's bad events come in bursts, so ask for
    /// [`BURSTY_MARGIN`](super::sequential::BURSTY_MARGIN) more log evidence until the
    /// dispersion diagnostic has measured them (three minutes with bad events).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bursty: bool,
    /// Catastrophic guard: fail at once when the canary's error rate over its most recent
    /// `guard_min_requests` requests reaches this, without statistics. `None` turns it off.
    pub guard_error_rate: Option<f64>,
    pub guard_min_requests: u64,
    /// Threshold judge: how often it measures.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// Threshold judge: fail when more than this many measurements of a metric failed
    /// (Argo `failureLimit`; Flagger `threshold: N` is `failure_limit = N - 1`).
    pub failure_limit: u32,
    /// Threshold judge: what an interval without canary requests counts as.
    pub no_data: NoDataPolicy,
    /// Threshold judge: fail after more than this many no-data intervals in a row
    /// (Argo `consecutiveErrorLimit`), when `no_data = "error"`.
    pub consecutive_error_limit: u32,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            judge: JudgeKind::Sequential,
            tolerance: 1.25,
            min_requests: 1000,
            min_duration: Duration::from_secs(300),
            max_error_rate: 0.05,
            max_p99: Duration::from_millis(500),
            alpha: 0.01,
            bursty: false,
            guard_error_rate: Some(0.5),
            guard_min_requests: 20,
            interval: Duration::from_secs(60),
            failure_limit: 0,
            no_data: NoDataPolicy::Error,
            consecutive_error_limit: 4,
        }
    }
}

impl AnalysisConfig {
    /// Check ranges; the error names the field and what to write instead.
    pub fn validate(&self) -> Result<(), JudgeError> {
        let bad = |field: &str, why: String| {
            Err(JudgeError::InvalidConfig(format!(
                "analysis.{field}: {why}"
            )))
        };
        if !self.tolerance.is_finite() || self.tolerance < 1.0 || self.tolerance > 100.0 {
            return bad(
                "tolerance",
                format!(
                    "{} is not a ratio between 1 and 100; 1.25 lets the canary be 25 % worse",
                    self.tolerance
                ),
            );
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 || self.alpha >= 0.5 {
            return bad(
                "alpha",
                format!(
                    "{} is not a probability below 0.5; the default is 0.01",
                    self.alpha
                ),
            );
        }
        if !self.max_error_rate.is_finite()
            || self.max_error_rate <= 0.0
            || self.max_error_rate > 1.0
        {
            return bad(
                "max_error_rate",
                format!(
                    "{} is not a share in (0, 1]; write 0.05 for 5 %",
                    self.max_error_rate
                ),
            );
        }
        if self.max_p99.is_zero() {
            return bad("max_p99", "must be longer than 0, e.g. \"500ms\"".into());
        }
        if let Some(g) = self.guard_error_rate
            && (!g.is_finite() || g <= 0.0 || g > 1.0)
        {
            return bad(
                "guard_error_rate",
                format!(
                    "{g} is not a share in (0, 1]; the default 0.5 fails a canary at 50 % errors"
                ),
            );
        }
        if self.guard_min_requests == 0 {
            return bad(
                "guard_min_requests",
                "must be at least 1; the default is 20".into(),
            );
        }
        if self.interval < Duration::from_secs(1) {
            return bad(
                "interval",
                "must be at least \"1s\"; the default is \"1m\"".into(),
            );
        }
        Ok(())
    }

    /// The per-family false-rollback budget of the sequential judge.
    pub fn alpha_per_family(&self) -> f64 {
        self.alpha / 2.0
    }
}

/// Serde for durations written as text (`"5m"`), via [`crate::duration`].
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::duration::parse_duration;

    /// Written in one unit (`"90m"`, `"1500ms"`) so that `parse_duration` reads it back.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&single_unit(*d))
    }

    /// The largest unit that expresses `d` exactly.
    pub fn single_unit(d: Duration) -> String {
        let ms = d.as_millis();
        if ms == 0 {
            "0s".into()
        } else if ms.is_multiple_of(3_600_000) {
            format!("{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            format!("{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Service {
        analysis: AnalysisConfig,
    }

    #[test]
    fn reads_the_release_table_with_defaults() {
        let s: Service = toml::from_str(
            r#"
            [analysis]
            judge = "sequential"
            tolerance = 1.25
            min_requests = 500
            min_duration = "1m"
            max_error_rate = 0.05
            max_p99 = "500ms"
            "#,
        )
        .unwrap();
        let a = s.analysis;
        assert_eq!(a.min_requests, 500);
        assert_eq!(a.min_duration, Duration::from_secs(60));
        assert_eq!(a.max_p99, Duration::from_millis(500));
        assert_eq!(a.alpha, 0.01);
        assert_eq!(a.guard_error_rate, Some(0.5));
        a.validate().unwrap();
    }

    #[test]
    fn durations_round_trip_through_toml() {
        let c = AnalysisConfig {
            min_duration: Duration::from_secs(5400),
            max_p99: Duration::from_millis(1500),
            ..Default::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("min_duration = \"90m\""), "{text}");
        assert!(text.contains("max_p99 = \"1500ms\""), "{text}");
        let back: AnalysisConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn refuses_bad_values_with_a_hint() {
        let e = toml::from_str::<Service>("[analysis]\nmin_duration = \"5min\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown unit `min`"), "{e}");
        let e = toml::from_str::<Service>("[analysis]\njudge = \"magic\"\n").unwrap_err();
        assert!(e.to_string().contains("sequential"), "{e}");
        let c = AnalysisConfig {
            tolerance: 0.8,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("analysis.tolerance")
        );
        let c = AnalysisConfig {
            alpha: 1.0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("analysis.alpha")
        );
    }
}
