//! `cutover judge replay FILE`: a JSON-lines file of analysis windows (any counts, rates,
//! weights and times) replayed through the sequential or the threshold judge, with the
//! judge's settings as `--tolerance`, `--min-requests`... may set them (only settings that
//! pass `AnalysisConfig::validate`, as the CLI refuses the others). Then the timeline is
//! rendered. Never a panic.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use cutover::judge::replay::{render, replay_text};
use cutover::judge::{AnalysisConfig, JudgeKind};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Flags {
    threshold: bool,
    tolerance: Option<f64>,
    min_requests: Option<u64>,
    min_duration_ms: Option<u32>,
    max_error_rate: Option<f64>,
    max_p99_ms: Option<u32>,
    alpha: Option<f64>,
    failure_limit: Option<u32>,
    bursty: bool,
    every_ms: u16,
}

fn config(f: &Flags) -> AnalysisConfig {
    let mut c = AnalysisConfig {
        judge: if f.threshold {
            JudgeKind::Threshold
        } else {
            JudgeKind::Sequential
        },
        ..Default::default()
    };
    let default = c.clone();
    if let Some(v) = f.tolerance {
        c.tolerance = v;
    }
    if let Some(v) = f.min_requests {
        c.min_requests = v;
    }
    if let Some(v) = f.min_duration_ms {
        c.min_duration = Duration::from_millis(v.into());
    }
    if let Some(v) = f.max_error_rate {
        c.max_error_rate = v;
    }
    if let Some(v) = f.max_p99_ms {
        c.max_p99 = Duration::from_millis(v.into());
    }
    if let Some(v) = f.alpha {
        c.alpha = v;
    }
    if let Some(v) = f.failure_limit {
        c.failure_limit = v;
    }
    c.bursty = f.bursty;
    if c.validate().is_ok() { c } else { default }
}

fuzz_target!(|data: &[u8]| {
    // The flags come from the first bytes (a fixed size), the file from the rest.
    let cut = data.len().min(48);
    let mut u = Unstructured::new(&data[..cut]);
    let Ok(flags) = Flags::arbitrary(&mut u) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&data[cut..]) else {
        return;
    };
    let every = Duration::from_millis(flags.every_ms.into());
    match replay_text("windows.jsonl", text, &config(&flags), every) {
        Ok(r) => {
            let _ = render(&r);
            let _ = serde_json::to_string(&r);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
