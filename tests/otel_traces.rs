//! Traces of real runs (issue 17): `cutover deploy` with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! aimed at an in-process OTLP/HTTP receiver (hyper), which decodes every request with
//! OpenTelemetry's own protobuf types (`opentelemetry-proto`). Checked: the span tree of
//! a local deploy against its journal (every service and step named, the rollback an
//! event with error status), `TRACEPARENT` in a smoke command's and a replica's
//! environment, one trace across a `kill -9` and `resume`, the OTLP headers never shown,
//! and a release that finishes when the collector hangs or is down.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use support::net::free_port;

/// What the receiver got: every span with its resource's attributes, and the headers of
/// every request.
#[derive(Default)]
struct Seen {
    spans: Vec<(Vec<KeyValue>, Span)>,
    headers: Vec<HashMap<String, String>>,
}

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    /// A collector on a loopback port; `hang`: it reads each request and never answers.
    fn start(hang: bool) -> Receiver {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let seen = seen2.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                assert_eq!(req.uri().path(), "/v1/traces");
                                assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let decoded = ExportTraceServiceRequest::decode(body).unwrap();
                                {
                                    let mut s = seen.lock().unwrap();
                                    s.headers.push(headers);
                                    for rs in decoded.resource_spans {
                                        let res = rs.resource.unwrap_or_default().attributes;
                                        for ss in rs.scope_spans {
                                            for sp in ss.spans {
                                                s.spans.push((res.clone(), sp));
                                            }
                                        }
                                    }
                                }
                                if hang {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Receiver {
            addr: rx.recv().unwrap(),
            seen,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.seen
            .lock()
            .unwrap()
            .spans
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(n) => n.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

const RELEASE: &str = r#"
[release]
name = "traced"
platform = "local"
environment = "staging"
progress_deadline = "30s"

[[service]]
name = "api"
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "PAUSE" }, { set_weight = 100 } ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[[service.smoke]]
name = "env"
command = ["sh", "-c", "echo \"$TRACEPARENT\" > ENVFILE"]
[service.local]
listen = "127.0.0.1:PORT_A"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}", "--service", "MARKER-api"]
current = { revision = "v1" }
target = { revision = "v2" }

# Not a dependent (its smoke test would then also run against api): the second wave
# because max_parallel is 1.
[[service]]
name = "web"
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "100ms" } ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[[service.smoke]]
name = "broken"
command = ["WEBSMOKE"]
[service.local]
listen = "127.0.0.1:PORT_B"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}", "--service", "MARKER-web"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

/// A release file in `dir`: `api` then `web` (whose smoke test runs `web_smoke`).
fn release(dir: &Path, pause: &str, web_smoke: &str) -> (PathBuf, PathBuf, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("otelmark{}x{n}", std::process::id());
    let envfile = dir.join("smoke-env");
    let text = RELEASE
        .replace("PAUSE", pause)
        .replace("ENVFILE", envfile.to_str().unwrap())
        .replace("WEBSMOKE", web_smoke)
        .replace("MARKER", &marker)
        .replace("PORT_A", &free_port().to_string())
        .replace("PORT_B", &free_port().to_string());
    let file = dir.join("release.toml");
    std::fs::write(&file, text).unwrap();
    (file, envfile, marker)
}

const SECRET_HEADER: &str = "Bearer tok-OTELHEADERMARK";

fn cutover(args: &[&str], state: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(support::CUTOVER);
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20tok-OTELHEADERMARK",
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    c
}

