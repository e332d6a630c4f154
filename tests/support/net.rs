//! Loopback ports for tests and benches: a free port, and the demos' fixed ports.
//! Self-contained (std only): benches include this file by `#[path]`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free on 127.0.0.1 right now, below the kernel's ephemeral range (Linux's default
/// is 32768-60999), never the same twice in one test binary: for a port a release listens
/// on across a crash and its resume. A [`free_port`] is in the ephemeral range, so while
/// its listener is down (the engine killed, the lease running out, the resume reading its
/// journal) any outgoing connection on the machine may take it as its local port, and the
/// resume then cannot listen on it (seen once in a full crash sweep on PostgreSQL, whose
/// resume connects to the database several times before it binds its proxies).
pub fn free_listen_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20000 + (h.finish() % 12000) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// `cutover demo` listens on fixed ports (127.0.0.1:18301-18305); on a shared machine
/// another demo may hold them for a while. Wait (up to 3 minutes) until they are free.
pub fn wait_for_demo_ports() {
    wait_for_ports(
        "the demo's ports 127.0.0.1:18301-18305",
        (18301..=18305).collect(),
    );
}

/// `cutover demo --fleet` listens on 127.0.0.1:18331-18338 (api) and 18341-18348 (web):
/// wait (up to 3 minutes) until they are free.
pub fn wait_for_fleet_demo_ports() {
    wait_for_ports(
        "the fleet demo's ports 127.0.0.1:18331-18348",
        (18331..=18338).chain(18341..=18348).collect(),
    );
}

/// Wait (up to 3 minutes) until every port of `ports` is free on 127.0.0.1.
fn wait_for_ports(what: &str, ports: Vec<u16>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let free = ports
            .iter()
            .all(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} stayed busy for 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One raw HTTP/1.1 GET to 127.0.0.1 with `Connection: close`; the status line, headers
/// and body as they came.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
