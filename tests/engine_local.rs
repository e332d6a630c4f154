//! The engine on the real local platform: demo-service processes behind the proxy,
//! real health checks, real traffic and the real judge.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::engine::{
    Command, Engine, EngineOptions, MemoryRecorder, RealSmoke, ServiceStatus, SystemClock, spawn,
};
use cutover::platform::Platform;
use cutover::platform::local::LocalPlatform;
use cutover::platform::local::from_release::local_config;
use support::net::free_port;

/// The live split without revisions at 0 %.
async fn live(p: &LocalPlatform) -> Vec<(String, u8)> {
    p.weights("api")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect()
}

fn release(target_args: &str, steps: &str) -> (cutover::release::Release, u16) {
    let port = free_port();
    let text = format!(
        r#"
[release]
name = "local-test"
[[service]]
name = "api"
strategy = "canary"
steps = {steps}
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[[service.smoke]]
name = "root"
request = "GET /healthz"
[service.analysis]
min_requests = 30
min_duration = "3s"
[service.local]
listen = "127.0.0.1:{port}"
drain_timeout = "1s"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2", args = [{target_args}] }}
"#
    );
    let r = cutover::release::load_str(Path::new("t.toml"), &text, Path::new(".")).unwrap();
    (r, port)
}

async fn platform(r: &cutover::release::Release, dir: &Path) -> Arc<LocalPlatform> {
    let cfg = local_config(
        r,
        dir,
        Path::new(env!("CARGO_BIN_EXE_cutover")),
        Path::new("."),
        None,
    )
    .unwrap();
    Arc::new(LocalPlatform::start(cfg).await.unwrap())
}

/// Steady requests to the service's address until dropped.
fn load(port: u16) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let url = format!("http://127.0.0.1:{port}/api/x");
            let _ = cutover::engine::http::request("GET", &url, &[], None, Duration::from_secs(2))
                .await;
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regressing_candidate_is_caught_and_traffic_returns_to_stable() {
    let dir = tempfile::tempdir().unwrap();
    let (r, port) = release(
        "\"--error-rate\", \"0.4\"",
        "[ { set_weight = 30 }, { analysis = \"20s\" } ]",
    );
    let p = platform(&r, dir.path()).await;
    let plan = cutover::plan::plan(&r);
    let rec = MemoryRecorder::new();
    let engine = Engine::new(
        r,
        &plan,
        p.clone(),
        Arc::new(SystemClock),
        Box::new(rec.clone()),
        RealSmoke::shared(),
        EngineOptions::default(),
    )
    .unwrap();
    let handle = spawn(engine);
    let traffic = load(port);
    assert!(handle.send(Command::Start, "t").await.is_ok());
    let out = tokio::time::timeout(Duration::from_secs(60), handle.join)
        .await
        .expect("release within 60 s")
        .unwrap()
        .unwrap();
    traffic.abort();
    let api = out.state.service("api").unwrap();
    assert_eq!(api.status, ServiceStatus::RolledBack, "{api:?}");
    assert!(
        api.reason
            .as_deref()
            .unwrap_or("")
            .contains("analysis failed"),
        "{api:?}"
    );
    assert_eq!(out.exit_code, 3);
    // The proxy's live split is all stable, and the candidate's processes are gone.
    assert_eq!(live(&p).await, vec![("v1".to_string(), 100)]);
    assert!(p.pids("api", "v2").await.is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_command_at_a_gate_returns_all_traffic_to_stable() {
    let dir = tempfile::tempdir().unwrap();
    let (r, port) = release(
        "",
        "[ { set_weight = 50 }, { analysis = \"4s\" }, { pause = \"forever\" } ]",
    );
    let p = platform(&r, dir.path()).await;
    let plan = cutover::plan::plan(&r);
    let engine = Engine::new(
        r,
        &plan,
        p.clone(),
        Arc::new(SystemClock),
        Box::new(MemoryRecorder::new()),
        RealSmoke::shared(),
        EngineOptions::default(),
    )
    .unwrap();
    let mut state = engine.watch();
    let handle = spawn(engine);
    let traffic = load(port);
    assert!(handle.send(Command::Start, "t").await.is_ok());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        tokio::time::timeout(Duration::from_secs(40), state.changed())
            .await
            .unwrap()
            .unwrap();
        let st = state.borrow().service("api").unwrap().clone();
        if st.status == ServiceStatus::Paused {
            assert!(st.gate.is_some(), "{st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reached the forever pause: {st:?}"
        );
    }
    assert_eq!(
        live(&p).await,
        vec![("v1".to_string(), 50), ("v2".to_string(), 50)]
    );
    let t0 = Instant::now();
    assert!(
        handle
            .send(
                Command::Rollback {
                    service: Some("api".into())
                },
                "t"
            )
            .await
            .is_ok()
    );
    let took = t0.elapsed();
    assert_eq!(live(&p).await, vec![("v1".to_string(), 100)]);
    eprintln!("rollback command to 100 % stable: {took:?}");
    let out = tokio::time::timeout(Duration::from_secs(30), handle.join)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    traffic.abort();
    assert_eq!(
        out.state.service("api").unwrap().status,
        ServiceStatus::RolledBack
    );
    p.shutdown().await;
}
