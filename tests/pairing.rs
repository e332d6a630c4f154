//! Pairing: `cutover serve` shares one release with several attached clients over the
//! control API; `cutover ctl` acts from scripts. Real processes, real sockets, the local
//! platform with demo services.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover::control::{Client, CommandOutcome, Endpoint, Item, ItemBody, Snapshot};
use cutover::engine::{Command as EngineCommand, EventKind, ServiceStatus};
use support::net::free_port;

const RELEASE: &str = include_str!("fixtures/pairing-release.toml");
/// How long an action may take to show in another attached client. Generous: the machine
/// is shared; the benchmark measures the real figure.
const FAN_OUT_BOUND: Duration = Duration::from_secs(3);

fn bin() -> &'static str {
    support::CUTOVER
}

struct Served {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    socket: PathBuf,
}

fn write_release(root: &Path) -> PathBuf {
    let text = RELEASE
        .replace("MARKER", &format!("pairmark{}", std::process::id()))
        .replace("PORT_A", &free_port().to_string())
        .replace("PORT_B", &free_port().to_string());
    let file = root.join("release.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn wait_for_socket(socket: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited before opening its socket"
        );
        assert!(Instant::now() < deadline, "serve never opened {socket:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let file = write_release(&root);
        let state = root.join("state");
        let log = std::fs::File::create(root.join("serve.log")).unwrap();
        let mut child = Command::new(bin())
            .arg("serve")
            .arg(&file)
            .arg("--state-dir")
            .arg(&state)
            .args(["--operator", "alice", "--linger", "0.5"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let socket = state.join("cutover.sock");
        wait_for_socket(&socket, &mut child);
        Served {
            child: Some(child),
            _dir: dir,
            root,
            state,
            socket,
        }
    }

    fn client(&self, operator: &str) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()), operator)
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .arg("ctl")
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("serve.log")).unwrap_or_default()
    }

    /// Wait for the server to exit by itself (after the release finished).
    fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not exit after the release ended:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `cutover serve --resume` of the run, as `operator`, once its socket answers.
    fn resume(&mut self, operator: &str) {
        let log = std::fs::File::create(self.root.join("resume.log")).unwrap();
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--resume",
                "--operator",
                operator,
                "--linger",
                "0.5",
                "--state-dir",
            ])
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_socket(&self.socket, &mut child);
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: abort the release, roll back, stop the services.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every item an attached client saw, folded into its own copy of the state.
#[derive(Clone)]
struct Recorder {
    items: Arc<Mutex<Vec<Item>>>,
    view: Arc<Mutex<Snapshot>>,
    done: Arc<Mutex<Option<String>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Recorder {
    async fn attach(client: &Client) -> Recorder {
        let (snap, mut stream) = client.attach().await.unwrap();
        let items = Arc::new(Mutex::new(Vec::new()));
        let view = Arc::new(Mutex::new(snap));
        let done = Arc::new(Mutex::new(None));
        let (i, v, d) = (items.clone(), view.clone(), done.clone());
        let task = tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Ok(Some(item)) => {
                        v.lock().unwrap().apply(&item);
                        let end = matches!(item.body, ItemBody::End { .. });
                        i.lock().unwrap().push(item);
                        if end {
                            *d.lock().unwrap() = Some("end".into());
                            return;
                        }
                    }
                    Ok(None) => {
                        *d.lock().unwrap() = Some("closed".into());
                        return;
                    }
                    Err(e) => {
                        *d.lock().unwrap() = Some(format!("error: {e}"));
                        return;
                    }
                }
            }
        });
        Recorder {
            items,
            view,
            done,
            task: Arc::new(task),
        }
    }

    fn view(&self) -> Snapshot {
        self.view.lock().unwrap().clone()
    }

    fn items(&self) -> Vec<Item> {
        self.items.lock().unwrap().clone()
    }

    async fn wait_until(&self, what: &str, limit: Duration, f: impl Fn(&Snapshot) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if f(&self.view()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {limit:?}; view: {:?}",
                self.view()
                    .state
                    .services
                    .iter()
                    .map(|s| (&s.name, s.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn status_of(s: &Snapshot, svc: &str) -> ServiceStatus {
    s.state
        .services
        .iter()
        .find(|x| x.name == svc)
        .map(|x| x.status)
        .unwrap()
}

fn saw_command(s: &Snapshot, items: &[Item], operator: &str, cmd: &str) -> bool {
    let _ = s;
    items.iter().any(|i| matches!(&i.body, ItemBody::Event { event } if matches!(&event.kind,
        EventKind::CommandAccepted { operator: o, command, .. } if o == operator && command.to_string() == cmd)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attached_clients_share_one_release_and_a_dropped_one_changes_nothing() {
    let mut served = Served::start(&[]);
    // The socket is private to its owner.
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&served.socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let alice = served.client("alice");
    let bob = served.client("bob");
    let a = Recorder::attach(&alice).await;
    let b = Recorder::attach(&bob).await;
    // A third console attaches, then its terminal goes away.
    let carol = Recorder::attach(&served.client("carol")).await;
    a.wait_until("three attached", FAN_OUT_BOUND, |s| s.attached.len() == 3)
        .await;
    let names: Vec<String> = a
        .view()
        .attached
        .iter()
        .map(|x| x.operator.clone())
        .collect();
    assert_eq!(names, vec!["alice", "bob", "carol"]);
    carol.task.abort();
    drop(carol);
    a.wait_until("carol detached", Duration::from_secs(15), |s| {
        s.attached.len() == 2
    })
    .await;
    b.wait_until("carol detached (bob)", FAN_OUT_BOUND, |s| {
        s.attached.len() == 2
    })
    .await;

    // Both gates are reached; bob promotes payments: alice sees it, attributed to bob.
    for r in [&a, &b] {
        r.wait_until("payments at its gate", Duration::from_secs(30), |s| {
            status_of(s, "payments") == ServiceStatus::Paused
                && status_of(s, "search") == ServiceStatus::Paused
        })
        .await;
    }
    let out = bob
        .command(
            EngineCommand::Promote {
                service: "payments".into(),
            },
            Some("metrics look fine".into()),
        )
        .await
        .unwrap();
    assert!(
        matches!(out, CommandOutcome::Accepted { ref operator, .. } if operator == "bob"),
        "{out:?}"
    );
    let sent = Instant::now();
    a.wait_until("bob's promote in alice's console", FAN_OUT_BOUND, |s| {
        saw_command(s, &a.items(), "bob", "promote payments")
    })
    .await;
    eprintln!("fan-out of bob's promote to alice: {:?}", sent.elapsed());

    // Conflicts: alice rolls back search, bob promotes it at the same moment. One
    // outcome, decided in order; if the rollback came first, bob is told who and when.
    let (r1, r2) = tokio::join!(
        alice.command(
            EngineCommand::Rollback {
                service: Some("search".into())
            },
            None
        ),
        bob.command(
            EngineCommand::Promote {
                service: "search".into()
            },
            None
        ),
    );
    let r1 = r1.unwrap();
    let r2 = r2.unwrap();
    assert!(matches!(r1, CommandOutcome::Accepted { .. }), "{r1:?}");
    if let CommandOutcome::Refused(r) = &r2 {
        assert!(
            r.reason
                .contains("search is already rolling back, started by alice")
                || r.reason
                    .contains("search is already rolled back, started by alice"),
            "{}",
            r.reason
        );
    }
    a.wait_until("search rolled back", Duration::from_secs(30), |s| {
        status_of(s, "search") == ServiceStatus::RolledBack
    })
    .await;
    let rollbacks = a
        .items()
        .iter()
        .filter(|i| matches!(&i.body, ItemBody::Event { event } if matches!(&event.kind, EventKind::RollbackStarted { service, .. } if service == "search")))
        .count();
    assert_eq!(rollbacks, 1, "exactly one rollback of search");

    // ctl: status is JSON, a refusal exits 4 with the reason, bad input exits 2.
    let st = served.ctl(&["status"]);
    assert_eq!(st.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["state"]["release"], "pairing");
    assert!(v["seq"].as_u64().unwrap() > 0);
    let refused = served.ctl(&["promote", "search", "--operator", "dave"]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("started by alice"));
    assert_eq!(served.ctl(&["launch"]).status.code(), Some(2));
    assert_eq!(served.ctl(&["promote"]).status.code(), Some(2));
    assert_eq!(
        served.ctl(&["approve", "nosuch"]).status.code(),
        Some(4),
        "an unknown service is the engine's refusal"
    );

    // A client of another major version is refused, with both versions named.
    let e = alice
        .events_with_version(0, false, "2.0")
        .await
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("mismatch") && msg.contains("2.0") && msg.contains("1.0"),
        "{msg}"
    );

    // Approvals go through the same channel; alice approves payments' last gate.
    a.wait_until("payments awaiting approval", Duration::from_secs(30), |s| {
        status_of(s, "payments") == ServiceStatus::AwaitingApproval
    })
    .await;
    // The gate needs two different approvers (approvals = 2): alice's approval is
    // recorded, her second is refused, bob's opens the gate.
    let ok = served.ctl(&[
        "approve",
        "payments",
        "--operator",
        "alice",
        "--reason",
        "paired review",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("approval 1 of 2"));
    let twice = served.ctl(&["approve", "payments", "--operator", "alice"]);
    assert_eq!(twice.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("alice already approved payments"));
    assert_eq!(
        status_of(&a.view(), "payments"),
        ServiceStatus::AwaitingApproval
    );
    let second = served.ctl(&["approve", "payments", "--operator", "bob"]);
    assert_eq!(second.status.code(), Some(0));
    a.wait_until("payments promoted", Duration::from_secs(30), |s| {
        status_of(s, "payments") == ServiceStatus::Promoted
    })
    .await;
    assert_eq!(served.wait_exit(), Some(3), "search rolled back: exit 3");
    for r in [&a, &b] {
        r.wait_until("stream ended", Duration::from_secs(10), |_| {
            r.done.lock().unwrap().is_some()
        })
        .await;
    }
    // Identical state sequences: from bob's first item on, alice saw exactly the same
    // items (alice attached first, so she also saw bob's attach), and the same final state.
    let ia = a.items();
    let ib = b.items();
    let first_b = ib.first().unwrap().seq;
    let tail_a: Vec<&Item> = ia.iter().filter(|i| i.seq >= first_b).collect();
    let all_b: Vec<&Item> = ib.iter().collect();
    assert_eq!(tail_a, all_b);
    assert_eq!(a.view().state, b.view().state);
    for w in ia.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "no gap, no duplicate");
    }
    // The final state equals the journal's: a fresh fold of the audit agrees on outcomes.
    let audit = Command::new(bin())
        .args(["audit", "--state-dir"])
        .arg(&served.state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.contains("bob"), "{text}");
    assert!(
        text.contains("metrics look fine"),
        "the reason is journaled: {text}"
    );
    assert!(text.contains("paired review"), "{text}");
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn tcp_needs_a_valid_operator_token_and_refused_attempts_are_audited() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_private(
        &tokens,
        "[[token]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"alice-token-0123456789\"\n\n[[token]]\nname = \"watcher\"\nrole = \"read-only\"\ntoken = \"watch-token-0123456789\"\n",
    );
    let listen = format!("127.0.0.1:{port}");
    let mut served = Served::start(&[
        "--listen",
        &listen,
        "--token-file",
        tokens.to_str().unwrap(),
    ]);
    let url = format!("http://127.0.0.1:{port}");
    let ctl_tcp = |token: &str, args: &[&str]| {
        let f = dir.path().join(format!("t-{}", token.len() + args.len()));
        write_private(&f, token);
        Command::new(bin())
            .arg("ctl")
            .args(args)
            .args(["--url", &url, "--token-file"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let wrong = ctl_tcp("not-a-token-at-all-0000", &["pause", "payments"]);
    assert_eq!(
        wrong.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let ro = ctl_tcp("watch-token-0123456789", &["rollback", "payments"]);
    assert_eq!(
        ro.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&ro.stderr)
    );
    assert!(String::from_utf8_lossy(&ro.stderr).contains("read-only"));
    // Read-only may read.
    let st = ctl_tcp("watch-token-0123456789", &["status"]);
    assert_eq!(st.status.code(), Some(0));
    // GET /metrics: cutover's own metrics for a scraper with a token (no protocol
    // header needed), refused without one.
    let scrape = |auth: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            c,
            "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    assert!(scrape("").starts_with("HTTP/1.1 401"));
    let m = scrape("authorization: Bearer watch-token-0123456789\r\n");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("text/plain; version=0.0.4"), "{m}");
    assert!(
        m.contains("cutover_release_status{environment=\"\"}"),
        "{m}"
    );
    assert!(
        m.contains("cutover_service_phase{environment=\"\",service=\"payments\",phase="),
        "{m}"
    );
    // The operator token acts, named by its token (not by --operator or $USER).
    let ok = ctl_tcp("alice-token-0123456789", &["abort"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("(as alice)"));
    // No server on a port: internal error (1), distinct from refusal and denial.
    let none = Command::new(bin())
        .args(["ctl", "status", "--socket"])
        .arg(dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    served.wait_exit();
    let audit = Command::new(bin())
        .args(["audit", "--state-dir"])
        .arg(&served.state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(text.contains("unauthenticated (127.0.0.1:"), "{text}");
    assert!(text.contains("watcher"), "{text}");
    assert!(text.contains("read-only"), "{text}");
    // Tokens never reach the journal or the server's output.
    let journal = std::fs::read_dir(served.state.join("runs"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| std::fs::read(f.path()).unwrap_or_default())
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .collect::<String>();
    for secret in [
        "alice-token-0123456789",
        "watch-token-0123456789",
        "not-a-token-at-all",
    ] {
        assert!(
            !journal.contains(secret) && !text.contains(secret) && !served.log().contains(secret)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_console_says_the_server_is_gone_and_comes_back_after_resume() {
    let mut served = Served::start(&[]);
    // The console's own link (what `cutover attach` renders from).
    let remote = cutover::session::remote_link(served.client("carol"))
        .await
        .unwrap();
    let mut link = remote.link;
    let mut conn = link
        .connection
        .take()
        .expect("a remote link reports its connection");
    let mut state = link.state.clone();
    let paused = |s: &cutover::engine::ReleaseState| {
        s.service("payments")
            .is_some_and(|p| p.status == ServiceStatus::Paused)
    };
    tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| paused(s)))
        .await
        .expect("payments at its gate")
        .unwrap();
    let run_id = state.borrow().run_id.clone();
    assert!(conn.borrow().lost.is_none());
    served.kill9();
    let lost = tokio::time::timeout(Duration::from_secs(10), conn.wait_for(|c| c.lost.is_some()))
        .await
        .expect("the console is told the server is gone")
        .unwrap()
        .lost
        .clone()
        .unwrap();
    assert!(
        lost.contains("reconnecting") && lost.contains("cutover serve --resume"),
        "{lost}"
    );
    served.resume("bob");
    tokio::time::timeout(Duration::from_secs(30), conn.wait_for(|c| c.lost.is_none()))
        .await
        .expect("the console reconnects by itself")
        .unwrap();
    assert_eq!(state.borrow().run_id, run_id, "the same run");
    // Live again: a command from elsewhere shows up in this console's state.
    let out = served
        .client("alice")
        .command(EngineCommand::Rollback { service: None }, None)
        .await
        .unwrap();
    assert!(matches!(out, CommandOutcome::Accepted { .. }), "{out:?}");
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| {
            s.service("payments")
                .is_some_and(|p| p.status == ServiceStatus::RolledBack)
        }),
    )
    .await
    .expect("the rollback reaches the reconnected console")
    .unwrap();
    assert_eq!(served.wait_exit(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_then_resume_and_clients_reattach() {
    let mut served = Served::start(&[]);
    let alice = served.client("alice");
    let a = Recorder::attach(&alice).await;
    a.wait_until("payments at its gate", Duration::from_secs(30), |s| {
        status_of(s, "payments") == ServiceStatus::Paused
    })
    .await;
    let run_id = a.view().state.run_id.clone();
    served.kill9();
    a.wait_until("the stream noticed", Duration::from_secs(10), |_| {
        a.done.lock().unwrap().is_some()
    })
    .await;
    assert!(alice.snapshot().await.is_err(), "nothing answers");
    // The stale socket is still there; serve --resume replaces it.
    assert!(served.socket.exists());
    served.resume("bob");
    let a2 = Recorder::attach(&alice).await;
    let b2 = Recorder::attach(&served.client("bob")).await;
    assert_eq!(a2.view().state.run_id, run_id, "the same run, resumed");
    a2.wait_until("payments back at its gate", Duration::from_secs(30), |s| {
        status_of(s, "payments") == ServiceStatus::Paused
    })
    .await;
    b2.wait_until("both attached", FAN_OUT_BOUND, |s| s.attached.len() == 2)
        .await;
    let out = alice
        .command(
            EngineCommand::Rollback { service: None },
            Some("kill -9 drill".into()),
        )
        .await
        .unwrap();
    assert!(matches!(out, CommandOutcome::Accepted { .. }), "{out:?}");
    b2.wait_until("rollback seen by bob", FAN_OUT_BOUND, |s| {
        saw_command(s, &b2.items(), "alice", "rollback")
    })
    .await;
    assert_eq!(served.wait_exit(), Some(3));
    let verify = Command::new(bin())
        .args(["audit", "verify", "--state-dir"])
        .arg(&served.state)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_link_of_attach_carries_state_events_presence_and_commands() {
    let served = Served::start(&[]);
    let mut remote = cutover::session::remote_link(served.client("alice"))
        .await
        .unwrap();
    assert_eq!(remote.state.release, "pairing");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = remote.link.state.borrow_and_update().clone();
        if s.services
            .iter()
            .any(|x| x.name == "search" && x.status == ServiceStatus::Paused)
        {
            break;
        }
        assert!(Instant::now() < deadline, "search never reached its gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        remote
            .link
            .presence
            .as_mut()
            .unwrap()
            .borrow_and_update()
            .clone(),
        vec!["alice".to_string()]
    );
    // A second, read-only console shows up in the first one's status bar.
    let _watcher = Recorder::attach(&served.client("watcher").read_only(true)).await;
    let p = remote.link.presence.as_mut().unwrap();
    tokio::time::timeout(FAN_OUT_BOUND, async {
        loop {
            if p.borrow_and_update().len() == 2 {
                break;
            }
            p.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(
        p.borrow().clone(),
        vec!["alice".to_string(), "watcher (read-only)".to_string()]
    );
    // The console's command channel reaches the engine, attributed to alice.
    let (req, rx) = cutover::engine::CommandRequest::new(
        EngineCommand::Promote {
            service: "search".into(),
        },
        "ignored-locally",
    );
    remote.link.commands.send(req).await.unwrap();
    let reply = rx.await.unwrap();
    assert!(reply.is_ok(), "{reply:?}");
    let mut saw = false;
    let deadline = Instant::now() + FAN_OUT_BOUND;
    while Instant::now() < deadline && !saw {
        if let Ok(Ok(e)) =
            tokio::time::timeout(Duration::from_millis(200), remote.link.events.recv()).await
        {
            saw = matches!(&e.kind, EventKind::CommandAccepted { operator, command, .. }
                if operator == "alice" && command.to_string() == "promote search");
        }
    }
    assert!(saw, "the accepted promote came back on the event stream");
    // The read-only console cannot act.
    let ro = served.client("watcher").read_only(true);
    let e = ro.command(EngineCommand::Abort, None).await.err().unwrap();
    assert!(e.is_denied(), "{e}");
}

/// tmux on a private server socket (needs the `tmux` package; fails without it).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        // One tmux server per test: tests run in parallel and name their sessions alike.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tmux {
            socket: format!("cutover-pairing-{}-{n}", std::process::id()),
        }
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is needed for this test (apt-get install tmux)")
    }
    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", session]).stdout)
            .to_string()
    }
    fn wait_screen(&self, session: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen(session);
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{session}: {what} never shown:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn two_real_terminals_attached_one_rollback_attributed_and_closing_one_changes_nothing() {
    let mut served = Served::start(&[]);
    let tmux = Tmux::new();
    for (session, op) in [("alice", "alice"), ("bob", "bob")] {
        let cmd = format!(
            "{} attach --socket {} --operator {op}",
            bin(),
            served.socket.display()
        );
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "160",
            "-y",
            "45",
            &cmd,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for s in ["alice", "bob"] {
        tmux.wait_screen(s, "both attached and both gates", |t| {
            t.contains("attached: alice, bob") || t.contains("attached: bob, alice")
        });
        tmux.wait_screen(s, "payments at its gate", |t| {
            t.lines()
                .any(|l| l.contains("payments") && l.contains("PAUSED"))
        });
    }
    // Bob presses rollback (r) on the selected service (payments, first in the tree).
    tmux.run(&["send-keys", "-t", "bob", "r"]);
    tmux.wait_screen("alice", "payments rolled back in alice's terminal", |t| {
        t.lines()
            .any(|l| l.contains("payments") && l.contains("ROLLED BACK"))
    });
    // Closing bob's terminal changes nothing: alice sees him leave, search still waits.
    tmux.run(&["kill-session", "-t", "bob"]);
    let s = tmux.wait_screen("alice", "bob detached", |t| {
        let bar = t.lines().next().unwrap_or_default();
        bar.contains("attached: alice") && !bar.contains("bob")
    });
    assert!(
        s.lines()
            .any(|l| l.contains("search") && l.contains("PAUSED")),
        "{s}"
    );
    // Alice quits: an attached console only detaches, nothing to confirm.
    tmux.run(&["send-keys", "-t", "alice", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.run(&["has-session", "-t", "alice"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "alice's console did not quit:\n{}",
            tmux.screen("alice")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = served.ctl(&["status"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["state"]["status"], "running", "the release goes on");
    assert_eq!(v["attached"].as_array().map(Vec::len), Some(0));
    let abort = served.ctl(&["abort", "--operator", "carol"]);
    assert_eq!(abort.status.code(), Some(0));
    served.wait_exit();
    let audit = Command::new(bin())
        .args(["audit", "--state-dir"])
        .arg(&served.state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&audit.stdout);
    let rollbacks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rollback payments"))
        .collect();
    assert_eq!(rollbacks.len(), 1, "one rollback, once: {text}");
    assert!(rollbacks[0].contains("bob"), "attributed to bob: {text}");
}

/// Kills, on drop, every process whose command line names `dir` (a test's private state
/// directory): the background servers a hand-over starts outlive their tmux pane.
struct KillByDir {
    dir: PathBuf,
}

impl KillByDir {
    fn pids(&self) -> Vec<i32> {
        let needle = self.dir.to_string_lossy().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env).replace('\0', " ");
            if cmd.contains("cutover") && (cmd.contains(&needle) || env.contains(&needle)) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for KillByDir {
    fn drop(&mut self) {
        for pid in self.pids() {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn ctl_json(state: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("ctl")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn service_json<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["state"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

fn audit_text(state: &Path) -> String {
    let out = Command::new(bin())
        .args(["audit", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn audit_verifies(state: &Path) {
    let verify = Command::new(bin())
        .args(["audit", "verify", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Wait until nothing answers on the socket (the server exited), up to 60 s.
fn wait_socket_gone(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(socket).is_ok() {
        assert!(Instant::now() < deadline, "the server never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn bar_lists(screen: &str, names: &[&str]) -> bool {
    let bar = screen.lines().next().unwrap_or_default();
    bar.contains(&format!("attached: {}", names.join(", ")))
}

/// The issue's "done when": `cutover demo` in one terminal, `cutover attach` in another;
/// a rollback pressed in the attached one happens once and is audited as bob's; closing
/// the attached terminal changes nothing, and closing the demo's own terminal hands the
/// release over to a background server that the other console follows.
#[test]
fn demo_in_two_terminals_rollback_attributed_and_closing_either_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _reaper = KillByDir { dir: state.clone() };
    support::net::wait_for_demo_ports();
    let tmux = Tmux::new();
    let host = format!(
        "cd {} && CUTOVER_STATE_DIR={} {} demo --operator alice; sleep 60",
        dir.path().display(),
        state.display(),
        bin()
    );
    assert!(
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "host",
            "-x",
            "160",
            "-y",
            "45",
            &host
        ])
        .status
        .success()
    );
    let attach = format!("cutover attach --state-dir {}", state.display());
    tmux.wait_screen("host", "how to attach", |t| t.contains(&attach));
    let bob = format!(
        "{} attach --state-dir {} --operator bob",
        bin(),
        state.display()
    );
    assert!(
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "bob",
            "-x",
            "160",
            "-y",
            "45",
            &bob
        ])
        .status
        .success()
    );
    for s in ["host", "bob"] {
        tmux.wait_screen(s, "alice and bob attached", |t| {
            bar_lists(t, &["alice", "bob"])
        });
    }
    tmux.wait_screen("bob", "payments' canary taking traffic", |t| {
        t.lines()
            .any(|l| l.contains(" payments ") && l.contains("v2 20%"))
    });
    // Hold the release (weights and timers freeze) so it cannot finish under the test.
    let pause = served_ctl(&state, &["pause", "--operator", "alice"]);
    assert_eq!(pause.status.code(), Some(0), "{pause:?}");
    // Bob presses rollback on the selected service (payments, first in the tree).
    tmux.run(&["send-keys", "-t", "bob", "r"]);
    let rolled_back = |t: &str| {
        t.lines()
            .any(|l| l.contains(" payments ") && l.contains("ROLLED BACK"))
    };
    tmux.wait_screen(
        "host",
        "payments rolled back in the demo's terminal",
        rolled_back,
    );
    // Closing bob's terminal changes nothing: alice sees him leave.
    tmux.run(&["kill-session", "-t", "bob"]);
    tmux.wait_screen("host", "bob detached", |t| {
        bar_lists(t, &["alice"]) && !t.lines().next().unwrap_or_default().contains("bob")
    });
    let before = ctl_json(&state, &["status"]);
    assert_eq!(before["state"]["status"], "paused", "the release goes on");
    let run_id = before["state"]["run_id"].as_str().unwrap().to_string();
    // Bob comes back; then the demo's own terminal closes (SIGHUP).
    assert!(
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "bob",
            "-x",
            "160",
            "-y",
            "45",
            &bob
        ])
        .status
        .success()
    );
    tmux.wait_screen("bob", "bob attached again", |t| {
        bar_lists(t, &["alice", "bob"])
    });
    tmux.run(&["kill-session", "-t", "host"]);
    // Bob's console follows the release to the background server: alice is gone from
    // the presence list, the state is the same run's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        // Between the old server's socket going and the new one's, nothing answers.
        let out = served_ctl(&state, &["status"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let names: Vec<&str> = v["attached"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a["operator"].as_str())
                .collect();
            if names == ["bob"] {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "bob's console never attached to the background server: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    tmux.wait_screen("bob", "bob's console on the background server", |t| {
        bar_lists(t, &["bob"]) && rolled_back(t)
    });
    assert_eq!(after["state"]["run_id"], run_id.as_str(), "the same run");
    assert_eq!(after["state"]["status"], "paused", "still held, as it was");
    assert_eq!(service_json(&after, "payments")["status"], "rolled_back");
    for s in before["state"]["services"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        assert_eq!(
            service_json(&after, name)["candidate_weight"],
            s["candidate_weight"],
            "{name}: the journaled weight carried over"
        );
    }
    // Finish it from a script; the background server exits by itself.
    let abort = served_ctl(&state, &["abort", "--operator", "carol"]);
    assert_eq!(abort.status.code(), Some(0), "{abort:?}");
    wait_socket_gone(&state.join("cutover.sock"));
    audit_verifies(&state);
    let text = audit_text(&state);
    let rollbacks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rollback payments"))
        .collect();
    assert_eq!(rollbacks.len(), 1, "one rollback, once: {text}");
    assert!(rollbacks[0].contains("bob"), "attributed to bob: {text}");
    assert!(
        text.contains("payments: rolling back by bob"),
        "the rollback itself is bob's: {text}"
    );
    assert!(
        text.contains("engine resumed by alice"),
        "the hand-over is journaled: {text}"
    );
}

fn served_ctl(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("ctl")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

/// The longest stretch without a successful answer from `addr`, sampled every 20 ms.
struct GapProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Duration, u64, u64)>>,
}

impl GapProbe {
    fn start(addr: String) -> GapProbe {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut longest = Duration::ZERO;
            let mut down_since: Option<Instant> = None;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let up = answers(&addr);
                let now = Instant::now();
                if up {
                    ok += 1;
                    if let Some(t) = down_since.take() {
                        longest = longest.max(now - t);
                    }
                } else {
                    failed += 1;
                    down_since.get_or_insert(now);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(t) = down_since {
                longest = longest.max(Instant::now() - t);
            }
            (longest, ok, failed)
        });
        GapProbe {
            stop,
            thread: Some(thread),
        }
    }
    fn finish(mut self) -> (Duration, u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 2")
}

/// "Keep running in the background" from the quit dialog of an in-process console
/// (`cutover deploy`): the release moves to a background `serve --resume`, keeps its
/// state, its journaled weights and the approval already given, and goes on there.
#[test]
fn the_quit_dialog_hands_the_release_over_to_a_background_serve() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let state = root.join("state");
    let _reaper = KillByDir { dir: state.clone() };
    let (port_a, port_b) = (free_port(), free_port());
    let text = RELEASE
        .replace("MARKER", &format!("handover{}", std::process::id()))
        .replace("PORT_A", &port_a.to_string())
        .replace("PORT_B", &port_b.to_string());
    std::fs::write(root.join("release.toml"), text).unwrap();
    let tmux = Tmux::new();
    let host = format!(
        "cd {} && {} deploy release.toml --state-dir {} --operator alice; sleep 60",
        root.display(),
        bin(),
        state.display()
    );
    assert!(
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "host",
            "-x",
            "160",
            "-y",
            "45",
            &host
        ])
        .status
        .success()
    );
    tmux.wait_screen("host", "payments at its gate", |t| {
        t.lines()
            .any(|l| l.contains(" payments ") && l.contains("PAUSED"))
    });
    // On to the two-approver gate; alice gives the first approval.
    assert_eq!(
        served_ctl(&state, &["promote", "payments", "--operator", "alice"])
            .status
            .code(),
        Some(0)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while service_json(&ctl_json(&state, &["status"]), "payments")["status"] != "awaiting_approval"
    {
        assert!(
            Instant::now() < deadline,
            "payments never reached its approval gate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = served_ctl(&state, &["approve", "payments", "--operator", "alice"]);
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("approval 1 of 2"),
        "{first:?}"
    );
    let before = ctl_json(&state, &["status"]);
    let run_id = before["state"]["run_id"].as_str().unwrap().to_string();
    // Quit; the dialog offers the background and says how to come back.
    tmux.run(&["send-keys", "-t", "host", "q"]);
    tmux.wait_screen("host", "the quit dialog", |t| {
        t.contains("keep running in the background")
            && t.contains(&format!("cutover attach --state-dir {}", state.display()))
    });
    let probe = GapProbe::start(format!("127.0.0.1:{port_a}"));
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "host", "b"]);
    let screen = tmux.wait_screen("host", "the hand-over", |t| {
        t.contains("goes on in the background")
    });
    assert!(
        screen.contains(&format!("cutover attach --state-dir {}", state.display())),
        "{screen}"
    );
    // The release answers from the new server: same run, same state, alice's approval kept.
    let after = ctl_json(&state, &["status"]);
    assert_eq!(after["state"]["run_id"], run_id.as_str());
    assert_eq!(after["state"]["status"], "running");
    let p = service_json(&after, "payments");
    assert_eq!(p["status"], "awaiting_approval");
    assert_eq!(p["approvals"], serde_json::json!(["alice"]));
    for name in ["payments", "search"] {
        assert_eq!(
            service_json(&after, name)["candidate_weight"],
            service_json(&before, name)["candidate_weight"],
            "{name}"
        );
    }
    // Traffic through payments' address comes back (the proxies restarted with it).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(&format!("127.0.0.1:{port_a}")) {
        assert!(Instant::now() < deadline, "payments never answered again");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (gap, ok, failed) = probe.finish();
    eprintln!(
        "hand-over: longest stretch without an answer on payments' address {} ms ({ok} answered, {failed} not, one probe per 20 ms)",
        gap.as_millis()
    );
    assert!(ok > 0);
    // The approval gate still needs someone other than alice.
    let again = served_ctl(&state, &["approve", "payments", "--operator", "alice"]);
    assert_eq!(again.status.code(), Some(4), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("alice already approved payments"));
    let second = served_ctl(&state, &["approve", "payments", "--operator", "bob"]);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while service_json(&ctl_json(&state, &["status"]), "payments")["status"] != "promoted" {
        assert!(Instant::now() < deadline, "payments never promoted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let abort = served_ctl(&state, &["abort", "--operator", "carol"]);
    assert_eq!(abort.status.code(), Some(0), "{abort:?}");
    wait_socket_gone(&state.join("cutover.sock"));
    audit_verifies(&state);
    let text = audit_text(&state);
    assert!(text.contains("engine resumed by alice"), "{text}");
    assert!(text.contains("payments: gate approved by bob"), "{text}");
}
