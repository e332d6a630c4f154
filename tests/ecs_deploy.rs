//! `cutover deploy` of an ECS release, end to end against moto: the real binary, the real
//! engine, the ECS platform talking to the emulator over HTTP, checked afterwards against
//! the emulator's own state (primary task sets, listener rule weights, task definitions).
//!
//! moto is an API mock, not a scheduler: it never starts the tasks of a task set, never
//! registers them in a target group. [`Scheduler`] plays that part of ECS through the public
//! API (RunTask with `startedBy` = the task set's id, RegisterTargets with the task's IP), so
//! the platform reads health exactly as on AWS (ListTasks, DescribeTasks,
//! DescribeTargetHealth). moto has no data plane either: smoke tests go to `url` in
//! [service.ecs], a loopback HTTP server standing in for the ALB, which answers by the
//! `x-cutover-revision` header the way the test listener rule routes.
//!
//! Needs moto (see tests/support/moto.rs): without it the tests fail.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::LaunchType;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use cutover::platform::ecs::aws::Clients;
use support::ecs::*;
use support::fault::{Fault, FaultProxy};
use support::moto;

/// Keep moto's tasks RUNNING (by default each DescribeTasks moves them one step on).
fn freeze_task_lifecycle(endpoint: &str) {
    let (status, body) = moto::http(
        endpoint,
        "POST",
        "/moto-api/state-manager/set-transition",
        &[("Content-Type", "application/json")],
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#,
    );
    assert!(
        (200..300).contains(&status),
        "set-transition: {status} {body}"
    );
}

/// The part of the ECS scheduler moto lacks: every task set runs `ceil(scale × size)`
/// tasks started by it, registered by IP in its target group.
struct Scheduler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Scheduler {
    fn start(c: Clients, services: Vec<(String, String)>, size: u32) -> Scheduler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                for (cluster, service) in &services {
                    schedule_once(&c, cluster, service, size).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        Scheduler { stop, task }
    }
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

async fn schedule_once(c: &Clients, cluster: &str, service: &str, size: u32) {
    let Ok(out) = c
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
    else {
        return;
    };
    let Some(svc) = out.services().first() else {
        return;
    };
    for ts in svc.task_sets() {
        let (Some(id), Some(td)) = (ts.id(), ts.task_definition()) else {
            continue;
        };
        let pct = ts.scale().map_or(0.0, |s| s.value());
        let want = (f64::from(size) * pct / 100.0).ceil() as usize;
        let Ok(running) = c
            .ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(id)
            .send()
            .await
        else {
            continue;
        };
        let have = running.task_arns().len();
        if have >= want {
            continue;
        }
        let Ok(run) = c
            .ecs
            .run_task()
            .cluster(cluster)
            .task_definition(td)
            .count((want - have) as i32)
            .started_by(id)
            .launch_type(LaunchType::Fargate)
            .set_network_configuration(ts.network_configuration().cloned())
            .send()
            .await
        else {
            continue;
        };
        let Some(tg) = ts
            .load_balancers()
            .first()
            .and_then(|l| l.target_group_arn())
        else {
            continue;
        };
        for t in run.tasks() {
            if let Some(ip) = cutover::platform::ecs::task_ip(t) {
                let _ = c
                    .elb
                    .register_targets()
                    .target_group_arn(tg)
                    .targets(TargetDescription::builder().id(ip).port(8080).build())
                    .send()
                    .await;
            }
        }
    }
}

/// A loopback HTTP server standing in for the load balancer's data plane: 200 for every
/// request, 500 for requests routed (by `x-cutover-revision`) to a revision in `failing`.
/// Records the revision header of each request.
struct Front {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn front(failing: &[&str]) -> Front {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let failing: BTreeSet<String> = failing.iter().map(|s| s.to_string()).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut revision = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("x-cutover-revision")
                {
                    revision = v.trim().to_string();
                }
            }
            log.lock().unwrap().push(revision.clone());
            let status = if failing.contains(&revision) {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    Front { url, seen }
}

/// Two services: `api` (canary 25 → pause → 50 → 100) and `web` (blue-green, depends on
/// api), each smoke-tested through its own front (`urls`: api's, web's).
fn release_text(
    name: &str,
    api: &External,
    web: &External,
    urls: (&str, &str),
    pause: &str,
    web_extra: &str,
) -> String {
    let ecs = |fx: &External, image: &str, url: &str| {
        format!(
            r#"cluster = "{}"
service = "{}"
container = "app"
image = "{image}"
listener_rule = "{}"
test_listener_rule = "{}"
target_groups = ["{}", "{}"]
region = "{REGION}"
desired_count = 2
url = "{url}""#,
            fx.cluster, fx.service, fx.rule, fx.test_rule, fx.blue, fx.green
        )
    };
    format!(
        r#"[release]
name = "{name}"
platform = "ecs"
max_parallel = 1
on_failure = "rollback_release"
progress_deadline = "60s"

[[service]]
name = "api"
strategy = "canary"
steps = [{{ set_weight = 25 }}, {{ pause = "{pause}" }}, {{ set_weight = 50 }}]
[service.health]
interval = "300ms"
timeout = "200ms"
healthy_after = 1
[[service.smoke]]
name = "ping"
request = "GET /healthz"
[service.ecs]
{api_ecs}

[[service]]
name = "web"
depends_on = ["api"]
strategy = "blue_green"
blue_green = {{ keep_old_for = "1s" }}
{web_extra}
[service.health]
interval = "300ms"
timeout = "200ms"
healthy_after = 1
[[service.smoke]]
name = "home"
request = "GET /"
[service.ecs]
{web_ecs}
"#,
        api_ecs = ecs(api, "repo/api:2.0", urls.0),
        web_ecs = ecs(web, "repo/web:2.0", urls.1),
    )
}

fn cutover(args: &[&str], endpoint: &str, state: &Path) -> Command {
    let mut cmd = cutover_cli(endpoint, state);
    cmd.args(args).env("CUTOVER_STATE_DIR", state);
    cmd
}

/// No run of these tests may hang CI: a cutover process still running after this is
/// killed (and the test then fails on its missing summary).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Kill `child` if it still runs after [`RUN_LIMIT`]; dropping the returned sender disarms.
fn watchdog(child: Arc<Mutex<Child>>) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(RUN_LIMIT)
            && let Ok(mut c) = child.lock()
        {
            let _ = c.kill();
        }
    });
    tx
}

