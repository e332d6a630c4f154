//! Rollback latency on the local platform: from a rollback command (or a judge's fail
//! verdict) to the proxy sending 100 % of traffic to the stable revision, p50/p99.
//!
//! cargo bench --bench rollback_latency   (CUTOVER_ROLLBACKS, default 30)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::engine::{
    Command, Engine, EngineOptions, EventKind, MemoryRecorder, RealSmoke, ServiceStatus,
    SystemClock, spawn,
};
use cutover::judge::Outcome;
use cutover::platform::Platform;
use cutover::platform::local::LocalPlatform;
use cutover::platform::local::from_release::local_config;

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn release(port: u16, target_args: &str, steps: &str) -> cutover::release::Release {
    let text = format!(
        r#"
[release]
name = "rollback-bench"
[[service]]
name = "api"
strategy = "canary"
steps = {steps}
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.analysis]
min_requests = 30
min_duration = "3s"
[service.local]
listen = "127.0.0.1:{port}"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2", args = [{target_args}] }}
"#
    );
    cutover::release::load_str(Path::new("b.toml"), &text, Path::new(".")).unwrap()
}

async fn all_on_stable(p: &LocalPlatform) -> bool {
    p.weights("api")
        .await
        .map(|w| w.iter().all(|(r, x)| *x == 0 || r == "v1"))
        .unwrap_or(false)
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

async fn run(iterations: usize, verdict: bool) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let listen = port();
    let r = if verdict {
        release(
            listen,
            "\"--error-rate\", \"0.5\"",
            "[ { set_weight = 50 }, { analysis = \"30s\" } ]",
        )
    } else {
        release(
            listen,
            "",
            "[ { set_weight = 50 }, { pause = \"forever\" } ]",
        )
    };
    let cfg = local_config(
        &r,
        dir.path(),
        Path::new(env!("CARGO_BIN_EXE_cutover")),
        Path::new("."),
        None,
    )
    .unwrap();
    let p = Arc::new(LocalPlatform::start(cfg).await.unwrap());
    let plan = cutover::plan::plan(&r);
    let engine = Engine::new(
        r,
        &plan,
        p.clone(),
        Arc::new(SystemClock),
        Box::new(MemoryRecorder::new()),
        RealSmoke::shared(),
        EngineOptions {
            stay_alive: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = engine.subscribe();
    let mut state = engine.watch();
    let h = spawn(engine);
    let load = tokio::spawn(async move {
        loop {
            let url = format!("http://127.0.0.1:{listen}/api/x");
            let _ = cutover::engine::http::request("GET", &url, &[], None, Duration::from_secs(1))
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    h.send(Command::Start, "bench").await.unwrap();
    let mut out = Vec::new();
    for i in 0..iterations {
        if i > 0 {
            h.send(
                Command::Retry {
                    service: "api".into(),
                },
                "bench",
            )
            .await
            .unwrap();
        }
        if verdict {
            // Wait for the judge's fail verdict, then time until the proxy is all stable.
            let t0 = loop {
                let e = events.recv().await.unwrap();
                if let EventKind::Verdict { verdict, .. } = &e.kind
                    && verdict.outcome == Outcome::Fail
                {
                    break Instant::now();
                }
            };
            while !all_on_stable(&p).await {
                tokio::task::yield_now().await;
            }
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        } else {
            loop {
                let st = state.borrow_and_update().service("api").map(|s| s.status);
                if st == Some(ServiceStatus::Paused) {
                    break;
                }
                state.changed().await.unwrap();
            }
            let t0 = Instant::now();
            h.send(
                Command::Rollback {
                    service: Some("api".into()),
                },
                "bench",
            )
            .await
            .unwrap();
            while !all_on_stable(&p).await {
                tokio::task::yield_now().await;
            }
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        // Let the candidate retire before the retry.
        loop {
            let s = state.borrow_and_update().service("api").cloned();
            if s.is_some_and(|s| s.status == ServiceStatus::RolledBack && !s.candidate_running) {
                break;
            }
            state.changed().await.unwrap();
        }
    }
    load.abort();
    h.send(Command::Abort, "bench").await.ok();
    drop(h);
    p.shutdown().await;
    out
}

fn main() {
    let n: usize = std::env::var("CUTOVER_ROLLBACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cmd = rt.block_on(run(n, false));
    println!(
        "rollback latency, command to 100 % stable on the local proxy: n={} p50 {:.2} ms p99 {:.2} ms max {:.2} ms (target p99 < 100 ms)",
        cmd.len(),
        pct(&mut cmd, 0.5),
        pct(&mut cmd, 0.99),
        pct(&mut cmd, 1.0)
    );
    let mut ver = rt.block_on(run((n / 3).max(3), true));
    println!(
        "rollback latency, fail verdict to 100 % stable on the local proxy: n={} p50 {:.2} ms p99 {:.2} ms max {:.2} ms (target p99 < 100 ms)",
        ver.len(),
        pct(&mut ver, 0.5),
        pct(&mut ver, 0.99),
        pct(&mut ver, 1.0)
    );
}
