//! The `local` platform: each service's revisions run as local processes (the
//! [`supervisor`]), checked over HTTP ([`health`]), behind one weighted reverse proxy per
//! service ([`proxy`]) on the service's stable `listen` address, measured by
//! [`stats::ProxyStats`] and optionally exposed on an admin address ([`admin`]).
//!
//! Only healthy replicas take traffic: every health change updates the proxy's backend
//! set of that revision. Retiring a revision is weight 0 → drain → stop → forget; scaling
//! down removes a replica from the backends, drains it, then stops it.

pub mod admin;
mod backend_pool;
pub mod from_release;
pub mod h1_framing;
pub mod health;
pub mod histogram;
pub mod pin;
pub mod proxy;
mod proxy_h1;
pub mod stats;
pub mod supervisor;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;

pub use health::HealthCheck;

use self::admin::{AdminHandle, ProxyRegistry, serve_admin};
use self::health::{HealthWatch, watch_replica};
use self::proxy::{DrainOutcome, ProxyError, ServiceProxy};
use self::stats::ProxyStats;
use self::supervisor::{Replica, ReplicaSpec, Supervisor, SupervisorError, unknown_placeholder};
use crate::metrics::MetricSource;
use crate::platform::{
    InstanceHealth, InstanceState, Platform, PlatformError, RevisionHealth, RunningRevision,
    TEST_ROUTE_HEADER, TestRoute, Weights,
};

/// Settings of a [`LocalPlatform`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Holds the pid file `<state_dir>/local/pids`. One running platform per directory.
    pub state_dir: PathBuf,
    /// Serve `GET /metrics` and `GET /weights` here (port 0 allowed).
    pub admin: Option<SocketAddr>,
    pub services: Vec<LocalServiceConfig>,
    /// Every secret of the release: replicas inherit cutover's environment (where the
    /// values of `env:` webhooks and databases live), so their output is scrubbed of these
    /// as well as of their own env values.
    pub secrets: crate::secrets::Secrets,
    /// Lets a client on another machine pin requests to a revision (`[release] pin_secret`).
    pub pin_secret: Option<pin::PinSecret>,
}

/// How one service runs locally.
#[derive(Debug, Clone)]
pub struct LocalServiceConfig {
    pub name: String,
    /// Stable address served by the proxy (port 0 picks one, see
    /// [`LocalPlatform::listen_addr`]).
    pub listen: SocketAddr,
    /// Program and arguments; `{port}`, `{revision}`, `{replica}`, `{service}` are filled
    /// in per replica.
    pub command: Vec<String>,
    /// The revisions that may be launched, with what each adds to `command`.
    pub revisions: BTreeMap<String, RevisionRun>,
    pub health: HealthCheck,
    /// Longest wait for a replica's in-flight requests when scaling down, and for the
    /// proxy's in-flight requests on shutdown.
    pub drain_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping a replica.
    pub stop_timeout: Duration,
}

/// What one revision adds to the service's `command`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionRun {
    /// Appended to `command` (placeholders allowed).
    pub args: Vec<String>,
    /// Added to the environment (placeholders allowed in values).
    pub env: BTreeMap<String, String>,
}

impl LocalServiceConfig {
    /// A service with no revisions yet, default health checks, 10 s drain and stop timeouts.
    pub fn new(name: &str, listen: SocketAddr, command: Vec<String>) -> Self {
        LocalServiceConfig {
            name: name.to_string(),
            listen,
            command,
            revisions: BTreeMap::new(),
            health: HealthCheck::default(),
            drain_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
        }
    }

    /// Add (or replace) a launchable revision.
    pub fn with_revision(mut self, name: &str, run: RevisionRun) -> Self {
        self.revisions.insert(name.to_string(), run);
        self
    }
}

