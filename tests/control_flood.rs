//! The control API and the proxy under a flood: thousands of refused commands (no token,
//! a read-only token) over TCP, a pile of idle connections and pinned requests to the
//! proxy. The journal keeps a bounded sample of the refusals, the server's memory stays
//! bounded, and a legitimate `ctl rollback` still goes through during the flood.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::CUTOVER;
use support::net::free_port;

const RELEASE: &str = include_str!("fixtures/pairing-release.toml");

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn journal_lines(state: &Path) -> usize {
    std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("journal.jsonl"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

/// One request on its own connection; the status code, or 0 when the server closed it.
fn post(port: u16, token: Option<&str>, body: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /v1/commands HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncutover-protocol: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        cutover::control::protocol_version(),
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    status(&mut s)
}

/// The status code of the answer on `s`, or 0 when the server closed it first.
fn status(s: &mut TcpStream) -> u16 {
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn pinned_get(port: u16) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-cutover-revision: v2\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    status(&mut s)
}

struct Serve {
    child: Child,
    state: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(CUTOVER)
        .arg("ctl")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

/// Wait until `ctl status` shows `payments` waiting at its `pause forever` gate.
fn wait_for_gate(state: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = ctl(state, &["status"]);
        if st.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
            let waiting = v["state"]["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == "payments" && !s["gate"].is_null());
            if waiting {
                return;
            }
        }
        assert!(Instant::now() < deadline, "payments never reached its gate");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_flood_of_refused_commands_leaves_the_journal_and_memory_bounded_and_rollback_works() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b, api) = (free_port(), free_port(), free_port());
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        RELEASE
            .replace("MARKER", &format!("floodmark{}", std::process::id()))
            .replace("PORT_A", &port_a.to_string())
            .replace("PORT_B", &port_b.to_string()),
    )
    .unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_private(
        &tokens,
        "[[token]]\nname = \"watcher\"\nrole = \"read-only\"\ntoken = \"watch-token-0123456789\"\n",
    );
    let state = dir.path().join("state");
    let child = Command::new(CUTOVER)
        .arg("serve")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .args(["--operator", "alice", "--linger", "0.5", "--listen"])
        .arg(format!("127.0.0.1:{api}"))
        .arg("--token-file")
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let serve = Serve {
        child,
        state: state.clone(),
    };
    wait_for_gate(&state);
    let pid = serve.child.id();
    let rss_before = rss_kb(pid);
    let lines_before = journal_lines(&state);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flooders: Vec<_> = (0..6)
        .map(|i| {
            let (stop, sent, limited, refused) =
                (stop.clone(), sent.clone(), limited.clone(), refused.clone());
            std::thread::spawn(move || {
                let body = r#"{"command": {"command": "rollback", "service": "payments"}, "reason": "flood"}"#;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
                    let code = match i % 3 {
                        0 => post(api, None, body),
                        1 => post(api, Some("watch-token-0123456789"), body),
                        _ => pinned_get(port_a),
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    match code {
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        401 | 403 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            })
        })
        .collect();

    // Mid-flood, the operator on the socket rolls payments back.
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    let rb = ctl(&state, &["rollback", "payments", "--operator", "alice"]);
    let rollback_took = asked.elapsed();
    assert_eq!(
        rb.status.code(),
        Some(0),
        "ctl rollback during the flood: {}",
        String::from_utf8_lossy(&rb.stderr)
    );
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kb(pid);

    let sent = sent.load(Ordering::Relaxed);
    let lines_after = journal_lines(&state);
    let added = lines_after - lines_before;
    let (limited, refused) = (
        limited.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "flood: {sent} requests in {flood_secs:.1} s ({refused} refused 401/403, {limited} answered 429), journal +{added} lines, RSS {rss_before} -> {rss_after} KiB, ctl rollback took {rollback_took:?}"
    );
    assert!(
        refused > 200,
        "too few refusals to prove anything: {refused}"
    );
    assert!(limited > 0, "the rate limit never answered 429");
    assert!(
        sent > 1000,
        "the flood was too small to prove anything: {sent}"
    );
    // Refusals are sampled: a burst of 20, then one every 3 s, plus the rollback's own
    // entries. Without the sampler this would be one entry per refused command.
    let bound = 20 + (flood_secs / 3.0).ceil() as usize + 40;
    assert!(
        added <= bound,
        "journal grew by {added} lines (bound {bound})"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "serve's memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The journal says refusals were counted rather than journaled one by one.
    let journal = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_to_string(d.path().join("journal.jsonl")).unwrap_or_default())
        .collect::<String>();
    assert!(
        journal.contains("counted, not journaled"),
        "no sampled refusal recorded its count"
    );
    assert!(journal.contains("RollbackStarted") || journal.contains("rollback_started"));

    // Connections that never finish their headers are capped per address; the owner's
    // socket still answers while they hang.
    let mut idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", api)).ok())
        .collect();
    for s in &mut idle {
        let _ = s.write_all(b"POST /v1/commands HTTP/1.1\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let closed = idle
        .iter_mut()
        .map(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            match s.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .filter(|c| *c)
        .count();
    assert!(
        closed >= 100 - 64,
        "only {closed} of 100 idle connections from one address were closed"
    );
    let st = ctl(&state, &["status"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "ctl status while connections hang"
    );
    drop(idle);
    let _ = ctl(&serve.state, &["abort", "--operator", "alice"]);
}
