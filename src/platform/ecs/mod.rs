//! The `ecs` platform: AWS ECS Fargate behind an Application Load Balancer.
//!
//! How the [`Platform`] calls map onto ECS, by the service's deployment controller:
//!
//! * **EXTERNAL** (blue-green, canary, linear): each revision is one *task set*, named by
//!   its `externalId` (the revision name), registered in one of the two target groups of the
//!   release. `launch` registers a new task definition revision derived from the running one
//!   and creates a task set on the target group not in use; `set_weights` rewrites the
//!   weighted `forward` action of the listener rule in one `ModifyRule` (atomic on the ALB)
//!   and makes a revision at 100 % the service's primary task set; `test_route` points the
//!   test listener rule (header `x-cutover-revision`) at the revision's target group;
//!   `retire` sets the target group's deregistration delay to the drain timeout and deletes
//!   the task set, which drains it. Rollback is a weight change: the old task set still runs.
//! * **ECS** (rolling): `launch` registers the new task definition and `UpdateService`s to
//!   it with min-healthy/max percent from the release's `rolling` settings; progress comes
//!   from `DescribeServices` deployments and `rolloutState` ([`EcsPlatform::rollout`]);
//!   `set_weights` with 100 % on the previous revision updates the service back to the
//!   previous task definition.
//!
//! The split is read live before every change, and a rule whose split differs from the one
//! cutover last saw or set is not touched ([`EcsPlatform::accept_live_weights`] adopts it
//! after a person looked). A shift that fails is followed by a fresh read, and the error
//! states the split in force.

pub mod aws;
pub mod images;
pub mod metrics;
pub mod parity;
pub mod secrets;
pub mod session;
pub mod taskdef;
pub mod traffic;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    DesiredStatus, LaunchType, LoadBalancer, Scale, ScaleUnit, Service as EcsServiceDesc,
    TaskDefinition, TaskSet,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use self::aws::{AwsError, Clients, RetryPolicy, call};
use self::secrets::SecretVersion;
use self::traffic::{Split, short_tg};
use crate::metrics::MetricSource;
use crate::platform::{
    InstanceHealth, InstanceState, Platform, PlatformError, RevisionHealth, RunningRevision,
    TEST_ROUTE_HEADER, TestRoute, Weights,
};
use crate::release::{EcsService, Release, Rolling, StrategyKind};

/// Which ECS deployment controller a service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Controller {
    /// Task sets driven by cutover (blue-green, canary, linear).
    External,
    /// ECS's own rolling update.
    Ecs,
}

/// One release service on ECS: its settings and the clients of its region.
#[derive(Debug, Clone)]
pub struct Svc {
    pub name: String,
    pub strategy: StrategyKind,
    pub rolling: Rolling,
    pub cfg: EcsService,
    pub clients: Clients,
}

impl Svc {
    fn err(&self, e: AwsError) -> PlatformError {
        PlatformError {
            service: self.name.clone(),
            message: e.to_string(),
            retryable: e.retryable,
        }
    }
    fn fatal(&self, message: impl Into<String>) -> PlatformError {
        PlatformError::fatal(&self.name, message)
    }
    /// The controller the release's strategy needs.
    pub fn wanted_controller(&self) -> Controller {
        if self.strategy == StrategyKind::Rolling {
            Controller::Ecs
        } else {
            Controller::External
        }
    }
}

#[derive(Debug, Default)]
struct SvcState {
    /// The split cutover last saw or set on the listener rule.
    expected: Option<Split>,
    /// Versions of the secrets the launched revision references.
    secret_versions: Vec<SecretVersion>,
    /// The task definition a rolling update replaced (its rollback target).
    previous_task_definition: Option<String>,
    /// Base URL for test traffic, once derived.
    base_url: Option<String>,
    /// What this run pinned when it started (journaled, restored on resume).
    pin: Option<session::ServicePin>,
    /// The image this run deploys, pinned to a digest at the start (`images.rs`).
    image: Option<images::ImagePin>,
}

pub(crate) struct Inner {
    services: BTreeMap<String, Svc>,
    retry: RetryPolicy,
    state: Mutex<BTreeMap<String, SvcState>>,
    /// Revision name of a task definition ARN (task definitions are immutable).
    revisions: Mutex<BTreeMap<String, String>>,
    /// Set once CloudWatch refused a trimmed-count statistic, so it is not asked again.
    pub(crate) no_trimmed_count: std::sync::atomic::AtomicBool,
}

/// The ECS platform. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct EcsPlatform {
    inner: Arc<Inner>,
}

/// Progress of an ECS rolling update, from the service's PRIMARY deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub task_definition: String,
    pub revision: String,
    /// `IN_PROGRESS`, `COMPLETED`, `FAILED`, or `NOT_STARTED` when ECS has not yet made a
    /// deployment of the service's task definition.
    pub state: String,
    pub reason: Option<String>,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
}

impl EcsPlatform {
    /// The platform for every service of `release` (each needs a `[service.ecs]` table),
    /// with clients built from `conf` (see [`aws::load_config`]) in each service's region.
    pub fn from_release(release: &Release, conf: &SdkConfig) -> Result<Self, PlatformError> {
        Self::from_release_with_retry(release, conf, RetryPolicy::default())
    }

