//! `[notify.grafana]` (issue 17): a local deploy whose service rolls back posts its
//! start, the rollback and its finish to an in-process fake Grafana
//! (`POST /api/annotations`); the JSON, the bearer token and the tags are checked, and
//! the token never reaches the output or the journal. A token written in the file is
//! refused with its place and the fix.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::net::free_port;

/// (path, authorization header, body) of every request.
type Posted = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

fn fake_grafana() -> (SocketAddr, Posted) {
    let posted: Posted = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = posted.clone();
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
                let p = p.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let p = p.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let json = serde_json::from_slice(&body).unwrap();
                            p.lock().unwrap().push((path, auth, json));
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                r#"{"id":1,"message":"Annotation added"}"#,
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), posted)
}

const RELEASE: &str = r#"
[release]
name = "marked"
platform = "local"
environment = "staging"

[notify.grafana]
url = "URL"
token = "TOKEN"
dashboard_uid = "dash-1"
tags = ["payments"]

[[service]]
name = "api"
strategy = "canary"
steps = [ { set_weight = 50 }, { pause = "100ms" } ]
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[[service.smoke]]
name = "broken"
command = ["false"]
[service.local]
listen = "127.0.0.1:PORT"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

fn tags(v: &serde_json::Value) -> Vec<&str> {
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect()
}

#[test]
fn start_rollback_and_finish_are_posted_as_annotations() {
    let (addr, posted) = fake_grafana();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        RELEASE
            .replace("URL", &format!("http://{addr}/"))
            .replace("TOKEN", "env:TEST_GRAFANA_TOKEN")
            .replace("PORT", &free_port().to_string()),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(support::CUTOVER)
        .args(["deploy", "--headless", "--output", "json", "--state-dir"])
        .arg(&state)
        .arg(&file)
        .env("TEST_GRAFANA_TOKEN", "glsa_GRAFANATOKENMARK")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 3, "{posted:?}");
    for (path, auth, body) in &posted {
        assert_eq!(path, "/api/annotations");
        assert_eq!(auth, "Bearer glsa_GRAFANATOKENMARK");
        assert_eq!(body["dashboardUID"], "dash-1");
        let t = tags(body);
        for want in ["cutover", "marked", "staging", "payments"] {
            assert!(t.contains(&want), "{want} in {t:?}");
        }
        assert!(body["time"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("marked (staging): ")
        );
    }
    let by = |tag: &str| -> &serde_json::Value {
        &posted
            .iter()
            .find(|(_, _, b)| tags(b).contains(&tag))
            .unwrap_or_else(|| panic!("no `{tag}` annotation in {posted:?}"))
            .2
    };
    let start = by("start");
    let rollback = by("rollback");
    let finish = by("finish");
    assert!(start["text"].as_str().unwrap().contains("release started"));
    assert!(start.get("timeEnd").is_none());
    assert!(
        rollback["text"].as_str().unwrap().contains("api"),
        "{rollback}"
    );
    assert!(rollback["time"].as_u64() >= start["time"].as_u64());
    // The finish covers the release as a region.
    assert_eq!(finish["time"], start["time"]);
    assert!(finish["timeEnd"].as_u64() >= rollback["time"].as_u64());
    assert!(tags(finish).contains(&"failed"));
    // The token is a secret.
    assert!(!text.contains("GRAFANATOKENMARK"), "{text}");
    assert!(!support::everything_under(&state).contains("GRAFANATOKENMARK"));
}

#[test]
fn a_token_in_the_file_or_an_unset_variable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        RELEASE
            .replace("URL", "https://grafana.example.com")
            .replace("TOKEN", "glsa_LITERALMARK")
            .replace("PORT", &free_port().to_string()),
    )
    .unwrap();
    let out = Command::new(support::CUTOVER)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("release.toml:9:9:"), "{err}");
    assert!(
        !err.contains("LITERALMARK"),
        "the excerpt hides the token: {err}"
    );
    assert!(err.contains("token = \"env:GRAFANA_TOKEN\""), "{err}");

    std::fs::write(
        &file,
        RELEASE
            .replace("URL", "https://grafana.example.com")
            .replace("TOKEN", "env:CUTOVER_TEST_UNSET_GRAFANA_TOKEN")
            .replace("PORT", &free_port().to_string()),
    )
    .unwrap();
    let out = Command::new(support::CUTOVER)
        .args(["deploy", "--headless", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg(&file)
        .env_remove("CUTOVER_TEST_UNSET_GRAFANA_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("export CUTOVER_TEST_UNSET_GRAFANA_TOKEN"),
        "{err}"
    );
}