/// Why the local platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("local platform config: {0}")]
    Config(String),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl LocalConfig {
    /// Check names, commands, placeholders and health settings; the error names the
    /// service and field to fix.
    pub fn validate(&self) -> Result<(), LocalError> {
        let err = |m: String| Err(LocalError::Config(m));
        let mut names = std::collections::BTreeSet::new();
        let mut listens = std::collections::BTreeSet::new();
        for s in &self.services {
            // A tenant's service is `TENANT/SERVICE` (a release with tenants).
            let named = match s.name.split_once('/') {
                Some((t, n)) => valid_name(t) && valid_name(n),
                None => valid_name(&s.name),
            };
            if !named {
                return err(format!(
                    "service name {:?} must be 1-64 characters of letters, digits, `-`, `_`, `.` (a tenant's: TENANT/SERVICE)",
                    s.name
                ));
            }
            if !names.insert(&s.name) {
                return err(format!("service `{}` is listed twice", s.name));
            }
            if s.listen.port() != 0 && !listens.insert(s.listen) {
                return err(format!(
                    "service `{}`: listen address {} is used by another service; give each service its own `listen`",
                    s.name, s.listen
                ));
            }
            if s.command.first().is_none_or(|p| p.is_empty()) {
                return err(format!(
                    "service `{}`: `command` is empty; give the program and its arguments, e.g. [\"./server\", \"--port\", \"{{port}}\"]",
                    s.name
                ));
            }
            let place_err = |what: &str, p: String| {
                err(format!(
                    "service `{}`: unknown placeholder {p} in {what}; use {{port}}, {{revision}}, {{replica}} or {{service}}",
                    s.name
                ))
            };
            for a in &s.command {
                if let Some(p) = unknown_placeholder(a) {
                    return place_err("`command`", p);
                }
            }
            if !s.command.iter().any(|a| a.contains("{port}"))
                && !s.revisions.values().any(|r| {
                    r.args.iter().any(|a| a.contains("{port}"))
                        || r.env.values().any(|v| v.contains("{port}"))
                })
            {
                return err(format!(
                    "service `{}`: `command` never mentions {{port}}; the replica must listen on the port cutover picks",
                    s.name
                ));
            }
            if s.revisions.is_empty() {
                return err(format!(
                    "service `{}` has no revisions to launch; add at least one",
                    s.name
                ));
            }
            for (rev, run) in &s.revisions {
                if !valid_name(rev) {
                    return err(format!(
                        "service `{}`: revision name {rev:?} must be 1-64 characters of letters, digits, `-`, `_`, `.`",
                        s.name
                    ));
                }
                for a in &run.args {
                    if let Some(p) = unknown_placeholder(a) {
                        return place_err(&format!("the args of revision `{rev}`"), p);
                    }
                }
                for (k, v) in &run.env {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return err(format!(
                            "service `{}`: revision `{rev}` has an invalid env name {k:?}",
                            s.name
                        ));
                    }
                    if let Some(p) = unknown_placeholder(v) {
                        return place_err(&format!("env `{k}` of revision `{rev}`"), p);
                    }
                }
            }
            if let Some(p) = s.health.problem() {
                return err(format!("service `{}`: {p}", s.name));
            }
            if s.stop_timeout.is_zero() {
                return err(format!(
                    "service `{}`: `stop_timeout` must be above zero",
                    s.name
                ));
            }
        }
        Ok(())
    }
}

/// The replicas of one revision as health sees them; pushes the healthy ones to the proxy.
struct Backends {
    revision: String,
    proxy: ServiceProxy,
    /// replica index -> (token of the replica, address, healthy)
    entries: Mutex<BTreeMap<u32, (u64, SocketAddr, bool)>>,
    /// Set once the revision left the proxy: no more backend updates.
    detached: AtomicBool,
}

impl Backends {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, (u64, SocketAddr, bool)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, entries: &BTreeMap<u32, (u64, SocketAddr, bool)>) {
        if self.detached.load(Ordering::SeqCst) {
            return;
        }
        let addrs = entries
            .values()
            .filter(|e| e.2)
            .map(|e| e.1)
            .collect::<Vec<_>>();
        self.proxy.set_backends(&self.revision, addrs);
    }

    fn insert(&self, index: u32, token: u64, addr: SocketAddr) {
        let mut e = self.lock();
        e.insert(index, (token, addr, false));
        self.push(&e);
    }

    /// A health change of replica `index`; ignored if that slot now holds another replica.
    fn update(&self, index: u32, token: u64, addr: SocketAddr, healthy: bool) {
        let mut e = self.lock();
        match e.get_mut(&index) {
            Some(entry) if entry.0 == token => *entry = (token, addr, healthy),
            _ => return,
        }
        self.push(&e);
    }

    fn remove(&self, index: u32) {
        let mut e = self.lock();
        e.remove(&index);
        self.push(&e);
    }
}

struct ReplicaRt {
    process: Replica,
    health: HealthWatch,
}

struct RevisionRt {
    desired: u32,
    /// Retire in progress: no new weight, no launch.
    retiring: bool,
    replicas: BTreeMap<u32, ReplicaRt>,
    backends: Arc<Backends>,
}

