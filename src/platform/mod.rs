//! The only code that changes deployments in the world. The engine drives a [`Platform`]
//! toward a desired state with idempotent calls; `local` runs processes behind a weighted
//! proxy, `ecs` ([`ecs`]) maps the same calls onto task sets and ALB weighted target groups.
//!
//! Vocabulary: a *service* is a name from the release; a *revision* is one version of it
//! (`"v1"`, `"v2"`, an ECS task definition revision); an *instance* is one replica of a
//! revision (a local process, an ECS task).

pub mod ecs;
pub mod fenced;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::metrics::MetricSource;

pub mod local;
pub mod metrics_override;

/// The state of one instance as the platform's health checks see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InstanceState {
    /// Running, not yet passed `healthy_after` checks.
    Starting,
    Healthy,
    /// Failing health checks (`unhealthy_after` in a row), still running.
    Unhealthy {
        reason: String,
    },
    /// The process or task ended.
    Exited {
        reason: String,
    },
}

/// One instance (replica) of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHealth {
    /// Platform-specific identity: `payments-v2-0` (pid inside), an ECS task ARN.
    pub id: String,
    /// Where the instance answers, for messages and test traffic (`127.0.0.1:41234`).
    pub address: String,
    pub state: InstanceState,
}

/// Health of one revision of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionHealth {
    pub revision: String,
    /// Replicas asked for.
    pub desired: u32,
    pub instances: Vec<InstanceHealth>,
}

impl RevisionHealth {
    pub fn healthy(&self) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.state == InstanceState::Healthy)
            .count() as u32
    }
    pub fn all_healthy(&self) -> bool {
        self.desired > 0 && self.healthy() >= self.desired
    }
}

/// A traffic split among a service's revisions: integer percentages summing to 100.
pub type Weights = Vec<(String, u8)>;

/// How to reach one revision with test traffic regardless of its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRoute {
    /// Base URL of the service's stable address (`http://127.0.0.1:18081`).
    pub base_url: String,
    /// Header to send so the request reaches this revision (`x-cutover-revision: v2`).
    pub header: (String, String),
}

/// What is running, for a restarted engine to reconcile with its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRevision {
    pub service: String,
    pub revision: String,
    pub replicas: u32,
    pub weight: u8,
}

/// The header that routes test traffic to a named revision.
pub const TEST_ROUTE_HEADER: &str = "x-cutover-revision";

/// Why a platform call failed. `retryable` tells the engine whether trying again may help
/// (throttling, a busy port) or not (a command that does not exist).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}: {message}")]
pub struct PlatformError {
    pub service: String,
    pub message: String,
    pub retryable: bool,
}

impl PlatformError {
    pub fn fatal(service: impl Into<String>, message: impl Into<String>) -> Self {
        PlatformError {
            service: service.into(),
            message: message.into(),
            retryable: false,
        }
    }
    pub fn retryable(service: impl Into<String>, message: impl Into<String>) -> Self {
        PlatformError {
            service: service.into(),
            message: message.into(),
            retryable: true,
        }
    }
}

/// What the engine can ask of a platform. Every call is idempotent: launching a revision
/// that runs, or setting the weights that are set, is a no-op that succeeds.
#[async_trait]
pub trait Platform: Send + Sync {
    /// `local` or `ecs`.
    fn name(&self) -> &'static str;

    /// Start `replicas` instances of `revision` (the platform knows from the release how a
    /// revision is run). Returns once they are started, not once healthy.
    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError>;

    /// Health of every instance of a revision.
    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError>;

    /// Apply a split atomically: a request starts either under the old split or the new one.
    /// Revisions not named get weight 0 (and keep serving their in-flight requests).
    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError>;

    /// The split in force now, read live (never a cached copy of what was last set).
    async fn weights(&self, service: &str) -> Result<Weights, PlatformError>;

    /// How to send test traffic to a revision at any weight, 0 included.
    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError>;

    /// Change the number of instances of a running revision.
    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError>;

    /// Take a revision out: it must already be at weight 0; its in-flight requests finish
    /// (up to `drain_timeout`), then its instances stop.
    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError>;

    /// Every revision running now, with its replicas and weight.
    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError>;

    /// Per-revision traffic metrics as measured by this platform.
    fn metrics(&self) -> Arc<dyn MetricSource>;

    /// Stop everything this platform started in this process (local) or release held
    /// resources (ecs). Called on exit; must leave nothing running locally.
    async fn shutdown(&self);
}
