//! The ECS platform against moto: AWS configuration pointed at it (or at the fault proxy
//! in front of it), and fixtures (cluster, services, target groups, load balancer, listener
//! rules, task definitions) with names unique to each test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController,
    DeploymentControllerType, LaunchType, LoadBalancer, NetworkConfiguration, NetworkMode,
    PortMapping, Scale, ScaleUnit,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HttpHeaderConditionConfig, LoadBalancerTypeEnum,
    PathPatternConditionConfig, ProtocolEnum, RuleCondition, TargetGroupTuple, TargetTypeEnum,
};
use cutover::platform::ecs::aws::{Clients, RetryPolicy, https_client};
use cutover::release::{self, Release};
use rand::Rng;

use super::moto;

pub const REGION: &str = "us-east-1";
pub const EXEC_ROLE: &str = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole";

/// AWS configuration for moto (or the fault proxy in front of it) at `endpoint`.
pub async fn config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_ecs::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// The `cutover` binary pointed at moto (or the fault proxy) at `endpoint`: test
/// credentials, no profile, and AWS config and credentials files that do not exist (in
/// `dir`), so nothing of the machine's own AWS set-up leaks in.
pub fn cutover_cli(endpoint: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(super::CUTOVER);
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env_remove("AWS_PROFILE");
    cmd
}

/// A quick retry policy for tests: the same logic, short delays.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// A name unique to this test and run: `prefix-1a2b3c` (short: ALB names are ≤ 32 chars).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::rng().random_range(0..0xff_ffffu32))
}

pub fn release(text: &str) -> Release {
    release::load_str(Path::new("test-release.toml"), text, Path::new(".")).unwrap_or_else(|d| {
        panic!(
            "test release invalid:\n{}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        )
    })
}

/// An EXTERNAL-controller service behind a listener rule, with revision `1.0` running as
/// the primary task set on the blue target group, taking all traffic.
pub struct External {
    pub name: String,
    pub cluster: String,
    pub service: String,
    pub family: String,
    pub blue: String,
    pub green: String,
    pub load_balancer: String,
    pub listener: String,
    pub rule: String,
    pub test_rule: String,
    pub td_v1: String,
    pub task_set_v1: String,
}

pub fn clients(conf: &SdkConfig) -> Clients {
    Clients::new(conf, Some(REGION))
}

pub async fn task_definition(
    c: &Clients,
    family: &str,
    image: &str,
    secrets: &[(&str, &str)],
) -> String {
    let mut container = ContainerDefinition::builder()
        .name("app")
        .image(image)
        // moto needs container-level memory (it fails on Fargate task-level memory only).
        .memory(512)
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(8080).build());
    for (name, arn) in secrets {
        container = container.secrets(
            aws_sdk_ecs::types::Secret::builder()
                .name(*name)
                .value_from(*arn)
                .build()
                .unwrap(),
        );
    }
    c.ecs
        .register_task_definition()
        .family(family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .execution_role_arn(EXEC_ROLE)
        .container_definitions(container.build())
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string()
}

pub fn forward(pairs: &[(&str, i32)]) -> Action {
    let mut fc = ForwardActionConfig::builder();
    for (tg, w) in pairs {
        fc = fc.target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(*tg)
                .weight(*w)
                .build(),
        );
    }
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(fc.build())
        .build()
}

pub fn network_configuration(net: &moto::Network) -> NetworkConfiguration {
    NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(&net.subnets[0])
                .subnets(&net.subnets[1])
                .security_groups(&net.security_group)
                .build()
                .unwrap(),
        )
        .build()
}

async fn target_group(c: &Clients, name: &str, vpc: &str) -> String {
    c.elb
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string()
}

/// Load balancer, listener and the two rules: `rule` forwards blue 100 / green 0 for
/// `/*`, `test_rule` matches `x-cutover-revision: none` (cutover re-points it).
async fn load_balancing(
    c: &Clients,
    net: &moto::Network,
    name: &str,
    blue: &str,
    green: &str,
) -> (String, String, String, String) {
    let lb = c
        .elb
        .create_load_balancer()
        .name(format!("{name}-lb"))
        .subnets(&net.subnets[0])
        .subnets(&net.subnets[1])
        .r#type(LoadBalancerTypeEnum::Application)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let listener = c
        .elb
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward(&[(blue, 1)]))
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_string();
    let rule = c
        .elb
        .create_rule()
        .listener_arn(&listener)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().values("/*").build())
                .build(),
        )
        .actions(forward(&[(blue, 100), (green, 0)]))
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    let test_rule = c
        .elb
        .create_rule()
        .listener_arn(&listener)
        .priority(1)
        .conditions(
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name("x-cutover-revision")
                        .values("none")
                        .build(),
                )
                .build(),
        )
        .actions(forward(&[(green, 1)]))
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    (lb, listener, rule, test_rule)
}

