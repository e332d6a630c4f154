//! The engine at fleet scale: a generated fleet (`common/fleet.rs`: tenants × 5 services in
//! 4 rings with max_parallel, bakes and analysis) run to the end by the engine on the fake
//! platform with the fake clock and an in-memory journal, at 1,000 and 10,000
//! tenant-services side by side. Nothing waits (the fake clock jumps to the next wake-up)
//! and nothing is written to disk (no flags file, the journal in memory), so the wall
//! time is the engine's own: its reconcile pass, wake-up computation, fold, publication of
//! the snapshot and the fleet's rules. Issue 15's target: at most 20 µs of engine overhead
//! per transition at 10,000 tenant-services (release build).
//!
//!     cargo bench --bench fleet_engine
//!     FLEET_TENANTS=200,2000 cargo bench --bench fleet_engine   # the default sizes
//!
//! Every platform call and metric read is timed (`common/timed_platform.rs`): *engine
//! overhead* is the wall time minus the time spent inside the simulated platform, which
//! stands in for AWS or the local supervisor and is not the engine's work. Both are printed.
//!
//! A *transition* is one journaled event (a decision: a service started, a step, a weight
//! change, a verdict, a promotion, a tenant's or ring's change, ...; health observations
//! are not journaled and not counted). Of those, the ones that are platform calls
//! (launch, weights, retire, baseline ready) are printed beside.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::engine::testing::{FakePlatform, ScriptedSmoke};
use cutover::engine::{Clock, Command, Engine, EngineOptions, FakeClock, MemoryRecorder, spawn};

#[path = "common/fleet.rs"]
mod fleet_gen;
#[path = "common/timed_platform.rs"]
mod timed_platform;

struct Run {
    tenants: usize,
    services: usize,
    wall: Duration,
    /// Time spent inside the simulated platform (and its metric source), and its calls.
    in_platform: Duration,
    platform_reads: u64,
    transitions: usize,
    platform_calls: usize,
    simulated: Duration,
    exit_code: u8,
}

fn run(rt: &tokio::runtime::Runtime, tenants: usize) -> Run {
    let text = fleet_gen::generate_fleet(tenants);
    // The flags file's directory is checked at load: resolve against one that exists.
    let base = std::env::temp_dir();
    let loaded = cutover::release::load_text(
        Path::new("bench-fleet.toml"),
        &text,
        &base,
        &Default::default(),
    )
    .unwrap_or_else(|d| {
        eprintln!(
            "generated fleet is invalid:\n{}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        );
        std::process::exit(1);
    });
    let release = cutover::release::flatten::flatten(&loaded.release, &loaded.tenants);
    let plan = cutover::plan::engine_plan(&release);
    let services = plan.services.len();
    let start_ms = 1_700_000_000_000;
    let clock = FakeClock::new(start_ms);
    let (platform, spent) =
        timed_platform::TimedPlatform::wrap(FakePlatform::quiet(Arc::new(clock.clone())));
    let rec = MemoryRecorder::new();
    let engine = Engine::new(
        release,
        &plan,
        platform,
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(ScriptedSmoke::new()),
        EngineOptions {
            operator: "bench".into(),
            bootstrap_timeout: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("engine: {e}");
        std::process::exit(1);
    });
    let (wall, exit_code) = rt.block_on(async {
        let t0 = Instant::now();
        let h = spawn(engine);
        if let Err(r) = h.send(Command::Start, "bench").await {
            eprintln!("start refused: {}", r.reason);
            std::process::exit(1);
        }
        let out = match h.join.await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                eprintln!("engine stopped: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("engine task: {e}");
                std::process::exit(1);
            }
        };
        (t0.elapsed(), out.exit_code)
    });
    let events = rec.snapshot();
    let platform_calls = events
        .iter()
        .filter(|e| e.kind.journal_kind() == "platform")
        .count();
    Run {
        tenants,
        services,
        wall,
        in_platform: spent.time(),
        platform_reads: spent.calls(),
        transitions: events.len(),
        platform_calls,
        simulated: Duration::from_millis(clock.now_ms() - start_ms),
        exit_code,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_TENANTS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![200, 2000]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "engine at fleet scale ({profile} build): fake platform, fake clock, in-memory journal, no flags file"
    );
    println!();
    println!(
        "| tenants | tenant-services | transitions (journaled) | of which platform calls | simulated time | platform and metric calls (all) | wall time | in the simulated platform | engine overhead | µs engine overhead per transition | µs wall per transition | exit |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for n in sizes {
        let r = run(&rt, n);
        let overhead = r.wall.saturating_sub(r.in_platform);
        let per = overhead.as_secs_f64() * 1e6 / r.transitions.max(1) as f64;
        let per_wall = r.wall.as_secs_f64() * 1e6 / r.transitions.max(1) as f64;
        if r.services >= 10_000 {
            worst = worst.max(per);
        }
        println!(
            "| {} | {} | {} | {} | {:.1} h | {} | {:.3} s | {:.3} s | {:.3} s | {:.2} | {:.2} | {} |",
            r.tenants,
            r.services,
            r.transitions,
            r.platform_calls,
            r.simulated.as_secs_f64() / 3600.0,
            r.platform_reads,
            r.wall.as_secs_f64(),
            r.in_platform.as_secs_f64(),
            overhead.as_secs_f64(),
            per,
            per_wall,
            r.exit_code
        );
        if r.exit_code != 0 {
            eprintln!(
                "bench error: the fleet of {} tenants did not promote (exit {})",
                r.tenants, r.exit_code
            );
            std::process::exit(1);
        }
    }
    println!();
    if worst > 0.0 {
        println!(
            "target: at most 20 µs of engine overhead per transition at 10,000 tenant-services: {:.2} µs ({})",
            worst,
            if worst <= 20.0 { "met" } else { "not met" }
        );
    }
}
