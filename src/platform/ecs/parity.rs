//! What one environment of an ECS release runs now, normalised for comparison with
//! another environment (`cutover diff --between A B`): per service a flat map from a path
//! (`task.cpu`, `container.app.env.LOG_LEVEL`, `service.desired_count`, `rule.path_patterns`)
//! to a value. Normalised the way a careful reviewer compares task definitions: environment
//! and secrets sorted by name, CPU and memory in units (`1 vCPU` is `1024`, `2 GB` is
//! `2048`), defaults made explicit (`essential` is `true`), secret references reduced to the
//! secret's name (the random suffix, region, account and pinned version left out).
//!
//! Fields that name per-environment resources by nature (cluster, service, task family,
//! roles, log groups, subnets, security groups, target groups, host names) are not
//! compared: they differ between any two environments. Nothing here writes to AWS, and
//! no secret value is read.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use aws_sdk_elasticloadbalancingv2::types::{Rule, RuleCondition};

use super::aws::call;
use super::{EcsPlatform, Svc};
use crate::platform::PlatformError;

/// A service's comparable fields: path to normalised value.
pub type Fields = BTreeMap<String, String>;

/// What one service runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveService {
    /// The release's service name.
    pub service: String,
    /// The task definition in service (the primary task set's, or the service's).
    pub task_definition: String,
    pub fields: Fields,
}

/// Every service of the platform's release, as it runs now.
pub async fn live(platform: &EcsPlatform) -> Result<Vec<LiveService>, PlatformError> {
    let mut out = Vec::new();
    for svc in platform.services() {
        out.push(live_service(platform, svc).await?);
    }
    Ok(out)
}

async fn live_service(p: &EcsPlatform, svc: &Svc) -> Result<LiveService, PlatformError> {
    let desc = p.describe(svc).await?;
    let primary = desc
        .task_sets()
        .iter()
        .find(|t| t.status() == Some("PRIMARY"));
    let arn = primary
        .and_then(|t| t.task_definition())
        .or(desc.task_definition())
        .ok_or_else(|| svc.fatal("the ECS service runs no task definition"))?
        .to_string();
    let td = p.task_definition(svc, &arn).await?;
    let mut fields = task_definition_fields(&td);
    let desired = primary
        .map(|t| t.computed_desired_count())
        .unwrap_or(desc.desired_count());
    fields.insert("service.desired_count".into(), desired.to_string());
    if let Some(lt) = desc.launch_type().or(primary.and_then(|t| t.launch_type())) {
        fields.insert("service.launch_type".into(), lt.as_str().to_string());
    }
    if let Some(pv) = desc.platform_version() {
        fields.insert("service.platform_version".into(), pv.to_string());
    }
    if let Some(rule) = &svc.cfg.listener_rule
        && rule.contains(":listener-rule/")
    {
        let elb = &svc.clients.elb;
        let out = call(p.retry_policy(), "elbv2:DescribeRules", || {
            elb.describe_rules().rule_arns(rule).send()
        })
        .await
        .map_err(|e| svc.err(e))?;
        if let Some(r) = out.rules().first() {
            rule_fields(r, &mut fields);
        }
    }
    Ok(LiveService {
        service: svc.name.clone(),
        task_definition: arn,
        fields,
    })
}

/// The comparable fields of a task definition (every container, sidecars included).
pub fn task_definition_fields(td: &TaskDefinition) -> Fields {
    let mut f = Fields::new();
    if let Some(cpu) = td.cpu() {
        f.insert("task.cpu".into(), cpu_units(cpu));
    }
    if let Some(mem) = td.memory() {
        f.insert("task.memory".into(), memory_mib(mem));
    }
    if let Some(m) = td.network_mode() {
        f.insert("task.network_mode".into(), m.as_str().to_string());
    }
    let mut compat: Vec<&str> = td
        .requires_compatibilities()
        .iter()
        .map(|c| c.as_str())
        .collect();
    compat.sort_unstable();
    if !compat.is_empty() {
        f.insert("task.requires_compatibilities".into(), compat.join(","));
    }
    if let Some(rp) = td.runtime_platform() {
        if let Some(os) = rp.operating_system_family() {
            f.insert("task.os".into(), os.as_str().to_string());
        }
        if let Some(a) = rp.cpu_architecture() {
            f.insert("task.cpu_architecture".into(), a.as_str().to_string());
        }
    }
    for c in td.container_definitions() {
        container_fields(c, &mut f);
    }
    f
}

