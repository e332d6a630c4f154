//! Fault injection for the crash, disk-full and slow-disk tests, compiled in only with the
//! `crash-hooks` feature (test and bench builds, through the crate's dev-dependency on
//! itself); a release build has none of it. Driven by environment variables read once per
//! process:
//!
//! - `CUTOVER_CRASH_AFTER_APPEND=N`: abort right after the N-th journal append (a write and
//!   its fdatasync, or with the journal in PostgreSQL its transaction committed;
//!   [`crate::journal::Journal::append_batch`]) of this process. An append counts once,
//!   however many entries its batch holds and whether or not the PostgreSQL writer had to
//!   reconnect to learn that it committed.
//! - `CUTOVER_CRASH_BEFORE_PLATFORM_CALL=N`: abort right before the N-th acting platform
//!   call (launch, set_weights, scale, retire; see [`platform::Hooked`]).
//! - `CUTOVER_FAIL_APPEND_AT=N` with `CUTOVER_FAIL_APPEND_ERRNO=ENOSPC|EIO` (default
//!   ENOSPC): the N-th append and every later one fail with that error before writing
//!   (for PostgreSQL: before anything is sent, reported as the database's error).
//! - `CUTOVER_SLOW_FSYNC_MS=MS`: each append sleeps that long before its fdatasync.
//! - `CUTOVER_CRASH_TRACE=1`: print `cutover-crash-hook: append N` / `platform N CALL`
//!   on stderr as they happen (how a test counts the points of a release).
//!
//! An abort is `std::process::abort`: no destructors, no flush, like SIGKILL.

pub mod platform;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Settings {
    crash_after_append: Option<u64>,
    crash_before_platform_call: Option<u64>,
    fail_append_at: Option<u64>,
    fail_errno: i32,
    slow_fsync: Option<Duration>,
    trace: bool,
}

fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        crash_after_append: number("CUTOVER_CRASH_AFTER_APPEND"),
        crash_before_platform_call: number("CUTOVER_CRASH_BEFORE_PLATFORM_CALL"),
        fail_append_at: number("CUTOVER_FAIL_APPEND_AT"),
        fail_errno: match std::env::var("CUTOVER_FAIL_APPEND_ERRNO").as_deref() {
            Ok("EIO") => libc::EIO,
            _ => libc::ENOSPC,
        },
        slow_fsync: number("CUTOVER_SLOW_FSYNC_MS").map(Duration::from_millis),
        trace: std::env::var_os("CUTOVER_CRASH_TRACE").is_some(),
    })
}

static APPENDS_TRIED: AtomicU64 = AtomicU64::new(0);
static APPENDS_DONE: AtomicU64 = AtomicU64::new(0);
static PLATFORM_CALLS: AtomicU64 = AtomicU64::new(0);

fn trace(line: &str) {
    if settings().trace {
        eprintln!("cutover-crash-hook: {line}");
    }
}

/// Before an append writes: the injected error for this append, if it is to fail.
pub fn before_append() -> Option<std::io::Error> {
    let n = APPENDS_TRIED.fetch_add(1, Ordering::SeqCst) + 1;
    let s = settings();
    match s.fail_append_at {
        Some(at) if n >= at => {
            trace(&format!("append {n} fails"));
            Some(std::io::Error::from_raw_os_error(s.fail_errno))
        }
        _ => None,
    }
}

/// Before an append's fdatasync: the injected slow disk.
pub fn before_fsync() {
    if let Some(d) = settings().slow_fsync {
        trace("fsync slow start");
        std::thread::sleep(d);
        trace("fsync slow end");
    }
}

/// After an append is on disk.
pub fn after_append() {
    let n = APPENDS_DONE.fetch_add(1, Ordering::SeqCst) + 1;
    trace(&format!("append {n}"));
    if settings().crash_after_append == Some(n) {
        std::process::abort();
    }
}

/// Before an acting platform call.
pub fn before_platform_call(call: &str) {
    let n = PLATFORM_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    trace(&format!("platform {n} {call}"));
    if settings().crash_before_platform_call == Some(n) {
        std::process::abort();
    }
}
