//! Journal append cost with real durability (write + fdatasync per entry), side by side
//! with the raw file-system floor (the same lines written with and without fdatasync)
//! and the cost of reopening (full chain check) and verifying a run.
//!
//! cargo bench --bench journal_append
//! Env: CUTOVER_BENCH_DIR (default: a directory under target/; the figures are only as
//! good as that file system: tmpfs makes fsync free), CUTOVER_BENCH_N (default 1000).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cutover::journal::{self, Journal, NewEntry};
use hdrhistogram::Histogram;
use serde_json::json;

fn fs_type(dir: &Path) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs (fsync is free: figures are NOT durable-storage figures)".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x2fc1_2fc1 => "zfs".into(),
        other => format!("unknown (magic {other:#x})"),
    }
}

struct Stats {
    hist: Histogram<u64>,
    total: Duration,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            total: Duration::ZERO,
        }
    }
    fn record(&mut self, d: Duration) {
        self.total += d;
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(us);
    }
    fn per_sec(&self) -> f64 {
        self.hist.len() as f64 / self.total.as_secs_f64()
    }
    fn print(&self, name: &str) {
        println!(
            "{name:<44} {:>9.0}/s   p50 {:>7} us   p99 {:>7} us   max {:>7} us",
            self.per_sec(),
            self.hist.value_at_quantile(0.50),
            self.hist.value_at_quantile(0.99),
            self.hist.max()
        );
    }
}

fn entry(i: u64, pad: usize) -> NewEntry {
    NewEntry {
        at_ms: 1_795_749_300_000 + i,
        operator: i.is_multiple_of(10).then(|| "alice".to_owned()),
        kind: "decision".into(),
        service: Some("checkout-api".into()),
        payload: json!({
            "summary": format!("set canary weight to {}%", i % 100),
            "step": i,
            "weights": { "stable": 100 - i % 100, "canary": i % 100 },
            "reason": "gate passed: error rate 0.12% vs 0.10% baseline (p=0.41)",
            "pad": "x".repeat(pad),
        }),
    }
}

fn bench_journal(state: &Path, n: u64, pad: usize) -> (Stats, String, u64) {
    let mut j = Journal::create(state, "bench", "0").expect("create");
    let mut s = Stats::new();
    for i in 0..n {
        let e = entry(i, pad);
        let t = Instant::now();
        j.append(e).expect("append");
        s.record(t.elapsed());
    }
    let bytes = std::fs::metadata(j.dir().join("journal.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    (s, j.run_id().to_owned(), bytes)
}

fn main() {
    let base: PathBuf = std::env::var_os("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let n: u64 = std::env::var("CUTOVER_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let state = dir.path();
    println!("journal append benchmark: {n} entries per case");
    println!("directory {} on {}", state.display(), fs_type(state));
    println!();

    // Interleaved, so all three see the same disk (the machine is shared and noisy):
    // each round appends one entry, then writes the same bytes to a plain file with and
    // without fdatasync.
    let mut j = Journal::create(state, "bench", "0").expect("create");
    let run_small = j.run_id().to_owned();
    let open_raw = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join(name))
            .expect("open raw")
    };
    let (mut raw_sync_f, mut raw_f) = (open_raw("raw-sync"), open_raw("raw-nosync"));
    let (mut small, mut raw_sync, mut raw) = (Stats::new(), Stats::new(), Stats::new());
    let mut bytes_small = 0u64;
    for i in 0..n {
        let e = entry(i, 0);
        let t = Instant::now();
        let stored = j.append(e).expect("append");
        small.record(t.elapsed());
        let mut line = serde_json::to_vec(&stored).expect("encode");
        line.push(b'\n');
        bytes_small += line.len() as u64;
        let t = Instant::now();
        raw_sync_f.write_all(&line).expect("write");
        raw_sync_f.sync_data().expect("fdatasync");
        raw_sync.record(t.elapsed());
        let t = Instant::now();
        raw_f.write_all(&line).expect("write");
        raw.record(t.elapsed());
    }
    drop(j);
    let line_len = bytes_small / n.max(1);
    small.print(&format!("Journal::append ~{line_len} B (write+fdatasync)"));
    raw_sync.print(&format!("raw write+fdatasync, same ~{line_len} B lines"));
    raw.print(&format!("raw write only (not durable), ~{line_len} B"));

    let (large, _, bytes_large) = bench_journal(state, n / 4, 16 * 1024);
    large.print(&format!(
        "Journal::append ~{} KiB (write+fdatasync)",
        bytes_large / (n / 4).max(1) / 1024
    ));
    let mut j = Journal::create(state, "bench-batch", "0").expect("create");
    let mut batched = Stats::new();
    for b in 0..(n / 10).max(1) {
        let batch: Vec<NewEntry> = (0..10).map(|i| entry(b * 10 + i, 0)).collect();
        let t = Instant::now();
        j.append_batch(batch).expect("append_batch");
        let d = t.elapsed();
        for _ in 0..10 {
            batched.record(d / 10);
        }
    }
    drop(j);
    batched.print(&format!(
        "Journal::append_batch of 10, per entry ~{line_len} B"
    ));
    println!();
    let p50 = |s: &Stats| s.hist.value_at_quantile(0.5) as f64;
    println!(
        "Journal::append / raw write+fdatasync (p50, interleaved): {:.2}x",
        p50(&small) / p50(&raw_sync)
    );
    println!(
        "raw write+fdatasync / raw write only (p50): {:.0}x  (the price of durability)",
        p50(&raw_sync) / p50(&raw)
    );
    println!(
        "Journal::append / append_batch of 10, per entry (p50): {:.1}x",
        p50(&small) / p50(&batched)
    );

    // Resume and audit cost: reopen (lock + full chain check) and verify.
    let t = Instant::now();
    let j = Journal::open(state, &run_small).expect("open");
    let open_t = t.elapsed();
    drop(j);
    let t = Instant::now();
    let report = journal::verify(state, Some(&run_small)).expect("verify");
    let verify_t = t.elapsed();
    assert!(report.is_ok(), "benchmark chain must verify");
    println!();
    println!(
        "Journal::open of {n} entries ({} KiB): {:.1} ms;  verify: {:.1} ms ({:.0} entries/s)",
        bytes_small / 1024,
        open_t.as_secs_f64() * 1e3,
        verify_t.as_secs_f64() * 1e3,
        n as f64 / verify_t.as_secs_f64()
    );
}
