//! Two machines on one host (two network namespaces joined by a veth pair, non-loopback
//! addresses): `cutover serve --listen ADDR:PORT --tls-cert --tls-key` runs on one, and the
//! other attaches and acts over TLS, trusting the test CA through `SSL_CERT_FILE`, by the
//! server's address and by a DNS name in its certificate. A client without the CA is refused
//! naming the host, a token is never sent over plain http to the other machine, and a
//! non-loopback `--listen` without TLS is refused. The local proxy honours
//! `x-cutover-revision` from the other machine only with the release's pin secret, and
//! never counts pinned requests in the judge's statistics.
//!
//! Needs root and `ip` (iproute2): these tests fail, not skip, without them.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::control::client::{Client, Endpoint};
use cutover::platform::TEST_ROUTE_HEADER;
use cutover::platform::local::pin::{PIN_SECRET_HEADER, PinSecret};
use cutover::platform::local::proxy::ServiceProxy;
use cutover::platform::local::stats::ProxyStats;

use support::netns::NetnsPair;
use support::served::Served;

const TOKENS: &str = "[[token]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"alice-token-0123456789\"\n\n[[token]]\nname = \"bob\"\nrole = \"operator\"\ntoken = \"bob-token-0123456789ab\"\n";
const PIN_SECRET: &str = "pin-secret-netns-0123456789";
/// The name Bob's machine knows Alice's by (in her certificate and in Bob's hosts file).
const ALICE_HOST: &str = "alice-laptop.test";
const CONTROL_PORT: u16 = 7443;
/// Generous: two cores shared with other builds, and a release to start.
const DEADLINE: Duration = Duration::from_secs(120);

fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One HTTP/1.1 GET over a plain socket (the thread's namespace decides where it comes
/// from): the status and the whole response as text.
fn http_get(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer from {addr}: {resp:?}"));
    (status, resp)
}

/// `http_get` from a thread in `ns`.
fn get_from(
    pair: &NetnsPair,
    ns: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pair.spawn_in(ns, move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http_get(addr, &h)
    })
    .join()
    .unwrap()
}

/// The value of `name` in an HTTP response's head.
fn header_of(resp: &str, name: &str) -> Option<String> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A console attached over TLS from a thread in `ns` (the same client `cutover attach`
/// runs on), held until `stop` fires; returns the operators of the last presence it saw.
fn attach_from(
    pair: &NetnsPair,
    ns: &str,
    url: String,
    token: &'static str,
    ca: PathBuf,
    attached: std::sync::mpsc::Sender<String>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> std::thread::JoinHandle<Vec<String>> {
    pair.spawn_in(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let trust = Arc::new(cutover::tls::Client::new(Some(&ca)).unwrap());
            let client = Client::new(Endpoint::from_url(&url).unwrap(), "ignored")
                .with_token(Some(token.to_string()))
                .with_trust(trust);
            let (snap, mut stream) = client
                .attach()
                .await
                .unwrap_or_else(|e| panic!("attach {url}: {e}"));
            attached.send(snap.state.release.clone()).unwrap();
            let mut last = Vec::new();
            let mut stop = stop;
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    item = stream.next() => match item {
                        Ok(Some(item)) => {
                            let v = serde_json::to_value(&item).unwrap();
                            if let Some(list) = v["attached"].as_array() {
                                last = list
                                    .iter()
                                    .filter_map(|a| a["operator"].as_str().map(String::from))
                                    .collect();
                            }
                        }
                        _ => break,
                    },
                }
            }
            last
        })
    })
}