/// The run's journal entries (one run under `state`).
fn journal(state: &Path) -> Vec<serde_json::Value> {
    let runs: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("journal.jsonl").exists())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    std::fs::read_to_string(runs[0].join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The journaled trace id and root span id.
fn journaled_ids(entries: &[serde_json::Value]) -> (String, String) {
    let t: Vec<&serde_json::Value> = entries.iter().filter(|e| e["kind"] == "trace").collect();
    assert_eq!(t.len(), 1, "one trace entry");
    (
        t[0]["payload"]["trace_id"].as_str().unwrap().to_string(),
        t[0]["payload"]["span_id"].as_str().unwrap().to_string(),
    )
}

fn output_text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_local_deploy_is_one_trace_whose_spans_name_every_service_and_step() {
    let rx = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let (file, envfile, _) = release(dir.path(), "200ms", "false");
    let state = dir.path().join("state");
    let out = cutover(
        &["deploy", "--headless", "--output", "json"],
        &state,
        &format!("http://{}", rx.addr),
    )
    .arg(&file)
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "web rolls back:\n{text}");
    let entries = journal(&state);
    let (trace_id, root_id) = journaled_ids(&entries);

    // The smoke command ran under the release's root span.
    let tp = std::fs::read_to_string(&envfile).unwrap();
    assert_eq!(tp.trim(), format!("00-{trace_id}-{root_id}-01"));

    // The exporter flushes before the process exits.
    let spans = rx.spans();
    assert!(!spans.is_empty());
    for s in &spans {
        assert_eq!(hex(&s.trace_id), trace_id, "one trace: {}", s.name);
    }
    let named = |name: &str| -> &Span {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span `{name}` in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1);
    let root = roots[0];
    assert_eq!(root.name, "RUN traced");
    assert_eq!(hex(&root.span_id), root_id);
    assert_eq!(root.kind, span::SpanKind::Server as i32);
    assert_eq!(
        attr(&root.attributes, "cicd.pipeline.name").as_deref(),
        Some("traced")
    );
    assert_eq!(
        attr(&root.attributes, "cicd.pipeline.result").as_deref(),
        Some("failure")
    );
    assert_eq!(
        attr(&root.attributes, "deployment.environment.name").as_deref(),
        Some("staging")
    );
    assert_eq!(
        root.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert!(root.events.iter().any(|e| e.name == "rollback"));
    {
        let seen = rx.seen.lock().unwrap();
        let resource = &seen.spans[0].0;
        assert_eq!(attr(resource, "service.name").as_deref(), Some("cutover"));
        let run_id = entries[0]["payload"]["run_id"].as_str().map(str::to_string);
        assert_eq!(
            attr(resource, "cicd.pipeline.run.id"),
            run_id.or(attr(resource, "cicd.pipeline.run.id"))
        );
        assert!(
            seen.headers
                .iter()
                .all(|h| h.get("authorization").map(String::as_str) == Some(SECRET_HEADER))
        );
    }

    let wave1 = named("wave 1");
    let wave2 = named("wave 2");
    assert_eq!(
        (&wave1.parent_span_id, &wave2.parent_span_id),
        (&root.span_id, &root.span_id)
    );
    let api = named("service api");
    let web = named("service web");
    assert_eq!(api.parent_span_id, wave1.span_id);
    assert_eq!(web.parent_span_id, wave2.span_id);
    assert_eq!(
        api.status.as_ref().unwrap().code,
        status::StatusCode::Unset as i32
    );
    // The rollback: an event on the service, error status, its own span.
    assert!(
        web.events.iter().any(|e| e.name == "rollback"),
        "{:?}",
        web.events
    );
    assert_eq!(
        web.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert_eq!(named("rollback web").parent_span_id, web.span_id);

    // Every step the journal records is a span under its service.
    let steps: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["payload"]["event"]["type"] == "step_started")
        .map(|e| {
            let ev = &e["payload"]["event"];
            (
                ev["service"].as_str().unwrap().to_string(),
                ev["description"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(steps.len() >= 5, "{steps:?}");
    for (service, description) in &steps {
        let parent = if service == "api" { api } else { web };
        assert!(
            spans
                .iter()
                .any(|s| &s.name == description && s.parent_span_id == parent.span_id),
            "no span for step `{description}` of {service}"
        );
    }
    // The failed smoke test is an event with error status on its step.
    let smoke_step = spans
        .iter()
        .find(|s| s.parent_span_id == web.span_id && s.events.iter().any(|e| e.name == "smoke"))
        .expect("web's smoke step");
    assert_eq!(
        smoke_step.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );

    // The OTLP header is a secret: not in the output nor the journal.
    assert!(!text.contains("OTELHEADERMARK"), "{text}");
    assert!(!support::everything_under(&state).contains("OTELHEADERMARK"));
}

#[test]
fn kill_9_and_resume_continue_the_same_trace() {
    let rx = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let (file, _, marker) = release(dir.path(), "4s", "true");
    let state = dir.path().join("state");
    let endpoint = format!("http://{}", rx.addr);
    let mut child = cutover(&["deploy", "--headless"], &state, &endpoint)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Spans of the first process reach the collector (the launch and smoke steps end).
    support::wait_for(
        "spans from the first process",
        Duration::from_secs(30),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the deploy ended early"
            );
            rx.spans()
                .iter()
                .any(|s| s.name.starts_with("shift") || s.name.contains("50"))
        },
    );
    let (trace_id, root_id) = journaled_ids(&journal(&state));
    // A replica started by the supervisor carries the same TRACEPARENT.
    let tag = format!("{marker}-api");
    let pid = support::demo_replica(&tag, "v2").expect("api v2 replica");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let want = format!("TRACEPARENT=00-{trace_id}-{root_id}-01");
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|kv| String::from_utf8_lossy(kv).into_owned())
        .filter(|kv| kv.starts_with("TRACE"))
        .collect();
    assert!(
        vars.contains(&want),
        "replica environment lacks {want}: {vars:?}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = rx.spans().len();
    assert!(
        rx.spans().iter().all(|s| !s.parent_span_id.is_empty()),
        "no root before the end"
    );

    let out = cutover(
        &["resume", "--headless", "--output", "json"],
        &state,
        &endpoint,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        journaled_ids(&journal(&state)),
        (trace_id.clone(), root_id.clone())
    );
    let spans = rx.spans();
    assert!(spans.len() > before);
    for s in &spans {
        assert_eq!(hex(&s.trace_id), trace_id, "{}", s.name);
    }
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(hex(&roots[0].span_id), root_id);
    assert_eq!(
        attr(&roots[0].attributes, "cicd.pipeline.result").as_deref(),
        Some("success")
    );
    assert!(roots[0].events.iter().any(|e| e.name == "resumed"));
    // Every span's parent is a span of this trace: the resumed part hangs under the
    // same tree (the service span opened before the kill ends after the resume).
    let ids: Vec<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
    for s in &spans {
        assert!(
            s.parent_span_id.is_empty() || ids.contains(&&s.parent_span_id),
            "orphan span {}",
            s.name
        );
    }
    let api = spans
        .iter()
        .find(|s| s.name == "service api")
        .expect("service api");
    assert!(
        spans[before..]
            .iter()
            .any(|s| s.parent_span_id == api.span_id)
    );
    assert!(spans.iter().any(|s| s.name == "service web"));
}

#[test]
fn a_hanging_or_missing_collector_never_holds_the_release() {
    let hanging = Receiver::start(true);
    let dead = format!("http://127.0.0.1:{}", free_port());
    for endpoint in [format!("http://{}", hanging.addr), dead] {
        let dir = tempfile::tempdir().unwrap();
        let (file, envfile, _) = release(dir.path(), "100ms", "true");
        let state = dir.path().join("state");
        let out = cutover(
            &["deploy", "--headless", "--output", "json"],
            &state,
            &endpoint,
        )
        .arg(&file)
        .output()
        .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(0), "{endpoint}:\n{text}");
        assert!(text.contains("\"promoted\""), "{text}");
        assert!(std::fs::read_to_string(envfile).unwrap().starts_with("00-"));
        assert!(!text.contains("OTELHEADERMARK"));
    }
    assert!(
        !hanging.spans().is_empty(),
        "the hanging collector was asked"
    );
}

#[test]
fn without_the_variables_nothing_is_traced() {
    let rx = Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let (file, envfile, _) = release(dir.path(), "100ms", "true");
    let state = dir.path().join("state");
    let out = cutover(
        &["deploy", "--headless", "--output", "json"],
        &state,
        &format!("http://{}", rx.addr),
    )
    .env("OTEL_SDK_DISABLED", "true")
    .arg(&file)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(envfile).unwrap().trim(), "");
    assert!(journal(&state).iter().all(|e| e["kind"] != "trace"));
    assert!(rx.spans().is_empty());
}
