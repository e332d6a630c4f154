//! A [`Platform`] that runs [`super::before_platform_call`] before each acting call
//! (launch, set_weights, scale, retire) and passes everything through. Reads (health,
//! weights, test routes, inventory, metrics) are observations polled on timers: counting
//! them would make the N-th call depend on timing, so they are not crash points.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::metrics::MetricSource;
use crate::platform::{
    Platform, PlatformError, RevisionHealth, RunningRevision, TestRoute, Weights,
};

pub struct Hooked(pub Arc<dyn Platform>);

/// `platform` wrapped so the crash hook sees its calls.
pub fn hooked(platform: Arc<dyn Platform>) -> Arc<dyn Platform> {
    Arc::new(Hooked(platform))
}

#[async_trait]
impl Platform for Hooked {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        super::before_platform_call("launch");
        self.0.launch(service, revision, replicas).await
    }
    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        self.0.health(service, revision).await
    }
    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        super::before_platform_call("set_weights");
        self.0.set_weights(service, weights).await
    }
    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        self.0.weights(service).await
    }
    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        self.0.test_route(service, revision).await
    }
    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        super::before_platform_call("scale");
        self.0.scale(service, revision, replicas).await
    }
    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        super::before_platform_call("retire");
        self.0.retire(service, revision, drain_timeout).await
    }
    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        self.0.inventory().await
    }
    fn metrics(&self) -> Arc<dyn MetricSource> {
        self.0.metrics()
    }
    async fn shutdown(&self) {
        self.0.shutdown().await
    }
}