fn container_fields(c: &ContainerDefinition, f: &mut Fields) {
    let base = format!("container.{}", c.name().unwrap_or("?"));
    let mut put = |k: &str, v: String| {
        f.insert(format!("{base}.{k}"), v);
    };
    if let Some(i) = c.image() {
        put("image", i.to_string());
    }
    put("essential", c.essential().unwrap_or(true).to_string());
    if c.cpu() != 0 {
        put("cpu", c.cpu().to_string());
    }
    if let Some(m) = c.memory() {
        put("memory", m.to_string());
    }
    if let Some(m) = c.memory_reservation() {
        put("memory_reservation", m.to_string());
    }
    if !c.command().is_empty() {
        put("command", join_argv(c.command()));
    }
    if !c.entry_point().is_empty() {
        put("entry_point", join_argv(c.entry_point()));
    }
    if let Some(w) = c.working_directory() {
        put("working_directory", w.to_string());
    }
    if let Some(u) = c.user() {
        put("user", u.to_string());
    }
    if let Some(r) = c.readonly_root_filesystem() {
        put("readonly_root_filesystem", r.to_string());
    }
    let mut ports: Vec<String> = c
        .port_mappings()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.container_port().unwrap_or(0),
                p.protocol().map(|x| x.as_str()).unwrap_or("tcp")
            )
        })
        .collect();
    ports.sort();
    if !ports.is_empty() {
        put("ports", ports.join(","));
    }
    if let Some(h) = c.health_check() {
        put("health_check", join_argv(h.command()));
    }
    for kv in c.environment() {
        put(
            &format!("env.{}", kv.name().unwrap_or("")),
            kv.value().unwrap_or("").to_string(),
        );
    }
    for s in c.secrets() {
        put(&format!("secret.{}", s.name()), secret_name(s.value_from()));
    }
}

