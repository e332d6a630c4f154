//! The contract between whatever measures traffic (the local proxy, CloudWatch) and
//! whoever judges it (the canary judge, the console's health pane).
//!
//! Sources report **cumulative** counters per revision since that revision started taking
//! traffic; consumers difference two readings to get a window. Cumulative counters make a
//! missed poll harmless and let a restarted engine pick up where it was.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Cumulative counters of one revision of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionCounters {
    /// Requests that got a response or failed to connect.
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors_5xx: u64,
    /// Requests that could not reach the revision (refused, reset, timed out).
    pub connection_errors: u64,
    /// Requests slower than the `slow_threshold` asked for.
    pub slow: u64,
}

impl RevisionCounters {
    /// Bad events for error-rate analysis: 5xx answers plus connection errors.
    pub fn errors(&self) -> u64 {
        self.errors_5xx + self.connection_errors
    }

    /// The counts between an earlier reading and this one (saturating, so a restarted
    /// source that reset its counters yields zeros rather than garbage).
    pub fn since(&self, earlier: &RevisionCounters) -> RevisionCounters {
        RevisionCounters {
            requests: self.requests.saturating_sub(earlier.requests),
            errors_5xx: self.errors_5xx.saturating_sub(earlier.errors_5xx),
            connection_errors: self
                .connection_errors
                .saturating_sub(earlier.connection_errors),
            slow: self.slow.saturating_sub(earlier.slow),
        }
    }
}

/// Latency quantiles over a recent sliding window, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyQuantiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// How many requests the quantiles are computed from.
    pub samples: u64,
}

/// A failure to read metrics. Missing data is `Ok(None)`/zero counts, never an error;
/// an error means the source itself could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("metrics from {source_name}: {message}")]
pub struct MetricsError {
    pub source_name: String,
    pub message: String,
}

/// Where the judge and the console get per-revision traffic numbers from.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// A short name for messages (`local-proxy`, `cloudwatch`).
    fn name(&self) -> &str;

    /// Cumulative counters for `revision` of `service`, with `slow` counting requests
    /// slower than `slow_threshold`. `Ok(None)` when the source knows nothing of it yet.
    async fn counters(
        &self,
        service: &str,
        revision: &str,
        slow_threshold: Duration,
    ) -> Result<Option<RevisionCounters>, MetricsError>;

    /// Whether [`MetricSource::recent_latency`] is cheap enough to ask for every analysis
    /// window (the report's latency chart): true for the local proxy; CloudWatch has one
    /// data point a minute and charges per metric read.
    fn latency_per_window(&self) -> bool {
        true
    }

    /// Latency quantiles over the last `window`. `Ok(None)` when there were no requests.
    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        window: Duration,
    ) -> Result<Option<LatencyQuantiles>, MetricsError>;

    /// Whether `slow` can only be counted at fixed thresholds (a histogram's bucket
    /// boundaries, as with Prometheus). The judge then counts at the configured `max_p99`
    /// (checked to be a boundary when the release is validated), never at the baseline's
    /// measured p99.
    fn fixed_slow_thresholds(&self) -> bool {
        false
    }

    /// Whether a revision the source cannot report on (`Ok(None)` or an error) is *no
    /// data* for the judge, rather than zero requests. A remote source (Prometheus) that
    /// has nothing, or cannot be reached, must never let an analysis pass: such polls
    /// yield no window and the verdict says the source had nothing.
    fn absent_is_no_data(&self) -> bool {
        false
    }

    /// Past traffic of `revision` over the last `since`, one point every `step`, oldest
    /// first: what a console starting mid-release draws before its own samples arrive.
    /// Sources that keep no history (the local proxy's counters start with the process,
    /// CloudWatch is charged per read) return none, the default.
    async fn history(
        &self,
        _service: &str,
        _revision: &str,
        _since: Duration,
        _step: Duration,
    ) -> Result<Vec<HistoryPoint>, MetricsError> {
        Ok(Vec::new())
    }
}

/// One past point of a revision's traffic (see [`MetricSource::history`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    /// Unix milliseconds at the end of the step.
    pub at_ms: u64,
    pub requests_per_s: f64,
    /// Errors per request over the step; `None` without requests.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub mod prometheus;
pub mod prometheus_history;
pub mod prometheus_templates;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_the_difference_and_never_negative() {
        let a = RevisionCounters {
            requests: 100,
            errors_5xx: 2,
            connection_errors: 1,
            slow: 5,
        };
        let b = RevisionCounters {
            requests: 250,
            errors_5xx: 5,
            connection_errors: 1,
            slow: 9,
        };
        assert_eq!(
            b.since(&a),
            RevisionCounters {
                requests: 150,
                errors_5xx: 3,
                connection_errors: 0,
                slow: 4
            }
        );
        assert_eq!(b.since(&a).errors(), 3);
        assert_eq!(a.since(&b), RevisionCounters::default());
    }
}
