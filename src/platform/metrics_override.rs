//! A [`Platform`] whose [`MetricSource`] is another one (`[metrics] provider =
//! "prometheus"`): every call passes through, only `metrics()` answers differently.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::metrics::MetricSource;
use crate::platform::{
    Platform, PlatformError, RevisionHealth, RunningRevision, TestRoute, Weights,
};

struct WithMetrics {
    inner: Arc<dyn Platform>,
    metrics: Arc<dyn MetricSource>,
}

/// `platform` with `metrics` as its metric source.
pub fn with_metrics(
    platform: Arc<dyn Platform>,
    metrics: Arc<dyn MetricSource>,
) -> Arc<dyn Platform> {
    Arc::new(WithMetrics {
        inner: platform,
        metrics,
    })
}

#[async_trait]
impl Platform for WithMetrics {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.inner.launch(service, revision, replicas).await
    }
    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        self.inner.health(service, revision).await
    }
    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        self.inner.set_weights(service, weights).await
    }
    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        self.inner.weights(service).await
    }
    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        self.inner.test_route(service, revision).await
    }
    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.inner.scale(service, revision, replicas).await
    }
    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        self.inner.retire(service, revision, drain_timeout).await
    }
    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        self.inner.inventory().await
    }
    fn metrics(&self) -> Arc<dyn MetricSource> {
        self.metrics.clone()
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
