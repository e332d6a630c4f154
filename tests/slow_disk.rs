//! A slow disk does not stall the proxies or the control API: `cutover serve` runs a release
//! on ONE async worker (`TOKIO_WORKER_THREADS=1`) with every journal fdatasync held for
//! 1.5 s (`CUTOVER_SLOW_FSYNC_MS`, crash-hooks feature). While an append is blocked (between
//! the hook's `fsync slow start` and `fsync slow end` lines), a request through the
//! service's proxy and a control API snapshot must both be answered. The assertion is on
//! order (answered before the append ended), not on a time bound. Were the append run on
//! the async worker itself, neither could be answered until the fsync returned.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover::control::client::{Client, Endpoint};
use support::local::{client, get};
use support::net::free_port;
use support::served::Served;

const RELEASE: &str = include_str!("fixtures/crash-release.toml");
const START: &str = "cutover-crash-hook: fsync slow start";
const END: &str = "cutover-crash-hook: fsync slow end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_control_api_answer_while_an_append_waits_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let marker = format!("slowdisk{}", std::process::id());
    let text = RELEASE
        .replace("MARKER", &marker)
        .replace("PORT_A", &port.to_string())
        .replace("PORT_B", &free_port().to_string())
        .replace("PORT_C", &free_port().to_string());
    let file = dir.path().join("release.toml");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let mut child = Command::new(support::CUTOVER)
        .arg("serve")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .args(["--operator", "alice", "--linger", "0.5"])
        .env_remove("CUTOVER_STATE_DIR")
        .env("TOKIO_WORKER_THREADS", "1")
        .env("CUTOVER_SLOW_FSYNC_MS", "1500")
        .env("CUTOVER_CRASH_TRACE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook's lines and the test's answers, in the order they happened.
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let err = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.starts_with("cutover-crash-hook: fsync slow") {
                l.lock().unwrap().push(line);
            }
        }
    });
    let mut served = Served(child);
    let http = client();
    let url = format!("http://127.0.0.1:{port}/api/load");
    let control = Client::new(Endpoint::Unix(state.join("cutover.sock")), "bob");

    // Wait until both answer at all (serve is starting, its appends are slow).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let proxy_up = matches!(get(&http, &url, None).await, Ok((200, _)));
        if proxy_up && control.snapshot().await.is_ok() {
            break;
        }
        assert!(
            served.0.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "serve never answered: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Then, inside the next slow append: both must answer before it ends.
    let seen = log.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let l = log.lock().unwrap();
            if l.len() > seen && l.last().is_some_and(|x| x == START) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no journal append after serve answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let proxied = get(&http, &url, None).await;
    log.lock().unwrap().push("proxy answered".into());
    let snapshot = control.snapshot().await;
    log.lock().unwrap().push("control API answered".into());
    assert!(matches!(proxied, Ok((200, _))), "{proxied:?}");
    assert!(snapshot.is_ok(), "control API: {:?}", snapshot.err());
    let l = log.lock().unwrap().clone();
    let n = l.len();
    assert_eq!(
        &l[n - 3..],
        [START, "proxy answered", "control API answered"],
        "an answer waited for the journal's fsync: {l:?}"
    );
    // The append then completes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap()[n..].iter().any(|x| x == END) {
        assert!(Instant::now() < deadline, "the slow append never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = served.0.kill();
    let _ = served.0.wait();
    let left = support::local::processes_with(&marker);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !support::local::processes_with(&marker).is_empty() {
        assert!(Instant::now() < deadline, "orphans: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
