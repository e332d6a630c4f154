//! Engine overhead: drive a release of 1,000 services on the fake platform with the fake
//! clock (no waiting, no I/O) and report the wall time per journaled transition.
//!
//! cargo bench --bench engine_overhead

use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::engine::testing::{FakePlatform, ScriptedSmoke};
use cutover::engine::{Command, Engine, EngineOptions, FakeClock, MemoryRecorder, spawn};

fn release(n: usize) -> cutover::release::Release {
    let mut text =
        String::from("[release]\nname = \"bench\"\nplatform = \"local\"\nmax_parallel = 1000\n");
    for i in 0..n {
        // A chain every 10 services gives the orchestrator dependencies to track.
        let dep = if i % 10 == 0 {
            String::new()
        } else {
            format!("depends_on = [\"s{}\"]\n", i - 1)
        };
        text.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\n{dep}strategy = \"canary\"\nsteps = [ {{ set_weight = 25 }}, {{ pause = \"5s\" }}, {{ set_weight = 75 }}, {{ pause = \"5s\" }} ]\n[service.local]\nlisten = \"127.0.0.1:{}\"\ncommand = [\"svc\", \"{{port}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n",
            20000 + i
        ));
    }
    cutover::release::load_str(
        std::path::Path::new("bench.toml"),
        &text,
        std::path::Path::new("."),
    )
    .unwrap_or_else(|d| panic!("{d:?}"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [100usize, 1000] {
        let r = release(n);
        let plan = cutover::plan::plan(&r);
        let clock = FakeClock::new(1_700_000_000_000);
        let platform = FakePlatform::quiet(Arc::new(clock.clone()));
        let rec = MemoryRecorder::new();
        let (took, events, code) = rt.block_on(async {
            let engine = Engine::new(
                r,
                &plan,
                platform,
                Arc::new(clock.clone()),
                Box::new(rec.clone()),
                Arc::new(ScriptedSmoke::new()),
                EngineOptions {
                    bootstrap_timeout: Duration::from_secs(600),
                    ..Default::default()
                },
            )
            .unwrap();
            let t0 = Instant::now();
            let h = spawn(engine);
            h.send(Command::Start, "bench").await.unwrap();
            let out = h.join.await.unwrap().unwrap();
            (t0.elapsed(), rec.snapshot().len(), out.exit_code)
        });
        assert_eq!(code, 0);
        println!(
            "engine overhead, {n} services: {events} transitions in {:.3} s = {:.1} µs per transition (fake platform, fake clock, in-memory journal)",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / events as f64
        );
    }
}
