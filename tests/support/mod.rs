//! Helpers shared by the integration tests, one submodule a topic. Each test binary that
//! needs them says `mod support;` and compiles its own copy, so items one binary does not
//! use are allowed to be dead. Benches reuse single files of it with `#[path]`
//! (`net.rs` from benches/common, `pg.rs` and `net.rs` from benches/migration.rs).
//!
//! - [`net`]: free loopback ports, waiting for the demo's fixed ports.
//! - [`local`]: real `cutover demo-service` processes behind the local platform, health
//!   waits, process checks, an HTTP client and a load loop.
//! - [`pg`]: a throwaway PostgreSQL server per test.
//! - [`backend`]: the journal a test's runs are written to, files or PostgreSQL (one test
//!   body run on both backends: the crash tests).
//! - [`moto`]: the moto server (AWS emulator) of a test binary.
//! - [`fault`]: a fault-injecting HTTP proxy in front of moto.
//! - [`ecs`]: AWS configuration pointed at moto, ECS/ELBv2 fixtures, the CLI aimed at moto.
//! - [`flagd`]: a flags file evaluated for a tenant by flagd's own evaluator.
//! - [`release`]: the shipped example releases and fixture files.
//! - [`tls`]: a throwaway CA and server certificate for TLS tests (for given names and
//!   addresses with `pki_for`); an HTTPS receiver that keeps every request (a webhook
//!   endpoint).
//! - [`netns`]: two network namespaces joined by a veth pair (two machines with
//!   non-loopback addresses; needs root and `ip`).
//! - [`journals`]: runs written through the journal API event by event at chosen times
//!   (known delivery metrics and reports).
//! - [`served`]: a `cutover serve` child, killed on drop, waited on until it answers/exits.
//! - [`tmux`]: a tmux server of the test's own: the console in a real terminal.
//!
//! Here: the binary under test, every file under a directory as text (what a test greps for
//! a secret), polling with a deadline (`wait_for`), finding a demo-service replica's pid.
#![allow(dead_code)]

pub mod backend;
pub mod ecs;
pub mod fault;
pub mod flagd;
pub mod journals;
pub mod lines;
pub mod local;
pub mod moto;
pub mod net;
pub mod netns;
pub mod pg;
pub mod prometheus;
pub mod release;
pub mod served;
pub mod tls;
pub mod tmux;

/// A finished command's stdout and then stderr, as text (what a test greps).
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `cutover` binary under test.
pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

/// Run `cutover ARGS` and expect exit 0 (else panic with its stderr).
pub fn cutover_ok<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    let out = std::process::Command::new(CUTOVER)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir` (recursively), as text: what a test greps for a secret.
pub fn everything_under(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    out
}

/// Wait until `f` holds, polling every 100 ms; fail naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The pid of a running `demo-service` replica of `revision` whose command line carries
/// `tag` as a whole argument (e.g. its `--service` name).
pub fn demo_replica(tag: &str, revision: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let has = |s: &str| args.contains(&s.as_bytes());
        (has(tag) && has(revision) && has("demo-service")).then_some(pid)
    })
}

/// `stage status` of every row of a SQLite database's migration history table, in order
/// (empty when there is no history table yet).
pub fn sqlite_migration_history(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let Ok(mut st) = c.prepare("SELECT stage, status FROM cutover_migrations ORDER BY id") else {
        return Vec::new();
    };
    st.query_map([], |r| {
        Ok(format!(
            "{} {}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}