/// Wait for `child` without holding its lock (the watchdog may need it).
fn wait(child: &Mutex<Child>) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.lock().unwrap().try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `cmd` with piped output under a watchdog.
fn spawn_watched(
    cmd: &mut Command,
) -> (
    Arc<Mutex<Child>>,
    std::process::ChildStdout,
    std::process::ChildStderr,
    std::sync::mpsc::Sender<()>,
) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Arc::new(Mutex::new(child));
    let armed = watchdog(child.clone());
    (child, stdout, stderr, armed)
}

fn read_all(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let (child, stdout, stderr, _armed) = spawn_watched(&mut cmd);
        let (out, err) = (read_all(stdout), read_all(stderr));
        let status = wait(&child);
        Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

/// The JSON lines of a headless run and its closing summary.
fn parse(out: &Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stdout}"))
        })
        .collect();
    let summary = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "summary")
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no summary in\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (lines, summary)
}

fn sorted(mut v: Vec<(String, i32)>) -> Vec<(String, i32)> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_runs_a_canary_and_a_dependent_blue_green_service_to_promotion() {
    let ep = moto::moto().endpoint.clone();
    freeze_task_lifecycle(&ep);
    let conf = config(&ep).await;
    let api = external(&conf, &ep, "e2e-api").await;
    let web = external(&conf, &ep, "e2e-web").await;
    let c = clients(&conf);
    let sched = Scheduler::start(
        c.clone(),
        vec![
            (api.cluster.clone(), api.service.clone()),
            (web.cluster.clone(), web.service.clone()),
        ],
        2,
    );
    // api's new task definition takes a database password from Secrets Manager.
    let secret_arn = c
        .secrets
        .create_secret()
        .name(format!("{}/db", api.name))
        .secret_string(SECRET_VALUE)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let version = current_version(&c, &secret_arn).await;
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    let api_url = format!("url = \"{}\"", fr.url);
    std::fs::write(
        &file,
        release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", "").replacen(
            &api_url,
            &format!("{api_url}\nsecret_env = {{ DB_PASSWORD = \"{secret_arn}\" }}"),
            1,
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = run(cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--output",
            "json",
        ],
        &ep,
        &state,
    ))
    .await;
    sched.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (events, summary) = parse(&out);
    assert_eq!(summary["exit_code"], 0, "{summary}\n{stderr}");
    // The secret's value is nowhere: not in the output, not in the journal; the journal
    // holds the version the release deployed with, and the new task definition pins it.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET_VALUE));
    assert!(!stderr.contains(SECRET_VALUE));
    let journal = journal_text(&state);
    assert!(!journal.contains(SECRET_VALUE));
    assert!(
        journal.contains("ecs_pins") && journal.contains(&version),
        "{journal}"
    );
    let api_sets = external_ids(&c, &api).await;
    let td = c
        .ecs
        .describe_task_definition()
        .task_definition(&api_sets[0].1)
        .send()
        .await
        .unwrap();
    let s = &td.task_definition().unwrap().container_definitions()[0].secrets()[0];
    assert_eq!(
        (s.name(), s.value_from()),
        ("DB_PASSWORD", format!("{secret_arn}:::{version}").as_str())
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    assert_eq!(summary["services"]["web"], "promoted", "{summary}");

    // The engine works with ECS revision names (the running task set's, the image tag),
    // not placeholders.
    for e in events.iter().filter(|e| e["type"] == "weights_set") {
        let revs: Vec<&str> = e["weights"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p[0].as_str())
            .collect();
        assert!(revs.iter().all(|r| ["1.0", "2.0"].contains(r)), "{e}");
    }
    for e in events.iter().filter(|e| e["type"] == "launched") {
        assert_eq!(
            (&e["revision"], &e["replicas"]),
            (&"2.0".into(), &2.into()),
            "{e}"
        );
    }
    // api shifted step by step before web started; web switched at once.
    let shifts = |svc: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["type"] == "weights_set" && e["service"] == svc)
            .map(|e| {
                e["weights"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p[0] == "2.0")
                    .and_then(|p| p[1].as_u64())
                    .unwrap_or(0)
            })
            .collect()
    };
    assert_eq!(shifts("api"), [0, 25, 50, 100]);
    assert_eq!(shifts("web"), [0, 100]);
    let seq_of = |ty: &str, svc: &str| {
        events
            .iter()
            .find(|e| e["type"] == ty && e["service"] == svc)
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or_else(|| panic!("{ty} of {svc}"))
    };
    assert!(seq_of("promoted", "api") < seq_of("launched", "web"));
    // Smoke tests reached each candidate through its test route.
    let seen = fr.seen.lock().unwrap().clone();
    assert!(seen.iter().filter(|r| *r == "2.0").count() >= 2, "{seen:?}");

    // The emulator's state: candidates primary, all traffic on them, the old task sets
    // retired, the new task definitions carry the release's images.
    for (fx, image) in [(&api, "repo/api:2.0"), (&web, "repo/web:2.0")] {
        assert_eq!(
            primary(&c, &fx.cluster, &fx.service).await.as_deref(),
            Some("2.0")
        );
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            sorted(vec![(fx.blue.clone(), 0), (fx.green.clone(), 100)])
        );
        let desc = c
            .ecs
            .describe_services()
            .cluster(&fx.cluster)
            .services(&fx.service)
            .send()
            .await
            .unwrap();
        let sets = desc.services()[0].task_sets();
        let ids: Vec<_> = sets.iter().filter_map(|t| t.external_id()).collect();
        assert_eq!(ids, ["2.0"], "the old task set is retired");
        let td = c
            .ecs
            .describe_task_definition()
            .task_definition(sets[0].task_definition().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            td.task_definition().unwrap().container_definitions()[0].image(),
            Some(image)
        );
    }
    // The run's pins are journaled (ids only) and the run is recorded as promoted.
    let history = run(cutover(&["history", "--output", "json"], &ep, &state)).await;
    let h = String::from_utf8_lossy(&history.stdout);
    assert!(h.contains("promoted"), "{h}");
}

