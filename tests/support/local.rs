//! The local platform in tests: real `cutover demo-service` processes behind it, health
//! waits, process checks, an HTTP client and a closed-loop load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::platform::local::{HealthCheck, LocalConfig, LocalServiceConfig, RevisionRun};
use cutover::platform::{InstanceState, Platform, RevisionHealth};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::CUTOVER;

/// `cutover demo-service --port {port} --revision {revision}`.
pub fn demo_command() -> Vec<String> {
    [
        CUTOVER,
        "demo-service",
        "--port",
        "{port}",
        "--revision",
        "{revision}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn run(args: &[&str]) -> RevisionRun {
    RevisionRun {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
    }
}

/// Quick health checks so tests do not wait long.
pub fn fast_health() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        healthy_after: 1,
        unhealthy_after: 2,
    }
}

/// A service `api` on a free port running demo-service revisions `revisions`.
pub fn service(revisions: &[(&str, RevisionRun)]) -> LocalServiceConfig {
    let mut s = LocalServiceConfig::new("api", "127.0.0.1:0".parse().unwrap(), demo_command());
    for (name, r) in revisions {
        s = s.with_revision(name, r.clone());
    }
    s.health = fast_health();
    s.drain_timeout = Duration::from_secs(5);
    s.stop_timeout = Duration::from_secs(5);
    s
}

pub fn config(state_dir: &Path, services: Vec<LocalServiceConfig>) -> LocalConfig {
    LocalConfig {
        state_dir: state_dir.to_path_buf(),
        admin: None,
        services,
        secrets: Default::default(),
        pin_secret: None,
    }
}

/// Poll until `revision` has `n` healthy replicas (panics after 20 s with the health).
pub async fn wait_healthy(
    p: &dyn Platform,
    service: &str,
    revision: &str,
    n: u32,
) -> RevisionHealth {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = p.health(service, revision).await.unwrap();
        if h.healthy() >= n {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "{service} {revision} not healthy in time: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Poll until some instance of `revision` satisfies `f`.
pub async fn wait_state(
    p: &dyn Platform,
    service: &str,
    revision: &str,
    f: impl Fn(&InstanceState) -> bool,
) -> RevisionHealth {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = p.health(service, revision).await.unwrap();
        if h.instances.iter().any(|i| f(&i.state)) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "state not reached in time: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Processes whose command line contains `marker` (the demo services of one run), as
/// `pid: command line`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(format!("{pid}: {cmd}"));
            }
        }
    }
    out
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Every pid is gone (waits up to 5 s for exits in progress). Also checks `kill(pid, 0)`.
pub fn assert_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids {
        assert!(!alive(*pid), "process {pid} is still running");
        // SAFETY: signal 0 only checks existence.
        let r = unsafe { libc::kill(*pid as i32, 0) };
        let zombie_or_gone = r != 0 || !alive(*pid);
        assert!(zombie_or_gone, "process {pid} still exists");
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// GET `url`, optionally with a header; returns (status, `x-cutover-revision` of the answer).
pub async fn get(
    client: &HttpClient,
    url: &str,
    header: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let mut req = hyper::Request::get(url);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    // A request that never ends is a failed request with a name, not a test that hangs.
    let answer = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let rev = resp
            .headers()
            .get("x-cutover-revision")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?;
        Ok((status, rev))
    };
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .unwrap_or_else(|_| Err(format!("GET {url}: no complete answer within 20 s")))
}

/// What a load loop saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    /// status -> count, for non-2xx answers.
    pub bad_status: BTreeMap<u16, u64>,
    /// transport errors (refused, reset, ...), first few kept.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// revision header -> count of 2xx answers.
    pub by_revision: BTreeMap<String, u64>,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.errors + self.bad_status.values().sum::<u64>()
    }
}

/// Constant closed-loop load on `addr` from `connections` tasks until `stop` is set, or
/// `max` total requests, or 60 s.
pub fn start_load(
    addr: SocketAddr,
    connections: usize,
    max: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<LoadReport> {
    tokio::spawn(async move {
        let url = format!("http://{addr}/api/load");
        let deadline = Instant::now() + Duration::from_secs(60);
        let per_task = max / connections as u64;
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let url = url.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut r = LoadReport::default();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < per_task && Instant::now() < deadline {
                    n += 1;
                    match get(&c, &url, None).await {
                        Ok((s, rev)) if (200..300).contains(&s) => {
                            r.ok += 1;
                            *r.by_revision.entry(rev).or_default() += 1;
                        }
                        Ok((s, _)) => *r.bad_status.entry(s).or_default() += 1,
                        Err(e) => {
                            r.errors += 1;
                            if r.error_samples.len() < 5 {
                                r.error_samples.push(e);
                            }
                        }
                    }
                }
                r
            }));
        }
        let mut total = LoadReport::default();
        for t in tasks {
            let r = t.await.unwrap();
            total.ok += r.ok;
            total.errors += r.errors;
            total.error_samples.extend(r.error_samples);
            for (k, v) in r.bad_status {
                *total.bad_status.entry(k).or_default() += v;
            }
            for (k, v) in r.by_revision {
                *total.by_revision.entry(k).or_default() += v;
            }
        }
        total
    })
}

/// Log to the test output (`RUST_LOG=debug cargo test -- --nocapture` to see it).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Until the proxy on `port` serves (it answers 503 before any backend is healthy).
pub fn wait_proxy_answers(port: u16) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing serves on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cutover load` through the proxy on `port` at 150 requests/s for `secs` seconds (JSON
/// report on stdout, piped).
pub fn cli_load(port: u16, secs: u32) -> std::process::Child {
    std::process::Command::new(CUTOVER)
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            "--rate",
            "150",
            "--duration",
            &format!("{secs}s"),
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
