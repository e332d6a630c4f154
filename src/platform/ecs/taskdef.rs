//! Task definitions: derive the release's revision from the running one (image, environment,
//! secrets, cpu/memory for the named container; everything else copied), and describe what
//! would change. The running revision is never modified: ECS task definitions are
//! immutable, a release always registers a new revision.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, Secret, TaskDefinition};

use crate::release::EcsService;

/// The revision name of a task definition: the tag of the release's container image, by
/// the plan's rule (`.../api:2.3.1` is `2.3.1`), so it names the plan's candidate.
pub use crate::plan::revision_of_image;

/// Why a task definition cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error(
        "task definition {task_definition} has no container named \"{container}\" (it has: {found})"
    )]
    NoSuchContainer {
        task_definition: String,
        container: String,
        found: String,
    },
    #[error("task definition {0} has no family")]
    NoFamily(String),
}

/// A new task definition, ready to register: the current one with the release's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskDefinition {
    pub family: String,
    pub base_arn: String,
    pub def: TaskDefinition,
}

/// The named container of `td`, or a clear error.
pub fn container<'a>(
    td: &'a TaskDefinition,
    name: &str,
) -> Result<&'a ContainerDefinition, DeriveError> {
    td.container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .ok_or_else(|| DeriveError::NoSuchContainer {
            task_definition: td.task_definition_arn().unwrap_or("(unknown)").to_string(),
            container: name.to_string(),
            found: td
                .container_definitions()
                .iter()
                .filter_map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Apply the release's changes to a copy of `current`. `pins` maps a Secrets Manager ARN
/// to the version id found by the preflight: references to that secret without a version
/// are pinned to it, so the revision (and a rollback to it) keeps using that version.
pub fn derive(
    current: &TaskDefinition,
    cfg: &EcsService,
    pins: &BTreeMap<String, String>,
) -> Result<NewTaskDefinition, DeriveError> {
    let base_arn = current
        .task_definition_arn()
        .unwrap_or("(unknown)")
        .to_string();
    let family = current
        .family()
        .ok_or_else(|| DeriveError::NoFamily(base_arn.clone()))?
        .to_string();
    container(current, &cfg.container)?;
    let mut def = current.clone();
    if let Some(cpu) = &cfg.cpu {
        def.cpu = Some(cpu.clone());
    }
    if let Some(memory) = &cfg.memory {
        def.memory = Some(memory.clone());
    }
    for c in def.container_definitions.iter_mut().flatten() {
        if c.name() != Some(cfg.container.as_str()) {
            continue;
        }
        c.image = Some(cfg.image.clone());
        if !cfg.env.is_empty() {
            let env = c.environment.get_or_insert_with(Vec::new);
            for (k, v) in &cfg.env {
                env.retain(|kv| kv.name() != Some(k.as_str()));
                env.push(KeyValuePair::builder().name(k).value(v).build());
            }
            env.sort_by(|a, b| a.name().cmp(&b.name()));
        }
        if !cfg.secret_env.is_empty() {
            let secrets = c.secrets.get_or_insert_with(Vec::new);
            for (k, arn) in &cfg.secret_env {
                secrets.retain(|s| s.name() != k);
                if let Ok(s) = Secret::builder().name(k).value_from(arn).build() {
                    secrets.push(s);
                }
            }
            secrets.sort_by(|a, b| a.name().cmp(b.name()));
        }
    }
    // Pin every Secrets Manager reference of every container (sidecars included) to the
    // version the preflight found.
    for c in def.container_definitions.iter_mut().flatten() {
        for s in c.secrets.iter_mut().flatten() {
            if let Some(pinned) = pin(&s.value_from, pins) {
                s.value_from = pinned;
            }
        }
    }
    Ok(NewTaskDefinition {
        family,
        base_arn,
        def,
    })
}

/// A parsed `valueFrom` of a Secrets Manager reference:
/// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's ARN without the trailing fields.
    pub arn: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

/// Parse a `valueFrom`; `None` for SSM parameters and anything not a Secrets Manager ARN.
pub fn secret_ref(value_from: &str) -> Option<SecretRef> {
    let parts: Vec<&str> = value_from.split(':').collect();
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "secretsmanager" || parts[5] != "secret"
    {
        return None;
    }
    let field = |i: usize| {
        parts
            .get(i)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
    };
    Some(SecretRef {
        arn: parts[..7].join(":"),
        json_key: field(7),
        version_stage: field(8),
        version_id: field(9),
    })
}

/// Every secret reference of a task definition: (container, variable, valueFrom).
pub fn secret_refs(td: &TaskDefinition) -> Vec<(String, String, String)> {
    td.container_definitions()
        .iter()
        .flat_map(|c| {
            c.secrets().iter().map(move |s| {
                (
                    c.name().unwrap_or("").to_string(),
                    s.name().to_string(),
                    s.value_from().to_string(),
                )
            })
        })
        .collect()
}

/// `value_from` with the pinned version of its secret (`pins`: full ARN → version id), or
/// `None` when it already names a version or stage, or its secret is not pinned. A partial
/// ARN (without the random suffix) matches the full one; a JSON key is kept.
pub(crate) fn pin(value_from: &str, pins: &BTreeMap<String, String>) -> Option<String> {
    let r = secret_ref(value_from)?;
    if r.version_id.is_some() || r.version_stage.is_some() {
        return None; // the task definition already chose a version
    }
    let version = pins.get(&r.arn).or_else(|| {
        // A partial ARN (without the random suffix) matches the full one found.
        pins.iter()
            .find(|(full, _)| full.starts_with(&format!("{}-", r.arn)))
            .map(|(_, v)| v)
    })?;
    let full = pins
        .keys()
        .find(|k| **k == r.arn || k.starts_with(&format!("{}-", r.arn)))
        .cloned()
        .unwrap_or(r.arn);
    Some(format!(
        "{full}:{}::{version}",
        r.json_key.unwrap_or_default()
    ))
}

/// One difference between the running task definition and the release's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `image`, `env.LOG_LEVEL`, `secret.DB_PASSWORD`, `cpu`, `memory`.
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What `new` changes against `old` for `container` (and the task-level cpu/memory).
/// Secrets show their references (ARNs), never values; environment values (which may be
/// secrets) show as fingerprints, so a change is visible and the value is not.
pub fn diff(old: &TaskDefinition, new: &TaskDefinition, container_name: &str) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |field: String, from: Option<&str>, to: Option<&str>| {
        if from != to {
            out.push(Change {
                field,
                from: from.map(str::to_string),
                to: to.map(str::to_string),
            });
        }
    };
    push("cpu".into(), old.cpu(), new.cpu());
    push("memory".into(), old.memory(), new.memory());
    let (Ok(a), Ok(b)) = (
        container(old, container_name),
        container(new, container_name),
    ) else {
        return out;
    };
    push("image".into(), a.image(), b.image());
    let env = |c: &ContainerDefinition| -> BTreeMap<String, String> {
        c.environment()
            .iter()
            .map(|kv| {
                (
                    kv.name().unwrap_or("").to_string(),
                    crate::secrets::fingerprint(kv.value().unwrap_or("")),
                )
            })
            .collect()
    };
    let secrets = |c: &ContainerDefinition| -> BTreeMap<String, String> {
        c.secrets()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect()
    };
    for (prefix, old_map, new_map) in [("env", env(a), env(b)), ("secret", secrets(a), secrets(b))]
    {
        let keys: std::collections::BTreeSet<&String> =
            old_map.keys().chain(new_map.keys()).collect();
        for k in keys {
            push(
                format!("{prefix}.{k}"),
                old_map.get(k).map(String::as_str),
                new_map.get(k).map(String::as_str),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EcsService {
        EcsService {
            cluster: "c".into(),
            service: "s".into(),
            container: "app".into(),
            image: "repo/api:2.0".into(),
            listener_rule: None,
            target_groups: vec![],
            secrets: vec![],
            region: None,
            test_listener_rule: None,
            url: None,
            desired_count: None,
            env: BTreeMap::from([("LOG".to_string(), "debug".to_string())]),
            secret_env: BTreeMap::from([(
                "DB".to_string(),
                "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf".to_string(),
            )]),
            cpu: Some("512".into()),
            memory: None,
        }
    }

    fn current() -> TaskDefinition {
        TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/api:3")
            .family("api")
            .cpu("256")
            .memory("512")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("repo/api:1.0")
                    .environment(KeyValuePair::builder().name("LOG").value("info").build())
                    .environment(KeyValuePair::builder().name("KEEP").value("1").build())
                    .secrets(
                        Secret::builder()
                            .name("API_KEY")
                            .value_from("arn:aws:secretsmanager:us-east-1:1:secret:key-123456")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("sidecar")
                    .image("envoy:1")
                    .build(),
            )
            .build()
    }

    #[test]
    fn derive_changes_only_the_named_container_and_pins_secrets() {
        let pins = BTreeMap::from([
            (
                "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf".to_string(),
                "v-db".to_string(),
            ),
            (
                "arn:aws:secretsmanager:us-east-1:1:secret:key-123456".to_string(),
                "v-key".to_string(),
            ),
        ]);
        let old = current();
        let new = derive(&old, &cfg(), &pins).unwrap();
        assert_eq!(new.family, "api");
        let app = container(&new.def, "app").unwrap();
        assert_eq!(app.image(), Some("repo/api:2.0"));
        let sidecar = container(&new.def, "sidecar").unwrap();
        assert_eq!(sidecar.image(), Some("envoy:1"));
        let changes = diff(&old, &new.def, "app");
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["cpu", "image", "env.LOG", "secret.API_KEY", "secret.DB"]
        );
        let db = changes.iter().find(|c| c.field == "secret.DB").unwrap();
        assert_eq!(db.from, None);
        // An environment value is shown by its fingerprint only.
        let log = changes.iter().find(|c| c.field == "env.LOG").unwrap();
        assert_eq!(log.to, Some(crate::secrets::fingerprint("debug")));
        assert!(!format!("{changes:?}").contains("debug"), "{changes:?}");
        assert_eq!(
            db.to.as_deref(),
            Some("arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf:::v-db")
        );
        let key = changes
            .iter()
            .find(|c| c.field == "secret.API_KEY")
            .unwrap();
        assert_eq!(
            key.to.as_deref(),
            Some("arn:aws:secretsmanager:us-east-1:1:secret:key-123456:::v-key")
        );
        // The running definition is untouched.
        assert_eq!(
            container(&old, "app").unwrap().image(),
            Some("repo/api:1.0")
        );
    }

    #[test]
    fn missing_container_names_the_ones_there() {
        let mut c = cfg();
        c.container = "web".into();
        let err = derive(&current(), &c, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task definition arn:aws:ecs:us-east-1:1:task-definition/api:3 has no container named \"web\" (it has: app, sidecar)"
        );
    }

    #[test]
    fn secret_refs_parse_and_pinned_ones_stay() {
        let r =
            secret_ref("arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC:password:AWSPREVIOUS:")
                .unwrap();
        assert_eq!(r.arn, "arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC");
        assert_eq!(r.json_key.as_deref(), Some("password"));
        assert_eq!(r.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(r.version_id, None);
        assert_eq!(secret_ref("arn:aws:ssm:eu-west-1:1:parameter/x"), None);
        assert_eq!(secret_ref("/plain/parameter"), None);
        let pins = BTreeMap::from([(r.arn.clone(), "v9".to_string())]);
        assert_eq!(
            pin(
                "arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC:password:AWSPREVIOUS:",
                &pins
            ),
            None
        );
        // A partial ARN (no random suffix) is pinned to the full one.
        let pins = BTreeMap::from([(
            "arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC123".to_string(),
            "v9".to_string(),
        )]);
        assert_eq!(
            pin("arn:aws:secretsmanager:eu-west-1:1:secret:db:user::", &pins).as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:1:secret:db-AbC123:user::v9")
        );
    }

    #[test]
    fn revision_is_the_image_tag() {
        assert_eq!(revision_of_image("1.dkr.ecr.x/api:2.3.1"), "2.3.1");
        assert_eq!(revision_of_image("nginx"), "nginx");
    }
}
