//! The release file's types. Field names are an interface: users and outside test suites
//! write them. Every field carries a doc comment, which `cutover schema` publishes.
//!
//! These types derive `Deserialize` so that `toml::from_str` reads a valid file, but the
//! CLI reads files through [`crate::release::parse`], which reports *every* problem with
//! its line and column instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{format_duration, parse_duration};

/// A whole release: what to roll out, in which order, gated by which checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Settings of the release as a whole.
    pub release: ReleaseSection,
    /// Where to announce what happens (webhooks, Grafana annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Where the judge reads per-revision traffic from (default: the platform's own
    /// source, the local proxy or CloudWatch). See `docs/observability.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// The services this release changes, written as `[[service]]` tables.
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
    /// Database migrations that go with the release, written as `[[migration]]` tables.
    #[serde(default, rename = "migration", skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
    /// Freeze windows of this release, besides the policy file's (`[[freeze]]`): no
    /// deploy starts inside one, and one opening mid-release holds the next services.
    #[serde(default, rename = "freeze", skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<Freeze>,
    /// The flagd flag-definition file that tenants' flags are written into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<super::tenants::FlagsSection>,
    /// Customers' instances, each running every service of the release, written as
    /// `[[tenant]]` tables. Without any, the release deploys its services once.
    #[serde(default, rename = "tenant", skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<super::tenants::Tenant>,
    /// Groups of tenants deployed one after the other, written as `[[ring]]` tables.
    #[serde(default, rename = "ring", skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<super::tenants::Ring>,
    /// Values this release read from the environment through `env:` variables: secret
    /// ([`crate::secrets::Secrets::from_release`]), never serialized (a journaled release
    /// holds them as fingerprints; resume re-reads them).
    #[serde(skip)]
    #[schemars(skip)]
    pub env_values: Vec<String>,
}

/// The `[release]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSection {
    /// A name for this release, used in the journal, the audit trail and notifications.
    pub name: String,
    /// Where the services run: `local` (processes on this machine behind cutover's proxy)
    /// or `ecs` (AWS ECS Fargate behind an ALB).
    #[serde(default)]
    pub platform: PlatformKind,
    /// How many services may roll out at the same time (at least 1).
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// What to do when a service fails.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// A service that makes no progress for this long fails.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: Dur,
    /// A label shown as a banner in the console, e.g. `production` or `staging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `env:VAR`: a shared secret (at least 16 characters, held by the environment
    /// variable) with which a client on another machine may pin a request to a revision
    /// through the local platform's proxy: it sends `x-cutover-revision: REVISION` and the
    /// secret in `x-cutover-pin-secret`. Without it the proxy honours `x-cutover-revision`
    /// only from this machine (403 otherwise). Pinned requests never count in the judge's
    /// statistics; the secret is never journaled, shown or forwarded to a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_secret: Option<String>,
    /// Platform `local`: an address (`127.0.0.1:PORT`) on which the local platform serves
    /// `GET /metrics` in Prometheus text (the proxy's per-revision series, its request
    /// duration histogram and cutover's own release metrics) and `GET /weights`.
    /// `--metrics-listen ADDR` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The change ticket this release ships under (e.g. `CHG-1234`): journaled, shown in
    /// the console's banner, the webhooks, `history`, `audit` and the release report.
    /// `--change` on `deploy`, `serve` and `demo` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// With tenants: how many tenants may fail in the whole release (an integer, or
    /// `"N%"` of the tenants rounded down) before it stops starting tenants. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_budget: Option<super::tenants::Amount>,
}

pub fn default_max_parallel() -> u32 {
    1
}
pub fn default_progress_deadline() -> Dur {
    Dur::from_secs(600)
}

/// The platform a release deploys to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    /// Real processes on this machine behind cutover's weighted proxy.
    #[default]
    Local,
    /// AWS ECS Fargate, with ALB weighted target groups.
    Ecs,
}

impl PlatformKind {
    pub const NAMES: &'static [&'static str] = &["local", "ecs"];
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::Local => "local",
            PlatformKind::Ecs => "ecs",
        }
    }
}

/// What the engine does when a service fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Roll back the failed service and every dependent already changed, in reverse
    /// dependency order; services that can no longer start are skipped.
    #[default]
    RollbackDependents,
    /// Roll back everything the release changed, in reverse order.
    RollbackRelease,
    /// Hold every weight where it is and wait for a person.
    Pause,
}

impl FailurePolicy {
    pub const NAMES: &'static [&'static str] =
        &["rollback_dependents", "rollback_release", "pause"];
}

