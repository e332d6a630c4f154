//! Every shipped example parses and validates; the hand-written parser agrees with serde
//! on them; the key lists the parser accepts are exactly the schema's properties.

mod support;

use std::path::{Path, PathBuf};

use cutover::release::{self, Release, parse::keys};
use support::release::{example, toml_files};

fn examples() -> Vec<PathBuf> {
    toml_files("examples")
}

#[test]
fn every_example_validates() {
    let files = examples();
    assert!(
        files.len() >= 4,
        "expected at least 4 examples, found {}",
        files.len()
    );
    for f in files {
        if let Err(diags) = release::check_all(&f, &release::LoadOptions::default()) {
            panic!(
                "{} is invalid:\n{}",
                f.display(),
                diags.iter().map(|d| d.to_string()).collect::<String>()
            );
        }
    }
}

#[test]
fn the_examples_cover_what_the_docs_promise() {
    let load = example;
    let bg = load("blue-green.toml");
    assert_eq!(bg.services.len(), 1);
    assert_eq!(bg.services[0].strategy, release::StrategyKind::BlueGreen);
    let diamond = load("canary-diamond.toml");
    assert_eq!(diamond.services.len(), 6);
    let orders = diamond.service("orders").expect("orders");
    assert_eq!(orders.depends_on, ["payments", "inventory"]);
    for side in ["payments", "inventory"] {
        assert_eq!(diamond.service(side).expect(side).depends_on, ["ledger"]);
    }
    assert_eq!(load("migration.toml").migrations.len(), 1);
    let ecs = load("ecs-canary.toml");
    assert_eq!(ecs.release.platform, release::PlatformKind::Ecs);
    let api = ecs
        .service("api")
        .expect("api")
        .ecs
        .clone()
        .expect("api ecs");
    assert!(api.test_listener_rule.is_some());
    assert_eq!(api.region.as_deref(), Some("us-east-1"));
    let worker = ecs.service("worker").expect("worker");
    assert_eq!(worker.strategy, release::StrategyKind::Rolling);
    // The ECS blue-green example: two services, a listener ARN and a rule ARN, and every
    // task-definition change a release can make.
    let bg = load("ecs-blue-green.toml");
    assert_eq!(bg.release.platform, release::PlatformKind::Ecs);
    assert_eq!(bg.services.len(), 2);
    assert!(
        bg.services
            .iter()
            .all(|s| s.strategy == release::StrategyKind::BlueGreen)
    );
    let auth = bg.service("auth").expect("auth").ecs.clone().expect("ecs");
    assert!(
        auth.listener_rule
            .as_deref()
            .is_some_and(|r| r.contains(":listener/"))
    );
    assert_eq!(auth.desired_count, Some(3));
    assert_eq!(auth.secret_env.len(), 1);
    let web = bg.service("web").expect("web");
    assert_eq!(web.depends_on, ["auth"]);
    let web = web.ecs.clone().expect("ecs");
    assert_eq!(web.url.as_deref(), Some("https://www.example.com"));
    assert_eq!(
        (web.cpu.as_deref(), web.memory.as_deref()),
        (Some("1024"), Some("2048"))
    );
    assert_eq!(
        web.env.get("FEATURE_NEW_CART").map(String::as_str),
        Some("on")
    );
}