    /// As [`EcsPlatform::from_release`], with a retry policy of one's own.
    pub fn from_release_with_retry(
        release: &Release,
        conf: &SdkConfig,
        retry: RetryPolicy,
    ) -> Result<Self, PlatformError> {
        let mut services = BTreeMap::new();
        let mut clients_by_region: BTreeMap<Option<String>, Clients> = BTreeMap::new();
        for s in &release.services {
            let Some(cfg) = &s.ecs else {
                return Err(PlatformError::fatal(
                    &s.name,
                    "no [service.ecs] table: add cluster, service, container and image",
                ));
            };
            let clients = clients_by_region
                .entry(cfg.region.clone())
                .or_insert_with(|| Clients::new(conf, cfg.region.as_deref()))
                .clone();
            services.insert(
                s.name.clone(),
                Svc {
                    name: s.name.clone(),
                    strategy: s.strategy,
                    rolling: s.rolling.clone().unwrap_or_default(),
                    cfg: cfg.clone(),
                    clients,
                },
            );
        }
        Ok(EcsPlatform {
            inner: Arc::new(Inner {
                services,
                retry,
                state: Mutex::new(BTreeMap::new()),
                revisions: Mutex::new(BTreeMap::new()),
                no_trimmed_count: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The release services this platform drives.
    pub fn services(&self) -> impl Iterator<Item = &Svc> {
        self.inner.services.values()
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn svc(&self, name: &str) -> Result<&Svc, PlatformError> {
        self.inner.services.get(name).ok_or_else(|| {
            PlatformError::fatal(
                name,
                format!(
                    "not a service of this release (known: {})",
                    self.inner
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    fn with_state<T>(&self, service: &str, f: impl FnOnce(&mut SvcState) -> T) -> T {
        let mut guard = match self.inner.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(guard.entry(service.to_string()).or_default())
    }

    /// The secret versions the launched revision of `service` was checked and pinned with.
    pub fn secret_versions(&self, service: &str) -> Vec<SecretVersion> {
        self.with_state(service, |s| s.secret_versions.clone())
    }

    /// Adopt the split now in force on the listener rule as the expected one, after a
    /// person has looked at a change made outside cutover.
    pub async fn accept_live_weights(&self, service: &str) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let (_, live) = self.live_split(svc).await?;
        tracing::warn!(service, split = %live, "accepting the listener split changed outside cutover");
        self.with_state(service, |s| s.expected = Some(live));
        Ok(())
    }

    /// Tell the platform which split it set last (a resumed engine, from its journal), so
    /// that a change made while no cutover was running is caught before the next shift.
    pub async fn expect_weights(
        &self,
        service: &str,
        weights: &Weights,
    ) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        let mut split = Split::default();
        for (rev, w) in weights {
            let tg = sets
                .iter()
                .find(|(r, _)| r == rev)
                .and_then(|(_, t)| t.load_balancers().first())
                .and_then(|l| l.target_group_arn())
                .ok_or_else(|| svc.fatal(format!("revision \"{rev}\" has no task set")))?;
            split.0.insert(tg.to_string(), u32::from(*w));
        }
        self.with_state(service, |s| s.expected = Some(split));
        Ok(())
    }

    /// The ECS service as it is now.
    pub async fn describe(&self, svc: &Svc) -> Result<EcsServiceDesc, PlatformError> {
        let ecs = &svc.clients.ecs;
        let out = call(&self.inner.retry, "ecs:DescribeServices", || {
            ecs.describe_services()
                .cluster(&svc.cfg.cluster)
                .services(&svc.cfg.service)
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        if let Some(s) = out
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
        {
            return Ok(s.clone());
        }
        let reason = out
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("INACTIVE");
        Err(svc.fatal(format!(
            "ECS service \"{}\" not found in cluster \"{}\" ({reason}, region {}): check `service` and `cluster` in [service.ecs]",
            svc.cfg.service,
            svc.cfg.cluster,
            svc.clients.region()
        )))
    }

    /// The deployment controller of a described service.
    pub fn controller(svc: &Svc, desc: &EcsServiceDesc) -> Result<Controller, PlatformError> {
        use aws_sdk_ecs::types::DeploymentControllerType as T;
        match desc.deployment_controller().map(|d| d.r#type()) {
            Some(T::External) => Ok(Controller::External),
            None | Some(T::Ecs) => Ok(Controller::Ecs),
            Some(other) => Err(svc.fatal(format!(
                "ECS service \"{}\" uses the {} deployment controller; cutover drives EXTERNAL (task sets) or ECS (rolling) services",
                svc.cfg.service,
                other.as_str()
            ))),
        }
    }

    async fn controller_checked(
        &self,
        svc: &Svc,
        desc: &EcsServiceDesc,
    ) -> Result<Controller, PlatformError> {
        let c = Self::controller(svc, desc)?;
        if c != svc.wanted_controller() {
            return Err(svc.fatal(format!(
                "strategy \"{}\" needs the {} deployment controller, but ECS service \"{}\" uses {}: recreate the service with deploymentController {{type = {}}} or change the strategy",
                svc.strategy.as_str(),
                ctl_name(svc.wanted_controller()),
                svc.cfg.service,
                ctl_name(c),
                ctl_name(svc.wanted_controller()),
            )));
        }
        Ok(c)
    }

    pub(crate) async fn task_definition(
        &self,
        svc: &Svc,
        arn: &str,
    ) -> Result<TaskDefinition, PlatformError> {
        let ecs = &svc.clients.ecs;
        let out = call(&self.inner.retry, "ecs:DescribeTaskDefinition", || {
            ecs.describe_task_definition().task_definition(arn).send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        out.task_definition()
            .cloned()
            .ok_or_else(|| svc.fatal(format!("task definition {arn} not found")))
    }

    /// The revision name of a task definition: its container's image tag.
    async fn revision_of_td(&self, svc: &Svc, arn: &str) -> Result<String, PlatformError> {
        if let Some(r) = lock(&self.inner.revisions).get(arn) {
            return Ok(r.clone());
        }
        let td = self.task_definition(svc, arn).await?;
        let c =
            taskdef::container(&td, &svc.cfg.container).map_err(|e| svc.fatal(e.to_string()))?;
        let rev = match c
            .docker_labels()
            .and_then(|l| l.get(images::REVISION_LABEL))
        {
            Some(r) => r.clone(),
            None => taskdef::revision_of_image(c.image().unwrap_or("")),
        };
        lock(&self.inner.revisions).insert(arn.to_string(), rev.clone());
        Ok(rev)
    }

    async fn task_set_revision(&self, svc: &Svc, ts: &TaskSet) -> Result<String, PlatformError> {
        match ts.external_id() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => {
                self.revision_of_td(svc, ts.task_definition().unwrap_or(""))
                    .await
            }
        }
    }

    /// Task sets of a service with their revision names.
    async fn task_sets(
        &self,
        svc: &Svc,
        desc: &EcsServiceDesc,
    ) -> Result<Vec<(String, TaskSet)>, PlatformError> {
        let mut out = Vec::new();
        for ts in desc.task_sets() {
            if ts.status() == Some("DRAINING") {
                continue;
            }
            out.push((self.task_set_revision(svc, ts).await?, ts.clone()));
        }
        Ok(out)
    }

    async fn live_split(
        &self,
        svc: &Svc,
    ) -> Result<(Vec<aws_sdk_elasticloadbalancingv2::types::Action>, Split), PlatformError> {
        let rule = svc.cfg.listener_rule.as_deref().ok_or_else(|| {
            svc.fatal(
                "no listener_rule in [service.ecs]: cutover needs the rule whose weights it moves",
            )
        })?;
        let actions = traffic::read_actions(&svc.clients, &self.inner.retry, rule)
            .await
            .map_err(|e| svc.err(e))?;
        let split = traffic::split_of(&actions);
        Ok((actions, split))
    }

    /// Register the release's task definition derived from `base`, after the secrets
    /// preflight. Returns the new ARN.
    /// The secrets preflight for the task definition the release derives from `base`:
    /// every Secrets Manager secret it references exists, is readable and is not scheduled
    /// for deletion. Returns the versions to pin (the run's journaled ones once pinned).
    pub(crate) async fn checked_secrets(
        &self,
        svc: &Svc,
        base: &TaskDefinition,
    ) -> Result<Vec<SecretVersion>, PlatformError> {
        let unpinned = taskdef::derive(base, &svc.cfg, &BTreeMap::new())
            .map_err(|e| svc.fatal(e.to_string()))?;
        let mut refs: Vec<String> = taskdef::secret_refs(&unpinned.def)
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
        refs.extend(svc.cfg.secrets.iter().cloned());
        // The versions this run pinned when it started (journaled): a relaunch after a
        // resume or a rollback uses exactly those, never whatever is AWSCURRENT now.
        let pinned = self.with_state(&svc.name, |s| {
            s.pin.as_ref().map(|p| p.secret_versions.clone())
        });
        if let Some(pinned) = pinned.filter(|p| !p.is_empty()) {
            let pins: BTreeMap<String, String> = pinned
                .iter()
                .map(|v| (v.arn.clone(), v.version_id.clone()))
                .collect();
            refs = refs
                .into_iter()
                .map(|r| taskdef::pin(&r, &pins).unwrap_or(r))
                .collect();
        }
        let versions = secrets::preflight(&svc.clients, &self.inner.retry, &refs)
            .await
            .map_err(|issues| {
                svc.fatal(format!(
                    "secrets preflight failed, nothing was changed: {}",
                    issues
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
        Ok(versions)
    }

    async fn register(&self, svc: &Svc, base_arn: &str) -> Result<String, PlatformError> {
        let base = self.task_definition(svc, base_arn).await?;
        let versions = self.checked_secrets(svc, &base).await?;
        let pins: BTreeMap<String, String> = versions
            .iter()
            .map(|v| (v.arn.clone(), v.version_id.clone()))
            .collect();
        let new = taskdef::derive(&base, &svc.cfg, &pins).map_err(|e| svc.fatal(e.to_string()))?;
        let mut d = new.def;
        images::pin_container(
            &mut d,
            &svc.cfg.container,
            self.image_pin(&svc.name).as_ref(),
            &taskdef::revision_of_image(&svc.cfg.image),
        );
        let ecs = &svc.clients.ecs;
        let out = call(&self.inner.retry, "ecs:RegisterTaskDefinition", || {
            ecs.register_task_definition()
                .family(&new.family)
                .set_task_role_arn(d.task_role_arn.clone())
                .set_execution_role_arn(d.execution_role_arn.clone())
                .set_network_mode(d.network_mode.clone())
                .set_container_definitions(d.container_definitions.clone())
                .set_volumes(d.volumes.clone())
                .set_placement_constraints(d.placement_constraints.clone())
                .set_requires_compatibilities(d.requires_compatibilities.clone())
                .set_cpu(d.cpu.clone())
                .set_memory(d.memory.clone())
                .set_pid_mode(d.pid_mode.clone())
                .set_ipc_mode(d.ipc_mode.clone())
                .set_proxy_configuration(d.proxy_configuration.clone())
                .set_ephemeral_storage(d.ephemeral_storage.clone())
                .set_runtime_platform(d.runtime_platform.clone())
                .set_enable_fault_injection(d.enable_fault_injection)
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| svc.fatal("RegisterTaskDefinition returned no ARN"))?
            .to_string();
        tracing::info!(service = %svc.name, task_definition = %arn, from = %base_arn, "registered task definition");
        self.with_state(&svc.name, |s| s.secret_versions = versions);
        Ok(arn)
    }

    /// Tasks the release wants per revision: `desired_count` from the release, else the
    /// service's desired count now. The engine passes this to `launch`.
    pub async fn replicas(&self, service: &str) -> Result<u32, PlatformError> {
        let svc = self.svc(service)?;
        if let Some(n) = svc.cfg.desired_count {
            return Ok(n);
        }
        Ok(self.describe(svc).await?.desired_count().max(0) as u32)
    }

    fn scale_percent(svc: &Svc, desc: &EcsServiceDesc, replicas: u32) -> f64 {
        let desired = svc
            .cfg
            .desired_count
            .unwrap_or(desc.desired_count().max(0) as u32);
        if desired == 0 {
            return if replicas > 0 { 100.0 } else { 0.0 };
        }
        (f64::from(replicas) * 100.0 / f64::from(desired)).min(100.0)
    }

    async fn launch_task_set(
        &self,
        svc: &Svc,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        if let Some((_, ts)) = sets.iter().find(|(r, _)| r == revision) {
            tracing::info!(service = %svc.name, revision, "task set exists; adjusting its scale only");
            return self.scale_task_set(svc, &desc, ts, replicas).await;
        }
        let primary = sets
            .iter()
            .map(|(_, t)| t)
            .find(|t| t.status() == Some("PRIMARY"))
            .or_else(|| sets.first().map(|(_, t)| t));
        let pin = self.with_state(&svc.name, |s| s.pin.clone());
        let base_td = pin
            .as_ref()
            .map(|p| p.baseline_task_definition.as_str())
            .or(primary.and_then(|t| t.task_definition()))
            .or(desc.task_definition())
            .ok_or_else(|| {
                svc.fatal(format!(
                    "ECS service \"{}\" has no task set and no task definition to derive the new revision from: create the first task set",
                    svc.cfg.service
                ))
            })?
            .to_string();
        // The candidate's target group: the one no task set uses, and which takes no traffic.
        let used: Vec<&str> = sets
            .iter()
            .flat_map(|(_, t)| {
                t.load_balancers()
                    .iter()
                    .filter_map(|l| l.target_group_arn())
            })
            .collect();
        let tg = svc
            .cfg
            .target_groups
            .iter()
            .find(|t| !used.contains(&t.as_str()))
            .ok_or_else(|| {
                svc.fatal(format!(
                    "both target groups already hold a task set ({}): retire the old revision before launching another",
                    sets.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?
            .clone();
        let (_, live) = self.live_split(svc).await?;
        if live.get(&tg) > 0 {
            return Err(svc.fatal(format!(
                "target group {} takes traffic ({live}) but no task set serves it: set its weight to 0 before launching",
                short_tg(&tg)
            )));
        }
        // The baseline of this run comes back as it was (after a rollback that found its
        // task set gone): its own task definition, not one derived with the new image.
        let new_td = match &pin {
            Some(p) if p.baseline == revision => p.baseline_task_definition.clone(),
            _ => self.register(svc, &base_td).await?,
        };
        let td = self.task_definition(svc, &new_td).await?;
        let port = primary
            .and_then(|t| {
                t.load_balancers()
                    .iter()
                    .find(|l| l.container_name() == Some(svc.cfg.container.as_str()))
                    .and_then(|l| l.container_port())
            })
            .or_else(|| {
                taskdef::container(&td, &svc.cfg.container)
                    .ok()
                    .and_then(|c| c.port_mappings().first())
                    .and_then(|p| p.container_port())
            })
            .ok_or_else(|| {
                svc.fatal(format!(
                    "container \"{}\" has no port mapping to register in the target group: add portMappings to the task definition",
                    svc.cfg.container
                ))
            })?;
        let network = primary
            .and_then(|t| t.network_configuration())
            .or(desc.network_configuration())
            .cloned();
        let capacity = primary
            .map(|t| t.capacity_provider_strategy().to_vec())
            .filter(|c| !c.is_empty())
            .or_else(|| Some(desc.capacity_provider_strategy().to_vec()).filter(|c| !c.is_empty()));
        let launch_type = if capacity.is_some() {
            None
        } else {
            Some(
                primary
                    .and_then(|t| t.launch_type())
                    .or(desc.launch_type())
                    .cloned()
                    .unwrap_or(LaunchType::Fargate),
            )
        };
        let platform_version = primary
            .and_then(|t| t.platform_version())
            .or(desc.platform_version())
            .map(str::to_string);
        let scale = Self::scale_percent(svc, &desc, replicas);
        // An idempotency token: a retried CreateTaskSet whose first attempt went through
        // does not make a second task set.
        let token = {
            let mut h = Sha256::new();
            h.update(desc.service_arn().unwrap_or(&svc.cfg.service).as_bytes());
            h.update(b"\0");
            h.update(revision.as_bytes());
            h.update(b"\0");
            h.update(new_td.as_bytes());
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            hex[..32].to_string()
        };
        let ecs = &svc.clients.ecs;
        let lb = LoadBalancer::builder()
            .target_group_arn(&tg)
            .container_name(&svc.cfg.container)
            .container_port(port)
            .build();
        let created = call(&self.inner.retry, "ecs:CreateTaskSet", || {
            ecs.create_task_set()
                .cluster(&svc.cfg.cluster)
                .service(&svc.cfg.service)
                .task_definition(&new_td)
                .external_id(revision)
                .load_balancers(lb.clone())
                .set_network_configuration(network.clone())
                .set_launch_type(launch_type.clone())
                .set_capacity_provider_strategy(capacity.clone())
                .set_platform_version(platform_version.clone())
                .scale(
                    Scale::builder()
                        .unit(ScaleUnit::Percent)
                        .value(scale)
                        .build(),
                )
                .client_token(&token)
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        tracing::info!(
            service = %svc.name,
            revision,
            task_set = created.task_set().and_then(|t| t.id()).unwrap_or(""),
            target_group = short_tg(&tg),
            scale,
            "created task set"
        );
        if let Some(rule) = &svc.cfg.test_listener_rule {
            traffic::point_test_rule(&svc.clients, &self.inner.retry, rule, &tg, revision)
                .await
                .map_err(|e| svc.err(e))?;
        }
        Ok(())
    }

    async fn scale_task_set(
        &self,
        svc: &Svc,
        desc: &EcsServiceDesc,
        ts: &TaskSet,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let scale = Self::scale_percent(svc, desc, replicas);
        if ts.scale().map(|s| s.value()) == Some(scale) {
            return Ok(());
        }
        let id = ts.task_set_arn().or(ts.id()).unwrap_or("");
        let ecs = &svc.clients.ecs;
        call(&self.inner.retry, "ecs:UpdateTaskSet", || {
            ecs.update_task_set()
                .cluster(&svc.cfg.cluster)
                .service(&svc.cfg.service)
                .task_set(id)
                .scale(
                    Scale::builder()
                        .unit(ScaleUnit::Percent)
                        .value(scale)
                        .build(),
                )
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        Ok(())
    }

    /// Make `revision`'s task set the service's primary one (what ECS scales and reports
    /// as the service's task definition). Idempotent.
    pub async fn promote(&self, service: &str, revision: &str) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        self.ensure_primary(svc, &sets, revision).await
    }

    async fn ensure_primary(
        &self,
        svc: &Svc,
        sets: &[(String, TaskSet)],
        revision: &str,
    ) -> Result<(), PlatformError> {
        let ts = sets
            .iter()
            .find(|(r, _)| r == revision)
            .map(|(_, t)| t)
            .ok_or_else(|| svc.fatal(format!("revision \"{revision}\" has no task set")))?;
        if ts.status() == Some("PRIMARY") {
            return Ok(());
        }
        // The ARN, not the id: the ARN is what every ECS implementation resolves.
        let arn = ts
            .task_set_arn()
            .ok_or_else(|| svc.fatal("task set without an ARN"))?;
        let ecs = &svc.clients.ecs;
        call(&self.inner.retry, "ecs:UpdateServicePrimaryTaskSet", || {
            ecs.update_service_primary_task_set()
                .cluster(&svc.cfg.cluster)
                .service(&svc.cfg.service)
                .primary_task_set(arn)
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        tracing::info!(service = %svc.name, revision, "primary task set changed");
        Ok(())
    }

    async fn set_weights_external(
        &self,
        svc: &Svc,
        weights: &Weights,
    ) -> Result<(), PlatformError> {
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        let mut desired = Split(
            svc.cfg
                .target_groups
                .iter()
                .map(|t| (t.clone(), 0))
                .collect(),
        );
        for (rev, w) in weights {
            let found = sets
                .iter()
                .find(|(r, _)| r == rev)
                .and_then(|(_, t)| t.load_balancers().first())
                .and_then(|l| l.target_group_arn());
            if found.is_none() && *w == 0 {
                continue; // a revision already gone takes no traffic: nothing to do
            }
            let tg = found.ok_or_else(|| {
                    svc.fatal(format!(
                        "revision \"{rev}\" has no task set in ECS service \"{}\" (running: {}): launch it first",
                        svc.cfg.service,
                        sets.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
            if !svc.cfg.target_groups.iter().any(|t| t == tg) {
                return Err(svc.fatal(format!(
                    "revision \"{rev}\" serves target group {tg}, which is not one of the release's target_groups"
                )));
            }
            *desired.0.entry(tg.to_string()).or_insert(0) += u32::from(*w);
        }
        let (actions, live) = self.live_split(svc).await?;
        if live.same_traffic(&desired) {
            self.with_state(&svc.name, |s| s.expected = Some(live.clone()));
        } else {
            let expected = self.with_state(&svc.name, |s| s.expected.clone());
            match expected {
                Some(exp) if !exp.same_traffic(&live) => {
                    return Err(svc.fatal(format!(
                        "listener rule {} was changed outside cutover: cutover last set {exp}, it now forwards {live}. Nothing was changed; find who changed it (an infrastructure-as-code run?), then accept the live split or restore it",
                        svc.cfg.listener_rule.as_deref().unwrap_or("")
                    )));
                }
                _ => {}
            }
            let foreign: Vec<String> = live
                .0
                .iter()
                .filter(|(tg, w)| **w > 0 && !svc.cfg.target_groups.contains(tg))
                .map(|(tg, w)| format!("{}={w}", short_tg(tg)))
                .collect();
            if !foreign.is_empty() {
                return Err(svc.fatal(format!(
                    "listener rule forwards to target groups the release does not name ({}): cutover changes only rules between its two target groups",
                    foreign.join(", ")
                )));
            }
            let rule = svc.cfg.listener_rule.as_deref().unwrap_or("");
            let new_actions = traffic::with_split(&actions, &desired);
            match traffic::write_actions(&svc.clients, &self.inner.retry, rule, new_actions).await {
                Ok(()) => {
                    tracing::info!(service = %svc.name, from = %live, to = %desired, "traffic shifted");
                    self.with_state(&svc.name, |s| s.expected = Some(desired.clone()));
                }
                Err(e) => {
                    // Never leave the split unknown: read what is in force now.
                    match self.live_split(svc).await {
                        Ok((_, now)) if now.same_traffic(&desired) => {
                            tracing::warn!(service = %svc.name, split = %now, "the shift reported an error but is in force");
                            self.with_state(&svc.name, |s| s.expected = Some(now));
                        }
                        Ok((_, now)) => {
                            if now.same_traffic(&live) {
                                self.with_state(&svc.name, |s| s.expected = Some(now.clone()));
                            }
                            return Err(PlatformError {
                                service: svc.name.clone(),
                                message: format!(
                                    "shifting traffic to {desired} failed ({e}); the rule forwards {now} now"
                                ),
                                retryable: e.retryable,
                            });
                        }
                        Err(read) => {
                            return Err(svc.fatal(format!(
                                "shifting traffic to {desired} failed ({e}) and the rule could not be read back ({}): the split in force is UNKNOWN, check listener rule {rule}",
                                read.message
                            )));
                        }
                    }
                }
            }
        }
        if let Some((rev, _)) = weights.iter().find(|(_, w)| *w == 100) {
            self.ensure_primary(svc, &sets, rev).await?;
        }
        Ok(())
    }

    async fn weights_external(&self, svc: &Svc) -> Result<Weights, PlatformError> {
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        let (_, live) = self.live_split(svc).await?;
        self.with_state(&svc.name, |s| {
            if s.expected.is_none() {
                s.expected = Some(live.clone());
            }
        });
        let mut out = Vec::new();
        for (tg, pct) in live.percentages() {
            let rev = sets
                .iter()
                .find(|(_, t)| {
                    t.load_balancers()
                        .iter()
                        .any(|l| l.target_group_arn() == Some(tg.as_str()))
                })
                .map(|(r, _)| r.clone())
                .unwrap_or_else(|| format!("unserved:{}", short_tg(&tg)));
            out.push((rev, pct));
        }
        Ok(out)
    }

    /// Progress of the rolling update of `service` (ECS deployment controller).
    pub async fn rollout(&self, service: &str) -> Result<Rollout, PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        let wanted = desc.task_definition().unwrap_or("").to_string();
        let revision = self.revision_of_td(svc, &wanted).await?;
        Ok(rollout_of(&desc, &wanted, revision))
    }

    async fn update_service_to(
        &self,
        svc: &Svc,
        desc: &EcsServiceDesc,
        td: &str,
        desired: Option<u32>,
    ) -> Result<(), PlatformError> {
        let mut dc = desc.deployment_configuration().cloned();
        let count = desired.unwrap_or(desc.desired_count().max(0) as u32);
        if count > 0 {
            let (min, max) = rolling_percents(&svc.rolling, count);
            let c = dc.get_or_insert_with(|| {
                aws_sdk_ecs::types::DeploymentConfiguration::builder().build()
            });
            c.minimum_healthy_percent = Some(min);
            c.maximum_percent = Some(max);
        }
        let ecs = &svc.clients.ecs;
        call(&self.inner.retry, "ecs:UpdateService", || {
            ecs.update_service()
                .cluster(&svc.cfg.cluster)
                .service(&svc.cfg.service)
                .task_definition(td)
                .set_desired_count(desired.map(|d| d as i32))
                .set_deployment_configuration(dc.clone())
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        tracing::info!(service = %svc.name, task_definition = td, "service updated");
        Ok(())
    }

    async fn launch_rolling(
        &self,
        svc: &Svc,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let desc = self.describe(svc).await?;
        let current = desc
            .task_definition()
            .ok_or_else(|| svc.fatal("the ECS service has no task definition"))?
            .to_string();
        if self.revision_of_td(svc, &current).await? == revision {
            tracing::info!(service = %svc.name, revision, "service already runs this revision");
            return Ok(());
        }
        let pin = self.with_state(&svc.name, |s| s.pin.clone());
        let new_td = match &pin {
            Some(p) if p.baseline == revision => p.baseline_task_definition.clone(),
            Some(p) => self.register(svc, &p.baseline_task_definition).await?,
            None => self.register(svc, &current).await?,
        };
        self.with_state(&svc.name, |s| {
            s.previous_task_definition = Some(current.clone())
        });
        let desired = (replicas as i32 != desc.desired_count() && replicas > 0).then_some(replicas);
        self.update_service_to(svc, &desc, &new_td, desired).await
    }

    async fn tasks(
        &self,
        svc: &Svc,
        started_by: &str,
    ) -> Result<Vec<aws_sdk_ecs::types::Task>, PlatformError> {
        let ecs = &svc.clients.ecs;
        let mut arns: Vec<String> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = call(&self.inner.retry, "ecs:ListTasks", || {
                ecs.list_tasks()
                    .cluster(&svc.cfg.cluster)
                    .started_by(started_by)
                    .desired_status(DesiredStatus::Running)
                    .set_next_token(next.clone())
                    .send()
            })
            .await
            .map_err(|e| svc.err(e))?;
            arns.extend(out.task_arns().iter().cloned());
            next = out.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = call(&self.inner.retry, "ecs:DescribeTasks", || {
                ecs.describe_tasks()
                    .cluster(&svc.cfg.cluster)
                    .set_tasks(Some(chunk.to_vec()))
                    .send()
            })
            .await
            .map_err(|e| svc.err(e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    async fn target_health(
        &self,
        svc: &Svc,
        tg: &str,
    ) -> Result<BTreeMap<String, (String, Option<String>)>, PlatformError> {
        let elb = &svc.clients.elb;
        let out = call(&self.inner.retry, "elbv2:DescribeTargetHealth", || {
            elb.describe_target_health().target_group_arn(tg).send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_string();
                let h = d.target_health()?;
                Some((
                    id,
                    (
                        h.state().map_or("unknown", |s| s.as_str()).to_string(),
                        h.description().map(str::to_string),
                    ),
                ))
            })
            .collect())
    }

    async fn health_of(
        &self,
        svc: &Svc,
        started_by: &str,
        desired: u32,
        tg: Option<&str>,
        revision: &str,
    ) -> Result<RevisionHealth, PlatformError> {
        let tasks = self.tasks(svc, started_by).await?;
        let targets = match tg {
            Some(tg) => Some(self.target_health(svc, tg).await?),
            None => None,
        };
        let instances = tasks
            .iter()
            .map(|t| {
                let ip = task_ip(t).unwrap_or("").to_string();
                let target = targets.as_ref().map(|m| {
                    m.get(&ip)
                        .map(|(s, d)| (s.as_str(), d.as_deref()))
                        .unwrap_or(("unregistered", None))
                });
                InstanceHealth {
                    id: t.task_arn().unwrap_or("").to_string(),
                    address: ip.clone(),
                    state: instance_state(
                        t.last_status().unwrap_or(""),
                        t.health_status().map(|h| h.as_str()),
                        t.stopped_reason(),
                        target,
                    ),
                }
            })
            .collect();
        Ok(RevisionHealth {
            revision: revision.to_string(),
            desired,
            instances,
        })
    }
}

/// The progress of a rolling update towards task definition `wanted`, from the service's
/// PRIMARY deployment. A PRIMARY deployment of another task definition means ECS has not
/// started the update yet (or an emulator never will): that is reported, not guessed over.
pub fn rollout_of(desc: &EcsServiceDesc, wanted: &str, revision: String) -> Rollout {
    let primary = desc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"));
    let Some(d) = primary.filter(|d| d.task_definition() == Some(wanted)) else {
        return Rollout {
            task_definition: wanted.to_string(),
            revision,
            state: "NOT_STARTED".into(),
            reason: Some("ECS shows no deployment of the service's task definition yet".into()),
            desired: desc.desired_count().max(0) as u32,
            running: 0,
            pending: 0,
        };
    };
    Rollout {
        task_definition: wanted.to_string(),
        revision,
        state: d
            .rollout_state()
            .map_or("IN_PROGRESS".to_string(), |s| s.as_str().to_string()),
        reason: d.rollout_state_reason().map(str::to_string),
        desired: d.desired_count().max(0) as u32,
        running: d.running_count().max(0) as u32,
        pending: d.pending_count().max(0) as u32,
    }
}

/// Tasks a task set should run: ECS's `computedDesiredCount`, or, until ECS has computed
/// it (it does so asynchronously after CreateTaskSet/UpdateTaskSet; moto never does), the
/// task set's scale applied to the service's size as the release sees it.
fn task_set_desired(svc: &Svc, desc: &EcsServiceDesc, ts: &TaskSet) -> u32 {
    let computed = ts.computed_desired_count().max(0) as u32;
    if computed > 0 {
        return computed;
    }
    let base = svc
        .cfg
        .desired_count
        .unwrap_or(desc.desired_count().max(0) as u32);
    let pct = ts
        .scale()
        .filter(|s| s.unit() == Some(&ScaleUnit::Percent))
        .map_or(0.0, |s| s.value());
    (f64::from(base) * pct / 100.0).ceil().max(0.0) as u32
}

/// A task's private IPv4 address: from its containers' network interfaces, else from its
/// elastic network interface attachment (Fargate reports both; some emulators only the
/// attachment).
pub fn task_ip(t: &aws_sdk_ecs::types::Task) -> Option<&str> {
    t.containers()
        .iter()
        .flat_map(|c| c.network_interfaces())
        .find_map(|n| n.private_ipv4_address())
        .or_else(|| {
            t.attachments()
                .iter()
                .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
                .flat_map(|a| a.details())
                .find(|kv| kv.name() == Some("privateIPv4Address"))
                .and_then(|kv| kv.value())
        })
}

/// Fold an ECS deployment's rollout state into the health of its revision: a FAILED
/// rollout (circuit breaker, tasks that never stabilised) is a health problem the engine
/// rolls back on; an IN_PROGRESS one is not complete until ECS says so.
pub fn fold_rollout(h: &mut RevisionHealth, d: &aws_sdk_ecs::types::Deployment) {
    use aws_sdk_ecs::types::DeploymentRolloutState as S;
    match d.rollout_state() {
        Some(S::Failed) => h.instances.push(InstanceHealth {
            id: d.id().unwrap_or("deployment").to_string(),
            address: String::new(),
            state: InstanceState::Unhealthy {
                reason: format!(
                    "ECS rollout failed{}",
                    d.rollout_state_reason()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            },
        }),
        Some(S::InProgress) if h.healthy() >= h.desired && h.desired > 0 => {
            // Every new task is healthy, but ECS has not finished (old tasks draining):
            // one instance counted as starting keeps the step waiting for COMPLETED.
            h.instances.push(InstanceHealth {
                id: d.id().unwrap_or("deployment").to_string(),
                address: String::new(),
                state: InstanceState::Starting,
            });
            h.desired += 1;
        }
        _ => {}
    }
}

fn ctl_name(c: Controller) -> &'static str {
    match c {
        Controller::External => "EXTERNAL",
        Controller::Ecs => "ECS",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// ECS `minimumHealthyPercent` and `maximumPercent` for the release's rolling settings
/// on a service of `count` tasks: at most `max_unavailable` missing, `batch` extra.
/// Computed in `u64` and capped at `i32::MAX` (what ECS takes): a release's `batch` or an
/// ECS desired count may be any size (found by the `ecs_responses` fuzz target).
pub fn rolling_percents(r: &Rolling, count: u32) -> (i32, i32) {
    let count = u64::from(count.max(1));
    let min = (count.saturating_sub(u64::from(r.max_unavailable)) * 100) / count;
    let max = ((count + u64::from(r.batch.max(1))) * 100).div_ceil(count);
    let cap = |p: u64| i32::try_from(p).unwrap_or(i32::MAX);
    (cap(min), cap(max.max(100)))
}

/// An ECS task's state as the platform reports it. `target` is the target group's view
/// (`healthy`, `unhealthy`, `initial`, `draining`, ... with a description), `None` when
/// the service has no target group.
pub fn instance_state(
    last_status: &str,
    container_health: Option<&str>,
    stopped_reason: Option<&str>,
    target: Option<(&str, Option<&str>)>,
) -> InstanceState {
    match last_status {
        "STOPPED" | "DEPROVISIONING" | "STOPPING" | "DEACTIVATING" => {
            return InstanceState::Exited {
                reason: stopped_reason.unwrap_or(last_status).to_string(),
            };
        }
        "RUNNING" => {}
        _ => return InstanceState::Starting,
    }
    if container_health == Some("UNHEALTHY") {
        return InstanceState::Unhealthy {
            reason: "container health check failing".into(),
        };
    }
    match target {
        Some(("healthy", _)) => InstanceState::Healthy,
        Some(("unhealthy", d)) => InstanceState::Unhealthy {
            reason: format!(
                "target group health check failing{}",
                d.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        },
        Some(("draining", _)) => InstanceState::Unhealthy {
            reason: "target draining".into(),
        },
        Some(_) => InstanceState::Starting,
        None if container_health == Some("UNKNOWN") => InstanceState::Starting,
        None => InstanceState::Healthy,
    }
}

#[async_trait]
impl Platform for EcsPlatform {
    fn name(&self) -> &'static str {
        "ecs"
    }

    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        match self.controller_checked(svc, &desc).await? {
            Controller::External => self.launch_task_set(svc, revision, replicas).await,
            Controller::Ecs => self.launch_rolling(svc, revision, replicas).await,
        }
    }

    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        match Self::controller(svc, &desc)? {
            Controller::External => {
                let sets = self.task_sets(svc, &desc).await?;
                let ts = sets
                    .iter()
                    .find(|(r, _)| r == revision)
                    .map(|(_, t)| t)
                    .ok_or_else(|| svc.fatal(format!("revision \"{revision}\" has no task set")))?;
                let tg = ts
                    .load_balancers()
                    .first()
                    .and_then(|l| l.target_group_arn());
                let desired = task_set_desired(svc, &desc, ts);
                self.health_of(svc, ts.id().unwrap_or(""), desired, tg, revision)
                    .await
            }
            Controller::Ecs => {
                for d in desc.deployments() {
                    let td = d.task_definition().unwrap_or("");
                    if self.revision_of_td(svc, td).await? == revision {
                        let tg = desc
                            .load_balancers()
                            .first()
                            .and_then(|l| l.target_group_arn());
                        let mut h = self
                            .health_of(
                                svc,
                                d.id().unwrap_or(""),
                                d.desired_count().max(0) as u32,
                                tg,
                                revision,
                            )
                            .await?;
                        fold_rollout(&mut h, d);
                        return Ok(h);
                    }
                }
                Err(svc.fatal(format!(
                    "revision \"{revision}\" has no deployment in ECS service \"{}\"",
                    svc.cfg.service
                )))
            }
        }
    }

    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let total: u32 = weights.iter().map(|(_, w)| u32::from(*w)).sum();
        if total != 100 {
            return Err(svc.fatal(format!(
                "weights must sum to 100, these sum to {total}: {weights:?}"
            )));
        }
        let desc = self.describe(svc).await?;
        match self.controller_checked(svc, &desc).await? {
            Controller::External => self.set_weights_external(svc, weights).await,
            Controller::Ecs => {
                let Some((rev, _)) = weights.iter().find(|(_, w)| *w == 100) else {
                    return Err(svc.fatal(
                        "a rolling ECS service has no traffic split: all traffic goes to one revision",
                    ));
                };
                let current = desc.task_definition().unwrap_or("").to_string();
                if self.revision_of_td(svc, &current).await? == *rev {
                    return Ok(());
                }
                let mut candidates: Vec<String> = self
                    .with_state(&svc.name, |s| {
                        [
                            s.previous_task_definition.clone(),
                            s.pin.as_ref().map(|p| p.baseline_task_definition.clone()),
                        ]
                    })
                    .into_iter()
                    .flatten()
                    .collect();
                candidates.extend(
                    desc.deployments()
                        .iter()
                        .filter_map(|d| d.task_definition().map(str::to_string)),
                );
                for td in candidates {
                    if self.revision_of_td(svc, &td).await? == *rev {
                        tracing::warn!(service = %svc.name, revision = %rev, task_definition = %td, "rolling back to the previous task definition");
                        return self.update_service_to(svc, &desc, &td, None).await;
                    }
                }
                Err(svc.fatal(format!(
                    "no known task definition runs revision \"{rev}\" of ECS service \"{}\"",
                    svc.cfg.service
                )))
            }
        }
    }

    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        match Self::controller(svc, &desc)? {
            Controller::External => self.weights_external(svc).await,
            Controller::Ecs => {
                let td = desc.task_definition().unwrap_or("").to_string();
                Ok(vec![(self.revision_of_td(svc, &td).await?, 100)])
            }
        }
    }

    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        let svc = self.svc(service)?;
        let rule = svc.cfg.test_listener_rule.as_deref().ok_or_else(|| {
            svc.fatal("no test_listener_rule in [service.ecs]: add the rule cutover points at the candidate for smoke tests")
        })?;
        let desc = self.describe(svc).await?;
        let sets = self.task_sets(svc, &desc).await?;
        let tg = sets
            .iter()
            .find(|(r, _)| r == revision)
            .and_then(|(_, t)| t.load_balancers().first())
            .and_then(|l| l.target_group_arn())
            .ok_or_else(|| svc.fatal(format!("revision \"{revision}\" has no task set")))?
            .to_string();
        traffic::point_test_rule(&svc.clients, &self.inner.retry, rule, &tg, revision)
            .await
            .map_err(|e| svc.err(e))?;
        let base_url = match (
            &svc.cfg.url,
            self.with_state(service, |s| s.base_url.clone()),
        ) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Some(u)) => u,
            (None, None) => {
                let u = self.listener_url(svc, rule).await?;
                self.with_state(service, |s| s.base_url = Some(u.clone()));
                u
            }
        };
        Ok(TestRoute {
            base_url,
            header: (TEST_ROUTE_HEADER.to_string(), revision.to_string()),
        })
    }

    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        match Self::controller(svc, &desc)? {
            Controller::External => {
                let sets = self.task_sets(svc, &desc).await?;
                let ts = sets
                    .iter()
                    .find(|(r, _)| r == revision)
                    .map(|(_, t)| t)
                    .ok_or_else(|| svc.fatal(format!("revision \"{revision}\" has no task set")))?;
                self.scale_task_set(svc, &desc, ts, replicas).await
            }
            Controller::Ecs => {
                let ecs = &svc.clients.ecs;
                call(&self.inner.retry, "ecs:UpdateService", || {
                    ecs.update_service()
                        .cluster(&svc.cfg.cluster)
                        .service(&svc.cfg.service)
                        .desired_count(replicas as i32)
                        .send()
                })
                .await
                .map_err(|e| svc.err(e))?;
                Ok(())
            }
        }
    }

    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        if Self::controller(svc, &desc)? == Controller::Ecs {
            let td = desc.task_definition().unwrap_or("").to_string();
            if self.revision_of_td(svc, &td).await? == revision {
                return Err(svc.fatal(format!(
                    "revision \"{revision}\" is what the ECS service runs; roll another out first"
                )));
            }
            // ECS drains and stops the old deployment itself.
            return Ok(());
        }
        let sets = self.task_sets(svc, &desc).await?;
        let Some((_, ts)) = sets.iter().find(|(r, _)| r == revision) else {
            return Ok(()); // already gone
        };
        if ts.status() == Some("PRIMARY") {
            return Err(svc.fatal(format!(
                "revision \"{revision}\" is the primary task set: move traffic and promote another revision first"
            )));
        }
        let tg = ts
            .load_balancers()
            .first()
            .and_then(|l| l.target_group_arn())
            .map(str::to_string);
        if let Some(tg) = &tg {
            let (_, live) = self.live_split(svc).await?;
            if live.get(tg) > 0 {
                return Err(svc.fatal(format!(
                    "revision \"{revision}\" still takes traffic ({live}): set its weight to 0 first"
                )));
            }
            let secs = drain_timeout.as_secs().min(3600).to_string();
            let elb = &svc.clients.elb;
            call(
                &self.inner.retry,
                "elbv2:ModifyTargetGroupAttributes",
                || {
                    elb.modify_target_group_attributes()
                        .target_group_arn(tg)
                        .attributes(
                            aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                                .key("deregistration_delay.timeout_seconds")
                                .value(&secs)
                                .build(),
                        )
                        .send()
                },
            )
            .await
            .map_err(|e| svc.err(e))?;
        }
        let arn = ts.task_set_arn().or(ts.id()).unwrap_or("");
        let ecs = &svc.clients.ecs;
        let deleted = call(&self.inner.retry, "ecs:DeleteTaskSet", || {
            ecs.delete_task_set()
                .cluster(&svc.cfg.cluster)
                .service(&svc.cfg.service)
                .task_set(arn)
                .send()
        })
        .await;
        match deleted {
            Ok(_) => {}
            // A retried delete whose first attempt went through.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(svc.err(e)),
        }
        tracing::info!(service = %svc.name, revision, drain_s = drain_timeout.as_secs(), "task set deleted; its targets drain");
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        let mut out = Vec::new();
        for svc in self.inner.services.values() {
            let desc = self.describe(svc).await?;
            match Self::controller(svc, &desc)? {
                Controller::External => {
                    let sets = self.task_sets(svc, &desc).await?;
                    let weights = if svc.cfg.listener_rule.is_some() {
                        self.weights_external(svc).await?
                    } else {
                        Vec::new()
                    };
                    for (rev, ts) in sets {
                        let weight = weights
                            .iter()
                            .find(|(r, _)| *r == rev)
                            .map_or(0, |(_, w)| *w);
                        out.push(RunningRevision {
                            service: svc.name.clone(),
                            revision: rev,
                            replicas: ts.running_count().max(0) as u32,
                            weight,
                        });
                    }
                }
                Controller::Ecs => {
                    let current = desc.task_definition().unwrap_or("").to_string();
                    for d in desc.deployments() {
                        let td = d.task_definition().unwrap_or("");
                        out.push(RunningRevision {
                            service: svc.name.clone(),
                            revision: self.revision_of_td(svc, td).await?,
                            replicas: d.running_count().max(0) as u32,
                            weight: if td == current { 100 } else { 0 },
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn metrics(&self) -> Arc<dyn MetricSource> {
        Arc::new(metrics::CloudWatchSource::new(self.clone()))
    }

    async fn shutdown(&self) {
        // Nothing runs locally; ECS keeps running what the release left, by design.
        tracing::debug!("ecs platform: nothing to release");
    }
}

impl EcsPlatform {
    async fn listener_url(&self, svc: &Svc, rule: &str) -> Result<String, PlatformError> {
        let elb = &svc.clients.elb;
        let listener_arn = traffic::listener_of(rule);
        let out = call(&self.inner.retry, "elbv2:DescribeListeners", || {
            elb.describe_listeners().listener_arns(&listener_arn).send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        let l = out
            .listeners()
            .first()
            .ok_or_else(|| svc.fatal(format!("listener {listener_arn} not found")))?;
        let lb_arn = l.load_balancer_arn().unwrap_or("").to_string();
        let proto = l
            .protocol()
            .map_or("HTTP", |p| p.as_str())
            .to_ascii_lowercase();
        let port = l.port().unwrap_or(80);
        let out = call(&self.inner.retry, "elbv2:DescribeLoadBalancers", || {
            elb.describe_load_balancers()
                .load_balancer_arns(&lb_arn)
                .send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        let dns = out
            .load_balancers()
            .first()
            .and_then(|lb| lb.dns_name())
            .ok_or_else(|| svc.fatal(format!("load balancer {lb_arn} has no DNS name")))?;
        Ok(format!("{proto}://{dns}:{port}"))
    }

    /// The task set of `revision` (EXTERNAL services): its target group and when it was
    /// created, for metrics.
    pub(crate) async fn revision_target(
        &self,
        service: &str,
        revision: &str,
    ) -> Result<Option<(String, aws_sdk_ecs::primitives::DateTime)>, PlatformError> {
        let svc = self.svc(service)?;
        let desc = self.describe(svc).await?;
        if Self::controller(svc, &desc)? != Controller::External {
            return Ok(None);
        }
        let sets = self.task_sets(svc, &desc).await?;
        Ok(sets.iter().find(|(r, _)| r == revision).and_then(|(_, t)| {
            let tg = t.load_balancers().first()?.target_group_arn()?.to_string();
            Some((tg, *t.created_at()?))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_percents_follow_batch_and_unavailable() {
        let r = |batch, max_unavailable| Rolling {
            batch,
            max_unavailable,
        };
        assert_eq!(rolling_percents(&r(1, 0), 4), (100, 125));
        assert_eq!(rolling_percents(&r(2, 1), 4), (75, 150));
        assert_eq!(rolling_percents(&r(1, 0), 3), (100, 134));
        assert_eq!(rolling_percents(&r(1, 5), 2), (0, 150));
        // Large batches and counts neither overflow nor wrap (a fuzz finding).
        assert_eq!(rolling_percents(&r(u32::MAX, 0), u32::MAX), (100, 200));
        assert_eq!(rolling_percents(&r(50_000_000, 0), 1), (100, i32::MAX));
        assert_eq!(rolling_percents(&r(1, 0), 50_000_000), (100, 101));
    }

    #[test]
    fn rollout_follows_the_primary_deployment_of_the_wanted_task_definition() {
        use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};
        let dep = |td: &str, status: &str, state: Option<DeploymentRolloutState>| {
            Deployment::builder()
                .task_definition(td)
                .status(status)
                .desired_count(4)
                .running_count(1)
                .pending_count(2)
                .set_rollout_state(state)
                .rollout_state_reason("circuit breaker tripped")
                .build()
        };
        let svc = |deps: Vec<Deployment>| {
            EcsServiceDesc::builder()
                .desired_count(4)
                .set_deployments(Some(deps))
                .build()
        };
        let old = svc(vec![dep("td:1", "PRIMARY", None)]);
        let r = rollout_of(&old, "td:2", "2.0".into());
        assert_eq!((r.state.as_str(), r.running), ("NOT_STARTED", 0));
        let going = svc(vec![
            dep("td:2", "PRIMARY", Some(DeploymentRolloutState::InProgress)),
            dep("td:1", "ACTIVE", None),
        ]);
        let r = rollout_of(&going, "td:2", "2.0".into());
        assert_eq!(
            (r.state.as_str(), r.desired, r.running, r.pending),
            ("IN_PROGRESS", 4, 1, 2)
        );
        let failed = svc(vec![dep(
            "td:2",
            "PRIMARY",
            Some(DeploymentRolloutState::Failed),
        )]);
        let r = rollout_of(&failed, "td:2", "2.0".into());
        assert_eq!(r.state, "FAILED");
        assert_eq!(r.reason.as_deref(), Some("circuit breaker tripped"));
    }

    #[test]
    fn task_states_combine_ecs_and_target_health() {
        assert_eq!(
            instance_state("PROVISIONING", None, None, Some(("initial", None))),
            InstanceState::Starting
        );
        assert_eq!(
            instance_state("RUNNING", Some("HEALTHY"), None, Some(("initial", None))),
            InstanceState::Starting
        );
        assert_eq!(
            instance_state("RUNNING", None, None, Some(("healthy", None))),
            InstanceState::Healthy
        );
        assert_eq!(
            instance_state(
                "RUNNING",
                None,
                None,
                Some(("unhealthy", Some("Health checks failed with these codes: [502]")))
            ),
            InstanceState::Unhealthy {
                reason: "target group health check failing: Health checks failed with these codes: [502]".into()
            }
        );
        assert_eq!(
            instance_state("RUNNING", Some("UNHEALTHY"), None, Some(("healthy", None))),
            InstanceState::Unhealthy {
                reason: "container health check failing".into()
            }
        );
        assert_eq!(
            instance_state("STOPPED", None, Some("Essential container exited"), None),
            InstanceState::Exited {
                reason: "Essential container exited".into()
            }
        );
        assert_eq!(
            instance_state("RUNNING", None, None, None),
            InstanceState::Healthy
        );
        assert_eq!(
            instance_state("RUNNING", None, None, Some(("unregistered", None))),
            InstanceState::Starting
        );
    }

    #[test]
    fn a_task_ip_comes_from_the_container_or_the_eni_attachment() {
        use aws_sdk_ecs::types::{Attachment, Container, KeyValuePair, NetworkInterface, Task};
        let from_container = Task::builder()
            .containers(
                Container::builder()
                    .network_interfaces(
                        NetworkInterface::builder()
                            .private_ipv4_address("10.0.1.7")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(task_ip(&from_container), Some("10.0.1.7"));
        let from_eni = Task::builder()
            .attachments(
                Attachment::builder()
                    .r#type("ElasticNetworkInterface")
                    .details(
                        KeyValuePair::builder()
                            .name("subnetId")
                            .value("s-1")
                            .build(),
                    )
                    .details(
                        KeyValuePair::builder()
                            .name("privateIPv4Address")
                            .value("10.0.2.9")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(task_ip(&from_eni), Some("10.0.2.9"));
        assert_eq!(task_ip(&Task::builder().build()), None);
    }

    #[test]
    fn a_rollout_state_is_folded_into_health() {
        use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};
        let healthy = |n: usize| RevisionHealth {
            revision: "2.0".into(),
            desired: 2,
            instances: (0..n)
                .map(|i| InstanceHealth {
                    id: format!("t{i}"),
                    address: String::new(),
                    state: InstanceState::Healthy,
                })
                .collect(),
        };
        let dep = |s: DeploymentRolloutState| {
            Deployment::builder()
                .id("ecs-svc/1")
                .rollout_state(s)
                .rollout_state_reason("tasks failed to start")
                .build()
        };
        let mut h = healthy(2);
        fold_rollout(&mut h, &dep(DeploymentRolloutState::Completed));
        assert!(h.all_healthy());
        let mut h = healthy(2);
        fold_rollout(&mut h, &dep(DeploymentRolloutState::InProgress));
        assert!(!h.all_healthy(), "in progress is not done: {h:?}");
        let mut h = healthy(1);
        fold_rollout(&mut h, &dep(DeploymentRolloutState::Failed));
        assert!(h.instances.iter().any(|i| matches!(
            &i.state,
            InstanceState::Unhealthy { reason } if reason.contains("tasks failed to start")
        )));
    }

    #[test]
    fn a_task_set_wants_its_scale_of_the_service_until_ecs_computed_it() {
        use aws_sdk_ecs::types::{Scale, ScaleUnit};
        let release = crate::release::load_str(
            std::path::Path::new("t.toml"),
            "[release]\nname = \"x\"\nplatform = \"ecs\"\n[[service]]\nname = \"api\"\nstrategy = \"rolling\"\n[service.ecs]\ncluster = \"c\"\nservice = \"s\"\ncontainer = \"app\"\nimage = \"r:2\"\ndesired_count = 3\n",
            std::path::Path::new("."),
        )
        .unwrap();
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let p = EcsPlatform::from_release(&release, &conf).unwrap();
        let svc = p.svc("api").unwrap();
        let desc = EcsServiceDesc::builder().desired_count(0).build();
        let ts = |pct: f64, computed: i32| {
            TaskSet::builder()
                .scale(Scale::builder().unit(ScaleUnit::Percent).value(pct).build())
                .computed_desired_count(computed)
                .build()
        };
        assert_eq!(task_set_desired(svc, &desc, &ts(100.0, 0)), 3);
        assert_eq!(task_set_desired(svc, &desc, &ts(50.0, 0)), 2);
        assert_eq!(task_set_desired(svc, &desc, &ts(0.0, 0)), 0);
        assert_eq!(task_set_desired(svc, &desc, &ts(50.0, 4)), 4);
    }
}
