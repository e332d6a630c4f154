//! The judge reading a real Prometheus (Debian's `prometheus` 2.42, started here on a free
//! loopback port and scraping the local platform's `/metrics` every second): a broken
//! canary is caught and rolled back, a healthy one promotes, and a Prometheus that goes
//! away mid-analysis leaves the analysis inconclusive (paused), never promoted. Every
//! template's queries go through Prometheus' own parser (`promtool check rules`) and the
//! live server; the `/metrics` exposition through `promtool check metrics`.
//! Fails (does not skip) when the package is missing: scripts/test installs it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover::metrics::prometheus_templates::{fill, template};
use cutover::release::PrometheusTemplate;
use support::net::free_port;
use support::prometheus::{Prometheus, binary};

const BIN: &str = support::CUTOVER;

/// A canary judged from Prometheus. `target_args` break the candidate or not.
fn release(prom: &str, metrics_port: u16, port: u16, target_args: &str, analysis: &str) -> String {
    format!(
        r#"[release]
name = "prom-judge"
platform = "local"
progress_deadline = "90s"
metrics_listen = "127.0.0.1:{metrics_port}"

[metrics]
provider = "prometheus"
url = "{prom}"
template = "cutover"
timeout = "2s"

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ analysis = "{analysis}" }}, {{ set_weight = 100 }} ]
[service.analysis]
min_requests = 100
min_duration = "4s"
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:{port}"
drain_timeout = "1s"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2", args = [{target_args}] }}
"#
    )
}

