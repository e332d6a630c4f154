//! A [`Platform`] that acts only while the engine's journal lease holds (a journal in
//! PostgreSQL): every acting call (launch, set_weights, scale, retire) checks the lease
//! first and is refused, without reaching the platform, once it is lost. Reads (health,
//! weights, test routes, inventory, metrics) pass through. The refusal is not retryable;
//! the engine's next journal write is refused too and the engine stops.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::journal::pg::LeaseGuard;
use crate::metrics::MetricSource;
use crate::platform::{
    Platform, PlatformError, RevisionHealth, RunningRevision, TestRoute, Weights,
};

pub struct Fenced {
    inner: Arc<dyn Platform>,
    lease: LeaseGuard,
}

/// `platform` fenced by `lease`.
pub fn fenced(platform: Arc<dyn Platform>, lease: LeaseGuard) -> Arc<dyn Platform> {
    Arc::new(Fenced {
        inner: platform,
        lease,
    })
}

impl Fenced {
    fn check(&self, service: &str, call: &str) -> Result<(), PlatformError> {
        self.lease.check().map_err(|why| {
            tracing::error!(service, call, "refused without calling the platform: {why}");
            PlatformError::fatal(service, format!("{call} not sent: {why}"))
        })
    }
}

#[async_trait]
impl Platform for Fenced {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.check(service, "launch")?;
        self.inner.launch(service, revision, replicas).await
    }
    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        self.inner.health(service, revision).await
    }
    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        self.check(service, "set_weights")?;
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
        self.check(service, "scale")?;
        self.inner.scale(service, revision, replicas).await
    }
    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        self.check(service, "retire")?;
        self.inner.retire(service, revision, drain_timeout).await
    }
    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        self.inner.inventory().await
    }
    fn metrics(&self) -> Arc<dyn MetricSource> {
        self.inner.metrics()
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