/// The `[notify]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// URLs that receive a Slack-compatible JSON POST on release start, pause, gate
    /// waiting, promotion, rollback, failure and completion; `env:VAR` reads the URL from
    /// an environment variable (it is never journaled or shown).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Deploy markers on Grafana dashboards: the release's start, each rollback and its
    /// finish posted as annotations (`POST /api/annotations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<GrafanaNotify>,
}

/// The `[notify.grafana]` table: where and how deploy markers are posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrafanaNotify {
    /// Grafana's base URL (`https://grafana.example.com`), or `env:VAR` naming a variable
    /// that holds it (then it is secret).
    pub url: String,
    /// `env:VAR`: the variable holding a service account token (sent as
    /// `Authorization: Bearer ...`; never journaled or shown). A token written in the file
    /// is refused.
    pub token: String,
    /// Put the annotations on this dashboard only (its UID); without it they are
    /// organization-wide and every dashboard can show them by tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_uid: Option<String>,
    /// Tags added to every annotation, besides `cutover`, the release's name, its
    /// environment and the event (`start`, `rollback`, `finish`, with `promoted` or
    /// `failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The service's name, unique in the release.
    pub name: String,
    /// Services that must be promoted before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// How traffic moves to the new revision.
    pub strategy: StrategyKind,
    /// The canary's steps, in order (strategy `canary` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Settings of strategy `linear`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<Linear>,
    /// Settings of strategy `blue_green`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
    /// Settings of strategy `rolling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<Rolling>,
    /// Health checks of each instance.
    #[serde(default)]
    pub health: Health,
    /// Smoke tests run against the candidate before it takes traffic, written as
    /// `[[service.smoke]]` tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smoke: Vec<Smoke>,
    /// Canary analysis. With it, `linear`, `rolling` and the `blue_green` bake are judged
    /// throughout; without it, a service progresses on health checks and smoke tests alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// How the service runs on the local platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalService>,
    /// How the service runs on ECS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsService>,
}

/// Rollout strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Start the candidate at full size, test it, switch all traffic at once, keep the old
    /// revision warm for instant rollback.
    BlueGreen,
    /// Move traffic in the release's steps, gated by analysis, pauses and approvals.
    Canary,
    /// Move `step` % of traffic every `every`, with analysis throughout.
    Linear,
    /// Replace instances in batches, gated by health.
    Rolling,
}

impl StrategyKind {
    pub const NAMES: &'static [&'static str] = &["blue_green", "canary", "linear", "rolling"];
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::BlueGreen => "blue_green",
            StrategyKind::Canary => "canary",
            StrategyKind::Linear => "linear",
            StrategyKind::Rolling => "rolling",
        }
    }
}

/// One canary step. Written as a one-key inline table: `{ set_weight = 5 }`,
/// `{ analysis = "2m" }`, `{ pause = "1m" }` or `{ pause = "forever" }`,
/// `{ approval = "10m", on_timeout = "rollback", approvals = 2 }`.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this percentage (0-100) of traffic to the candidate.
    SetWeight(u8),
    /// Judge canary against baseline for this long.
    Analysis(Dur),
    /// Wait; `Forever` waits for a promote command.
    Pause(PauseFor),
    /// Wait for `approvals` distinct people to approve (or one to reject), at most
    /// `timeout`.
    Approval {
        timeout: Dur,
        on_timeout: OnTimeout,
        approvals: u32,
        /// Who may approve: operators, or `group:NAME` from the policy's roster; empty =
        /// whoever the policy's `[approval]` allows (anyone without a policy).
        approvers: Vec<String>,
        /// The person who started the release does not count.
        four_eyes: bool,
    },
}

/// How long a pause lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseFor {
    For(Dur),
    Forever,
}

/// What an approval gate does when nobody answers in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Roll the service back (the safe default).
    #[default]
    Rollback,
    /// Carry on as if approved.
    Promote,
    /// Keep waiting, paused, for a promote or rollback command.
    Pause,
}

impl OnTimeout {
    pub const NAMES: &'static [&'static str] = &["rollback", "promote", "pause"];
}

/// Settings of strategy `linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// Percentage points of traffic added each time (1-100).
    pub step: u8,
    /// How long each weight is held before the next.
    pub every: Dur,
}

/// Settings of strategy `blue_green`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// How long the old revision stays running after the switch, for instant rollback.
    #[serde(default = "default_keep_old_for")]
    pub keep_old_for: Dur,
    /// Switch without waiting for a person's approval once smoke tests pass.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
}