#[test]
fn two_consoles_on_different_addresses_pair_over_tls() {
    let pair = NetnsPair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let dir = tempfile::tempdir().unwrap();
    let addr_a = pair.addr_a.to_string();
    let pki = support::tls::pki_for(&[ALICE_HOST, &addr_a]);
    let (ca, cert, key) = pki.write(dir.path());
    let other_ca = write_private(dir.path(), "other-ca.pem", &support::tls::pki().ca_pem);
    let tokens = write_private(dir.path(), "tokens.toml", TOKENS);
    let bob_token = write_private(dir.path(), "bob.token", "bob-token-0123456789ab");
    pair.add_host(&b, ALICE_HOST, pair.addr_a);

    // `payments` is served on Alice's non-loopback address, so Bob's machine can reach it.
    let service_addr = SocketAddr::V4(SocketAddrV4::new(pair.addr_a, 18081));
    let release = include_str!("fixtures/pairing-release.toml")
        .replacen(
            "[release]\n",
            "[release]\npin_secret = \"env:CUTOVER_PIN_SECRET\"\n",
            1,
        )
        .replace("127.0.0.1:PORT_A", &service_addr.to_string())
        .replace("PORT_B", "18082")
        .replace("MARKER", "netns");
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release).unwrap();
    let state = dir.path().join("state");
    let listen = format!("{addr_a}:{CONTROL_PORT}");

    // `cutover serve` on Alice's machine, with TLS or without, with the pin secret or not.
    let serve_cmd = |state: &Path, tls: bool, pin: Option<&str>| {
        let mut c = pair.command(&a, support::CUTOVER);
        c.arg("serve").arg(&file).arg("--state-dir").arg(state);
        c.args([
            "--operator",
            "carol",
            "--linger",
            "0.2",
            "--listen",
            &listen,
        ]);
        c.arg("--token-file").arg(&tokens);
        if tls {
            c.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        }
        match pin {
            Some(p) => c.env("CUTOVER_PIN_SECRET", p),
            None => c.env_remove("CUTOVER_PIN_SECRET"),
        };
        c
    };
    let refused_state = dir.path().join("refused-state");

    // A non-loopback --listen without TLS is refused (exit 2), naming the flags to add.
    let refused = serve_cmd(&refused_state, false, Some(PIN_SECRET))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--tls-cert"),
        "{}",
        text(&refused)
    );

    // The pin secret's variable unset: refused before anything starts, naming it.
    let unset = serve_cmd(&refused_state, true, None).output().unwrap();
    assert_eq!(unset.status.code(), Some(2), "{}", text(&unset));
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("env:CUTOVER_PIN_SECRET"),
        "{}",
        text(&unset)
    );
    assert!(!refused_state.join("runs").exists());

    let serve_log = dir.path().join("serve.log");
    let mut serve = serve_cmd(&state, true, Some(PIN_SECRET))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&serve_log).unwrap())
        .spawn()
        .map(Served)
        .unwrap();
    let log = || std::fs::read_to_string(&serve_log).unwrap_or_default();

    // Bob's machine: `cutover ctl` trusting the test CA.
    let ctl = |url: &str, ca: &Path, args: &[&str]| {
        pair.command(&b, support::CUTOVER)
            .arg("ctl")
            .args(args)
            .args(["--url", url, "--token-file"])
            .arg(&bob_token)
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap()
    };
    let by_name = format!("https://{ALICE_HOST}:{CONTROL_PORT}");
    let by_address = format!("https://{addr_a}:{CONTROL_PORT}");
    let v = serve.wait_status(DEADLINE, || ctl(&by_name, &ca, &["status"]), log);
    assert_eq!(v["state"]["release"], "pairing");

    // Two consoles on two addresses: Alice on her machine by its network address, Bob on
    // his by the same address. Both see the release and each other.
    let (attached_tx, attached_rx) = std::sync::mpsc::channel();
    let (stop_alice, stop_a) = tokio::sync::oneshot::channel();
    let (stop_bob, stop_b) = tokio::sync::oneshot::channel();
    let alice = attach_from(
        &pair,
        &a,
        by_address.clone(),
        "alice-token-0123456789",
        ca.clone(),
        attached_tx.clone(),
        stop_a,
    );
    let bob = attach_from(
        &pair,
        &b,
        by_address.clone(),
        "bob-token-0123456789ab",
        ca.clone(),
        attached_tx,
        stop_b,
    );
    for _ in 0..2 {
        let release = attached_rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("a console did not attach: {e}\n{}", log()));
        assert_eq!(release, "pairing");
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let st = ctl(&by_address, &ca, &["status"]);
        assert_eq!(st.status.code(), Some(0), "{}", text(&st));
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        let mut ops: Vec<String> = v["attached"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["via"] == "tcp")
            .filter_map(|a| a["operator"].as_str().map(String::from))
            .collect();
        ops.sort();
        if ops == ["alice", "bob"] {
            break;
        }
        assert!(Instant::now() < deadline, "attached: {}", v["attached"]);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Without the CA (another authority in SSL_CERT_FILE): refused, naming the host.
    for url in [&by_name, &by_address] {
        let untrusted = ctl(url, &other_ca, &["status"]);
        let err = String::from_utf8_lossy(&untrusted.stderr);
        assert_eq!(untrusted.status.code(), Some(1), "{}", text(&untrusted));
        let host = if url == &by_name { ALICE_HOST } else { &addr_a };
        assert!(
            err.contains(host) && err.contains("unknown authority"),
            "{}",
            text(&untrusted)
        );
    }

    // Plain http to the other machine: refused before the token is sent. A listener on
    // Alice's address records whether anything arrived at all.
    let trap = std::sync::mpsc::channel();
    let (trap_port_tx, trap_port) = std::sync::mpsc::channel();
    let trap_tx = trap.0;
    let client_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener_done = client_done.clone();
    let listener_thread = pair.spawn_in(&a, move || {
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        l.set_nonblocking(true).unwrap();
        trap_port_tx.send(l.local_addr().unwrap().port()).unwrap();
        // Once the client has exited, a connection it made is already queued: one more
        // accept after that sees it.
        loop {
            let last = listener_done.load(std::sync::atomic::Ordering::SeqCst);
            if let Ok((mut s, peer)) = l.accept() {
                let mut got = Vec::new();
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.read_to_end(&mut got);
                let _ = trap_tx.send(format!("{peer}: {}", String::from_utf8_lossy(&got)));
                return;
            }
            if last {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let trap_port = trap_port.recv_timeout(DEADLINE).unwrap();
    let plain = ctl(&format!("http://{addr_a}:{trap_port}"), &ca, &["status"]);
    client_done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(plain.status.code(), Some(2), "{}", text(&plain));
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        err.contains("clear text") && err.contains("https://"),
        "{}",
        text(&plain)
    );
    // Nothing may have connected.
    listener_thread.join().unwrap();
    assert_eq!(
        trap.1.try_recv().ok(),
        None,
        "the client connected in clear"
    );

    // The proxy on Alice's address: Bob pins a request to the candidate only with the
    // release's pin secret; a process on Alice's machine calling that address needs none.
    let pinned = [(TEST_ROUTE_HEADER, "v2")];
    let with_secret = [(TEST_ROUTE_HEADER, "v2"), (PIN_SECRET_HEADER, PIN_SECRET)];
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, resp) = get_from(&pair, &b, service_addr, &with_secret);
        if status == 200 {
            assert_eq!(header_of(&resp, TEST_ROUTE_HEADER).as_deref(), Some("v2"));
            break;
        }
        assert!(
            Instant::now() < deadline && (status == 502 || status == 503),
            "a pinned request with the secret: {resp}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, resp) = get_from(&pair, &b, service_addr, &pinned);
    assert_eq!(status, 403, "{resp}");
    assert!(resp.contains(PIN_SECRET_HEADER), "{resp}");
    let wrong = [
        (TEST_ROUTE_HEADER, "v2"),
        (PIN_SECRET_HEADER, "pin-secret-netns-0123456788"),
    ];
    let (status, resp) = get_from(&pair, &b, service_addr, &wrong);
    assert_eq!(status, 403, "{resp}");
    let (status, resp) = get_from(&pair, &a, service_addr, &pinned);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(header_of(&resp, TEST_ROUTE_HEADER).as_deref(), Some("v2"));
    let (status, resp) = get_from(&pair, &b, service_addr, &[]);
    assert_eq!(
        status, 200,
        "unpinned traffic from elsewhere is served: {resp}"
    );

    // Bob acts by the name in the certificate; the release ends.
    let ab = ctl(&by_name, &ca, &["abort"]);
    assert_eq!(ab.status.code(), Some(0), "{}", text(&ab));
    assert!(String::from_utf8_lossy(&ab.stdout).contains("(as bob)"));
    serve.wait_exit(DEADLINE, log);
    let _ = stop_alice.send(());
    let _ = stop_bob.send(());
    for console in [alice, bob] {
        let seen = console.join().unwrap();
        assert!(seen.contains(&"bob".to_string()), "presence seen: {seen:?}");
    }
    let served = log();
    assert!(served.contains(&format!("https://{listen}")), "{served}");
    // The pin secret is a secret: not in the log, the journal or anything under state.
    let everything = format!("{served}{}", support::everything_under(&state));
    assert!(!everything.contains(PIN_SECRET), "the pin secret leaked");
    drop(serve);
}

/// The proxy itself, bound on one machine's address: a request from the other machine is
/// pinned only with the secret, the secret never reaches the replica, and pinned requests
/// are not in the revision's statistics.
#[test]
fn pinned_requests_from_another_machine_need_the_secret_and_never_count() {
    let pair = NetnsPair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let addr_a = pair.addr_a;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    // Alice's machine: two replicas that echo the request they got, behind the proxy.
    let machine_a = pair.spawn_in(&a, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stats = ProxyStats::new();
            let proxy = ServiceProxy::bind_with_pin_secret(
                "api",
                SocketAddr::new(addr_a.into(), 0),
                stats.clone(),
                Some(PinSecret::new(PIN_SECRET).unwrap()),
            )
            .await
            .unwrap();
            for rev in ["v1", "v2"] {
                proxy.set_backends(rev, vec![echo_backend().await]);
            }
            let weights = [("v1".to_string(), 100u8), ("v2".to_string(), 0u8)]
                .into_iter()
                .collect();
            proxy.set_weights(&weights).unwrap();
            ready_tx.send(proxy.local_addr()).unwrap();
            let _ = done.await;
            let count = |rev: &str| {
                stats
                    .get("api", rev)
                    .map_or(0, |s| s.counters(Duration::from_secs(1)).requests)
            };
            let counted = (count("v1"), count("v2"));
            proxy.shutdown().await;
            counted
        })
    });
    let proxy = ready.recv_timeout(DEADLINE).unwrap();

    let (status, resp) = get_from(&pair, &b, proxy, &[(TEST_ROUTE_HEADER, "v2")]);
    assert_eq!(status, 403, "{resp}");
    let near_miss = [
        (TEST_ROUTE_HEADER, "v2"),
        (PIN_SECRET_HEADER, &PIN_SECRET[..20]),
    ];
    let (status, resp) = get_from(&pair, &b, proxy, &near_miss);
    assert_eq!(status, 403, "a prefix of the secret: {resp}");
    let with_secret = [(TEST_ROUTE_HEADER, "v2"), (PIN_SECRET_HEADER, PIN_SECRET)];
    let (status, resp) = get_from(&pair, &b, proxy, &with_secret);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(header_of(&resp, TEST_ROUTE_HEADER).as_deref(), Some("v2"));
    // The replica saw the pin, not the secret.
    assert!(resp.contains("echo: GET /"), "{resp}");
    assert!(
        !resp.contains(PIN_SECRET) && !resp.to_ascii_lowercase().contains(PIN_SECRET_HEADER),
        "the secret was forwarded: {resp}"
    );
    // From Alice's own machine (her address, not loopback), no secret is needed.
    let (status, _) = get_from(&pair, &a, proxy, &[(TEST_ROUTE_HEADER, "v2")]);
    assert_eq!(status, 200);
    // Routed by weight, from the other machine: counted.
    let (status, resp) = get_from(&pair, &b, proxy, &[]);
    assert_eq!(status, 200);
    assert_eq!(header_of(&resp, TEST_ROUTE_HEADER).as_deref(), Some("v1"));

    done_tx.send(()).unwrap();
    let (v1, v2) = machine_a.join().unwrap();
    assert_eq!((v1, v2), (1, 0), "pinned requests must not be counted");
}

/// A replica that answers every request with its request head (`echo: ...`).
async fn echo_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!("echo: {}", String::from_utf8_lossy(&buf));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}
