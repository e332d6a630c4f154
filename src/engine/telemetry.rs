//! Per-revision traffic time series for front ends (the console's health charts):
//! request rate, error rate and p50/p99 latency of each service's baseline and
//! candidate, sampled from the platform's [`MetricSource`] on a timer and published
//! through a `watch`, so a slow reader only ever sees the latest series, never a backlog.
//!
//! The sampler holds no deployment rule; it reads what the engine's state says is
//! running and asks the same metric source the judge uses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{MetricSource, RevisionCounters};

use super::clock::Clock;
use super::state::ReleaseState;

/// One sample of one revision over the interval that ended at `at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub requests_per_s: f64,
    /// Errors (5xx and connection errors) per request, 0-1; `None` without requests.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Series of one service: baseline and candidate, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSeries {
    pub baseline: VecDeque<Sample>,
    pub candidate: VecDeque<Sample>,
}

/// Every service's series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub services: BTreeMap<String, ServiceSeries>,
    /// Samples kept per series.
    pub keep: usize,
    /// Sampling interval (ms): `keep × every_ms` is the longest window shown.
    pub every_ms: u64,
}

/// Sampling settings.
#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions {
    pub every: Duration,
    /// Samples kept per series (`keep × every` is the charts' window).
    pub keep: usize,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            every: Duration::from_secs(2),
            keep: 150,
        }
    }
}

/// The state of a running sampler between readings.
struct Sampler {
    metrics: Arc<dyn MetricSource>,
    last: BTreeMap<(String, String), (u64, RevisionCounters)>,
    telemetry: Telemetry,
    every: Duration,
}

impl Sampler {
    /// The revisions of a service worth charting: the baseline while it runs or the
    /// service is active, the candidate while it runs.
    fn charted(s: &super::state::ServiceState) -> Vec<(String, bool)> {
        let mut revs = Vec::new();
        if s.baseline_running || s.status.is_active() {
            revs.push((s.baseline.clone(), false));
        }
        if s.candidate_running {
            revs.push((s.candidate.clone(), true));
        }
        revs
    }

    /// Before the first sample: what the source remembers of each charted revision over
    /// the charts' window (a Prometheus range query; nothing for the local proxy).
    async fn backfill(&mut self, state: &ReleaseState) {
        let since = self.every * self.telemetry.keep as u32;
        for s in &state.services {
            for (rev, is_candidate) in Self::charted(s) {
                let Ok(points) = self.metrics.history(&s.name, &rev, since, self.every).await
                else {
                    continue;
                };
                if points.is_empty() {
                    continue;
                }
                let series = self.telemetry.services.entry(s.name.clone()).or_default();
                let q = if is_candidate {
                    &mut series.candidate
                } else {
                    &mut series.baseline
                };
                q.extend(points.into_iter().map(|p| Sample {
                    at_ms: p.at_ms,
                    requests_per_s: p.requests_per_s,
                    error_rate: p.error_rate,
                    p50_ms: p.p50_ms,
                    p99_ms: p.p99_ms,
                }));
                while q.len() > self.telemetry.keep {
                    q.pop_front();
                }
            }
        }
    }

    async fn sample(&mut self, state: &ReleaseState, now_ms: u64) {
        for s in &state.services {
            for (rev, is_candidate) in Self::charted(s) {
                let counters = match self
                    .metrics
                    .counters(&s.name, &rev, Duration::from_secs(1))
                    .await
                {
                    Ok(Some(c)) => c,
                    _ => continue,
                };
                let key = (s.name.clone(), rev.clone());
                let prev = self.last.insert(key, (now_ms, counters));
                let Some((prev_ms, prev_c)) = prev else {
                    continue;
                };
                let dt = now_ms.saturating_sub(prev_ms) as f64 / 1000.0;
                if dt <= 0.0 {
                    continue;
                }
                let d = counters.since(&prev_c);
                let lat = self
                    .metrics
                    .recent_latency(&s.name, &rev, self.every.max(Duration::from_secs(5)))
                    .await
                    .ok()
                    .flatten();
                let sample = Sample {
                    at_ms: now_ms,
                    requests_per_s: d.requests as f64 / dt,
                    error_rate: (d.requests > 0).then(|| d.errors() as f64 / d.requests as f64),
                    p50_ms: lat.map(|l| l.p50_ms),
                    p99_ms: lat.map(|l| l.p99_ms),
                };
                let series = self.telemetry.services.entry(s.name.clone()).or_default();
                let q = if is_candidate {
                    &mut series.candidate
                } else {
                    &mut series.baseline
                };
                q.push_back(sample);
                while q.len() > self.telemetry.keep {
                    q.pop_front();
                }
            }
        }
    }
}

