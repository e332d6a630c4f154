//! Two machines on one host: two network namespaces joined by a veth pair, with
//! non-loopback addresses (`10.213.X.1/24` in `a`, `10.213.X.2/24` in `b`), loopback up in
//! each. Programs run in one with [`NetnsPair::command`] (`ip netns exec NS PROGRAM ...`,
//! argv, no shell); a closure runs on a thread moved into one with [`NetnsPair::spawn_in`]
//! (its sockets live there). Names are unique per process and pair; everything (the
//! namespaces, their veth, `/etc/netns/NS`) is removed on drop, also when a test fails.
//!
//! Needs root and `ip` (iproute2; `scripts/test` installs it): a test that uses this fails
//! when either is missing, it does not skip.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct NetnsPair {
    /// The namespace of the first machine (address [`NetnsPair::addr_a`]).
    pub a: String,
    /// The namespace of the second machine (address [`NetnsPair::addr_b`]).
    pub b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

/// `ip ARGS`, panicking with what `ip` said (or how to install it) when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): install iproute2 (scripts/test installs it)")
    });
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}; network namespaces need root",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes: `cvA` + 7 digits of the pid + `-` + n.
        let tag = format!("{}-{n}", pid % 10_000_000);
        let pair = NetnsPair {
            a: format!("cutover-{tag}-a"),
            b: format!("cutover-{tag}-b"),
            // Each namespace has its own routes, so the subnet only has to differ between
            // pairs of one process; the pid keeps parallel runs readable in `ip netns`.
            addr_a: Ipv4Addr::new(10, 213, ((pid + n * 37) % 250) as u8 + 1, 1),
            addr_b: Ipv4Addr::new(10, 213, ((pid + n * 37) % 250) as u8 + 1, 2),
        };
        // A namespace left by a killed run of the same pid goes first.
        pair.remove();
        let (veth_a, veth_b) = (format!("cvA{tag}"), format!("cvB{tag}"));
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        for ns in [&pair.a, &pair.b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &veth_a, "netns", &pair.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &pair.b,
        ]);
        for (ns, dev, addr) in [
            (&pair.a, &veth_a, pair.addr_a),
            (&pair.b, &veth_b, pair.addr_b),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// `ip netns exec NS PROGRAM` (add the arguments; nothing goes through a shell).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Make `name` resolve to `addr` for programs run in `ns` by [`NetnsPair::command`]
    /// (`ip netns exec` binds `/etc/netns/NS/hosts` over `/etc/hosts`).
    pub fn add_host(&self, ns: &str, name: &str, addr: Ipv4Addr) {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{addr} {name}\n"),
        )
        .unwrap();
    }

    /// Run `f` on a new thread that lives in `ns`: every socket it (or a current-thread
    /// runtime it builds) opens is in that namespace.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        use std::os::fd::AsRawFd;
        let path = PathBuf::from("/var/run/netns").join(ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            // SAFETY: setns on a valid namespace fd changes only this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        })
    }

    fn remove(&self) {
        for ns in [&self.a, &self.b] {
            // Deleting a namespace deletes the veth end in it, and with it the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        self.remove();
    }
}
