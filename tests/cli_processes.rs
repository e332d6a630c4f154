//! `cutover demo-service` and `cutover load` as real processes: exit codes, graceful
//! SIGTERM, JSON report. Every spawned process is reaped and checked gone by pid.

mod support;

use support::net::http_get;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::net::free_port;

const BIN: &str = support::CUTOVER;

/// Spawned children, killed and reaped on drop (also when a test fails).
struct Procs(Vec<Child>);

impl Procs {
    fn spawn(&mut self, args: &[&str]) -> u32 {
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.0.push(child);
        pid
    }
    fn child(&mut self, pid: u32) -> &mut Child {
        self.0.iter_mut().find(|c| c.id() == pid).unwrap()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a reaped child's pid is gone (ESRCH).
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_service_process_crashes_and_stops_gracefully_and_load_reports_json() {
    let mut procs = Procs(Vec::new());

    // --crash-after: exits by itself with a non-zero code.
    let port = free_port();
    let p = port.to_string();
    let crasher = procs.spawn(&[
        "demo-service",
        "--port",
        &p,
        "--revision",
        "v1",
        "--crash-after",
        "1",
    ]);
    wait_listening(port);
    let st = wait_exit(procs.child(crasher), Duration::from_secs(10));
    assert_eq!(st.code(), Some(1));

    // Graceful SIGTERM: the slow request in flight still gets its answer, exit 0.
    let port = free_port();
    let p = port.to_string();
    let server = procs.spawn(&[
        "demo-service",
        "--port",
        &p,
        "--revision",
        "v2",
        "--latency-ms",
        "700",
    ]);
    wait_listening(port);
    let slow = std::thread::spawn(move || http_get(port, "/api/slow"));
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(server as i32, libc::SIGTERM) };
    let answer = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-cutover-revision: v2"), "{answer}");
    assert!(answer.contains("\"revision\":\"v2\""), "{answer}");
    let st = wait_exit(procs.child(server), Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));

    // `cutover load --output json` against a running demo service.
    let port = free_port();
    let p = port.to_string();
    let target = procs.spawn(&[
        "demo-service",
        "--port",
        &p,
        "--revision",
        "v3",
        "--error-rate",
        "1",
    ]);
    wait_listening(port);
    let url = format!("http://127.0.0.1:{port}/");
    let out = Command::new(BIN)
        .args([
            "load",
            &url,
            "--rate",
            "200",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 200);
    assert_eq!(report["urls"][0]["status"]["500"], 200);
    assert_eq!(report["urls"][0]["revisions"]["v3"], 200);
    for key in ["p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(
            report["urls"][0]["latency"][key].as_f64().unwrap() > 0.0,
            "{key}"
        );
    }
    assert!(report["achieved_rate"].as_f64().unwrap() > 100.0);

    // Bad input: exit 2 with the fix named.
    let out = Command::new(BIN)
        .args(["load", "ftp://x/", "--rate", "1", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
    let out = Command::new(BIN)
        .args([
            "demo-service",
            "--port",
            "0",
            "--revision",
            "v1",
            "--error-rate",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--error-rate"));

    unsafe { libc::kill(target as i32, libc::SIGTERM) };
    let st = wait_exit(procs.child(target), Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    // The log names the listening address (used by people running it by hand).
    let mut stderr = BufReader::new(procs.child(target).stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains(&format!("127.0.0.1:{port}")), "{first}");

    let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
    drop(procs);
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running");
    }
}

/// Blue-green through the proxy with real backend processes: drain then SIGTERM loses
/// nothing; SIGKILL without drain loses the requests in flight (the check can fail).
#[test]
fn flip_with_drain_loses_nothing_and_sigkill_without_drain_does() {
    use cutover::loadgen::{LoadConfig, run as run_load};
    use cutover::platform::local::proxy::{DrainOutcome, ServiceProxy};
    use cutover::platform::local::stats::ProxyStats;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut procs = Procs(Vec::new());
    let mut start = |rev: &str| {
        let port = free_port();
        let pid = procs.spawn(&[
            "demo-service",
            "--port",
            &port.to_string(),
            "--revision",
            rev,
            "--latency-ms",
            "20",
        ]);
        wait_listening(port);
        (pid, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let (v1_pid, v1) = start("v1");
    let (v2_pid, v2) = start("v2");
    let (v3_pid, v3) = start("v3");

    let proxy = rt
        .block_on(ServiceProxy::bind(
            "api",
            "127.0.0.1:0".parse().unwrap(),
            ProxyStats::new(),
        ))
        .unwrap();
    proxy.set_backends("v1", vec![v1]);
    proxy.set_backends("v2", vec![v2]);
    proxy.set_weights(&vec![("v1".into(), 100)]).unwrap();
    let url: hyper::Uri = format!("http://{}/", proxy.local_addr()).parse().unwrap();
    let mut cfg = LoadConfig::new(vec![url], 1000.0, Duration::from_secs(3));
    cfg.connections = 64;

    // Graceful: flip, drain, SIGTERM.
    let load = rt.spawn(run_load(cfg.clone()));
    std::thread::sleep(Duration::from_millis(1000));
    proxy.set_weights(&vec![("v2".into(), 100)]).unwrap();
    assert_eq!(
        rt.block_on(proxy.drain("v1", Duration::from_secs(10))),
        DrainOutcome::Drained
    );
    unsafe { libc::kill(v1_pid as i32, libc::SIGTERM) };
    let report = rt.block_on(load).unwrap().unwrap();
    assert_eq!(
        wait_exit(procs.child(v1_pid), Duration::from_secs(10)).code(),
        Some(0)
    );
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.urls[0].revisions["v1"] > 100 && report.urls[0].revisions["v2"] > 100);

    // Control: flip and SIGKILL at once, no drain.
    proxy.set_backends("v3", vec![v3]);
    proxy.set_weights(&vec![("v3".into(), 100)]).unwrap();
    let load = rt.spawn(run_load(cfg));
    std::thread::sleep(Duration::from_millis(1000));
    proxy.set_weights(&vec![("v2".into(), 100)]).unwrap();
    unsafe { libc::kill(v3_pid as i32, libc::SIGKILL) };
    let report = rt.block_on(load).unwrap().unwrap();
    assert!(
        report.failed > 0,
        "killing a revision with requests in flight must show: {report:?}"
    );
    assert_eq!(
        report.urls[0].status.get(&502).copied().unwrap_or(0),
        report.failed
    );

    rt.block_on(proxy.shutdown());
    unsafe { libc::kill(v2_pid as i32, libc::SIGTERM) };
    assert_eq!(
        wait_exit(procs.child(v2_pid), Duration::from_secs(10)).code(),
        Some(0)
    );
    let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
    drop(procs);
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still running");
    }
}
