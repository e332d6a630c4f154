//! Remote pairing over TLS: the control server speaks TLS on TCP with a certificate from
//! PEM files, two clients (by name and by address) verify it against a CA and act with
//! their tokens; a client that does not trust the CA is refused with the reason, plain
//! HTTP gets no answer, and a token is never sent in clear text to a remote host.

mod support;

use std::sync::Arc;

use cutover::control::client::{Client, CommandOutcome, Endpoint};
use cutover::control::hub::Hub;
use cutover::control::server::{ControlServer, Listeners, ServerConfig, ServerTls};
use cutover::control::tokens::Tokens;
use cutover::engine::{Command, ReleaseState};
use tokio::sync::{broadcast, mpsc};

use support::net::free_port;
use support::tls::pki;

const TOKENS: &str = "[[token]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"alice-token-0123456789\"\n\n[[token]]\nname = \"bob\"\nrole = \"operator\"\ntoken = \"bob-token-0123456789ab\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_pair_over_tls_and_tokens_never_travel_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (ca, cert, key) = pki.write(dir.path());

    // A stand-in engine that accepts every command and says who sent it.
    let (_events, events_rx) = broadcast::channel(16);
    let hub = Hub::start(ReleaseState::empty(), events_rx);
    let (commands, mut rx) = mpsc::channel::<cutover::engine::CommandRequest>(16);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if let Some(reply) = req.reply {
                let _ = reply.send(Ok(format!("{} by {}", req.command, req.operator)));
            }
        }
    });
    let port = free_port();
    let listeners = Listeners::bind_tls(
        ServerConfig {
            socket: dir.path().join("cutover.sock"),
            tcp: Some((
                format!("127.0.0.1:{port}").parse().unwrap(),
                Tokens::parse(TOKENS).unwrap(),
            )),
        },
        Some(ServerTls::load(&cert, &key).unwrap()),
    )
    .await
    .unwrap();
    assert!(listeners.is_tls());
    let server = ControlServer::start(listeners, hub, commands);
    assert_eq!(server.tcp_url(), Some(format!("https://127.0.0.1:{port}")));

    let trust = Arc::new(cutover::tls::Client::new(Some(&ca)).unwrap());
    let alice = Client::new(
        Endpoint::from_url(&format!("https://localhost:{port}")).unwrap(),
        "ignored",
    )
    .with_token(Some("alice-token-0123456789".into()))
    .with_trust(trust.clone());
    let bob = Client::new(
        Endpoint::from_url(&format!("https://127.0.0.1:{port}/")).unwrap(),
        "ignored",
    )
    .with_token(Some("bob-token-0123456789ab".into()))
    .with_trust(trust.clone());
    for (who, c) in [("alice", &alice), ("bob", &bob)] {
        c.snapshot().await.unwrap();
        let out = c
            .command(Command::Pause { service: None }, Some("pairing".into()))
            .await
            .unwrap();
        match out {
            CommandOutcome::Accepted { operator, .. } => assert_eq!(operator, who),
            other => panic!("{who}: {other:?}"),
        }
    }

    // A client that does not trust the CA: refused, naming the host and the reason.
    let untrusting = Arc::new(cutover::tls::Client::new(None).unwrap());
    let err = Client::new(
        Endpoint::from_url(&format!("https://localhost:{port}")).unwrap(),
        "mallory",
    )
    .with_token(Some("alice-token-0123456789".into()))
    .with_trust(untrusting)
    .snapshot()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("localhost") && err.contains("unknown authority"),
        "{err}"
    );

    // Plain HTTP to the TLS port gets no control answer.
    let plain = Client::new(
        Endpoint::from_url(&format!("http://127.0.0.1:{port}")).unwrap(),
        "x",
    )
    .with_token(Some("alice-token-0123456789".into()));
    assert!(plain.snapshot().await.is_err());

    // A token is never sent over plain http to a host that is not this machine: refused
    // before any connection is made (`.invalid` never resolves anyway).
    let err = Client::new(
        Endpoint::from_url("http://pairing.invalid:7070").unwrap(),
        "x",
    )
    .with_token(Some("alice-token-0123456789".into()))
    .snapshot()
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("clear text") && err.contains("https://"),
        "{err}"
    );
    server.shutdown("test over").await;
}

#[tokio::test]
async fn a_non_loopback_listener_needs_tls_and_bad_pem_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str| ServerConfig {
        socket: dir.path().join(name),
        tcp: Some(("0.0.0.0:0".parse().unwrap(), Tokens::parse(TOKENS).unwrap())),
    };
    let err = Listeners::bind(config("a.sock"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--tls-cert"), "{err}");

    let pki = pki();
    let (_ca, cert, key) = pki.write(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem").unwrap();
    let err = ServerTls::load(&garbage, &key).err().unwrap().to_string();
    assert!(
        err.contains("--tls-cert") && err.contains("garbage.pem"),
        "{err}"
    );
    let err = ServerTls::load(&cert, &garbage).err().unwrap().to_string();
    assert!(
        err.contains("--tls-key") && err.contains("garbage.pem"),
        "{err}"
    );
    // A key that is not the certificate's.
    let other = support::tls::pki();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let err = ServerTls::load(&cert, &other_key)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not go with"), "{err}");
}

/// `cutover serve --listen --tls-cert --tls-key` and two `ctl` clients, one by name and one
/// by address, trusting the CA through `SSL_CERT_FILE`: both read the release and act as
/// the operator their token names.
#[test]
fn serve_with_tls_pairs_two_ctl_clients_that_trust_the_ca() {
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (ca, cert, key) = pki.write(dir.path());
    let write_private = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let tokens = write_private("tokens.toml", TOKENS);
    let alice = write_private("alice.token", "alice-token-0123456789");
    let bob = write_private("bob.token", "bob-token-0123456789ab");
    let release = include_str!("fixtures/pairing-release.toml")
        .replace("MARKER", &format!("tlsmark{}", std::process::id()))
        .replace("PORT_A", &free_port().to_string())
        .replace("PORT_B", &free_port().to_string());
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release).unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let mut serve = Command::new(support::CUTOVER)
        .arg("serve")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .args(["--operator", "carol", "--linger", "0.2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--token-file")
        .arg(&tokens)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .map(support::served::Served)
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let ctl = |url: String, token: &std::path::Path, args: &[&str]| {
        Command::new(support::CUTOVER)
            .arg("ctl")
            .args(args)
            .arg("--url")
            .arg(url)
            .arg("--token-file")
            .arg(token)
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap()
    };
    let by_name = format!("https://localhost:{port}");
    let by_address = format!("https://127.0.0.1:{port}");
    let v = serve.wait_status(
        Duration::from_secs(60),
        || ctl(by_name.clone(), &alice, &["status"]),
        log,
    );
    assert_eq!(v["state"]["release"], "pairing");
    let st = ctl(by_address.clone(), &bob, &["status"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // Trusting another CA, the same command is refused with the reason.
    let other_ca = write_private("other-ca.pem", &support::tls::pki().ca_pem);
    let untrusted = Command::new(support::CUTOVER)
        .args(["ctl", "status", "--url", &by_name, "--token-file"])
        .arg(&alice)
        .env("SSL_CERT_FILE", &other_ca)
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("unknown authority"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let ab = ctl(by_address, &bob, &["abort"]);
    assert_eq!(
        ab.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ab.stderr)
    );
    assert!(String::from_utf8_lossy(&ab.stdout).contains("(as bob)"));
    serve.wait_exit(Duration::from_secs(60), log);
    let log = log();
    assert!(log.contains(&format!("https://127.0.0.1:{port}")), "{log}");
}