const SECRET_VALUE: &str = "hunter2-never-print-me";

/// Every journal of every run under `state`, as text.
fn journal_text(state: &Path) -> String {
    let mut out = String::new();
    for run in std::fs::read_dir(state.join("runs")).unwrap() {
        let path = run.unwrap().path().join("journal.jsonl");
        out.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    out
}

/// Two EXTERNAL services in moto, the scheduler stand-in running for both.
async fn two_services(prefix: &str) -> (String, External, External, Clients, Scheduler) {
    let ep = moto::moto().endpoint.clone();
    freeze_task_lifecycle(&ep);
    let conf = config(&ep).await;
    let api = external(&conf, &ep, &format!("{prefix}-a")).await;
    let web = external(&conf, &ep, &format!("{prefix}-w")).await;
    let c = clients(&conf);
    let sched = Scheduler::start(
        c.clone(),
        vec![
            (api.cluster.clone(), api.service.clone()),
            (web.cluster.clone(), web.service.clone()),
        ],
        2,
    );
    (ep, api, web, c, sched)
}

async fn external_ids(c: &Clients, fx: &External) -> Vec<(String, String)> {
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = desc.services()[0]
        .task_sets()
        .iter()
        .map(|t| {
            (
                t.external_id().unwrap_or("").to_string(),
                t.task_definition().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// ALB metrics of one target group, put into CloudWatch every 300 ms while the run goes:
/// `requests` per put, `errors` of them 5xx.
fn feed_cloudwatch(
    c: Clients,
    fx: &External,
    tg: &str,
    requests: f64,
    errors: f64,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let dims = vec![
        Dimension::builder()
            .name("TargetGroup")
            .value(tg.rsplit(':').next().unwrap())
            .build(),
        Dimension::builder()
            .name("LoadBalancer")
            .value(fx.load_balancer.split(":loadbalancer/").nth(1).unwrap())
            .build(),
    ];
    let task = tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            let now = DateTime::from(std::time::SystemTime::now());
            let datum = |name: &str, v: f64| {
                MetricDatum::builder()
                    .metric_name(name)
                    .set_dimensions(Some(dims.clone()))
                    .timestamp(now)
                    .value(v)
                    .build()
            };
            let _ = c
                .cloudwatch
                .put_metric_data()
                .namespace("AWS/ApplicationELB")
                .metric_data(datum("RequestCount", requests))
                .metric_data(datum("HTTPCode_Target_5XX_Count", errors))
                .metric_data(datum("TargetResponseTime", 0.05))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bake_judged_on_cloudwatch_rolls_back_the_weights_and_the_primary_task_set() {
    let (ep, api, web, c, sched) = two_services("e2e-rb").await;
    let fr = front(&[]);
    // web's new revision answers 30 % 5xx on its (green) target group, as CloudWatch sees it.
    let (stop_feed, feed) = feed_cloudwatch(c.clone(), &web, &web.green, 100.0, 30.0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        release_text(
            &api.name,
            &api,
            &web,
            (&fr.url, &fr.url),
            "1s",
            "[service.analysis]\njudge = \"threshold\"\nmin_requests = 50\nmin_duration = \"3s\"\nmax_error_rate = 0.05",
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = run(cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--output",
            "json",
        ],
        &ep,
        &state,
    ))
    .await;
    stop_feed.store(true, Ordering::Relaxed);
    let _ = feed.await;
    sched.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (events, summary) = parse(&out);
    assert_eq!(out.status.code(), Some(3), "{summary}\n{stderr}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    assert_eq!(summary["services"]["web"], "rolled_back", "{summary}");
    let reason = summary["reasons"]["web"].as_str().unwrap_or("");
    assert!(reason.contains("analysis failed"), "{summary}");
    // The verdict came from CloudWatch numbers.
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "verdict" && e["service"] == "web"),
        "no verdict in {events:?}"
    );
    // web had switched: 2.0 took all traffic and was the primary task set.
    assert!(events.iter().any(|e| {
        e["type"] == "weights_set"
            && e["service"] == "web"
            && e["weights"] == serde_json::json!([["2.0", 100]])
    }));
    // Afterwards: 1.0 primary again, all traffic on blue (1.0's target group), the
    // candidate's task set retired; api stays on 2.0.
    assert_eq!(
        primary(&c, &web.cluster, &web.service).await.as_deref(),
        Some("1.0")
    );
    assert_eq!(
        rule_weights(&c, &web.rule).await,
        sorted(vec![(web.blue.clone(), 100), (web.green.clone(), 0)])
    );
    let sets = external_ids(&c, &web).await;
    assert_eq!(sets, vec![("1.0".to_string(), web.td_v1.clone())]);
    assert_eq!(
        primary(&c, &api.cluster, &api.service).await.as_deref(),
        Some("2.0")
    );
    let history = run(cutover(&["history", "--output", "json"], &ep, &state)).await;
    let h = String::from_utf8_lossy(&history.stdout);
    assert!(h.contains("rolled_back"), "{h}");
}

/// The two-service release (api's pause `pause`) with api's image `REPO:2.0` in ECR, in
/// `dir/release.toml`.
fn api_in_ecr(
    dir: &Path,
    (api, web): (&External, &External),
    url: &str,
    pause: &str,
    repo: &str,
) -> std::path::PathBuf {
    let file = dir.join("release.toml");
    let text = release_text(&api.name, api, web, (url, url), pause, "");
    std::fs::write(
        &file,
        text.replacen("repo/api:2.0", &format!("{repo}:2.0"), 1),
    )
    .unwrap();
    file
}

/// `cutover resume` of the run under `state`: it ends with api and web promoted.
async fn resumed_to_promotion(ep: &str, state: &Path, sched: Scheduler) {
    let out = run(cutover(
        &["resume", "--headless", "--output", "json"],
        ep,
        state,
    ))
    .await;
    sched.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (_, summary) = parse(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}\n{stderr}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    assert_eq!(summary["services"]["web"], "promoted", "{summary}");
}

/// Deploy `file` and kill it (SIGKILL) once api's pause step started.
async fn killed_at_api_pause(file: &Path, ep: &str, state: &Path) {
    killed_at_api_pause_with(file, ep, state, &[]).await
}

/// The same, with `env` set for the deploy (a journal in PostgreSQL).
async fn killed_at_api_pause_with(file: &Path, ep: &str, state: &Path, env: &[(&str, &str)]) {
    let mut deploy = cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--output",
            "json",
        ],
        ep,
        state,
    );
    deploy.envs(env.iter().copied());
    let seen = deploy_until_killed(deploy, at_api_pause).await;
    assert!(
        seen.iter().any(|e| e["type"] == "step_started"),
        "the run was killed mid-way: {seen:?}"
    );
}

/// Start `cutover deploy`, read its JSON lines until `until` matches one, then kill it
/// (SIGKILL: no cleanup, as a crashed host).
async fn deploy_until_killed(
    cmd: Command,
    until: impl Fn(&serde_json::Value) -> bool + Send + 'static,
) -> Vec<serde_json::Value> {
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let (child, stdout, stderr, _armed) = spawn_watched(&mut cmd);
        let _err = read_all(stderr);
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let stop = until(&v);
            seen.push(v);
            if stop {
                break;
            }
        }
        let _ = child.lock().unwrap().kill();
        wait(&child);
        seen
    })
    .await
    .unwrap()
}