struct ServiceRt {
    config: LocalServiceConfig,
    proxy: ServiceProxy,
    /// Serializes changes to one service.
    revisions: tokio::sync::Mutex<BTreeMap<String, RevisionRt>>,
}

/// [`Platform`] over local processes. Create with [`LocalPlatform::start`]; call
/// [`Platform::shutdown`] before dropping it (dropping kills replicas with SIGKILL).
pub struct LocalPlatform {
    services: BTreeMap<String, Arc<ServiceRt>>,
    supervisor: Supervisor,
    stats: Arc<ProxyStats>,
    admin: tokio::sync::Mutex<Option<AdminHandle>>,
    admin_addr: Option<SocketAddr>,
    closed: AtomicBool,
    /// See [`LocalConfig::secrets`].
    secrets: crate::secrets::Secrets,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl LocalPlatform {
    /// Validate `config`, reap processes a previous run left in `state_dir`, bind every
    /// service's proxy and the admin endpoint. Nothing is launched yet.
    pub async fn start(config: LocalConfig) -> Result<LocalPlatform, LocalError> {
        config.validate()?;
        // Reaping may wait a moment for old processes to go: keep it off the async threads.
        let state_dir = config.state_dir.clone();
        let supervisor = tokio::task::spawn_blocking(move || Supervisor::new(&state_dir))
            .await
            .map_err(|e| LocalError::Config(format!("reaping old processes failed: {e}")))??;
        let stats = ProxyStats::new();
        let registry = ProxyRegistry::new();
        let mut services = BTreeMap::new();
        for s in &config.services {
            let bound = ServiceProxy::bind_with_pin_secret(
                &s.name,
                s.listen,
                stats.clone(),
                config.pin_secret.clone(),
            )
            .await;
            match bound {
                Ok(proxy) => {
                    registry.insert(proxy.clone());
                    services.insert(
                        s.name.clone(),
                        Arc::new(ServiceRt {
                            config: s.clone(),
                            proxy,
                            revisions: tokio::sync::Mutex::new(BTreeMap::new()),
                        }),
                    );
                }
                Err(e) => {
                    for bound in services.values() {
                        bound.proxy.shutdown_within(Duration::ZERO).await;
                    }
                    return Err(e.into());
                }
            }
        }
        let admin = match config.admin {
            Some(addr) => match serve_admin(addr, stats.clone(), registry).await {
                Ok(h) => Some(h),
                Err(e) => {
                    for bound in services.values() {
                        bound.proxy.shutdown_within(Duration::ZERO).await;
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        Ok(LocalPlatform {
            services,
            supervisor,
            stats,
            admin_addr: admin.as_ref().map(AdminHandle::local_addr),
            admin: tokio::sync::Mutex::new(admin),
            closed: AtomicBool::new(false),
            secrets: config.secrets,
        })
    }

    /// The address a service's proxy listens on.
    pub fn listen_addr(&self, service: &str) -> Option<SocketAddr> {
        self.services.get(service).map(|s| s.proxy.local_addr())
    }

    /// The admin endpoint's address, if one was configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The proxy of a service (for benchmarks and diagnostics).
    pub fn proxy(&self, service: &str) -> Option<ServiceProxy> {
        self.services.get(service).map(|s| s.proxy.clone())
    }

    /// The shared per-revision statistics.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// `<state_dir>/local/pids`.
    pub fn pid_file(&self) -> &Path {
        self.supervisor.pid_file()
    }

    /// Process ids of the replicas of a revision that are still running.
    pub async fn pids(&self, service: &str, revision: &str) -> Vec<u32> {
        let Some(svc) = self.services.get(service) else {
            return Vec::new();
        };
        let revs = svc.revisions.lock().await;
        revs.get(revision)
            .map(|rt| {
                rt.replicas
                    .values()
                    .filter(|r| r.process.is_running())
                    .map(|r| r.process.status().pid)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn service(&self, service: &str) -> Result<&Arc<ServiceRt>, PlatformError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PlatformError::fatal(
                service,
                "the local platform has been shut down",
            ));
        }
        self.services.get(service).ok_or_else(|| {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            PlatformError::fatal(
                service,
                format!(
                    "no such service in the local config (known: {}); add it to the release",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// Bring a revision to `replicas` live replicas: start missing or exited ones (lowest
    /// indices first), take the highest indices beyond it out of the backends and hand them
    /// back in `to_stop` (also when a start fails).
    async fn reconcile(
        &self,
        svc: &ServiceRt,
        revision: &str,
        rt: &mut RevisionRt,
        replicas: u32,
        to_stop: &mut Vec<Replica>,
    ) -> Result<(), PlatformError> {
        rt.desired = replicas;
        let run = svc
            .config
            .revisions
            .get(revision)
            .cloned()
            .unwrap_or_default();
        let extra: Vec<u32> = rt.replicas.range(replicas..).map(|(i, _)| *i).collect();
        for index in extra {
            if let Some(r) = rt.replicas.remove(&index) {
                rt.backends.remove(index);
                drop(r.health);
                to_stop.push(r.process);
            }
        }
        for index in 0..replicas {
            if let Some(r) = rt.replicas.get(&index) {
                if r.process.is_running() {
                    continue;
                }
                tracing::info!(service = %svc.config.name, revision, replica = index, "restarting exited replica");
                rt.replicas.remove(&index);
                rt.backends.remove(index);
            }
            let spec = ReplicaSpec {
                service: svc.config.name.clone(),
                revision: revision.to_string(),
                replica: index,
                command: svc.config.command.clone(),
                args: run.args.clone(),
                env: run.env.clone(),
                scrub: self.secrets.clone(),
            };
            let process = self
                .supervisor
                .start(spec)
                .await
                .map_err(|e| start_error(&svc.config.name, e))?;
            let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
            rt.backends.insert(index, token, process.status().addr);
            let backends = rt.backends.clone();
            let health = watch_replica(
                process.subscribe(),
                svc.config.health.clone(),
                Arc::new(move |state: &InstanceState, addr: SocketAddr| {
                    backends.update(index, token, addr, *state == InstanceState::Healthy);
                }),
            );
            rt.replicas.insert(index, ReplicaRt { process, health });
        }
        Ok(())
    }

    /// Drain each replica at the proxy, then stop it; all at once.
    async fn stop_replicas(svc: &ServiceRt, replicas: Vec<Replica>) {
        let mut set = JoinSet::new();
        for r in replicas {
            let proxy = svc.proxy.clone();
            let drain = svc.config.drain_timeout;
            let grace = svc.config.stop_timeout;
            set.spawn(async move {
                let addr = r.status().addr;
                if let DrainOutcome::TimedOut { in_flight } = proxy.drain_backend(addr, drain).await
                {
                    tracing::warn!(
                        replica = r.id(),
                        in_flight,
                        "drain timed out; stopping anyway"
                    );
                }
                r.stop(grace).await;
            });
        }
        while set.join_next().await.is_some() {}
    }

    async fn ensure(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
        create: bool,
    ) -> Result<(), PlatformError> {
        let svc = self.service(service)?.clone();
        if !svc.config.revisions.contains_key(revision) {
            let known: Vec<&str> = svc.config.revisions.keys().map(String::as_str).collect();
            return Err(PlatformError::fatal(
                service,
                format!(
                    "revision `{revision}` is not in the local config (known: {}); add it to the release",
                    known.join(", ")
                ),
            ));
        }
        let mut to_stop = Vec::new();
        let result = {
            let mut revs = svc.revisions.lock().await;
            let created = !revs.contains_key(revision);
            if created {
                if !create {
                    return Err(not_running(service, revision));
                }
                let backends = Arc::new(Backends {
                    revision: revision.to_string(),
                    proxy: svc.proxy.clone(),
                    entries: Mutex::new(BTreeMap::new()),
                    detached: AtomicBool::new(false),
                });
                svc.proxy.set_backends(revision, Vec::new());
                revs.insert(
                    revision.to_string(),
                    RevisionRt {
                        desired: 0,
                        retiring: false,
                        replicas: BTreeMap::new(),
                        backends,
                    },
                );
            }
            let Some(rt) = revs.get_mut(revision) else {
                return Err(not_running(service, revision));
            };
            if rt.retiring {
                return Err(PlatformError::retryable(
                    service,
                    format!("revision `{revision}` is being retired; try again once that finished"),
                ));
            }
            let result = self
                .reconcile(&svc, revision, rt, replicas, &mut to_stop)
                .await;
            // A first launch that started nothing leaves no trace.
            if result.is_err() && created && rt.replicas.is_empty() {
                revs.remove(revision);
                svc.proxy.remove_revision(revision);
            }
            result
        };
        Self::stop_replicas(&svc, to_stop).await;
        result
    }
}

/// A missing or non-executable program will not appear by retrying; the rest may pass.
fn start_error(service: &str, e: SupervisorError) -> PlatformError {
    let permanent = match &e {
        SupervisorError::Spawn { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::InvalidInput
        ),
        SupervisorError::EmptyCommand(_) | SupervisorError::StateDir { .. } => true,
        SupervisorError::Port(_) => false,
    };
    if permanent {
        PlatformError::fatal(service, e.to_string())
    } else {
        PlatformError::retryable(service, e.to_string())
    }
}

fn not_running(service: &str, revision: &str) -> PlatformError {
    PlatformError::fatal(
        service,
        format!("revision `{revision}` is not running; launch it first"),
    )
}

fn weight_of(weights: &Weights, revision: &str) -> u8 {
    weights
        .iter()
        .find(|(r, _)| r == revision)
        .map(|(_, w)| *w)
        .unwrap_or(0)
}

#[async_trait]
impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.ensure(service, revision, replicas, true).await
    }

    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        let svc = self.service(service)?;
        let revs = svc.revisions.lock().await;
        let rt = revs
            .get(revision)
            .ok_or_else(|| not_running(service, revision))?;
        let instances = rt
            .replicas
            .values()
            .map(|r| {
                let p = r.process.status();
                let state = match p.exit {
                    Some(reason) => InstanceState::Exited { reason },
                    None => r.health.state(),
                };
                InstanceHealth {
                    id: format!("{} (pid {})", r.process.id(), p.pid),
                    address: p.addr.to_string(),
                    state,
                }
            })
            .collect();
        Ok(RevisionHealth {
            revision: revision.to_string(),
            desired: rt.desired,
            instances,
        })
    }

    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        let svc = self.service(service)?;
        let revs = svc.revisions.lock().await;
        let shown = weights
            .iter()
            .map(|(r, w)| format!("{r}={w}"))
            .collect::<Vec<_>>()
            .join(" ");
        let sum: u32 = weights.iter().map(|(_, w)| u32::from(*w)).sum();
        if sum != 100 {
            return Err(PlatformError::fatal(
                service,
                format!("weights [{shown}] add up to {sum}; they must add up to 100"),
            ));
        }
        for (i, (rev, w)) in weights.iter().enumerate() {
            if weights[..i].iter().any(|(r, _)| r == rev) {
                return Err(PlatformError::fatal(
                    service,
                    format!("weights [{shown}] name revision `{rev}` twice"),
                ));
            }
            match revs.get(rev) {
                None => {
                    return Err(PlatformError::fatal(
                        service,
                        format!(
                            "weights [{shown}] name revision `{rev}`, which is not launched; launch it first"
                        ),
                    ));
                }
                Some(rt) if rt.retiring && *w > 0 => {
                    return Err(PlatformError::fatal(
                        service,
                        format!("revision `{rev}` is being retired and cannot take traffic"),
                    ));
                }
                Some(_) => {}
            }
        }
        let mut full: Weights = weights.clone();
        for rev in revs.keys() {
            if !full.iter().any(|(r, _)| r == rev) {
                full.push((rev.clone(), 0));
            }
        }
        full.sort_by(|a, b| a.0.cmp(&b.0));
        svc.proxy
            .set_weights(&full)
            .map_err(|e| PlatformError::fatal(service, e.to_string()))
    }

    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        Ok(self.service(service)?.proxy.weights())
    }

    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        let svc = self.service(service)?;
        if !svc.revisions.lock().await.contains_key(revision) {
            return Err(not_running(service, revision));
        }
        Ok(TestRoute {
            base_url: format!("http://{}", svc.proxy.local_addr()),
            header: (TEST_ROUTE_HEADER.to_string(), revision.to_string()),
        })
    }

    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        self.ensure(service, revision, replicas, false).await
    }

    async fn retire(
        &self,
        service: &str,
        revision: &str,
        drain_timeout: Duration,
    ) -> Result<(), PlatformError> {
        let svc = self.service(service)?.clone();
        {
            let mut revs = svc.revisions.lock().await;
            let Some(rt) = revs.get_mut(revision) else {
                return Ok(());
            };
            let w = weight_of(&svc.proxy.weights(), revision);
            if w > 0 {
                return Err(PlatformError::fatal(
                    service,
                    format!(
                        "revision `{revision}` still has weight {w}%; set it to 0 before retiring it"
                    ),
                ));
            }
            rt.retiring = true;
        }
        if let DrainOutcome::TimedOut { in_flight } = svc.proxy.drain(revision, drain_timeout).await
        {
            tracing::warn!(
                service,
                revision,
                in_flight,
                ?drain_timeout,
                "drain timed out; stopping anyway"
            );
        }
        let rt = {
            let mut revs = svc.revisions.lock().await;
            match revs.remove(revision) {
                Some(rt) => rt,
                None => return Ok(()),
            }
        };
        rt.backends.detached.store(true, Ordering::SeqCst);
        svc.proxy.remove_revision(revision);
        let mut set = JoinSet::new();
        for (_, r) in rt.replicas {
            drop(r.health);
            let grace = svc.config.stop_timeout;
            set.spawn(async move { r.process.stop(grace).await });
        }
        while set.join_next().await.is_some() {}
        tracing::info!(service, revision, "revision retired");
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        let mut out = Vec::new();
        for (name, svc) in &self.services {
            let revs = svc.revisions.lock().await;
            let weights = svc.proxy.weights();
            for (rev, rt) in revs.iter() {
                out.push(RunningRevision {
                    service: name.clone(),
                    revision: rev.clone(),
                    replicas: rt
                        .replicas
                        .values()
                        .filter(|r| r.process.is_running())
                        .count() as u32,
                    weight: weight_of(&weights, rev),
                });
            }
        }
        Ok(out)
    }

    fn metrics(&self) -> Arc<dyn MetricSource> {
        self.stats.clone()
    }

    async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut set = JoinSet::new();
        for svc in self.services.values() {
            let svc = svc.clone();
            set.spawn(async move {
                let revs = std::mem::take(&mut *svc.revisions.lock().await);
                svc.proxy.shutdown_within(svc.config.drain_timeout).await;
                let mut stops = JoinSet::new();
                for (_, rt) in revs {
                    rt.backends.detached.store(true, Ordering::SeqCst);
                    for (_, r) in rt.replicas {
                        drop(r.health);
                        let grace = svc.config.stop_timeout;
                        stops.spawn(async move { r.process.stop(grace).await });
                    }
                }
                while stops.join_next().await.is_some() {}
            });
        }
        while set.join_next().await.is_some() {}
        if let Some(admin) = self.admin.lock().await.take() {
            admin.shutdown().await;
        }
        tracing::info!("local platform shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LocalConfig {
        LocalConfig {
            state_dir: PathBuf::from("/tmp/unused"),
            admin: None,
            secrets: Default::default(),
            pin_secret: None,
            services: vec![
                LocalServiceConfig::new(
                    "api",
                    "127.0.0.1:0".parse().unwrap(),
                    vec!["srv".into(), "--port".into(), "{port}".into()],
                )
                .with_revision("v1", RevisionRun::default()),
            ],
        }
    }

    fn problem(f: impl FnOnce(&mut LocalConfig)) -> String {
        let mut c = config();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn config_errors_name_the_service_and_the_fix() {
        assert!(config().validate().is_ok());
        let m = problem(|c| c.services[0].command.clear());
        assert!(
            m.contains("`api`") && m.contains("`command` is empty"),
            "{m}"
        );
        let m = problem(|c| c.services[0].command[2] = "{prot}".into());
        assert!(m.contains("{prot}") && m.contains("{port}"), "{m}");
        let m = problem(|c| c.services[0].command.truncate(1));
        assert!(m.contains("never mentions {port}"), "{m}");
        let m = problem(|c| {
            let dup = c.services[0].clone();
            c.services.push(dup)
        });
        assert!(m.contains("listed twice"), "{m}");
        let m = problem(|c| {
            c.services[0]
                .revisions
                .insert("v 2".into(), RevisionRun::default());
        });
        assert!(m.contains("revision name \"v 2\""), "{m}");
        let m = problem(|c| c.services[0].health.healthy_after = 0);
        assert!(m.contains("healthy_after"), "{m}");
        let m = problem(|c| c.services[0].revisions.clear());
        assert!(m.contains("no revisions"), "{m}");
        let m = problem(|c| {
            c.services[0].listen = "127.0.0.1:18081".parse().unwrap();
            let mut other = c.services[0].clone();
            other.name = "web".into();
            c.services.push(other);
        });
        assert!(m.contains("18081") && m.contains("`web`"), "{m}");
    }
}
