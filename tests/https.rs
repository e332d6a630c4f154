//! HTTPS for outbound calls: a webhook receiver with a certificate from a test CA named in
//! `SSL_CERT_FILE` gets a deploy's notifications; without that CA the handshake is refused
//! with the host and the reason (no insecure fallback).

mod support;

use std::path::Path;
use std::process::Command;

use support::net::free_port;
use support::tls::{pki, receiver};
use support::{CUTOVER, everything_under};

const RELEASE: &str = r#"
[release]
name = "tls-hook"
platform = "local"
progress_deadline = "30s"

[notify]
webhooks = ["https://localhost:HOOK_PORT/services/T000/B000/hooksecret"]

[[service]]
name = "web"
strategy = "blue_green"
blue_green = { keep_old_for = "1s" }
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:WEB_PORT"
drain_timeout = "1s"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}", "--service", "tls-hook-{service}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

fn deploy(dir: &Path, hook_port: u16, ssl_cert_file: &Path) -> std::process::Output {
    let file = dir.join("release.toml");
    let text = RELEASE
        .replace("HOOK_PORT", &hook_port.to_string())
        .replace("WEB_PORT", &free_port().to_string());
    std::fs::write(&file, text).unwrap();
    Command::new(CUTOVER)
        .args(["deploy", "--headless", "--output", "json", "--state-dir"])
        .arg(dir.join("state"))
        .arg(&file)
        .env("SSL_CERT_FILE", ssl_cert_file)
        .output()
        .unwrap()
}

#[test]
fn a_webhook_over_https_with_a_ca_from_ssl_cert_file_is_delivered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki();
    let (addr, got) = receiver(&rt, pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    let out = deploy(dir.path(), addr.port(), &ca);
    assert_eq!(
        out.status.code(),
        Some(0),
        "deploy failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = got.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|(path, _)| path == "/services/T000/B000/hooksecret"),
        "{got:?}"
    );
    let texts: Vec<String> = got
        .iter()
        .map(|(_, body)| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["text"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("tls-hook") && t.contains("web")),
        "no notification named the release and the service: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with(":tada:")),
        "the release's finish was not delivered: {texts:?}"
    );
}

#[test]
fn a_server_signed_by_an_unknown_authority_is_refused_with_the_host_and_the_reason() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki();
    let (addr, got) = receiver(&rt, pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    // The system store alone does not know the test CA.
    let system = cutover::tls::Client::new(None).unwrap();
    let err = rt
        .block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            system.connect("localhost", tcp).await.map(|_| ())
        })
        .unwrap_err();
    assert!(err.contains("localhost"), "{err}");
    assert!(err.contains("unknown authority"), "{err}");

    // With the CA's bundle named, the same server is trusted, by name and by address.
    let trusting = cutover::tls::Client::new(Some(&ca)).unwrap();
    assert!(trusting.trust().extra.is_some());
    for host in ["localhost", "127.0.0.1"] {
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            trusting.connect(host, tcp).await.map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    assert!(got.lock().unwrap().is_empty());

    // A named bundle that is not PEM is an error that says so, not an empty trust store.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let err = cutover::tls::Client::new(Some(&bogus)).err().unwrap();
    assert!(err.contains("SSL_CERT_FILE"), "{err}");
}

#[test]
fn a_webhook_named_by_env_var_is_delivered_and_never_journaled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki();
    let (addr, got) = receiver(&rt, pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let file = dir.path().join("release.toml");
    let text = RELEASE
        .replace(
            "\"https://localhost:HOOK_PORT/services/T000/B000/hooksecret\"",
            "\"env:CUTOVER_TEST_HOOK_URL\"",
        )
        .replace("WEB_PORT", &free_port().to_string());
    std::fs::write(&file, text).unwrap();
    let url = format!(
        "https://localhost:{}/services/T000/B000/envhooksecret",
        addr.port()
    );
    let state = dir.path().join("state");
    let run = |with_var: bool| {
        let mut cmd = Command::new(CUTOVER);
        cmd.args(["deploy", "--headless", "--state-dir"])
            .arg(&state)
            .arg(&file)
            .env("SSL_CERT_FILE", &ca)
            .env_remove("CUTOVER_TEST_HOOK_URL");
        if with_var {
            cmd.env("CUTOVER_TEST_HOOK_URL", &url);
        }
        cmd.output().unwrap()
    };
    // The variable is missing: refused before anything starts, naming it; no run is left.
    let out = run(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CUTOVER_TEST_HOOK_URL"), "{err}");
    let runs = std::fs::read_dir(state.join("runs"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(runs, 0, "a run was left");
    // Set: delivered, and the URL (its token path) is nowhere under the state dir.
    let out = run(true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = got.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing delivered");
    assert!(
        got.iter()
            .all(|(p, _)| p == "/services/T000/B000/envhooksecret")
    );
    let journaled = everything_under(&state);
    assert!(journaled.contains("CUTOVER_TEST_HOOK_URL"));
    assert!(
        !journaled.contains("envhooksecret"),
        "the webhook URL reached the state dir"
    );
    for out in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(out).contains("envhooksecret"));
    }
}
