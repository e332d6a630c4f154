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
