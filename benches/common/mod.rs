//! Helpers shared by the bench binaries: child processes that are always reaped, CPU time
//! of a process from procfs, machine busy-ness, free ports (the tests' own
//! tests/support/net.rs).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/support/net.rs"]
mod net;
pub mod split;

pub use net::free_port;

pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

pub fn fail(msg: &str) -> ! {
    eprintln!("bench error: {msg}");
    std::process::exit(1);
}

pub fn wait_listening(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            fail(&format!("nothing listens on {addr} after {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Children that are killed and reaped on drop; `pids_left` checks none survived.
#[derive(Default)]
pub struct Children {
    pub list: Vec<Child>,
    pub all_pids: Vec<u32>,
}

impl Children {
    pub fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start {cmd:?}: {e}")));
        let pid = child.id();
        self.all_pids.push(pid);
        self.list.push(child);
        pid
    }

    /// A demo-service process (one tokio worker) on a fresh port.
    pub fn demo_service(&mut self, revision: &str, latency_ms: u64) -> (u32, SocketAddr) {
        let port = free_port();
        let pid = self.spawn(
            Command::new(CUTOVER)
                .env("TOKIO_WORKER_THREADS", "1")
                .env("RUST_LOG", "warn")
                .args([
                    "demo-service",
                    "--port",
                    &port.to_string(),
                    "--revision",
                    revision,
                ])
                .args(["--latency-ms", &latency_ms.to_string()]),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_listening(addr, Duration::from_secs(10));
        (pid, addr)
    }

    pub fn signal(&self, pid: u32, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe { libc::kill(pid as i32, sig) };
    }

    /// Wait for a child to exit (after a signal), reaping it.
    // The child is removed from the list only after `try_wait`/`wait` reaped it.
    #[allow(clippy::zombie_processes)]
    pub fn wait(&mut self, pid: u32, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let idx = self.list.iter().position(|c| c.id() == pid)?;
        loop {
            if let Ok(Some(st)) = self.list[idx].try_wait() {
                self.list.remove(idx);
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.list[idx].kill();
                let st = self.list[idx].wait().ok();
                self.list.remove(idx);
                return st;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop_all(&mut self) {
        for c in &mut self.list {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.list {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.list.clear();
    }

    /// Pids we started that still exist.
    pub fn pids_left(&self) -> Vec<u32> {
        self.all_pids
            .iter()
            .copied()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is field 3; utime/stime are fields 14/15.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A process and all its direct children (nginx master + workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

/// Share of the machine's CPU time that was busy over `over` (0..100).
pub fn machine_busy(over: Duration) -> f64 {
    fn read() -> Option<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let line = s.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((v.iter().sum(), idle))
    }
    let Some((t0, i0)) = read() else {
        return f64::NAN;
    };
    std::thread::sleep(over);
    let Some((t1, i1)) = read() else {
        return f64::NAN;
    };
    let dt = (t1 - t0).max(1) as f64;
    100.0 * (1.0 - (i1 - i0) as f64 / dt)
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A long-running child (`cutover serve`): SIGTERM on drop, up to 20 s to exit, then SIGKILL.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
