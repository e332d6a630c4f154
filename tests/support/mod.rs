//! Helpers shared by the integration tests, one submodule a topic. Each test binary that
//! needs them says `mod support;` and compiles its own copy, so items one binary does not
//! use are allowed to be dead. Benches reuse single files of it with `#[path]`
//! (`net.rs` from benches/common, `pg.rs` and `net.rs` from benches/migration.rs).
//!
//! - [`net`]: free loopback ports, waiting for the demo's fixed ports.
//! - [`local`]: real `cutover demo-service` processes behind the local platform, health
//!   waits, process checks, an HTTP client and a load loop.
//! - [`pg`]: a throwaway PostgreSQL server per test.
//! - [`moto`]: the moto server (AWS emulator) of a test binary.
//! - [`fault`]: a fault-injecting HTTP proxy in front of moto.
//! - [`ecs`]: AWS configuration pointed at moto, ECS/ELBv2 fixtures, the CLI aimed at moto.
//! - [`release`]: the shipped example releases and fixture files.
//! - [`tls`]: a throwaway CA and server certificate for TLS tests (for given names and
//!   addresses with `pki_for`).
//! - [`netns`]: two network namespaces joined by a veth pair (two machines with
//!   non-loopback addresses; needs root and `ip`).
//! - [`served`]: a `cutover serve` child, killed on drop, waited on until it answers/exits.
#![allow(dead_code)]

pub mod ecs;
pub mod fault;
pub mod local;
pub mod moto;
pub mod net;
pub mod netns;
pub mod pg;
pub mod release;
pub mod served;
pub mod tls;

/// The `cutover` binary under test.
pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

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

/// Poll `f` every 100 ms until it holds; fail naming `what` after `limit`.
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