impl Default for BlueGreen {
    fn default() -> Self {
        BlueGreen {
            keep_old_for: default_keep_old_for(),
            auto_promote: true,
        }
    }
}

pub fn default_keep_old_for() -> Dur {
    Dur::from_secs(600)
}
fn default_true() -> bool {
    true
}

/// Settings of strategy `rolling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    /// Instances replaced at a time (at least 1).
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// How many instances may be missing from the desired count during the replacement.
    #[serde(default)]
    pub max_unavailable: u32,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            batch: default_batch(),
            max_unavailable: 0,
        }
    }
}

fn default_batch() -> u32 {
    1
}

/// The `[service.health]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// HTTP path that answers 2xx when the instance is healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between two checks of one instance.
    #[serde(default = "default_health_interval")]
    pub interval: Dur,
    /// A check that takes longer than this fails.
    #[serde(default = "default_health_timeout")]
    pub timeout: Dur,
    /// Consecutive successes before an instance counts as healthy.
    #[serde(default = "default_healthy_after")]
    pub healthy_after: u32,
    /// Consecutive failures before an instance counts as unhealthy (and the rollout fails).
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: default_health_path(),
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            healthy_after: default_healthy_after(),
            unhealthy_after: default_unhealthy_after(),
        }
    }
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_interval() -> Dur {
    Dur::from_secs(1)
}
fn default_health_timeout() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_healthy_after() -> u32 {
    2
}
fn default_unhealthy_after() -> u32 {
    3
}

/// One `[[service.smoke]]` test: either an HTTP `request` or a `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// A name for reports.
    pub name: String,
    /// `METHOD /path`, sent to the candidate through the test route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The status the request must answer with.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// A program and its arguments (argv, never a shell string); `{url}` is replaced by
    /// the candidate's address. Exit status 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A smoke test that takes longer than this fails.
    #[serde(default = "default_smoke_timeout")]
    pub timeout: Dur,
}

fn default_expect_status() -> u16 {
    200
}
pub fn default_smoke_timeout() -> Dur {
    Dur::from_secs(10)
}

/// The `[service.analysis]` table: how the canary is judged against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Which judge: `sequential` (anytime-valid test of canary against baseline) or
    /// `threshold` (absolute bounds).
    #[serde(default)]
    pub judge: JudgeKind,
    /// How many times worse than the baseline the canary may be before it fails (> 1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Canary requests needed before a pass is possible.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Time needed before a pass is possible.
    #[serde(default = "default_min_duration")]
    pub min_duration: Dur,
    /// Hard bound on the canary's error rate (0-1); also the threshold judge's bound.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Hard bound on the canary's p99 latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<Dur>,
    /// False-rollback budget of the sequential judge for the whole deployment (0-0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Failed intervals the threshold judge tolerates before failing.
    #[serde(default)]
    pub failure_limit: u32,
    /// This service's errors (or slow requests) come in bursts: the sequential judge asks
    /// for a 15 % higher bar in log evidence (e-value 443 instead of 200 at α = 0.01)
    /// until three minutes with bad events have measured how bursty they are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bursty: bool,
    /// What happens when the analysis ends without enough data: `pause` (wait for a
    /// person) or `extend` (keep analysing until the progress deadline).
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// With `[metrics] provider = "prometheus"`: this service's own PromQL queries instead
    /// of the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQueries>,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            judge: JudgeKind::default(),
            tolerance: default_tolerance(),
            min_requests: default_min_requests(),
            min_duration: default_min_duration(),
            max_error_rate: default_max_error_rate(),
            max_p99: None,
            alpha: default_alpha(),
            failure_limit: 0,
            bursty: false,
            on_inconclusive: OnInconclusive::default(),
            prometheus: None,
        }
    }
}

fn default_tolerance() -> f64 {
    1.25
}
fn default_min_requests() -> u64 {
    500
}
fn default_min_duration() -> Dur {
    Dur::from_secs(60)
}
fn default_max_error_rate() -> f64 {
    0.05
}
fn default_alpha() -> f64 {
    0.01
}