/// The two-service release in `dir/release.toml` with a long pause (3 s) at api's 25 %:
/// a run is killed there.
fn paused_at_25(dir: &Path, api: &External, web: &External, url: &str) -> std::path::PathBuf {
    let file = dir.join("release.toml");
    std::fs::write(
        &file,
        release_text(&api.name, api, web, (url, url), "3s", ""),
    )
    .unwrap();
    file
}

/// api's pause step started (the event line of a headless run).
fn at_api_pause(e: &serde_json::Value) -> bool {
    e["type"] == "step_started" && e["service"] == "api" && e["action"]["action"] == "pause"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deploy_resumes_and_refuses_a_listener_changed_meanwhile() {
    let (ep, api, web, c, sched) = two_services("e2e-rs").await;
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = paused_at_25(dir.path(), &api, &web, &fr.url);
    let state = dir.path().join("state");
    killed_at_api_pause(&file, &ep, &state).await;
    let at_25 = sorted(vec![(api.blue.clone(), 75), (api.green.clone(), 25)]);
    assert_eq!(rule_weights(&c, &api.rule).await, at_25);

    // Something else rewrites the rule while no cutover runs: resume refuses, changes
    // nothing, and says what the journal set and what is there.
    c.elb
        .modify_rule()
        .rule_arn(&api.rule)
        .actions(forward(&[(&api.blue, 100), (&api.green, 0)]))
        .send()
        .await
        .unwrap();
    let refused = run(cutover(
        &["resume", "--headless", "--output", "json"],
        &ep,
        &state,
    ))
    .await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("changed while no cutover ran"), "{err}");
    assert!(err.contains("1.0=75% 2.0=25%"), "{err}");
    assert_eq!(
        rule_weights(&c, &api.rule).await,
        sorted(vec![(api.blue.clone(), 100), (api.green.clone(), 0)])
    );

    // Put back what the journal says; resume carries on to the end.
    c.elb
        .modify_rule()
        .rule_arn(&api.rule)
        .actions(forward(&[(&api.blue, 75), (&api.green, 25)]))
        .send()
        .await
        .unwrap();
    resumed_to_promotion(&ep, &state, sched).await;
    for fx in [&api, &web] {
        assert_eq!(
            primary(&c, &fx.cluster, &fx.service).await.as_deref(),
            Some("2.0")
        );
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            sorted(vec![(fx.blue.clone(), 0), (fx.green.clone(), 100)])
        );
        // One task definition registered for 2.0, none more on resume.
        assert_eq!(revisions(&c, &fx.family).await, 2, "{}", fx.name);
    }
}