fn join_argv(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn rule_fields(r: &Rule, f: &mut Fields) {
    let mut paths = Vec::new();
    let mut headers = Vec::new();
    let mut methods = Vec::new();
    for c in r.conditions() {
        condition(c, &mut paths, &mut headers, &mut methods);
    }
    for (k, mut v) in [
        ("rule.path_patterns", paths),
        ("rule.http_headers", headers),
        ("rule.http_methods", methods),
    ] {
        if !v.is_empty() {
            v.sort();
            f.insert(k.into(), v.join(","));
        }
    }
}

fn condition(
    c: &RuleCondition,
    paths: &mut Vec<String>,
    headers: &mut Vec<String>,
    methods: &mut Vec<String>,
) {
    match c.field() {
        Some("path-pattern") => {
            let from_config = c.path_pattern_config().map(|p| p.values()).unwrap_or(&[]);
            let values = if from_config.is_empty() {
                c.values()
            } else {
                from_config
            };
            paths.extend(values.iter().cloned());
        }
        Some("http-header") => {
            if let Some(h) = c.http_header_config() {
                let name = h.http_header_name().unwrap_or("").to_ascii_lowercase();
                let mut vals: Vec<&str> = h.values().iter().map(String::as_str).collect();
                vals.sort_unstable();
                headers.push(format!("{name}={}", vals.join("|")));
            }
        }
        Some("http-request-method") => {
            if let Some(m) = c.http_request_method_config() {
                methods.extend(m.values().iter().cloned());
            }
        }
        // host-header and source-ip name per-environment resources; query strings are
        // compared as written.
        Some("query-string") => {
            if let Some(q) = c.query_string_config() {
                for kv in q.values() {
                    headers.push(format!(
                        "?{}={}",
                        kv.key().unwrap_or(""),
                        kv.value().unwrap_or("")
                    ));
                }
            }
        }
        _ => {}
    }
}

/// CPU units as ECS counts them: `"1 vCPU"` and `"1024"` are both `1024`.
pub fn cpu_units(s: &str) -> String {
    let t = s.trim().to_ascii_lowercase();
    if let Some(n) = t.strip_suffix("vcpu")
        && let Ok(x) = n.trim().parse::<f64>()
    {
        return format!("{}", (x * 1024.0).round() as i64);
    }
    t
}

/// Memory in MiB as ECS counts it: `"2 GB"` and `"2048"` are both `2048`.
pub fn memory_mib(s: &str) -> String {
    let t = s.trim().to_ascii_lowercase();
    if let Some(n) = t.strip_suffix("gb")
        && let Ok(x) = n.trim().parse::<f64>()
    {
        return format!("{}", (x * 1024.0).round() as i64);
    }
    if let Some(n) = t.strip_suffix("mb")
        && let Ok(x) = n.trim().parse::<f64>()
    {
        return format!("{}", x.round() as i64);
    }
    t
}

/// A secret reference reduced to what two environments can share: the secret's name
/// (without Secrets Manager's random six-character suffix) and JSON key; an SSM
/// parameter's name. The region, account and any pinned version or stage are left out.
pub fn secret_name(value_from: &str) -> String {
    if let Some(r) = super::taskdef::secret_ref(value_from) {
        let name = r.arn.rsplit(':').next().unwrap_or("");
        let name = match name.rsplit_once('-') {
            Some((base, suffix))
                if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                base
            }
            _ => name,
        };
        return match r.json_key {
            Some(k) => format!("{name}#{k}"),
            None => name.to_string(),
        };
    }
    // arn:aws:ssm:REGION:ACCOUNT:parameter/NAME, or a bare parameter name.
    match value_from.split_once(":parameter") {
        Some((_, name)) => name.trim_start_matches('/').to_string(),
        None => value_from.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{KeyValuePair, PortMapping, Secret, TransportProtocol};

    fn td(env: &[(&str, &str)], cpu: &str, secret: &str) -> TaskDefinition {
        let mut c = ContainerDefinition::builder()
            .name("app")
            .image("repo/api:2.0")
            .port_mappings(
                PortMapping::builder()
                    .container_port(8080)
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            );
        // Written in a different order each time: the fields sort them.
        for (k, v) in env.iter().rev() {
            c = c.environment(KeyValuePair::builder().name(*k).value(*v).build());
        }
        c = c.secrets(
            Secret::builder()
                .name("DB")
                .value_from(secret)
                .build()
                .expect("a secret with name and value_from"),
        );
        TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/api:3")
            .family("api")
            .cpu(cpu)
            .memory("2 GB")
            .container_definitions(c.build())
            .build()
    }

    #[test]
    fn units_order_and_secret_versions_are_normalised() {
        let a = task_definition_fields(&td(
            &[("A", "1"), ("B", "2")],
            "1 vCPU",
            "arn:aws:secretsmanager:us-east-1:111:secret:db-AbCdEf:password::v-1",
        ));
        let b = task_definition_fields(&td(
            &[("B", "2"), ("A", "1")],
            "1024",
            "arn:aws:secretsmanager:eu-west-1:222:secret:db-XyZ123:password:AWSCURRENT:",
        ));
        assert_eq!(a, b);
        assert_eq!(a["task.cpu"], "1024");
        assert_eq!(a["task.memory"], "2048");
        assert_eq!(a["container.app.env.A"], "1");
        assert_eq!(a["container.app.secret.DB"], "db#password");
        assert_eq!(a["container.app.essential"], "true");
        assert_eq!(a["container.app.ports"], "8080/tcp");
    }

    #[test]
    fn an_added_variable_is_a_new_field() {
        let a = task_definition_fields(&td(&[("A", "1")], "256", "db"));
        let b = task_definition_fields(&td(&[("A", "1"), ("DEBUG", "1")], "256", "db"));
        let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        assert_eq!(added, ["container.app.env.DEBUG"]);
    }

    #[test]
    fn secret_names_keep_what_environments_share() {
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbC123"),
            "prod/db"
        );
        assert_eq!(
            secret_name("arn:aws:ssm:us-east-1:1:parameter/app/token"),
            "app/token"
        );
        assert_eq!(secret_name("plain"), "plain");
        assert_eq!(memory_mib("512"), "512");
        assert_eq!(memory_mib("0.5GB"), "512");
        assert_eq!(cpu_units(".25 vcpu"), "256");
    }
}