#[test]
fn the_environment_examples_differ_by_variable() {
    use support::release::example_in;
    // Local: ports (and replicas) by variable; production requires staging.
    let local = |env| example_in("environments-local.toml", Some(env));
    let (staging, production) = (local("staging"), local("production"));
    let listen = |r: &Release, s: &str| r.service(s).unwrap().local.clone().unwrap().listen;
    assert_eq!(listen(&staging, "api"), "127.0.0.1:18411");
    assert_eq!(listen(&production, "api"), "127.0.0.1:18421");
    assert_eq!(listen(&production, "web"), "127.0.0.1:18422");
    assert_eq!(staging.release.environment.as_deref(), Some("staging"));
    assert_eq!(
        production.release.environment.as_deref(),
        Some("production")
    );
    assert_eq!(
        production
            .service("api")
            .unwrap()
            .local
            .clone()
            .unwrap()
            .replicas,
        3
    );
    // ECS: cluster, service, listener rule, target groups and counts by variable.
    let ecs = |env| {
        example_in("environments-ecs.toml", Some(env))
            .service("api")
            .unwrap()
            .ecs
            .clone()
            .unwrap()
    };
    let (s, p) = (ecs("staging"), ecs("production"));
    assert_eq!(
        (s.cluster.as_str(), p.cluster.as_str()),
        ("staging", "prod")
    );
    assert_eq!(
        (s.service.as_str(), p.service.as_str()),
        ("api-staging", "api")
    );
    assert_eq!((s.desired_count, p.desired_count), (Some(1), Some(4)));
    assert_ne!(s.listener_rule, p.listener_rule);
    assert_ne!(s.target_groups, p.target_groups);
    assert_eq!(s.image, p.image, "both deploy the same image");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/environments-ecs.toml");
    let loaded = release::load(
        &path,
        &release::LoadOptions {
            env: Some("production".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let prod = loaded
        .environments
        .iter()
        .find(|e| e.name == "production")
        .unwrap();
    assert_eq!(prod.requires, ["staging"]);
}

#[test]
fn parser_and_serde_read_the_examples_alike() {
    for f in examples() {
        let text = std::fs::read_to_string(&f).expect("read");
        let envs = release::environments::declared_names(&text);
        if envs.is_empty() && !text.contains("[vars]") {
            let ours = release::load(&f, &Default::default())
                .expect("valid")
                .release;
            let theirs: Release =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: serde: {e}", f.display()));
            assert_eq!(ours, theirs, "{}", f.display());
            continue;
        }
        // With variables or environments, serde reads the resolved release (`render`).
        for env in envs {
            let opts = release::LoadOptions {
                env: Some(env.clone()),
                ..Default::default()
            };
            let ours = release::load(&f, &opts).expect("valid").release;
            let rendered = release::render::render(&ours).expect("render");
            let theirs: Release = toml::from_str(&rendered)
                .unwrap_or_else(|e| panic!("{} ({env}): serde: {e}", f.display()));
            assert_eq!(ours, theirs, "{} ({env})", f.display());
        }
    }
}

fn properties(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
    let node = match def {
        None => schema,
        Some(d) => &schema["$defs"][d],
    };
    let mut keys: Vec<String> = node["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties for {def:?}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

#[test]
fn parser_keys_match_the_published_schema() {
    let schema = release::json_schema();
    assert_eq!(properties(&schema, None), sorted(keys::TOP));
    let pairs: &[(&str, &[&str])] = &[
        ("EnvironmentTable", keys::ENVIRONMENT),
        ("ReleaseSection", keys::RELEASE),
        ("Notify", keys::NOTIFY),
        ("GrafanaNotify", keys::GRAFANA),
        ("Service", keys::SERVICE),
        ("Linear", keys::LINEAR),
        ("BlueGreen", keys::BLUE_GREEN),
        ("Rolling", keys::ROLLING),
        ("Health", keys::HEALTH),
        ("Smoke", keys::SMOKE),
        ("Analysis", keys::ANALYSIS),
        ("LocalService", keys::LOCAL),
        ("RevisionRun", keys::REVISION),
        ("EcsService", keys::ECS),
        ("MetricsSection", keys::METRICS),
        ("PrometheusQueries", keys::PROMETHEUS_QUERIES),
        ("FlagsSection", keys::FLAGS),
        ("Tenant", keys::TENANT),
        ("TenantSmoke", keys::TENANT_SMOKE),
        ("TenantAnalysis", keys::TENANT_ANALYSIS),
        ("TenantApproval", keys::TENANT_APPROVAL),
        ("Ring", keys::RING),
    ];
    for (def, keys) in pairs.iter().copied() {
        assert_eq!(properties(&schema, Some(def)), sorted(keys), "{def}");
    }
    assert_eq!(
        properties(&schema, Some("Migration")),
        sorted(keys::MIGRATION)
    );
    // Every field is documented for editors.
    for def in schema["$defs"].as_object().expect("$defs").values() {
        if let Some(props) = def["properties"].as_object() {
            for (k, v) in props {
                let described = v.get("description").is_some()
                    || v["allOf"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x.get("description").is_some()));
                assert!(described, "property `{k}` has no description: {v}");
            }
        }
    }
}

#[test]
fn schema_command_prints_the_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("schema")
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert_eq!(v["title"], "cutover release");
    // Environments: overlays need no key of what they change, and a number may be written
    // as a whole variable reference.
    assert!(
        v["properties"]["environments"]["additionalProperties"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/EnvironmentTable"))
    );
    assert!(v["$defs"]["ServiceOverlay"]["required"].is_null());
    assert!(v["$defs"]["ServiceOverlay"]["properties"]["name"].is_null());
    assert!(v["$defs"]["LocalServiceOverlay"]["required"].is_null());
    assert!(
        v["$defs"]["LocalService"]["properties"]["replicas"]["anyOf"][1]["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("\\$\\{"))
    );
    assert!(
        v["$defs"]["Step"]["oneOf"]
            .as_array()
            .is_some_and(|a| a.len() == 4)
    );
}

#[test]
fn readme_documents_every_key() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let all: &[&[&str]] = &[
        keys::ENVIRONMENT,
        keys::TOP,
        keys::RELEASE,
        keys::NOTIFY,
        keys::GRAFANA,
        keys::SERVICE,
        keys::LINEAR,
        keys::BLUE_GREEN,
        keys::ROLLING,
        keys::HEALTH,
        keys::SMOKE,
        keys::ANALYSIS,
        keys::LOCAL,
        keys::REVISION,
        keys::ECS,
        keys::MIGRATION,
        keys::METRICS,
        keys::PROMETHEUS_QUERIES,
        keys::FREEZE,
        keys::FLAGS,
        keys::TENANT,
        keys::TENANT_SMOKE,
        keys::TENANT_ANALYSIS,
        keys::TENANT_APPROVAL,
        keys::RING,
    ];
    for key in all.iter().flat_map(|k| k.iter()) {
        let forms = [
            format!("`{key}`"),
            format!("`{key} ="),
            format!("`{key}` /"),
            format!("/ `{key}`"),
            format!("{{ {key},"),
            format!(", {key} }}"),
            format!("[{key}]"),
        ];
        assert!(
            forms.iter().any(|f| readme.contains(f.as_str())),
            "README does not document `{key}`"
        );
    }
}
