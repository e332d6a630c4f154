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
    async fn sample(&mut self, state: &ReleaseState, now_ms: u64) {
        for s in &state.services {
            let mut revs = Vec::new();
            if s.baseline_running || s.status.is_active() {
                revs.push((s.baseline.clone(), false));
            }
            if s.candidate_running {
                revs.push((s.candidate.clone(), true));
            }
            for (rev, is_candidate) in revs {
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
}