/// The `[metrics]` table: where the judge reads per-revision traffic from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `default` (the platform's own source: the local proxy or CloudWatch) or
    /// `prometheus` (instant queries of cumulative counters through the HTTP API).
    #[serde(default)]
    pub provider: MetricsProvider,
    /// The Prometheus server's base URL (`http://127.0.0.1:9090`), or `env:VAR` to read it
    /// from the environment (then it is secret: never journaled or shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Which query set reads the revisions: `cutover` (the local proxy's own series),
    /// `http_server` (OpenTelemetry's `http.server.request.duration` histogram), `istio`
    /// or `linkerd`.
    #[serde(default)]
    pub template: PrometheusTemplate,
    /// Basic auth: the user name (`env:VAR` allowed); needs `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic auth: `env:VAR`, the variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `env:VAR`: the variable holding a bearer token sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// How long one query may take before the reading counts as *no data* (default 5 s).
    #[serde(default = "default_metrics_timeout")]
    pub timeout: Dur,
}

pub fn default_metrics_timeout() -> Dur {
    Dur::from_secs(5)
}

/// Where metrics come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricsProvider {
    /// The platform's own source: the local proxy, or CloudWatch on ECS.
    #[default]
    Default,
    /// A Prometheus server's HTTP API.
    Prometheus,
}

impl MetricsProvider {
    pub const NAMES: &'static [&'static str] = &["default", "prometheus"];
}

/// The query sets cutover ships for Prometheus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrometheusTemplate {
    /// The local proxy's series: `cutover_proxy_*{service,revision}`.
    #[default]
    Cutover,
    /// OpenTelemetry's `http.server.request.duration` histogram as Prometheus exports it
    /// (`http_server_request_duration_seconds_*{job,service_version}`).
    HttpServer,
    /// Istio's `istio_requests_total` and `istio_request_duration_milliseconds`
    /// (`destination_service_name`, `destination_version`).
    Istio,
    /// Linkerd's `response_total` and `response_latency_ms` (`deployment`, `version`).
    Linkerd,
}

impl PrometheusTemplate {
    pub const NAMES: &'static [&'static str] = &["cutover", "http_server", "istio", "linkerd"];
    pub const ALL: [PrometheusTemplate; 4] = [
        PrometheusTemplate::Cutover,
        PrometheusTemplate::HttpServer,
        PrometheusTemplate::Istio,
        PrometheusTemplate::Linkerd,
    ];
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The `[service.analysis.prometheus]` table: PromQL that replaces the template's query
/// for this service. `{{service}}`, `{{revision}}` and (in `slow`) `{{le}}`, the slow
/// threshold in the histogram's unit, are filled in. Each query must return one
/// cumulative count (a counter's value, not a rate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusQueries {
    /// Requests the revision answered (or failed to answer), cumulative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// Failed requests (5xx), cumulative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// Requests slower than `{{le}}`, cumulative (e.g. `_count` minus the bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<String>,
}

/// The canary judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    /// Anytime-valid sequential test of the canary against the baseline.
    #[default]
    Sequential,
    /// Absolute bounds with a failure limit.
    Threshold,
}

impl JudgeKind {
    pub const NAMES: &'static [&'static str] = &["sequential", "threshold"];
}

/// What an analysis that ran out of time without a verdict does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Pause and say why; a person promotes or rolls back.
    #[default]
    Pause,
    /// Keep analysing until there is a verdict or the progress deadline passes.
    Extend,
}

impl OnInconclusive {
    pub const NAMES: &'static [&'static str] = &["pause", "extend"];
}

/// The `[service.local]` table (platform `local`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalService {
    /// The service's stable address (`127.0.0.1:18081`), served by cutover's proxy.
    pub listen: String,
    /// Instances of each revision.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Program and arguments of one instance (argv). Placeholders: `{port}`, `{revision}`,
    /// `{replica}`, `{service}`. The word `cutover` runs this very binary.
    pub command: Vec<String>,
    /// The revision running before the release (the stable one).
    pub current: RevisionRun,
    /// The revision the release rolls out.
    pub target: RevisionRun,
    /// How long a revision taken out of traffic may finish its in-flight requests.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Dur,
}

fn default_replicas() -> u32 {
    1
}
pub fn default_drain_timeout() -> Dur {
    Dur::from_secs(30)
}