/// A headless deploy whose JSON lines are collected as they come.
struct Deploy {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for Deploy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Deploy {
    fn start(dir: &Path, text: &str) -> Deploy {
        let file = dir.join("release.toml");
        std::fs::write(&file, text).unwrap();
        let mut child = Command::new(BIN)
            .args(["deploy", "--headless", "--output", "json", "--state-dir"])
            .arg(dir.join("state"))
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Deploy { child, lines }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until an event matches (or fail with every event so far).
    fn wait_event(
        &self,
        what: &str,
        within: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| f(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit code, waiting at most `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "deploy still running: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `cutover load` through the service's proxy for `secs` seconds, once it serves.
fn load(port: u16, secs: u32) -> Child {
    support::local::wait_proxy_answers(port);
    support::local::cli_load(port, secs)
}

fn verdicts(events: &[serde_json::Value]) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter(|e| e["type"] == "verdict")
        .map(|e| e["verdict"].clone())
        .collect()
}

fn promoted(events: &[serde_json::Value]) -> bool {
    events.iter().any(|e| e["type"] == "promoted")
}

struct Setup {
    dir: tempfile::TempDir,
    prom: Prometheus,
    metrics_port: u16,
    port: u16,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let prom = Prometheus::start(
        &dir.path().join("prom"),
        &[format!("127.0.0.1:{metrics_port}")],
    );
    Setup {
        dir,
        prom,
        metrics_port,
        port: free_port(),
    }
}

#[test]
fn a_broken_canary_judged_from_prometheus_is_rolled_back() {
    let s = setup();
    let text = release(
        &s.prom.url(),
        s.metrics_port,
        s.port,
        r#""--error-rate", "0.4""#,
        "40s",
    );
    let mut d = Deploy::start(s.dir.path(), &text);
    let mut l = load(s.port, 60);
    let code = d.wait_exit(Duration::from_secs(90));
    let _ = l.kill();
    let _ = l.wait();
    let ev = d.events();
    assert_eq!(code, Some(3), "{ev:#?}\n{}", s.prom.log());
    let v = verdicts(&ev);
    assert!(v.iter().any(|v| v["outcome"] == "fail"), "{v:#?}");
    assert!(ev.iter().any(|e| e["type"] == "rolled_back"), "{ev:#?}");
    assert!(!promoted(&ev));
    // The data came from Prometheus: it holds the proxy's series for both revisions.
    let body = s
        .prom
        .get("/api/v1/query?query=sum%20by%20(revision)(max_over_time(cutover_proxy_requests_total%5B5m%5D))")
        .unwrap();
    assert!(body.contains("\"v1\"") && body.contains("\"v2\""), "{body}");
}

#[test]
fn a_healthy_canary_judged_from_prometheus_promotes() {
    let s = setup();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let text = release(&s.prom.url(), s.metrics_port, s.port, "", "10s");
    let mut d = Deploy::start(s.dir.path(), &text);
    let mut l = load(s.port, 60);
    // While it runs: the endpoint serves the histogram and cutover's own metrics, and
    // promtool accepts the exposition.
    d.wait_event("the analysis", Duration::from_secs(30), |e| {
        e["type"] == "step_started"
            && e["description"]
                .as_str()
                .is_some_and(|t| t.contains("analys"))
    });
    let metrics = http_get(s.metrics_port, "/metrics");
    for needle in [
        "cutover_proxy_request_duration_seconds_bucket{service=\"api\",revision=\"v2\",le=\"0.5\"}",
        "cutover_service_phase{environment=\"\",service=\"api\",phase=\"analysing\"} 1",
        "cutover_traffic_weight{environment=\"\",service=\"api\",revision=\"v2\",role=\"candidate\"} 50",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let lint = promtool(&["check", "metrics"], Some(&metrics));
    assert!(
        lint.status.success(),
        "promtool check metrics: {}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let code = d.wait_exit(Duration::from_secs(90));
    let _ = l.kill();
    let _ = l.wait();
    let ev = d.events();
    assert_eq!(code, Some(0), "{ev:#?}\n{}", s.prom.log());
    assert!(promoted(&ev));
    let v = verdicts(&ev);
    assert!(v.iter().any(|v| v["outcome"] == "pass"), "{v:#?}");
    assert!(!v.iter().any(|v| v["outcome"] == "fail"), "{v:#?}");
    // Every template's queries run on the live server without an error (`bad_data`).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = cutover::metrics::prometheus::PrometheusClient::new(
        &s.prom.url(),
        Vec::new(),
        Duration::from_secs(5),
    );
    for t in PrometheusTemplate::ALL {
        for q in queries(t) {
            let r = rt.block_on(client.instant(&q));
            assert!(r.is_ok(), "{}: {q}: {r:?}", t.as_str());
        }
    }
    // The cutover template read real numbers for the promoted revision during the run (a
    // range: once the deploy exited, its series went stale).
    let q = fill(
        &template(PrometheusTemplate::Cutover).queries.requests,
        "api",
        "v2",
        None,
    );
    let start: f64 = since.parse().unwrap();
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let series = rt
        .block_on(client.range(&q, start, end, Duration::from_secs(1)))
        .unwrap();
    let most = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    assert!(most >= 100.0, "{series:?}");
    // The same interval replayed from Prometheus (`judge replay --from-prometheus`), with
    // the split read back from cutover_traffic_weight, does not fail either.
    let replay = Command::new(BIN)
        .args([
            "judge",
            "replay",
            "--from-prometheus",
            &s.prom.url(),
            "--service",
            "api",
            "--baseline",
            "v1",
            "--canary",
            "v2",
            "--since",
            &since,
            "--step",
            "2s",
            "--min-requests",
            "100",
            "--min-duration",
            "4s",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&replay.stdout);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let debug = s
        .prom
        .get(&format!(
            "/api/v1/query_range?query=max(cutover_traffic_weight)&start={since}&end={now}&step=2"
        ))
        .unwrap_or_default();
    let debug2 = s.prom.get(&format!("/api/v1/query_range?query=sum(cutover_proxy_requests_total)&start={since}&end={now}&step=2")).unwrap_or_default();
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{out}{}\n{debug}\n{debug2}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(r["final"]["outcome"], "fail", "{out}");
    assert!(r["windows"].as_u64().unwrap() >= 1, "{out}");
    assert!(
        r["final"]["metrics"][0]["canary"]["requests"]
            .as_u64()
            .unwrap()
            > 0,
        "{out}"
    );
}

#[test]
fn prometheus_going_away_mid_analysis_is_inconclusive_never_a_promotion() {
    let mut s = setup();
    let text = release(&s.prom.url(), s.metrics_port, s.port, "", "14s");
    let mut d = Deploy::start(s.dir.path(), &text);
    let mut l = load(s.port, 90);
    d.wait_event("the analysis", Duration::from_secs(30), |e| {
        e["type"] == "step_started"
            && e["description"]
                .as_str()
                .is_some_and(|t| t.contains("analys"))
    });
    std::thread::sleep(Duration::from_secs(3));
    s.prom.stop();
    // The analysis ends without data: a gate waits for a person, and the verdict says why.
    d.wait_event("the inconclusive gate", Duration::from_secs(60), |e| {
        e["type"] == "gate_waiting"
    });
    let ev = d.events();
    let last = verdicts(&ev).pop().expect("a verdict");
    assert_eq!(last["outcome"], "inconclusive", "{ev:#?}");
    let summary = last["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("no data") && summary.contains("`prometheus`"),
        "{summary}"
    );
    assert!(!promoted(&ev), "{ev:#?}");
    // Still nothing promoted a while later; then stop the deploy.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!promoted(&d.events()));
    let _ = l.kill();
    let _ = l.wait();
    let _ = d.child.kill();
}

/// Every query of a template, filled in as the judge fills them.
fn queries(t: PrometheusTemplate) -> Vec<String> {
    let tm = template(t);
    let le = tm.buckets[tm.buckets.len() / 2];
    let q = &tm.queries;
    [
        &q.requests,
        &q.errors,
        &q.slow,
        &q.latency,
        &q.recent_requests,
    ]
    .into_iter()
    .map(|x| {
        fill(x, "api", "v2", Some(le))
            .replace("{{quantile}}", "0.99")
            .replace("{{window}}", "1m")
    })
    .collect()
}

#[test]
fn every_template_query_parses_with_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: cutover-templates\n    rules:\n");
    for t in PrometheusTemplate::ALL {
        for (i, q) in queries(t).iter().enumerate() {
            rules.push_str(&format!(
                "      - record: cutover_template_{}_{i}\n        expr: '{}'\n",
                t.as_str(),
                q.replace('\'', "''")
            ));
        }
    }
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = promtool(&["check", "rules", &file.to_string_lossy()], None);
    assert!(
        out.status.success(),
        "promtool rejected a template query:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The Grafana dashboard's queries parse too, and name only series cutover exports.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(e.contains("cutover_"), "{e}");
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$environment", ".*")
                .replace("$service", ".*");
            rules.push_str(&format!(
                "      - record: dashboard_{n}\n        expr: '{}'\n",
                e.replace('\'', "''")
            ));
            n += 1;
        }
    }
    std::fs::write(&file, &rules).unwrap();
    let out = promtool(&["check", "rules", &file.to_string_lossy()], None);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken expression is refused (the check is not vacuous).
    std::fs::write(
        &file,
        "groups:\n  - name: x\n    rules:\n      - record: y\n        expr: 'sum(x{a=\"b\"'\n",
    )
    .unwrap();
    assert!(
        !promtool(&["check", "rules", &file.to_string_lossy()], None)
            .status
            .success()
    );
}

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut c = Command::new(binary("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    } else {
        drop(c.stdin.take());
    }
    c.wait_with_output().unwrap()
}

fn http_get(port: u16, path: &str) -> String {
    let out = support::net::http_get(port, path);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