pub async fn external(conf: &SdkConfig, endpoint: &str, prefix: &str) -> External {
    let c = clients(conf);
    let net = moto::network(endpoint);
    let name = unique(prefix);
    let cluster = format!("{name}-cluster");
    let service = format!("{name}-svc");
    let family = format!("{name}-td");
    c.ecs
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let td_v1 = task_definition(&c, &family, "repo/api:1.0", &[]).await;
    // Desired count 0: moto fails task sets of awsvpc services with a count above 0.
    c.ecs
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        .desired_count(0)
        .deployment_controller(
            DeploymentController::builder()
                .r#type(DeploymentControllerType::External)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let blue = target_group(&c, &format!("{name}-b"), &net.vpc).await;
    let green = target_group(&c, &format!("{name}-g"), &net.vpc).await;
    let (load_balancer, listener, rule, test_rule) =
        load_balancing(&c, &net, &name, &blue, &green).await;
    let ts = c
        .ecs
        .create_task_set()
        .cluster(&cluster)
        .service(&service)
        .task_definition(&td_v1)
        .external_id("1.0")
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&blue)
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .network_configuration(network_configuration(&net))
        .launch_type(LaunchType::Fargate)
        .scale(
            Scale::builder()
                .unit(ScaleUnit::Percent)
                .value(100.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task_set_v1 = ts.task_set().unwrap().task_set_arn().unwrap().to_string();
    c.ecs
        .update_service_primary_task_set()
        .cluster(&cluster)
        .service(&service)
        .primary_task_set(&task_set_v1)
        .send()
        .await
        .unwrap();
    External {
        name,
        cluster,
        service,
        family,
        blue,
        green,
        load_balancer,
        listener,
        rule,
        test_rule,
        td_v1,
        task_set_v1,
    }
}

impl External {
    /// A canary release of this service to image `repo/api:2.0`, with `extra` lines added
    /// to its [service.ecs] table.
    pub fn canary_release(&self, extra: &str) -> Release {
        release(&format!(
            r#"
[release]
name = "{name}"
platform = "ecs"

[[service]]
name = "api"
strategy = "canary"
steps = [{{ set_weight = 5 }}, {{ analysis = "1m" }}, {{ set_weight = 25 }}, {{ analysis = "1m" }}, {{ set_weight = 50 }}]
[[service.smoke]]
name = "ping"
request = "GET /healthz"
[service.ecs]
cluster = "{cluster}"
service = "{service}"
container = "app"
image = "repo/api:2.0"
listener_rule = "{rule}"
test_listener_rule = "{test_rule}"
target_groups = ["{blue}", "{green}"]
region = "{REGION}"
{extra}
"#,
            name = self.name,
            cluster = self.cluster,
            service = self.service,
            rule = self.rule,
            test_rule = self.test_rule,
            blue = self.blue,
            green = self.green,
        ))
    }
}

/// The weights of the rule's forward action, read straight from ELBv2.
pub async fn rule_weights(c: &Clients, rule: &str) -> Vec<(String, i32)> {
    let out = c.elb.describe_rules().rule_arns(rule).send().await.unwrap();
    let mut v: Vec<(String, i32)> = out.rules()[0]
        .actions()
        .iter()
        .filter_map(|a| a.forward_config())
        .flat_map(|f| f.target_groups())
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_string(),
                t.weight().unwrap_or(1),
            )
        })
        .collect();
    v.sort();
    v
}

/// The primary task set's external id.
pub async fn primary(c: &Clients, cluster: &str, service: &str) -> Option<String> {
    let out = c
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .unwrap();
    out.services()[0]
        .task_sets()
        .iter()
        .find(|t| t.status() == Some("PRIMARY"))
        .and_then(|t| t.external_id())
        .map(str::to_string)
}

