//! A platform wrapper that adds up the wall time spent inside the platform it wraps (every
//! `Platform` call and every `MetricSource` read), so that a bench on the simulated
//! platform can print the engine's own time beside the simulation's: engine overhead =
//! wall time − time inside the platform.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cutover::metrics::{LatencyQuantiles, MetricSource, MetricsError, RevisionCounters};
use cutover::platform::{
    Platform, PlatformError, RevisionHealth, RunningRevision, TestRoute, Weights,
};

/// Nanoseconds spent inside the wrapped platform and its metric source, and how many calls.
#[derive(Debug, Default)]
pub struct Spent {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl Spent {
    fn add(&self, since: Instant) {
        let n = since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos.fetch_add(n, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Run the call `make` starts, adding its time. The clock starts before the call's
    /// future is made: the wrapped platform's future (boxed by `async_trait`) is this
    /// wrapper's cost, not the engine's, whose own call boxes the wrapper's future as it
    /// would box the real platform's.
    async fn timed<T, F: std::future::Future<Output = T>>(&self, make: impl FnOnce() -> F) -> T {
        let t = Instant::now();
        let r = make().await;
        self.add(t);
        r
    }

    pub fn time(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

pub struct TimedPlatform {
    inner: Arc<dyn Platform>,
    metrics: Arc<dyn MetricSource>,
    spent: Arc<Spent>,
}

impl TimedPlatform {
    pub fn wrap(inner: Arc<dyn Platform>) -> (Arc<TimedPlatform>, Arc<Spent>) {
        let spent = Arc::new(Spent::default());
        let metrics: Arc<dyn MetricSource> = Arc::new(TimedMetrics {
            inner: inner.metrics(),
            spent: spent.clone(),
        });
        (
            Arc::new(TimedPlatform {
                inner,
                metrics,
                spent: spent.clone(),
            }),
            spent,
        )
    }
}

#[async_trait]
impl Platform for TimedPlatform {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.spent
            .timed(|| self.inner.launch(service, revision, replicas))
            .await
    }

    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        self.spent
            .timed(|| self.inner.health(service, revision))
            .await
    }

    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        self.spent
            .timed(|| self.inner.set_weights(service, weights))
            .await
    }

    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        self.spent.timed(|| self.inner.weights(service)).await
    }

    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        self.spent
            .timed(|| self.inner.test_route(service, revision))
            .await
    }

    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.spent
            .timed(|| self.inner.scale(service, revision, replicas))
            .await
    }

    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        self.spent
            .timed(|| self.inner.retire(service, revision, drain_timeout))
            .await
    }

    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        self.spent.timed(|| self.inner.inventory()).await
    }

    fn metrics(&self) -> Arc<dyn MetricSource> {
        self.metrics.clone()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

struct TimedMetrics {
    inner: Arc<dyn MetricSource>,
    spent: Arc<Spent>,
}

#[async_trait]
impl MetricSource for TimedMetrics {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn counters(
        &self,
        service: &str,
        revision: &str,
        slow_threshold: Duration,
    ) -> Result<Option<RevisionCounters>, MetricsError> {
        self.spent
            .timed(|| self.inner.counters(service, revision, slow_threshold))
            .await
    }

    fn latency_per_window(&self) -> bool {
        self.inner.latency_per_window()
    }

    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        window: Duration,
    ) -> Result<Option<LatencyQuantiles>, MetricsError> {
        self.spent
            .timed(|| self.inner.recent_latency(service, revision, window))
            .await
    }

    fn fixed_slow_thresholds(&self) -> bool {
        self.inner.fixed_slow_thresholds()
    }

    fn absent_is_no_data(&self) -> bool {
        self.inner.absent_is_no_data()
    }
}