/// Run `cmd`, handing each JSON line of its stdout to `on_line` as it comes; returns the
/// lines and the exit code.
async fn run_watching(
    cmd: Command,
    mut on_line: impl FnMut(&serde_json::Value) + Send + 'static,
) -> (Vec<serde_json::Value>, Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let (child, stdout, stderr, _armed) = spawn_watched(&mut cmd);
        let err = read_all(stderr);
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            on_line(&v);
            seen.push(v);
        }
        let status = wait(&child);
        let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        (seen, status.code(), err)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_during_a_deploy_are_retried_and_it_still_promotes() {
    let (ep, api, web, c, sched) = two_services("e2e-flt").await;
    let proxy = FaultProxy::start(&ep).await;
    let faults = [
        ("DescribeServices", Fault::Throttle, 3),
        ("RegisterTaskDefinition", Fault::Throttle, 1),
        ("CreateTaskSet", Fault::Status(503), 1),
        ("DescribeRules", Fault::Status(500), 2),
        ("ModifyRule", Fault::Throttle, 2),
        (
            "UpdateServicePrimaryTaskSet",
            Fault::ForwardThenStatus(503),
            1,
        ),
        ("DeleteTaskSet", Fault::Status(503), 1),
    ];
    for (op, f, n) in faults {
        proxy.inject(op, f, n);
    }
    let expected: u32 = faults.iter().map(|(_, _, n)| n).sum();
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", ""),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = run(cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--output",
            "json",
        ],
        &proxy.endpoint,
        &state,
    ))
    .await;
    sched.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (_, summary) = parse(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}\n{stderr}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    assert_eq!(summary["services"]["web"], "promoted", "{summary}");
    assert_eq!(
        proxy.faults_served(),
        expected,
        "every injected fault was met"
    );
    for fx in [&api, &web] {
        assert_eq!(
            primary(&c, &fx.cluster, &fx.service).await.as_deref(),
            Some("2.0")
        );
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            sorted(vec![(fx.blue.clone(), 0), (fx.green.clone(), 100)])
        );
        // A retried CreateTaskSet made one task set, not two.
        assert_eq!(external_ids(&c, fx).await.len(), 1, "{}", fx.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alb_outage_mid_canary_holds_the_known_split_until_it_clears() {
    let (ep, api, web, c, sched) = two_services("e2e-out").await;
    let proxy = Arc::new(FaultProxy::start(&ep).await);
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", ""),
    )
    .unwrap();
    let state = dir.path().join("state");
    // Once api holds at 25 %, every ModifyRule answers 503 until two failed shifts (to
    // 50 %) were reported; then the API recovers.
    let p = proxy.clone();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let rule_during = Arc::new(Mutex::new(None));
    let during = rule_during.clone();
    let (c2, api_rule) = (c.clone(), api.rule.clone());
    let handle = tokio::runtime::Handle::current();
    let (lines, code, stderr) = run_watching(
        cutover(
            &[
                "deploy",
                file.to_str().unwrap(),
                "--headless",
                "--output",
                "json",
            ],
            &proxy.endpoint,
            &state,
        ),
        move |e| {
            // At 25 % and holding (the pause step started): the shift to 25 % is made.
            if e["type"] == "step_started"
                && e["service"] == "api"
                && e["action"]["action"] == "pause"
            {
                p.inject("ModifyRule", Fault::Status(503), u32::MAX);
            }
            if e["type"] == "platform_error" && e["service"] == "api" {
                let mut v = errs.lock().unwrap();
                v.push(e["message"].as_str().unwrap_or("").to_string());
                if v.len() == 2 {
                    let live = handle.block_on(rule_weights(&c2, &api_rule));
                    *during.lock().unwrap() = Some(live);
                    p.clear();
                }
            }
        },
    )
    .await;
    sched.stop().await;
    let summary = lines.last().cloned().unwrap_or_default();
    assert_eq!(code, Some(0), "{summary}\n{stderr}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    let errors = errors.lock().unwrap().clone();
    assert!(errors.len() >= 2, "{errors:?}");
    for m in &errors {
        // Each failed shift says what is in force: the split before it, intact.
        assert!(m.contains("the rule forwards"), "{m}");
        assert!(m.contains("=75") && m.contains("=25"), "{m}");
    }
    assert_eq!(
        rule_during.lock().unwrap().clone(),
        Some(sorted(vec![
            (api.blue.clone(), 75),
            (api.green.clone(), 25)
        ])),
        "the split stayed whole during the outage"
    );
    assert_eq!(
        rule_weights(&c, &api.rule).await,
        sorted(vec![(api.blue.clone(), 0), (api.green.clone(), 100)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaunch_uses_the_pinned_secret_version_not_the_current_one() {
    use cutover::platform::Platform;
    use cutover::platform::ecs::EcsPlatform;
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let fx = external(&conf, &ep, "pin").await;
    let c = clients(&conf);
    let arn = c
        .secrets
        .create_secret()
        .name(format!("{}/db", fx.name))
        .secret_string(SECRET_VALUE)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let first = current_version(&c, &arn).await;
    let release = fx.canary_release(&format!("secret_env = {{ DB = \"{arn}\" }}"));
    let p = EcsPlatform::from_release_with_retry(&release, &conf, fast_retry()).unwrap();
    let candidates = [("api".to_string(), "2.0".to_string())].into();
    let pins = p.pin_release(&candidates).await.unwrap();
    let pin = &pins.services["api"];
    assert_eq!((pin.baseline.as_str(), pin.replicas), ("1.0", 0));
    assert_eq!(pin.baseline_task_definition, fx.td_v1);
    assert_eq!(pin.secret_versions[0].version_id, first);
    assert!(!format!("{pins:?}").contains(SECRET_VALUE));
    // The secret rotates before the launch (say, the run was resumed a day later).
    c.secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string("rotated-value")
        .send()
        .await
        .unwrap();
    assert_ne!(current_version(&c, &arn).await, first);
    // A platform given the journaled pins launches with the pinned version.
    let resumed = EcsPlatform::from_release_with_retry(&release, &conf, fast_retry()).unwrap();
    resumed.apply_pins(&pins).unwrap();
    resumed.launch("api", "2.0", 0).await.unwrap();
    let sets = {
        let d = c
            .ecs
            .describe_services()
            .cluster(&fx.cluster)
            .services(&fx.service)
            .send()
            .await
            .unwrap();
        d.services()[0].task_sets().to_vec()
    };
    let td = sets
        .iter()
        .find(|t| t.external_id() == Some("2.0"))
        .and_then(|t| t.task_definition())
        .unwrap()
        .to_string();
    let td = c
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap();
    let s = &td.task_definition().unwrap().container_definitions()[0].secrets()[0];
    assert_eq!(s.value_from(), format!("{arn}:::{first}"));
    assert_eq!(resumed.secret_versions("api")[0].version_id, first);
    // A release whose image already runs is refused before anything changes.
    let same = [("api".to_string(), "1.0".to_string())].into();
    let err = p.pin_release(&same).await.unwrap_err();
    assert!(err.message.contains("already runs revision"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_stops_the_deploy_before_anything_changes() {
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let api = external(&conf, &ep, "e2e-pre-a").await;
    let web = external(&conf, &ep, "e2e-pre-w").await;
    let c = clients(&conf);
    let missing = format!(
        "arn:aws:secretsmanager:{REGION}:123456789012:secret:{}/gone-AbCdEf",
        web.name
    );
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    let text = release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", "");
    // The secret goes on web (its [service.ecs] table ends the file), the second service:
    // the preflight covers the whole release before the first service changes.
    let text = format!("{text}secret_env = {{ TOKEN = \"{missing}\" }}\n");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let out = run(cutover(
        &["deploy", file.to_str().unwrap(), "--headless"],
        &ep,
        &state,
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets preflight failed"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("web"), "{stderr}");
    // The refused run is over: nothing to resume.
    let resume = run(cutover(&["resume", "--headless"], &ep, &state)).await;
    let err = String::from_utf8_lossy(&resume.stderr);
    assert_eq!(resume.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to resume"), "{err}");
    for fx in [&api, &web] {
        assert_eq!(
            revisions(&c, &fx.family).await,
            1,
            "no task definition registered"
        );
        assert_eq!(external_ids(&c, fx).await.len(), 1, "no task set created");
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            sorted(vec![(fx.blue.clone(), 100), (fx.green.clone(), 0)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rollback_of_a_served_release_restores_weights_and_primary() {
    let (ep, api, web, c, sched) = two_services("e2e-ctl").await;
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    // web keeps 1.0 warm for a minute after its switch: long enough to be rolled back.
    std::fs::write(
        &file,
        release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", "")
            .replace(r#"keep_old_for = "1s""#, r#"keep_old_for = "60s""#),
    )
    .unwrap();
    let state = dir.path().join("state");
    // While web keeps the old revision warm (2.0 primary with all traffic), alice rolls
    // it back through the control API.
    let ctl_out = Arc::new(Mutex::new(None));
    let ctl_seen = ctl_out.clone();
    let (ctl_ep, ctl_state) = (ep.clone(), state.clone());
    let (lines, code, stderr) = run_watching(
        cutover(
            &["serve", file.to_str().unwrap(), "--output", "json"],
            &ep,
            &state,
        ),
        move |e| {
            if e["type"] == "step_started"
                && e["service"] == "web"
                && e["action"]["action"] == "keep_old"
            {
                let out = cutover(
                    &[
                        "ctl",
                        "rollback",
                        "web",
                        "--reason",
                        "checkout errors reported by support",
                        "--operator",
                        "alice",
                    ],
                    &ctl_ep,
                    &ctl_state,
                )
                .output()
                .unwrap();
                *ctl_seen.lock().unwrap() = Some(out);
            }
        },
    )
    .await;
    sched.stop().await;
    let ctl = ctl_out
        .lock()
        .unwrap()
        .take()
        .expect("the rollback was sent");
    assert_eq!(
        ctl.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let summary = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "summary")
        .cloned()
        .unwrap_or_default();
    assert_eq!(code, Some(3), "{summary}\n{stderr}");
    assert_eq!(summary["services"]["web"], "rolled_back", "{summary}");
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    let started = lines
        .iter()
        .find(|e| e["type"] == "rollback_started" && e["service"] == "web")
        .expect("rollback_started");
    assert_eq!(started["trigger"]["operator"], "alice", "{started}");
    // The emulator: web back on 1.0 (primary, all traffic), 2.0's task set retired.
    assert_eq!(
        primary(&c, &web.cluster, &web.service).await.as_deref(),
        Some("1.0")
    );
    assert_eq!(
        rule_weights(&c, &web.rule).await,
        sorted(vec![(web.blue.clone(), 100), (web.green.clone(), 0)])
    );
    assert_eq!(
        external_ids(&c, &web).await,
        vec![("1.0".to_string(), web.td_v1.clone())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_can_come_from_the_region_flag() {
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let api = external(&conf, &ep, "e2e-reg-a").await;
    let web = external(&conf, &ep, "e2e-reg-w").await;
    let missing = format!(
        "arn:aws:secretsmanager:{REGION}:123456789012:secret:{}/gone-AbCdEf",
        web.name
    );
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    // No `region` in the release, no AWS_REGION: only the flag can name it.
    let text = release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", "")
        .replace(&format!("region = \"{REGION}\"\n"), "");
    let text = format!("{text}secret_env = {{ TOKEN = \"{missing}\" }}\n");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let mut without = cutover(
        &["deploy", file.to_str().unwrap(), "--headless"],
        &ep,
        &state,
    );
    without
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let out = run(without).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no AWS region") && stderr.contains("--region"),
        "{stderr}"
    );
    // With --region the deploy reaches AWS in that region: its secrets preflight runs
    // (and refuses the missing secret), so the region was used.
    let mut with = cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--region",
            REGION,
        ],
        &ep,
        &state,
    );
    with.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let out = run(with).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets preflight failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_at_zero_tasks_without_desired_count_is_refused_in_preflight() {
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let api = external(&conf, &ep, "e2e-zero-a").await;
    let web = external(&conf, &ep, "e2e-zero-w").await;
    let c = clients(&conf);
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    // The fixtures' ECS services run 0 tasks; without `desired_count` a revision would
    // launch 0 tasks and wait until the progress deadline.
    let text = release_text(&api.name, &api, &web, (&fr.url, &fr.url), "1s", "")
        .replace("desired_count = 2\n", "");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let started = std::time::Instant::now();
    let out = run(cutover(
        &["deploy", file.to_str().unwrap(), "--headless"],
        &ep,
        &state,
    ))
    .await;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("runs 0 tasks") && stderr.contains("desired_count"),
        "{stderr}"
    );
    assert!(
        took < Duration::from_secs(30),
        "refused only after {took:?}"
    );
    for fx in [&api, &web] {
        assert_eq!(
            revisions(&c, &fx.family).await,
            1,
            "no task definition registered"
        );
        assert_eq!(external_ids(&c, fx).await.len(), 1, "no task set created");
    }
}

// ---- Image gates (issue 16, item 4): digests pinned at the start, the scan gate. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecr_tag_is_deployed_by_the_digest_journaled_at_the_start_even_after_it_moves() {
    let (ep, api, web, c, sched) = two_services("e2e-img").await;
    let conf = config(&ep).await;
    let repo_name = format!("{}/api", api.name);
    let repo = ecr_repository(&conf, &repo_name).await;
    let first = ecr_push(&conf, &repo_name, "2.0", 'a').await;
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = api_in_ecr(dir.path(), (&api, &web), &fr.url, "3s", &repo);
    let state = dir.path().join("state");
    killed_at_api_pause(&file, &ep, &state).await;
    // The resolution is journaled: api's tag and its digest; web (not in ECR) by tag.
    let journal = journal_text(&state);
    let images = journal
        .lines()
        .find(|l| l.contains("\"kind\":\"ecs_images\""))
        .unwrap_or_else(|| panic!("no ecs_images entry:\n{journal}"));
    assert!(
        images.contains(&format!("{repo}:2.0")) && images.contains(&first),
        "{images}"
    );
    assert!(images.contains("repo/web:2.0 not pinned"), "{images}");
    // The candidate runs by digest, named by its tag.
    let sets = external_ids(&c, &api).await;
    let candidate = sets.iter().find(|(r, _)| r == "2.0").unwrap();
    assert_eq!(
        container_image(&c, &candidate.1).await,
        (format!("{repo}@{first}"), Some("2.0".to_string()))
    );

    // Someone moves the tag while the run is stopped; resume keeps the journaled digest.
    let moved = ecr_push(&conf, &repo_name, "2.0", 'b').await;
    assert_ne!(moved, first);
    resumed_to_promotion(&ep, &state, sched).await;
    let sets = external_ids(&c, &api).await;
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(
        container_image(&c, &sets[0].1).await,
        (format!("{repo}@{first}"), Some("2.0".to_string()))
    );
    let web_sets = external_ids(&c, &web).await;
    assert_eq!(
        container_image(&c, &web_sets[0].1).await,
        ("repo/web:2.0".to_string(), None)
    );
    assert!(!journal_text(&state).contains(&moved));
    // The report names the image and its digest.
    let report = run(cutover(&["report", "--format", "json"], &ep, &state)).await;
    let r: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|e| panic!("report: {e}: {}", String::from_utf8_lossy(&report.stderr)));
    let api_change = r["changes"]["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["service"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api_change["image"], format!("{repo}:2.0"));
    assert_eq!(api_change["digest"], first.as_str());
}

/// The image of the Trivy fixture (tests/fixtures/trivy/api-2.0.json): its repository and
/// layer are fixed, so its digest is the one the report records.
const SCANNED_REPO: &str = "cutover-scan/api";

/// `cutover deploy FILE --headless --output json --policy POLICY` (and no other policy).
fn deploy_with_policy(file: &Path, policy: &Path, ep: &str, state: &Path) -> Command {
    let mut cmd = cutover(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--headless",
            "--output",
            "json",
            "--policy",
            policy.to_str().unwrap(),
        ],
        ep,
        state,
    );
    cmd.env("CUTOVER_POLICY", "");
    cmd
}

fn policy_file(dir: &Path, scan: &str) -> std::path::PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, scan).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trivy_report_refuses_findings_until_each_is_waived_and_the_waivers_are_journaled() {
    let (ep, api, web, c, sched) = two_services("e2e-scan").await;
    let conf = config(&ep).await;
    let repo = ecr_repository(&conf, SCANNED_REPO).await;
    let digest = ecr_push(&conf, SCANNED_REPO, "2.0", 'a').await;
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trivy/api-2.0.json"),
    )
    .unwrap();
    assert!(
        fixture.contains(&format!("{repo}@{digest}")),
        "the fixture scanned this image"
    );
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    std::fs::write(reports.join("api.json"), &fixture).unwrap();
    let file = api_in_ecr(dir.path(), (&api, &web), &fr.url, "1s", &repo);
    let state = dir.path().join("state");
    let scan = r#"[scan]
severity = "HIGH"
trivy = ["reports/api.json", "reports/web.json"]
"#;
    // web's report: its image, nothing found.
    std::fs::write(
        reports.join("web.json"),
        r#"{"ArtifactName": "repo/web:2.0", "Results": [{"Target": "x"}]}"#,
    )
    .unwrap();
    let deploy = |policy: &Path| deploy_with_policy(&file, policy, &ep, &state);
    // Every finding at or above HIGH is listed with its image and severity.
    let refused = run(deploy(&policy_file(dir.path(), scan))).await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    for want in [
        format!("service api image {repo}:2.0: CRITICAL CVE-2024-45490 in libexpat1"),
        format!("service api image {repo}:2.0: HIGH CVE-2023-52425 in libexpat1"),
        "[[scan.waiver]] id = \"CVE-2024-45490\"".to_string(),
    ] {
        assert!(err.contains(&want), "{want}\n{err}");
    }
    assert!(!err.contains("CVE-2024-28757"), "MEDIUM is below: {err}");
    // Refused before anything changed, journaled as a refused run.
    assert_eq!(external_ids(&c, &api).await.len(), 1);
    let journal = journal_text(&state);
    assert!(
        journal.contains("\"kind\":\"policy\"") && journal.contains("\"rule\":\"scan\""),
        "{journal}"
    );
    let history = run(cutover(&["history", "--output", "json"], &ep, &state)).await;
    assert!(String::from_utf8_lossy(&history.stdout).contains("refused"));

    // Waived by name with a reason: the release goes on; the waivers are journaled and
    // in the report.
    let waived = format!(
        "{scan}{}",
        r#"
[[scan.waiver]]
id = "CVE-2024-45490"
reason = "expat is never given untrusted XML"
image = "REPO"

[[scan.waiver]]
id = "CVE-2023-52425"
reason = "denial of service only; fixed in the next base image"
expires = "2999-01-01"
"#
        .replace("REPO", &repo)
    );
    let out = run(deploy(&policy_file(dir.path(), &waived))).await;
    sched.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (_, summary) = parse(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}\n{stderr}");
    let run_id = summary["run_id"].as_str().unwrap_or_default().to_string();
    let report = run(cutover(&["report", "--format", "json"], &ep, &state)).await;
    let r: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|e| panic!("report: {e}: {}", String::from_utf8_lossy(&report.stderr)));
    let ids: Vec<&str> = r["waivers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["CVE-2024-45490", "CVE-2023-52425"],
        "{run_id} {}",
        r["waivers"]
    );
    assert_eq!(
        r["waivers"][0]["reason"], "expat is never given untrusted XML",
        "{}",
        r["waivers"]
    );
    let md = run(cutover(&["report", "--format", "md"], &ep, &state)).await;
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("scan finding waived: CRITICAL CVE-2024-45490"),
        "{md}"
    );
    assert!(md.contains(&digest), "the digest is in the report: {md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_scan_findings_refuse_the_release_naming_each_finding() {
    let ep = moto::moto().endpoint.clone();
    let conf = config(&ep).await;
    let api = external(&conf, &ep, "e2e-ecrscan").await;
    let c = clients(&conf);
    let repo_name = format!("{}/api", api.name);
    let repo = ecr_repository(&conf, &repo_name).await;
    let digest = ecr_push(&conf, &repo_name, "2.0", 'd').await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    // One service: api, canary, its image in ECR.
    let fr = front(&[]);
    let text = release_text(&api.name, &api, &api, (&fr.url, &fr.url), "1s", "");
    let one = text.split("\n[[service]]\nname = \"web\"").next().unwrap();
    std::fs::write(
        &file,
        one.replacen("repo/api:2.0", &format!("{repo}:2.0"), 1),
    )
    .unwrap();
    let policy = policy_file(
        dir.path(),
        "[scan]\nseverity = \"HIGH\"\nsource = \"ecr\"\n",
    );
    let state = dir.path().join("state");
    let deploy = || deploy_with_policy(&file, &policy, &ep, &state);
    // Not scanned yet: refused, saying how to scan it.
    let out = run(deploy()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "image {repo}:2.0 ({digest}): ECR has no scan of it"
        )),
        "{err}"
    );
    // Scanned: moto's finding (CVE-9999-9999, HIGH, package moto_fake) refuses it.
    ecr(&conf)
        .start_image_scan()
        .repository_name(&repo_name)
        .image_id(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_digest(&digest)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = run(deploy()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "service api image {repo}:2.0: HIGH CVE-9999-9999 in moto_fake"
        )),
        "{err}"
    );
    assert_eq!(external_ids(&c, &api).await.len(), 1, "nothing changed");
}

/// A leader journaling in PostgreSQL is killed (SIGKILL) at api's canary pause; a
/// `serve --standby` on the same journal takes the run over and finishes it. The listener
/// keeps the split the leader set from the kill until the standby's engine moves it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_ecs_leader_mid_canary_with_the_split_held() {
    // The synchronous postgres client may not run on this test's runtime.
    let pg = tokio::task::spawn_blocking(|| {
        let pg = support::pg::PgServer::start();
        pg.create_db("ecs_standby");
        pg
    })
    .await
    .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/ecs_standby", pg.port);
    let (ep, api, web, c, sched) = two_services("e2e-sb").await;
    let fr = front(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = paused_at_25(dir.path(), &api, &web, &fr.url);
    let lease = [
        ("CUTOVER_JOURNAL", url.as_str()),
        ("CUTOVER_JOURNAL_LEASE", "2s"),
    ];
    let mut sb = cutover(
        &["serve", "--standby", "--output", "json"],
        &ep,
        &dir.path().join("standby"),
    );
    sb.envs(lease);
    let (standby, sb_out, sb_err, _armed) = spawn_watched(&mut sb);
    let sb_err = support::lines::collect(sb_err);
    let sb_out = support::lines::collect(sb_out);
    let said = |l: &support::lines::Lines, what: &str| {
        l.lock().unwrap().iter().any(|line| line.contains(what))
    };
    support::wait_for("the standby to watch", Duration::from_secs(30), || {
        said(&sb_err, "standby watching")
    });
    killed_at_api_pause_with(&file, &ep, &dir.path().join("leader"), &lease).await;
    let at_25 = sorted(vec![(api.blue.clone(), 75), (api.green.clone(), 25)]);
    // From the kill to the takeover (and a second after it, inside the restarted pause),
    // the listener serves the leader's split.
    let mut db = tokio::task::spawn_blocking({
        let url = url.clone();
        move || postgres::Client::connect(&url, postgres::NoTls).unwrap()
    })
    .await
    .unwrap();
    let mut taken_at = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert_eq!(rule_weights(&c, &api.rule).await, at_25, "the split moved");
        let (n, db_back) = tokio::task::spawn_blocking(move || {
            let n: i64 = db
                .query_one(
                    "SELECT count(*) FROM cutover_journal_entries
                      WHERE line LIKE '%\"kind\":\"takeover\"%'",
                    &[],
                )
                .unwrap()
                .get(0);
            (n, db)
        })
        .await
        .unwrap();
        db = db_back;
        if n > 0 && taken_at.is_none() {
            taken_at = Some(std::time::Instant::now());
        }
        if taken_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::wait_for("the standby to finish the run", RUN_LIMIT, || {
        said(&sb_err, "ended here")
    });
    sched.stop().await;
    let text = sb_err.lock().unwrap().join("\n");
    assert!(said(&sb_err, "ended here (exit 0)"), "{text}");
    assert!(text.contains("nothing relaunched"), "{text}");
    let summary: serde_json::Value = serde_json::from_str(
        sb_out
            .lock()
            .unwrap()
            .last()
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(summary["services"]["api"], "promoted", "{summary}");
    assert_eq!(summary["services"]["web"], "promoted", "{summary}");
    for fx in [&api, &web] {
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            sorted(vec![(fx.blue.clone(), 0), (fx.green.clone(), 100)])
        );
    }
    let epochs: Vec<i64> = tokio::task::spawn_blocking(move || {
        db.query(
            "SELECT epoch FROM cutover_journal_entries ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
    .await
    .unwrap();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    assert_eq!(epochs.first(), Some(&1));
    assert_eq!(epochs.last(), Some(&2));
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(standby.lock().unwrap().id() as i32, libc::SIGTERM) };
    assert!(wait(&standby).success());
}
