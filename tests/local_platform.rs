//! The local platform with real `cutover demo-service` processes and real sockets. Every
//! test shuts the platform down and checks by pid that no replica is left.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cutover::platform::local::LocalPlatform;
use cutover::platform::{InstanceState, Platform, TEST_ROUTE_HEADER};
use support::CUTOVER;
use support::local::*;

/// Pids of every running replica of the given revisions.
async fn pids_of(p: &LocalPlatform, revisions: &[&str]) -> Vec<u32> {
    let mut all = Vec::new();
    for r in revisions {
        all.extend(p.pids("api", r).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_revisions_become_healthy_and_weights_are_honoured() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        vec![service(&[("v1", run(&[])), ("v2", run(&[]))])],
    );
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 2).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    let h1 = wait_healthy(&p, "api", "v1", 2).await;
    let h2 = wait_healthy(&p, "api", "v2", 1).await;
    assert!(h1.all_healthy() && h2.all_healthy());
    assert_eq!(h1.desired, 2);
    assert!(h1.instances[0].id.starts_with("api-v1-0 (pid "), "{h1:?}");
    let pids = pids_of(&p, &["v1", "v2"]).await;
    assert_eq!(pids.len(), 3);

    p.set_weights("api", &vec![("v1".into(), 90), ("v2".into(), 10)])
        .await
        .unwrap();
    let w = p.weights("api").await.unwrap();
    assert_eq!(w, vec![("v1".to_string(), 90), ("v2".to_string(), 10)]);

    let addr = p.listen_addr("api").unwrap();
    let c = client();
    let n = 1000;
    let mut v2 = 0;
    for _ in 0..n {
        let (status, rev) = get(&c, &format!("http://{addr}/api/x"), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(rev == "v1" || rev == "v2", "{rev}");
        if rev == "v2" {
            v2 += 1;
        }
    }
    // Binomial(1000, 0.1): mean 100, sd 9.5; five sd either way.
    assert!((53..=147).contains(&v2), "v2 got {v2} of {n}");

    let inv = p.inventory().await.unwrap();
    let summary: Vec<(String, u32, u8)> = inv
        .iter()
        .map(|r| (r.revision.clone(), r.replicas, r.weight))
        .collect();
    assert_eq!(summary, vec![("v1".into(), 2, 90), ("v2".into(), 1, 10)]);

    // The admin endpoint reports what the proxy counted.
    let admin = p.admin_addr().unwrap();
    let c2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = c2
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("revision=\"v2\""), "{text}");

    p.shutdown().await;
    assert_gone(&pids);
    assert_eq!(std::fs::read_to_string(p.pid_file()).unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_traffic_header_reaches_the_candidate_at_weight_zero() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[("v1", run(&[])), ("v2", run(&[]))])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 1).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    wait_healthy(&p, "api", "v1", 1).await;
    wait_healthy(&p, "api", "v2", 1).await;
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    // Unnamed launched revisions are set to 0 explicitly.
    assert_eq!(
        p.weights("api").await.unwrap(),
        vec![("v1".to_string(), 100), ("v2".to_string(), 0)]
    );

    let route = p.test_route("api", "v2").await.unwrap();
    assert_eq!(
        route.header,
        (TEST_ROUTE_HEADER.to_string(), "v2".to_string())
    );
    let c = client();
    for _ in 0..20 {
        let (status, rev) = get(
            &c,
            &format!("{}/api/smoke", route.base_url),
            Some((&route.header.0, &route.header.1)),
        )
        .await
        .unwrap();
        assert_eq!((status, rev.as_str()), (200, "v2"));
        let (status, rev) = get(&c, &format!("{}/api/plain", route.base_url), None)
            .await
            .unwrap();
        assert_eq!((status, rev.as_str()), (200, "v1"));
    }
    assert!(p.test_route("api", "v9").await.is_err());

    let pids = pids_of(&p, &["v1", "v2"]).await;
    p.shutdown().await;
    assert_gone(&pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_is_reported_and_taken_out_of_traffic() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[
            ("v1", run(&[])),
            ("v2", run(&["--crash-after", "1"])),
        ])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 1).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    let crashed_pid = p.pids("api", "v2").await[0];
    let v1_pids = p.pids("api", "v1").await;
    wait_healthy(&p, "api", "v1", 1).await;
    let h = wait_state(&p, "api", "v2", |s| {
        matches!(s, InstanceState::Exited { .. })
    })
    .await;
    let InstanceState::Exited { reason } = &h.instances[0].state else {
        panic!("{h:?}")
    };
    assert!(
        reason.contains("exited with status") || reason.contains("killed by signal"),
        "{reason}"
    );
    assert!(!h.all_healthy());
    assert!(p.pids("api", "v2").await.is_empty());
    // The inventory counts running replicas only.
    let inv = p.inventory().await.unwrap();
    assert_eq!(
        inv.iter().find(|r| r.revision == "v2").map(|r| r.replicas),
        Some(0)
    );
    // No backend left for v2: test traffic to it fails at the proxy, v1 still serves.
    let c = client();
    let addr = p.listen_addr("api").unwrap();
    let (status, _) = get(
        &c,
        &format!("http://{addr}/"),
        Some((TEST_ROUTE_HEADER, "v2")),
    )
    .await
    .unwrap();
    assert!(status >= 500, "{status}");
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    let (status, rev) = get(&c, &format!("http://{addr}/"), None).await.unwrap();
    assert_eq!((status, rev.as_str()), (200, "v1"));

    p.shutdown().await;
    assert_gone(&[crashed_pid]);
    assert_gone(&v1_pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_is_idempotent_and_scale_keeps_the_lowest_replicas() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), vec![service(&[("v1", run(&[]))])]);
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 1).await.unwrap();
    let first = p.pids("api", "v1").await;
    p.launch("api", "v1", 1).await.unwrap();
    assert_eq!(
        p.pids("api", "v1").await,
        first,
        "a repeated launch restarted something"
    );

    p.scale("api", "v1", 3).await.unwrap();
    let three = p.pids("api", "v1").await;
    assert_eq!(three.len(), 3);
    assert_eq!(three[0], first[0]);
    let h = wait_healthy(&p, "api", "v1", 3).await;
    let ports: BTreeSet<String> = h.instances.iter().map(|i| i.address.clone()).collect();
    assert_eq!(ports.len(), 3, "replicas share an address: {h:?}");

    p.scale("api", "v1", 1).await.unwrap();
    assert_eq!(p.pids("api", "v1").await, first);
    assert_gone(&three[1..]);
    assert_eq!(p.health("api", "v1").await.unwrap().instances.len(), 1);

    // Errors name the problem.
    let e = p.launch("api", "v7", 1).await.unwrap_err();
    assert!(
        e.message.contains("v7") && e.message.contains("known: v1"),
        "{e}"
    );
    let e = p.launch("nope", "v1", 1).await.unwrap_err();
    assert!(e.message.contains("known: api"), "{e}");
    let e = p.scale("api", "v2", 1).await.unwrap_err();
    assert!(e.message.contains("v2"), "{e}");
    let e = p
        .set_weights("api", &vec![("v1".into(), 60)])
        .await
        .unwrap_err();
    assert!(e.message.contains("add up to 60"), "{e}");

    p.shutdown().await;
    assert_gone(&three);
    // After shutdown the platform refuses work.
    assert!(p.launch("api", "v1", 1).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_requires_weight_zero_then_stops_the_processes() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[("v1", run(&[])), ("v2", run(&[]))])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 2).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    wait_healthy(&p, "api", "v1", 2).await;
    wait_healthy(&p, "api", "v2", 1).await;
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    let v1 = p.pids("api", "v1").await;
    let v2 = p.pids("api", "v2").await;

    let e = p
        .retire("api", "v1", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.message.contains("weight 100"), "{e}");
    assert_eq!(p.pids("api", "v1").await, v1);

    p.set_weights("api", &vec![("v2".into(), 100)])
        .await
        .unwrap();
    p.retire("api", "v1", Duration::from_secs(1)).await.unwrap();
    assert_gone(&v1);
    assert!(p.health("api", "v1").await.is_err());
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!((inv[0].revision.as_str(), inv[0].weight), ("v2", 100));
    // Retiring again is a no-op; the retired revision can no longer get weight.
    p.retire("api", "v1", Duration::from_secs(1)).await.unwrap();
    assert!(
        p.set_weights("api", &vec![("v1".into(), 100)])
            .await
            .is_err()
    );
    let c = client();
    let addr = p.listen_addr("api").unwrap();
    let (status, rev) = get(&c, &format!("http://{addr}/"), None).await.unwrap();
    assert_eq!((status, rev.as_str()), (200, "v2"));

    p.shutdown().await;
    assert_gone(&v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_in_flight_request_to_a_retired_revision_completes() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[
            ("v1", run(&["--latency-ms", "1500"])),
            ("v2", run(&[])),
        ])],
    );
    let p = Arc::new(LocalPlatform::start(cfg).await.unwrap());
    p.launch("api", "v1", 1).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    wait_healthy(&*p, "api", "v1", 1).await;
    wait_healthy(&*p, "api", "v2", 1).await;
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    let v1 = p.pids("api", "v1").await;
    let v2 = p.pids("api", "v2").await;

    let addr = p.listen_addr("api").unwrap();
    let slow = tokio::spawn(async move {
        let c = client();
        let started = Instant::now();
        let r = get(&c, &format!("http://{addr}/api/slow"), None).await;
        (r, started.elapsed())
    });
    let proxy = p.proxy("api").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.in_flight("v1") == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached v1"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.set_weights("api", &vec![("v2".into(), 100)])
        .await
        .unwrap();
    p.retire("api", "v1", Duration::from_secs(10))
        .await
        .unwrap();
    // retire waited for the slow request to finish before stopping v1.
    assert_eq!(proxy.in_flight("v1"), 0);
    let (r, took) = slow.await.unwrap();
    assert_eq!(r.unwrap(), (200, "v1".to_string()));
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert_gone(&v1);

    let c = client();
    let (status, rev) = get(&c, &format!("http://{addr}/"), None).await.unwrap();
    assert_eq!((status, rev.as_str()), (200, "v2"));
    p.shutdown().await;
    assert_gone(&v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_failed_requests_while_weights_flip_under_load() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[
            ("v1", run(&["--latency-ms", "2"])),
            ("v2", run(&["--latency-ms", "2"])),
        ])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 2).await.unwrap();
    p.launch("api", "v2", 2).await.unwrap();
    wait_healthy(&p, "api", "v1", 2).await;
    wait_healthy(&p, "api", "v2", 2).await;
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    let pids = pids_of(&p, &["v1", "v2"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(p.listen_addr("api").unwrap(), 8, 200_000, stop.clone());
    let splits: [(u8, u8); 6] = [(50, 50), (0, 100), (99, 1), (1, 99), (100, 0), (30, 70)];
    for _ in 0..3 {
        for (a, b) in splits {
            tokio::time::sleep(Duration::from_millis(80)).await;
            p.set_weights("api", &vec![("v1".into(), a), ("v2".into(), b)])
                .await
                .unwrap();
            assert_eq!(
                p.weights("api").await.unwrap(),
                vec![("v1".to_string(), a), ("v2".to_string(), b)]
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "load: {} ok, {} failed, by revision {:?}",
        report.ok,
        report.failed(),
        report.by_revision
    );
    assert_eq!(report.failed(), 0, "{report:?}");
    assert!(
        report.ok > 200,
        "too little load to mean anything: {report:?}"
    );
    assert!(report.by_revision.get("v1").copied().unwrap_or(0) > 0);
    assert!(report.by_revision.get("v2").copied().unwrap_or(0) > 0);

    p.shutdown().await;
    assert_gone(&pids);
}

/// Rolling replace of 3 replicas expressed through the trait only: scale the new revision
/// up one replica at a time, give it weight proportional to healthy replicas, scale the
/// old one down, all under load, without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_replace_through_the_trait_drops_no_request() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[
            ("v1", run(&["--latency-ms", "5"])),
            ("v2", run(&["--latency-ms", "5"])),
        ])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 3).await.unwrap();
    wait_healthy(&p, "api", "v1", 3).await;
    p.set_weights("api", &vec![("v1".into(), 100)])
        .await
        .unwrap();
    let v1 = p.pids("api", "v1").await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(p.listen_addr("api").unwrap(), 6, 200_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = 3u32;
    let mut seen_v2 = Vec::new();
    for k in 1..=total {
        p.launch("api", "v2", k).await.unwrap();
        wait_healthy(&p, "api", "v2", k).await;
        seen_v2.extend(p.pids("api", "v2").await);
        let w2 = (100 * k / total) as u8;
        p.set_weights("api", &vec![("v1".into(), 100 - w2), ("v2".into(), w2)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if k < total {
            p.scale("api", "v1", total - k).await.unwrap();
            assert_eq!(p.pids("api", "v1").await.len() as u32, total - k);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    p.retire("api", "v1", Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "load: {} ok, {} failed, by revision {:?}",
        report.ok,
        report.failed(),
        report.by_revision
    );
    assert_eq!(report.failed(), 0, "{report:?}");
    assert!(report.by_revision.get("v1").copied().unwrap_or(0) > 0);
    assert!(report.by_revision.get("v2").copied().unwrap_or(0) > 0);
    assert_gone(&v1);
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(
        (inv[0].revision.as_str(), inv[0].replicas, inv[0].weight),
        ("v2", 3, 100)
    );

    p.shutdown().await;
    seen_v2.sort_unstable();
    seen_v2.dedup();
    assert_gone(&seen_v2);
}

/// Set (to `STATE_DIR\tMARKS_DIR`) when this test binary runs as the launcher child.
const LAUNCHER_ENV: &str = "CUTOVER_TEST_LAUNCHER";
const PIDS_LINE: &str = "LAUNCHED ";

/// Two replicas whose shell first forks a `sleep` (a grandchild `PR_SET_PDEATHSIG` does not
/// cover) and records its pid in the marks directory.
fn launcher_service(marks: &std::path::Path) -> cutover::platform::local::LocalServiceConfig {
    let script = format!(
        "sleep 300 & echo $! > '{}/sleep-{{replica}}'; exec '{CUTOVER}' demo-service --port {{port}} --revision {{revision}}",
        marks.display()
    );
    let mut s = service(&[("v1", run(&[]))]);
    s.command = vec!["sh".into(), "-c".into(), script];
    s
}

fn grandchildren(marks: &std::path::Path) -> Vec<u32> {
    (0..2)
        .map(|i| {
            std::fs::read_to_string(marks.join(format!("sleep-{i}")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Launch two replicas and, once healthy, shut down and check that the replicas and what
/// they forked are gone. Run by `sigkilled_cutover_leaves_nothing_after_the_next_start` as
/// a child process (with `CUTOVER_TEST_LAUNCHER` set), it prints the replica pids instead
/// and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_replicas_and_what_they_forked() {
    init_logs();
    let child_mode = std::env::var(LAUNCHER_ENV).ok();
    let dir = tempfile::tempdir().unwrap();
    let (state, marks) = match &child_mode {
        Some(v) => {
            let (a, b) = v.split_once('\t').unwrap();
            (a.into(), std::path::PathBuf::from(b))
        }
        None => (dir.path().join("state"), dir.path().to_path_buf()),
    };
    let p = LocalPlatform::start(config(&state, vec![launcher_service(&marks)]))
        .await
        .unwrap();
    p.launch("api", "v1", 2).await.unwrap();
    wait_healthy(&p, "api", "v1", 2).await;
    let pids = p.pids("api", "v1").await;
    if child_mode.is_some() {
        let line: Vec<String> = pids.iter().map(u32::to_string).collect();
        println!("{PIDS_LINE}{}", line.join(" "));
        tokio::time::sleep(Duration::from_secs(120)).await;
        p.shutdown().await;
        return;
    }
    let forked = grandchildren(&marks);
    assert!(pids.iter().chain(&forked).all(|p| alive(*p)));
    p.shutdown().await;
    assert_gone(&pids);
    assert_gone(&forked);
}

/// cutover killed with SIGKILL: its replicas die with it (PDEATHSIG), and what they forked
/// (which PDEATHSIG does not reach) is reaped from the pid file by the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_cutover_leaves_nothing_after_the_next_start() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let launcher = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shutdown_stops_replicas_and_what_they_forked",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            LAUNCHER_ENV,
            format!("{}\t{}", state.display(), marks.display()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed even if an assertion below fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut launcher = KillOnDrop(launcher);
    let stdout = launcher.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::new(stdout);
        std::io::BufRead::lines(reader)
            .map_while(Result::ok)
            .find_map(|l| l.split_once(PIDS_LINE).map(|(_, pids)| pids.to_string()))
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("launcher did not report its replicas")
        .unwrap()
        .expect("launcher ended without reporting its replicas");
    let replicas: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(replicas.len(), 2, "{line}");
    assert!(replicas.iter().all(|p| alive(*p)));
    let forked = grandchildren(&marks);
    assert!(forked.iter().all(|p| alive(*p)));

    // SAFETY: signalling our own child.
    unsafe { libc::kill(launcher.0.id() as i32, libc::SIGKILL) };
    launcher.0.wait().unwrap();
    assert_gone(&replicas);
    // Not reached by PDEATHSIG, still running.
    assert!(forked.iter().all(|p| alive(*p)));
    let pid_file = std::fs::read_to_string(state.join("local/pids")).unwrap();
    assert_eq!(pid_file.lines().count(), 2, "{pid_file}");

    // The next start on the same state directory reaps them.
    let cfg = config(&state, vec![service(&[("v1", run(&[]))])]);
    let p = LocalPlatform::start(cfg).await.unwrap();
    assert_gone(&forked);
    assert_eq!(std::fs::read_to_string(p.pid_file()).unwrap(), "");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_mean_unhealthy_and_no_traffic() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![service(&[
            ("v1", run(&["--unhealthy"])),
            ("v2", run(&["--slow-start", "1"])),
        ])],
    );
    let p = LocalPlatform::start(cfg).await.unwrap();
    p.launch("api", "v1", 1).await.unwrap();
    p.launch("api", "v2", 1).await.unwrap();
    // A slow start is not healthy at first.
    let early = p.health("api", "v2").await.unwrap();
    assert_ne!(early.instances[0].state, InstanceState::Healthy);
    let pids = pids_of(&p, &["v1", "v2"]).await;
    let h = wait_state(&p, "api", "v1", |s| {
        matches!(s, InstanceState::Unhealthy { .. })
    })
    .await;
    let InstanceState::Unhealthy { reason } = &h.instances[0].state else {
        panic!("{h:?}")
    };
    assert!(
        reason.contains("/healthz") && reason.contains("503"),
        "{reason}"
    );
    // Still running, just not taking traffic.
    assert_eq!(p.pids("api", "v1").await.len(), 1);
    let c = client();
    let addr = p.listen_addr("api").unwrap();
    let (status, _) = get(
        &c,
        &format!("http://{addr}/"),
        Some((TEST_ROUTE_HEADER, "v1")),
    )
    .await
    .unwrap();
    assert!(status >= 500, "{status}");

    // ... then it is.
    wait_healthy(&p, "api", "v2", 1).await;
    let (status, rev) = get(
        &c,
        &format!("http://{addr}/"),
        Some((TEST_ROUTE_HEADER, "v2")),
    )
    .await
    .unwrap();
    assert_eq!((status, rev.as_str()), (200, "v2"));

    p.shutdown().await;
    assert_gone(&pids);
}

#[tokio::test]
async fn a_missing_program_is_a_clear_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = service(&[("v1", run(&[]))]);
    s.command = vec![
        "/nonexistent/server".into(),
        "--port".into(),
        "{port}".into(),
    ];
    let p = LocalPlatform::start(config(dir.path(), vec![s]))
        .await
        .unwrap();
    let e = p.launch("api", "v1", 1).await.unwrap_err();
    assert!(!e.retryable);
    assert!(p.inventory().await.unwrap().is_empty());
    assert!(
        e.message.contains("/nonexistent/server") && e.message.contains("`command`"),
        "{e}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_platform_without_shutdown_still_kills_replicas() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let p = LocalPlatform::start(config(dir.path(), vec![service(&[("v1", run(&[]))])]))
        .await
        .unwrap();
    p.launch("api", "v1", 2).await.unwrap();
    let pids = p.pids("api", "v1").await;
    assert_eq!(pids.len(), 2);
    drop(p);
    assert_gone(&pids);
}