/// A revision of a local service: its name and what it adds to `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionRun {
    /// The revision's name (`v1`, `2.3.1`).
    pub revision: String,
    /// Arguments appended to `command` for this revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables set for this revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The `[service.ecs]` table (platform `ecs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsService {
    /// The ECS cluster's name or ARN.
    pub cluster: String,
    /// The ECS service's name.
    pub service: String,
    /// The container in the task definition whose image the release changes.
    pub container: String,
    /// The image the release rolls out.
    pub image: String,
    /// The ALB listener rule whose weighted forward action moves traffic (all strategies
    /// but `rolling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_rule: Option<String>,
    /// The two target groups (blue, green) the listener rule weighs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<String>,
    /// Secrets Manager ARNs the new task definition uses; checked before any change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The AWS region of the cluster (`us-east-1`); default: the standard chain
    /// (`AWS_REGION`, then the profile's `region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An ALB listener rule cutover points at the candidate's target group, matching the
    /// header `x-cutover-revision: <revision>`, so smoke tests reach the candidate at
    /// weight 0. Required for smoke tests on weighted strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule: Option<String>,
    /// The base URL smoke tests use (`https://api.example.com`); default: the load
    /// balancer's DNS name with the listener's protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Tasks each revision runs; default: the ECS service's desired count when the release
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    /// Environment variables set (added or replaced) on the container in the new task
    /// definition; the others are kept as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets set on the container in the new task definition: environment variable name
    /// to Secrets Manager ARN. Checked before any change and pinned to the version found.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Task-level CPU units of the new task definition (`"256"`, `"1024"`); default: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task-level memory in MiB of the new task definition (`"512"`); default: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// One `[[freeze]]` window: when deploying is forbidden (see docs/change-control.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    /// Named in refusals and in the journal.
    pub name: String,
    /// When the window opens: 5 cron fields, read in `timezone` (e.g. `"0 18 * * 5"`).
    pub cron: String,
    /// How long it stays open (elapsed time, e.g. `"64h"`).
    pub duration: Dur,
    /// IANA time zone, e.g. `"Europe/Berlin"`.
    pub timezone: String,
    /// The release environments it applies to; absent: every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Tags of `[[tenant]]`s: the window holds only tenants carrying one of them (and
    /// never the release as a whole); absent: the whole release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenant_tags: Vec<String>,
}

impl Freeze {
    /// The window as the policy module and the journal hold it.
    pub fn window(&self) -> crate::policy::FreezeWindow {
        crate::policy::FreezeWindow {
            name: self.name.clone(),
            cron: self.cron.clone(),
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            timezone: self.timezone.clone(),
            environments: self.environments.clone(),
            tenant_tags: self.tenant_tags.clone(),
        }
    }
}

/// One `[[migration]]`: schema changes that go with the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// A name for reports and the history table.
    pub name: String,
    /// `sqlite://PATH`, `postgres://...`, or `env:VAR` naming an environment variable
    /// that holds the URL. Credentials are never printed.
    pub database: String,
    /// SQL file applied before the services roll out (additive changes only).
    pub expand: String,
    /// SQL file applied after every listed service is promoted and the bake time passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// SQL file that reverts `expand` when a listed service rolls back before contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_expand: Option<String>,
    /// Services whose revisions use the affected tables.
    pub services: Vec<String>,
    /// How long every listed service must have been promoted before contract.
    #[serde(default = "default_bake")]
    pub bake: Dur,
}

pub fn default_bake() -> Dur {
    Dur::from_secs(60)
}

/// A duration written with a unit: `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

impl std::ops::Deref for Dur {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// The pattern of a duration string, shared by the schema and the docs.
pub const DURATION_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$";

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A number with a unit: ms, s, m, h or d (\"500ms\", \"30s\", \"5m\", \"1h\").",
            "examples": ["500ms", "30s", "5m", "1h"]
        })
    }
}

/// The keys a step table may have, for messages and the schema.
pub const STEP_KEYS: &[&str] = &[
    "set_weight",
    "analysis",
    "pause",
    "approval",
    "on_timeout",
    "approvals",
    "approvers",
    "four_eyes",
];