/// An ECS-controller (rolling) service running revision `1.0`.
pub struct Rolling {
    pub name: String,
    pub cluster: String,
    pub service: String,
    pub family: String,
    pub td_v1: String,
}

pub async fn rolling(conf: &SdkConfig, endpoint: &str, prefix: &str) -> Rolling {
    let c = clients(conf);
    let net = moto::network(endpoint);
    let name = unique(prefix);
    let cluster = format!("{name}-cluster");
    let service = format!("{name}-svc");
    let family = format!("{name}-td");
    c.ecs
        .create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let td_v1 = task_definition(&c, &family, "repo/worker:1.0", &[]).await;
    c.ecs
        .create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&td_v1)
        .desired_count(2)
        .launch_type(LaunchType::Fargate)
        // moto answers 500 without security groups.
        .network_configuration(network_configuration(&net))
        .send()
        .await
        .unwrap();
    Rolling {
        name,
        cluster,
        service,
        family,
        td_v1,
    }
}

impl Rolling {
    pub fn release(&self) -> Release {
        release(&format!(
            r#"
[release]
name = "{name}"
platform = "ecs"

[[service]]
name = "worker"
strategy = "rolling"
rolling = {{ batch = 1, max_unavailable = 0 }}
[service.ecs]
cluster = "{cluster}"
service = "{service}"
container = "app"
image = "repo/worker:2.0"
region = "{REGION}"
env = {{ MODE = "fast" }}
"#,
            name = self.name,
            cluster = self.cluster,
            service = self.service,
        ))
    }
}

/// The AWSCURRENT version id of a secret.
pub async fn current_version(c: &Clients, arn: &str) -> String {
    c.secrets
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages()
        .unwrap()
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
        .map(|(v, _)| v.clone())
        .unwrap()
}

/// Number of revisions registered in a task definition family.
pub async fn revisions(c: &Clients, family: &str) -> usize {
    c.ecs
        .list_task_definitions()
        .family_prefix(family)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .len()
}

/// The account moto answers as: an ECR image `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`.
pub const ACCOUNT: &str = "123456789012";

pub fn ecr(conf: &SdkConfig) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(conf)
}

/// Create ECR repository `name` (already there is fine) and return the image name
/// without a tag (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`).
pub async fn ecr_repository(conf: &SdkConfig, name: &str) -> String {
    let out = ecr(conf)
        .create_repository()
        .repository_name(name)
        .send()
        .await;
    if let Err(e) = &out {
        let code = aws_sdk_ecr::error::ProvideErrorMetadata::code(e.as_service_error().unwrap());
        assert_eq!(code, Some("RepositoryAlreadyExistsException"), "{e:?}");
    }
    format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}")
}

/// Push a manifest with one layer (digest `sha256:` + `layer` × 64) to `repo` under `tag`
/// (moving the tag when it is elsewhere); returns the image digest ECR gives it (moto: the
/// SHA-256 of the layer digests).
pub async fn ecr_push(conf: &SdkConfig, repo: &str, tag: &str, layer: char) -> String {
    let layer_digest = format!("sha256:{}", layer.to_string().repeat(64));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": format!("sha256:{}", "c".repeat(64)),
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 1,
            "digest": layer_digest,
        }],
    });
    let out = ecr(conf)
        .put_image()
        .repository_name(repo)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await;
    match out {
        Ok(o) => o
            .image()
            .and_then(|i| i.image_id())
            .and_then(|i| i.image_digest())
            .unwrap()
            .to_string(),
        // Pushed before (a moto that outlives a run): the digest is the same.
        Err(_) => ecr(conf)
            .describe_images()
            .repository_name(repo)
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag(tag)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .image_details()[0]
            .image_digest()
            .unwrap()
            .to_string(),
    }
}

/// The first container's image of task definition `td` and its `cutover.revision` label.
pub async fn container_image(c: &Clients, td: &str) -> (String, Option<String>) {
    let out = c
        .ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .unwrap();
    let cd = &out.task_definition().unwrap().container_definitions()[0];
    (
        cd.image().unwrap_or_default().to_string(),
        cd.docker_labels()
            .and_then(|l| l.get("cutover.revision"))
            .cloned(),
    )
}
