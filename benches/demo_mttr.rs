//! End-to-end MTTR in the demo scenario: run `cutover demo --headless --output json` and
//! read the time from the regression's first traffic to all traffic back on stable.
//!
//! cargo bench --bench demo_mttr   (CUTOVER_DEMO_RUNS, default 3)

use std::process::Command;
use std::time::Instant;

fn main() {
    let runs: usize = std::env::var("CUTOVER_DEMO_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut mttrs = Vec::new();
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["demo", "--headless", "--output", "json", "--state-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let wall = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let summary: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
        let mttr = summary["mttr_ms"].as_u64();
        println!(
            "demo run {}: exit {:?}, whole demo {:.1} s, regression to 100 % stable {}; services {}",
            i + 1,
            out.status.code(),
            wall.as_secs_f64(),
            mttr.map_or("n/a".into(), |m| format!("{:.2} s", m as f64 / 1000.0)),
            summary["services"]
        );
        if let Some(m) = mttr {
            mttrs.push(m);
        }
    }
    mttrs.sort_unstable();
    if let (Some(min), Some(max)) = (mttrs.first(), mttrs.last()) {
        println!(
            "demo MTTR over {} run(s): median {:.2} s, min {:.2} s, max {:.2} s (target < 15 s)",
            mttrs.len(),
            mttrs[mttrs.len() / 2] as f64 / 1000.0,
            *min as f64 / 1000.0,
            *max as f64 / 1000.0
        );
    }
}
