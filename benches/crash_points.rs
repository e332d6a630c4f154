//! The crash test at many points: SIGKILL `cutover deploy` at spread points, resume,
//! check convergence, orphans and the audit chain; prints how many points and how long.
//!
//! cargo bench --bench crash_points   (CUTOVER_CRASH_POINTS, default 50; the file journal,
//! or PostgreSQL with CUTOVER_CRASH_BACKEND=postgres: a server of its own, `--journal`)

#[path = "../tests/engine_crash.rs"]
#[allow(dead_code)]
mod crash;

use std::time::{Duration, Instant};

fn main() {
    let points: usize = std::env::var("CUTOVER_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let backend = match std::env::var("CUTOVER_CRASH_BACKEND").as_deref() {
        Ok("postgres") => crash::Backend::postgres(),
        Ok("file") | Err(_) => crash::Backend::file(),
        Ok(other) => panic!("CUTOVER_CRASH_BACKEND: file or postgres, not {other}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut resumed = 0;
    for i in 0..points {
        let base = 300 + (i as u64 * 5200) / points as u64;
        let jitter = rand::random_range(0..400u64);
        if crash::crash_once(
            dir.path(),
            &backend,
            i,
            Duration::from_millis(base + jitter),
        ) {
            resumed += 1;
        }
    }
    println!(
        "crash test, {} journal: {points} SIGKILL points, {resumed} left a run to resume, all converged (every service promoted), no orphan process, audit chain valid; {:.1} s",
        backend.name(),
        t0.elapsed().as_secs_f64()
    );
}
