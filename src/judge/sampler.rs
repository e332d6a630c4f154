//! Turn polls of a [`MetricSource`] into [`AnalysisWindow`]s.
//!
//! Sources report cumulative counters; the sampler keeps the previous reading of both
//! arms and differences them. It has no clock: the engine passes the time of each poll.

use std::sync::Arc;

use crate::metrics::{MetricSource, MetricsError, RevisionCounters};

use super::{AnalysisWindow, SlowThreshold};

/// Polls baseline and canary of one service and yields one window per poll.
pub struct ArmSampler {
    source: Arc<dyn MetricSource>,
    service: String,
    baseline: String,
    canary: String,
    slow: SlowThreshold,
    previous: Option<(u64, RevisionCounters, RevisionCounters)>,
    /// Why the last poll gave no window (a source whose absent data is *no data*).
    no_data: Option<String>,
}

impl ArmSampler {
    /// `slow` is the threshold frozen before the analysis (see
    /// [`super::freeze_slow_threshold`]); every poll asks the source for counts above it.
    pub fn new(
        source: Arc<dyn MetricSource>,
        service: &str,
        baseline_revision: &str,
        canary_revision: &str,
        slow: SlowThreshold,
    ) -> ArmSampler {
        ArmSampler {
            source,
            service: service.to_string(),
            baseline: baseline_revision.to_string(),
            canary: canary_revision.to_string(),
            slow,
            previous: None,
            no_data: None,
        }
    }

    /// Why the last poll yielded no window because the source had nothing (only for
    /// sources whose [`MetricSource::absent_is_no_data`]); `None` once data is back.
    pub fn no_data(&self) -> Option<&str> {
        self.no_data.as_deref()
    }

    /// Both arms, or why there is no data (sources whose absent data is no data).
    async fn read_strict(&self) -> Result<(RevisionCounters, RevisionCounters), String> {
        let t = self.slow.threshold;
        let name = self.source.name();
        let mut out = [RevisionCounters::default(); 2];
        for (i, (arm, rev)) in [("baseline", &self.baseline), ("canary", &self.canary)]
            .into_iter()
            .enumerate()
        {
            out[i] = match self.source.counters(&self.service, rev, t).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Err(format!(
                        "the metrics source `{name}` had no data for the {arm} `{rev}` of `{}`",
                        self.service
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "the metrics source `{name}` could not be read for the {arm} `{rev}`: {}",
                        e.message
                    ));
                }
            };
        }
        Ok((out[0], out[1]))
    }

    /// The name of the source, for messages.
    pub fn source_name(&self) -> &str {
        self.source.name()
    }

    /// Read both arms at `at_ms`. The first call only primes the sampler and returns
    /// `None`; later calls return the window since the previous call. A revision the
    /// source does not know yet counts as zero.
    pub async fn sample(
        &mut self,
        at_ms: u64,
        canary_weight: f64,
    ) -> Result<Option<AnalysisWindow>, MetricsError> {
        let t = self.slow.threshold;
        if self.source.absent_is_no_data() {
            // No data is no window: the previous reading stays, so the next window with
            // data spans the gap (the counters are cumulative).
            match self.read_strict().await {
                Ok((base, can)) => {
                    self.no_data = None;
                    return Ok(self.window(at_ms, canary_weight, base, can));
                }
                Err(why) => {
                    self.no_data = Some(why);
                    return Ok(None);
                }
            }
        }
        let base = self
            .source
            .counters(&self.service, &self.baseline, t)
            .await?
            .unwrap_or_default();
        let can = self
            .source
            .counters(&self.service, &self.canary, t)
            .await?
            .unwrap_or_default();
        Ok(self.window(at_ms, canary_weight, base, can))
    }

    fn window(
        &mut self,
        at_ms: u64,
        canary_weight: f64,
        base: RevisionCounters,
        can: RevisionCounters,
    ) -> Option<AnalysisWindow> {
        let t = self.slow.threshold;
        let window = self.previous.map(|(prev_at, prev_base, prev_can)| {
            AnalysisWindow::from_readings(
                at_ms,
                at_ms.saturating_sub(prev_at),
                canary_weight,
                Some(t),
                &prev_base,
                &base,
                &prev_can,
                &can,
            )
        });
        self.previous = Some((at_ms, base, can));
        window
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::judge::{ArmCounts, ThresholdSource};
    use crate::metrics::LatencyQuantiles;

    #[derive(Default)]
    struct FakeSource {
        counters: Mutex<HashMap<String, RevisionCounters>>,
        asked_threshold: Mutex<Vec<Duration>>,
        fail: Mutex<bool>,
    }

    impl FakeSource {
        fn set(&self, rev: &str, c: RevisionCounters) {
            self.counters.lock().unwrap().insert(rev.to_string(), c);
        }
    }

    #[async_trait]
    impl MetricSource for FakeSource {
        fn name(&self) -> &str {
            "fake"
        }
        async fn counters(
            &self,
            _service: &str,
            revision: &str,
            slow_threshold: Duration,
        ) -> Result<Option<RevisionCounters>, MetricsError> {
            if *self.fail.lock().unwrap() {
                return Err(MetricsError {
                    source_name: "fake".into(),
                    message: "down".into(),
                });
            }
            self.asked_threshold.lock().unwrap().push(slow_threshold);
            Ok(self.counters.lock().unwrap().get(revision).copied())
        }
        async fn recent_latency(
            &self,
            _service: &str,
            _revision: &str,
            _window: Duration,
        ) -> Result<Option<LatencyQuantiles>, MetricsError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn yields_differences_between_polls() {
        let src = Arc::new(FakeSource::default());
        src.set(
            "v1",
            RevisionCounters {
                requests: 5000,
                errors_5xx: 20,
                connection_errors: 0,
                slow: 50,
            },
        );
        let slow = SlowThreshold {
            threshold: Duration::from_millis(202),
            source: ThresholdSource::MaxP99,
        };
        let mut s = ArmSampler::new(src.clone(), "payments", "v1", "v2", slow);
        assert_eq!(s.sample(0, 0.1).await.unwrap(), None);
        src.set(
            "v1",
            RevisionCounters {
                requests: 5090,
                errors_5xx: 21,
                connection_errors: 0,
                slow: 51,
            },
        );
        src.set(
            "v2",
            RevisionCounters {
                requests: 10,
                errors_5xx: 1,
                connection_errors: 1,
                slow: 0,
            },
        );
        let w = s.sample(1000, 0.1).await.unwrap().unwrap();
        assert_eq!(w.at_ms, 1000);
        assert_eq!(w.duration_ms, 1000);
        assert_eq!(w.slow_threshold_ms, Some(202));
        assert_eq!(
            w.baseline,
            ArmCounts {
                requests: 90,
                errors: 1,
                slow: 1
            }
        );
        assert_eq!(
            w.canary,
            ArmCounts {
                requests: 10,
                errors: 2,
                slow: 0
            }
        );
        assert!(
            src.asked_threshold
                .lock()
                .unwrap()
                .iter()
                .all(|t| t.as_millis() == 202)
        );
        // A source restart (counters reset) gives zeros, not garbage.
        src.set("v1", RevisionCounters::default());
        let w = s.sample(2000, 0.1).await.unwrap().unwrap();
        assert_eq!(w.baseline, ArmCounts::default());
        // Errors from the source pass through.
        *src.fail.lock().unwrap() = true;
        assert!(
            s.sample(3000, 0.1)
                .await
                .unwrap_err()
                .to_string()
                .contains("down")
        );
        assert_eq!(s.source_name(), "fake");
    }
}
