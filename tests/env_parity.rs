//! `cutover diff FILE --between staging production` against moto: two environments of one
//! release, each an ECS service running what the release declares for it. The declared
//! differences (task count, an environment variable by variable) are classed declared
//! and the diff exits 0; a variable added by hand to production's task definition is
//! drift (exit 2, named); once production runs the declared task definition again, 0.
//! Needs moto (tests/support/moto.rs): without it the test fails.

mod support;

use std::path::Path;
use std::process::Output;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, LaunchType, NetworkMode, PortMapping,
};
use support::ecs::*;
use support::moto;
use support::output_text as text;

struct Env {
    cluster: String,
    service: String,
    family: String,
}

async fn register(
    c: &cutover::platform::ecs::aws::Clients,
    family: &str,
    env: &[(&str, &str)],
) -> String {
    let mut container = ContainerDefinition::builder()
        .name("app")
        .image("repo/worker:1.0")
        .memory(512)
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(8080).build());
    for (k, v) in env {
        container = container.environment(KeyValuePair::builder().name(*k).value(*v).build());
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
        .expect("register task definition")
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("an ARN")
        .to_string()
}

async fn environment(
    c: &cutover::platform::ecs::aws::Clients,
    ep: &str,
    prefix: &str,
    mode: &str,
    count: i32,
) -> (Env, String) {
    let name = unique(prefix);
    let env = Env {
        cluster: format!("{name}-cluster"),
        service: format!("{name}-svc"),
        family: format!("{name}-td"),
    };
    c.ecs
        .create_cluster()
        .cluster_name(&env.cluster)
        .send()
        .await
        .expect("create cluster");
    let td = register(c, &env.family, &[("MODE", mode)]).await;
    c.ecs
        .create_service()
        .cluster(&env.cluster)
        .service_name(&env.service)
        .task_definition(&td)
        .desired_count(count)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network_configuration(&moto::network(ep)))
        .send()
        .await
        .expect("create service");
    (env, td)
}

fn release_text(name: &str, staging: &Env, production: &Env) -> String {
    format!(
        r#"
[vars]
cluster = "unset"
service = "unset"
mode = "fast"
count = 1

[release]
name = "{name}"
platform = "ecs"

[[service]]
name = "worker"
strategy = "rolling"
rolling = {{ batch = 1, max_unavailable = 0 }}
[service.ecs]
cluster = "${{cluster}}"
service = "${{service}}"
container = "app"
image = "repo/worker:1.0"
region = "{REGION}"
desired_count = "${{count}}"
env = {{ MODE = "${{mode}}" }}

[environments.staging]
vars = {{ cluster = "{sc}", service = "{ss}", mode = "fast", count = 2 }}

[environments.production]
requires = ["staging"]
vars = {{ cluster = "{pc}", service = "{ps}", mode = "safe", count = 3 }}
"#,
        sc = staging.cluster,
        ss = staging.service,
        pc = production.cluster,
        ps = production.service,
    )
}

fn diff(ep: &str, dir: &Path, file: &Path, json: bool) -> Output {
    let mut cmd = cutover_cli(ep, dir);
    cmd.args([
        "diff",
        &file.to_string_lossy(),
        "--between",
        "staging",
        "production",
    ]);
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.output().expect("run cutover diff")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_added_by_hand_to_production_is_drift_until_it_is_removed() {
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let c = clients(&conf);
    let (staging, _) = environment(&c, &ep, "par-st", "fast", 2).await;
    let (production, prod_td) = environment(&c, &ep, "par-pr", "safe", 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        release_text(&unique("parity"), &staging, &production),
    )
    .expect("write release");

    // Both environments run what the release declares for them: every difference is declared.
    let out = diff(&ep, dir.path(), &file, true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        report["between"],
        serde_json::json!(["staging", "production"])
    );
    assert_eq!(report["source"], "ecs");
    assert_eq!(report["images"][0]["same"], true, "{report:#}");
    let diffs = report["differences"].as_array().expect("differences");
    let paths: Vec<(&str, &str)> = diffs
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or(""),
                d["class"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("container.app.env.MODE", "declared"),
            ("service.desired_count", "declared")
        ],
        "{report:#}"
    );
    // Environment values are fingerprints, never the values.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"safe\""));

    // Someone adds a variable to production's task definition by hand.
    let by_hand = register(
        &c,
        &production.family,
        &[("MODE", "safe"), ("EXTRA_FLAG", "1")],
    )
    .await;
    c.ecs
        .update_service()
        .cluster(&production.cluster)
        .service(&production.service)
        .task_definition(&by_hand)
        .send()
        .await
        .expect("update service by hand");
    let out = diff(&ep, dir.path(), &file, false);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("DRIFT    worker: container.app.env.EXTRA_FLAG"),
        "{t}"
    );
    assert!(t.contains("not declared by the release"), "{t}");
    assert!(t.contains("declared worker: service.desired_count"), "{t}");

    // The drift is removed: production runs the declared task definition again.
    c.ecs
        .update_service()
        .cluster(&production.cluster)
        .service(&production.service)
        .task_definition(&prod_td)
        .send()
        .await
        .expect("update service back");
    let out = diff(&ep, dir.path(), &file, false);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("no drift: 2 difference(s), every one declared"),
        "{t}"
    );
}

#[test]
fn between_needs_two_declared_environments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.toml");
    let fake = Env {
        cluster: "c".into(),
        service: "s".into(),
        family: "f".into(),
    };
    let _ = &fake.family;
    std::fs::write(&file, release_text("parity-args", &fake, &fake)).expect("write release");
    let out = std::process::Command::new(support::CUTOVER)
        .args([
            "diff",
            &file.to_string_lossy(),
            "--between",
            "staging",
            "prod",
        ])
        .output()
        .expect("run cutover diff");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("prod") && t.contains("production"),
        "names the unknown one and the nearest: {t}"
    );
}