/// The most approvers a gate can ask for.
pub const MAX_APPROVALS: u32 = 10;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set_weight: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_timeout: Option<OnTimeout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approvals: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approvers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    four_eyes: Option<bool>,
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut r = StepRepr {
            set_weight: None,
            analysis: None,
            pause: None,
            approval: None,
            on_timeout: None,
            approvals: None,
            approvers: None,
            four_eyes: None,
        };
        match self {
            Step::SetWeight(w) => r.set_weight = Some(*w),
            Step::Analysis(d) => r.analysis = Some(*d),
            Step::Pause(PauseFor::For(d)) => r.pause = Some(d.to_string()),
            Step::Pause(PauseFor::Forever) => r.pause = Some("forever".into()),
            Step::Approval {
                timeout,
                on_timeout,
                approvals,
                approvers,
                four_eyes,
            } => {
                r.approval = Some(*timeout);
                r.on_timeout = Some(*on_timeout);
                r.approvals = (*approvals > 1).then_some(*approvals);
                r.approvers = (!approvers.is_empty()).then(|| approvers.clone());
                r.four_eyes = four_eyes.then_some(true);
            }
        }
        r.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = StepRepr::deserialize(d)?;
        let kinds = [
            r.set_weight.is_some(),
            r.analysis.is_some(),
            r.pause.is_some(),
            r.approval.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(D::Error::custom(
                "a step has exactly one of set_weight, analysis, pause, approval",
            ));
        }
        if r.on_timeout.is_some() && r.approval.is_none() {
            return Err(D::Error::custom("on_timeout belongs to an approval step"));
        }
        if r.approvals.is_some() && r.approval.is_none() {
            return Err(D::Error::custom("approvals belongs to an approval step"));
        }
        if (r.approvers.is_some() || r.four_eyes.is_some()) && r.approval.is_none() {
            return Err(D::Error::custom(
                "approvers and four_eyes belong to an approval step",
            ));
        }
        if let Some(n) = r.approvals
            && !(1..=MAX_APPROVALS).contains(&n)
        {
            return Err(D::Error::custom(format!(
                "approvals is a number of people, 1-{MAX_APPROVALS}"
            )));
        }
        if let Some(w) = r.set_weight {
            if w > 100 {
                return Err(D::Error::custom("set_weight is a percentage, 0-100"));
            }
            return Ok(Step::SetWeight(w));
        }
        if let Some(a) = r.analysis {
            return Ok(Step::Analysis(a));
        }
        if let Some(p) = r.pause {
            if p == "forever" {
                return Ok(Step::Pause(PauseFor::Forever));
            }
            return parse_duration(&p)
                .map(|d| Step::Pause(PauseFor::For(Dur(d))))
                .map_err(D::Error::custom);
        }
        match r.approval {
            Some(timeout) => Ok(Step::Approval {
                timeout,
                on_timeout: r.on_timeout.unwrap_or_default(),
                approvals: r.approvals.unwrap_or(1),
                approvers: r.approvers.unwrap_or_default(),
                four_eyes: r.four_eyes.unwrap_or(false),
            }),
            None => Err(D::Error::custom("empty step")),
        }
    }
}

impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let dur = generator.subschema_for::<Dur>();
        let on_timeout = generator.subschema_for::<OnTimeout>();
        json_schema!({
            "description": "One canary step: exactly one of set_weight, analysis, pause, approval.",
            "oneOf": [
                {
                    "type": "object",
                    "description": "Send this percentage of traffic to the candidate.",
                    "properties": {"set_weight": {"type": "integer", "minimum": 0, "maximum": 100}},
                    "required": ["set_weight"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "description": "Judge canary against baseline for this long.",
                    "properties": {"analysis": dur},
                    "required": ["analysis"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "description": "Wait this long, or \"forever\" (until promoted).",
                    "properties": {"pause": {"anyOf": [dur, {"const": "forever"}]}},
                    "required": ["pause"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "description": "Wait for people to approve (approvals = how many distinct approvers, default 1; approvers = who may, operators or group:NAME of the policy's roster; four_eyes = not the person who started the release) or one to reject, at most this long. A policy's [approval] still applies: a gate tightens it, never loosens it.",
                    "properties": {"approval": dur, "on_timeout": on_timeout, "approvals": {"type": "integer", "minimum": 1, "maximum": MAX_APPROVALS}, "approvers": {"type": "array", "items": {"type": "string", "minLength": 1}}, "four_eyes": {"type": "boolean"}},
                    "required": ["approval"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetWeight(w) => write!(f, "set weight {w}%"),
            Step::Analysis(d) => write!(f, "analysis {d}"),
            Step::Pause(PauseFor::For(d)) => write!(f, "pause {d}"),
            Step::Pause(PauseFor::Forever) => write!(f, "pause until promoted"),
            Step::Approval {
                timeout,
                on_timeout,
                approvals,
                ..
            } => {
                let what = match on_timeout {
                    OnTimeout::Rollback => "roll back",
                    OnTimeout::Promote => "promote",
                    OnTimeout::Pause => "pause",
                };
                if *approvals > 1 {
                    write!(
                        f,
                        "approval by {approvals} people (timeout {timeout}, then {what})"
                    )
                } else {
                    write!(f, "approval (timeout {timeout}, then {what})")
                }
            }
        }
    }
}

impl Release {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}