/// Start sampling `metrics` for the services `state` shows running. The task ends when
/// the state's sender (the engine) is gone.
pub fn spawn_sampler(
    metrics: Arc<dyn MetricSource>,
    mut state: watch::Receiver<ReleaseState>,
    clock: Arc<dyn Clock>,
    options: SamplerOptions,
) -> (watch::Receiver<Arc<Telemetry>>, JoinHandle<()>) {
    let every_ms = options.every.as_millis() as u64;
    let (tx, rx) = watch::channel(Arc::new(Telemetry {
        services: BTreeMap::new(),
        keep: options.keep,
        every_ms,
    }));
    let join = tokio::spawn(async move {
        let mut sampler = Sampler {
            metrics,
            last: BTreeMap::new(),
            telemetry: Telemetry {
                services: BTreeMap::new(),
                keep: options.keep,
                every_ms,
            },
            every: options.every,
        };
        let first = state.borrow().clone();
        sampler.backfill(&first).await;
        if !sampler.telemetry.services.is_empty() {
            let _ = tx.send(Arc::new(sampler.telemetry.clone()));
        }
        let mut tick = tokio::time::interval(options.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if state.has_changed().is_err() {
                break;
            }
            let snapshot = state.borrow_and_update().clone();
            sampler.sample(&snapshot, clock.now_ms()).await;
            if tx.send(Arc::new(sampler.telemetry.clone())).is_err() {
                break;
            }
        }
    });
    (rx, join)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::FakePlatform;
    use crate::engine::{FakeClock, ReleaseState};
    use crate::platform::Platform;

    /// A release whose service `svc` runs baseline v1 and candidate v2.
    fn running_state() -> ReleaseState {
        let mut state = ReleaseState::empty();
        let ev = |seq, kind| crate::engine::Event {
            seq,
            at_ms: 1_000_000,
            kind,
        };
        state.apply(&ev(
            1,
            crate::engine::EventKind::ReleaseLoaded {
                release: "r".into(),
                run_id: "run".into(),
                platform: "fake".into(),
                environment: None,
                break_glass: None,
                change_control: None,
                change: None,
                on_failure: Default::default(),
                max_parallel: 1,
                waves: vec![vec!["svc".into()]],
                services: vec![crate::engine::ServiceInit {
                    name: "svc".into(),
                    strategy: crate::release::StrategyKind::Canary,
                    wave: 0,
                    depends_on: vec![],
                    baseline: "v1".into(),
                    candidate: "v2".into(),
                    steps: vec![],
                }],
            },
        ));
        state.apply(&ev(
            2,
            crate::engine::EventKind::BaselineReady {
                service: "svc".into(),
                revision: "v1".into(),
            },
        ));
        state.apply(&ev(
            3,
            crate::engine::EventKind::Launched {
                service: "svc".into(),
                revision: "v2".into(),
                replicas: 1,
            },
        ));
        state
    }

    #[tokio::test]
    async fn rates_are_differences_over_the_interval() {
        let clock = FakeClock::new(1_000_000);
        let platform = FakePlatform::new(Arc::new(clock.clone()));
        platform.script(
            "svc",
            "v2",
            crate::platform::InstanceState::Healthy,
            0.1,
            0.0,
        );
        platform.launch("svc", "v1", 1).await.unwrap();
        platform.launch("svc", "v2", 1).await.unwrap();
        platform
            .set_weights("svc", &vec![("v1".into(), 50), ("v2".into(), 50)])
            .await
            .unwrap();
        let state = running_state();
        let mut s = Sampler {
            metrics: platform.metrics(),
            last: BTreeMap::new(),
            telemetry: Telemetry {
                services: BTreeMap::new(),
                keep: 3,
                every_ms: 1000,
            },
            every: Duration::from_secs(1),
        };
        for i in 0..6 {
            clock.set(1_000_000 + i * 1000);
            s.sample(&state, clock.now_ms()).await;
        }
        let series = &s.telemetry.services["svc"];
        assert_eq!(series.candidate.len(), 3);
        let last = series.candidate.back().unwrap();
        // 200 rps split 50/50 by the fake platform, 10 % of the candidate's failing.
        assert!((last.requests_per_s - 100.0).abs() < 5.0, "{last:?}");
        assert!((last.error_rate.unwrap() - 0.1).abs() < 0.03, "{last:?}");
        assert_eq!(series.baseline.back().unwrap().error_rate, Some(0.0));
    }

    /// A source that remembers: two past points per revision.
    struct Remembers;

    #[async_trait::async_trait]
    impl MetricSource for Remembers {
        fn name(&self) -> &str {
            "remembers"
        }
        async fn counters(
            &self,
            _: &str,
            _: &str,
            _: Duration,
        ) -> Result<Option<RevisionCounters>, crate::metrics::MetricsError> {
            Ok(None)
        }
        async fn recent_latency(
            &self,
            _: &str,
            _: &str,
            _: Duration,
        ) -> Result<Option<crate::metrics::LatencyQuantiles>, crate::metrics::MetricsError>
        {
            Ok(None)
        }
        async fn history(
            &self,
            _: &str,
            revision: &str,
            since: Duration,
            step: Duration,
        ) -> Result<Vec<crate::metrics::HistoryPoint>, crate::metrics::MetricsError> {
            // The sampler asks for its whole window at its own step.
            assert_eq!(
                (since, step),
                (Duration::from_secs(4), Duration::from_secs(2))
            );
            let rps = if revision == "v2" { 10.0 } else { 90.0 };
            Ok((1..=2)
                .map(|i| crate::metrics::HistoryPoint {
                    at_ms: i * 2000,
                    requests_per_s: rps,
                    error_rate: Some(0.01),
                    p50_ms: None,
                    p99_ms: Some(120.0),
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn a_source_with_history_fills_the_charts_before_the_first_sample() {
        let (_tx, state) = watch::channel(running_state());
        let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(10_000));
        let (mut rx, join) = spawn_sampler(
            Arc::new(Remembers),
            state,
            clock,
            SamplerOptions {
                every: Duration::from_secs(2),
                keep: 2,
            },
        );
        let t = rx
            .wait_for(|t| !t.services.is_empty())
            .await
            .map(|t| t.clone())
            .unwrap_or_default();
        join.abort();
        let svc = &t.services["svc"];
        assert_eq!(svc.baseline.len(), 2);
        assert_eq!(svc.candidate.len(), 2);
        assert_eq!(svc.candidate[1].requests_per_s, 10.0);
        assert_eq!(svc.baseline[0].requests_per_s, 90.0);
        assert_eq!(svc.baseline[0].p99_ms, Some(120.0));
    }
}
