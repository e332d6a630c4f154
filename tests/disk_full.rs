//! The journal's disk fills (or fails) mid-release: `cutover deploy --headless
//! --keep-running` of tests/fixtures/crash-release.toml (canary a, blue-green b, rolling c).
//!
//! - Injected: the N-th journal append and every later one fail with ENOSPC or EIO
//!   (`CUTOVER_FAIL_APPEND_AT`, `CUTOVER_FAIL_APPEND_ERRNO`, crash-hooks feature).
//! - Real: the state dir is a 1 MiB tmpfs the test mounts (as root; the test fails if it
//!   cannot), filled with a file once service a has shifted traffic.
//!
//! - The journal in PostgreSQL (`--journal postgres://…`, a server the test starts): the
//!   same injected failure of append 25, on the database writer (nothing is sent).
//!
//! Each time: no platform call after the failed write, each proxy serves exactly the last
//! split the journal holds (100 requests through a 100-slot schedule, counted by the
//! revision that answered), stderr says why and what to do (the disk, free space, or the
//! database; `cutover resume`), and `cutover resume` on a disk with room finishes the
//! release with every service promoted and a valid audit chain.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::backend::{Backend, Journal};
use support::local::{client, get, processes_with};
use support::net::free_port;

const RELEASE: &str = include_str!("fixtures/crash-release.toml");
const STOPPED: &str = "could not be written";

struct Fx {
    dir: PathBuf,
    state: PathBuf,
    marker: String,
    ports: BTreeMap<String, u16>,
    journal: Journal,
}

impl Fx {
    fn new(dir: &Path, state: PathBuf, backend: &Backend) -> Fx {
        let marker = format!("diskfull{}x{}", std::process::id(), free_port());
        let mut text = RELEASE.replace("MARKER", &marker);
        let mut ports = BTreeMap::new();
        for s in ["a", "b", "c"] {
            let port = free_port();
            text = text.replace(&format!("PORT_{}", s.to_uppercase()), &port.to_string());
            ports.insert(s.to_string(), port);
        }
        std::fs::write(dir.join("release.toml"), text).unwrap();
        Fx {
            dir: dir.to_path_buf(),
            state,
            marker,
            ports,
            journal: backend.journal(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::CUTOVER);
        c.args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .env_remove("CUTOVER_STATE_DIR");
        self.journal.select(&mut c);
        c
    }

    /// The entries of the (only) run, read through the journal API from either backend.
    fn entries(&self) -> Vec<cutover::journal::Entry> {
        self.journal.entries(&self.state)
    }

    /// `deploy --keep-running` with the hook's trace on; stdout and stderr lines collected.
    fn deploy(&self, env: &[(&str, &str)]) -> (Child, Lines, Lines) {
        let mut c = self.cmd(&["deploy", "--headless", "--output", "json", "--keep-running"]);
        c.arg(self.dir.join("release.toml"))
            .env("CUTOVER_CRASH_TRACE", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        (child, out, err)
    }

    /// The last split the journal holds for each service (from its `weights_set` events).
    fn journaled_splits(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for e in self.entries() {
            let ev = &e.payload["event"];
            if ev["type"] == "weights_set" {
                let split = ev["weights"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| (w[0].as_str().unwrap().to_string(), w[1].as_u64().unwrap()))
                    .filter(|(_, w)| *w > 0)
                    .collect();
                out.insert(ev["service"].as_str().unwrap().to_string(), split);
            }
        }
        out
    }

    /// 100 requests through each service's proxy, counted by the revision that answered.
    fn served_splits(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let http = client();
            let mut out = BTreeMap::new();
            for (s, port) in &self.ports {
                let url = format!("http://127.0.0.1:{port}/api/load");
                let mut by: BTreeMap<String, u64> = BTreeMap::new();
                for _ in 0..100 {
                    let (status, rev) = get(&http, &url, None).await.unwrap();
                    assert_eq!(status, 200, "{s}");
                    *by.entry(rev).or_default() += 1;
                }
                out.insert(s.clone(), by);
            }
            out
        })
    }

    fn resume_to_the_end(&self) {
        let out = self
            .cmd(&["resume", "--headless", "--output", "json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "resume failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        for s in ["a", "b", "c"] {
            assert_eq!(summary["services"][s], "promoted", "{summary}");
        }
        let verify = self.cmd(&["audit", "verify"]).output().unwrap();
        assert!(
            verify.status.success(),
            "audit verify: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_with(&self.marker).is_empty() {
            assert!(
                Instant::now() < deadline,
                "orphans: {:?}",
                processes_with(&self.marker)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn collect(r: impl std::io::Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(lines: &Lines, what: &str, child: &mut Child) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = lines.lock().unwrap().iter().position(|l| l.contains(what)) {
            return i;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "never saw {what:?}: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) {
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// After the engine stopped: the message, no platform call after `from` (the index of the
/// failing write's trace line, or of the message), and the proxies on the journaled split.
fn assert_held(fx: &Fx, err: &Lines, from: usize, cause: &str) {
    assert_held_saying(
        fx,
        err,
        from,
        &[
            cause,
            "df -h",
            "free space",
            "cutover resume",
            "last journaled split",
        ],
    );
}

/// [`assert_held`] with the lines stderr must hold given.
fn assert_held_saying(fx: &Fx, err: &Lines, from: usize, said: &[&str]) {
    let text = err.lock().unwrap().join("\n");
    for &needed in said {
        assert!(text.contains(needed), "stderr lacks {needed:?}:\n{text}");
    }
    let journaled = fx.journaled_splits();
    assert!(
        journaled
            .get("a")
            .is_some_and(|s| s.get("v2").is_some_and(|w| *w > 0)),
        "the failure came before a shifted traffic: {journaled:?}"
    );
    let served = fx.served_splits();
    for (s, split) in &served {
        assert_eq!(
            Some(split),
            journaled.get(s),
            "{s}: the proxy serves another split than the journal's last"
        );
    }
    let lines = err.lock().unwrap().clone();
    let acted: Vec<&String> = lines[from..]
        .iter()
        .filter(|l| l.starts_with("cutover-crash-hook: platform"))
        .collect();
    assert!(
        acted.is_empty(),
        "platform calls after the failed write: {acted:?}"
    );
}

#[test]
fn an_injected_full_or_failing_disk_stops_the_engine_where_the_journal_ends() {
    // Append 25 comes after a's shift to 30% and before its shift to 60% in this release (the 50 appends of one run:
    // release entry, start, baselines, then a and c interleaved).
    for (errno, cause) in [
        ("ENOSPC", "No space left on device"),
        ("EIO", "Input/output error"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fx::new(dir.path(), dir.path().join("state"), &Backend::file());
        let (mut child, _out, err) = fx.deploy(&[
            ("CUTOVER_FAIL_APPEND_AT", "25"),
            ("CUTOVER_FAIL_APPEND_ERRNO", errno),
        ]);
        let failed = wait_for(&err, "cutover-crash-hook: append 25 fails", &mut child);
        wait_for(&err, STOPPED, &mut child);
        // The failed write added nothing: 24 entries.
        let runs = fx.state.join("runs");
        let run = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap();
        let text = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 24, "{errno}");
        assert_held(&fx, &err, failed, cause);
        stop(child);
        fx.resume_to_the_end();
    }
}

/// The failing-append hook on the PostgreSQL writer: append 25 fails before anything is
/// sent. The engine stops as with a failing disk (no platform call after it, traffic on
/// the last committed split), says it is the database (not `df -h`, not a lost lease),
/// lets its lease go when it stops, and `resume` carries on to the end. (The hook used to
/// fail inside the append's transaction and be reported as a lost lease.)
#[test]
fn an_injected_failing_append_to_the_journal_in_postgres_stops_the_engine_where_it_ends() {
    let backend = Backend::postgres();
    let dir = tempfile::tempdir().unwrap();
    let fx = Fx::new(dir.path(), dir.path().join("state"), &backend);
    let (mut child, _out, err) = fx.deploy(&[("CUTOVER_FAIL_APPEND_AT", "25")]);
    let failed = wait_for(&err, "cutover-crash-hook: append 25 fails", &mut child);
    wait_for(&err, STOPPED, &mut child);
    assert_eq!(
        fx.entries().len(),
        24,
        "the failed append reached the database"
    );
    assert_held_saying(
        &fx,
        &err,
        failed,
        &[
            "No space left on device",
            "check the database postgres://127.0.0.1:",
            "cutover resume --journal postgres://127.0.0.1:",
            "last journaled split",
        ],
    );
    let text = err.lock().unwrap().join("\n");
    assert!(
        !text.contains("lost its lease") && !text.contains("df -h"),
        "{text}"
    );
    stop(child);
    assert!(
        !fx.journal.lease_held(),
        "the stopped engine kept its lease"
    );
    fx.resume_to_the_end();
}

/// A tmpfs mounted on a directory of the test, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs on {dir:?} failed (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write until the filesystem refuses: returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn a_real_full_tmpfs_stops_the_engine_and_resume_carries_on_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&dir.path().join("small-disk"), "1m");
    let fx = Fx::new(dir.path(), mnt.0.join("state"), &Backend::file());
    let (mut child, out, err) = fx.deploy(&[]);
    // Once a's first shift is journaled (its event line is printed after the append), fill
    // the disk: a later append of this release finds no room.
    wait_for(&out, "\"v2\",30]", &mut child);
    let filler = fill(&mnt.0);
    let at = wait_for(&err, STOPPED, &mut child);
    assert_held(&fx, &err, at, "No space left on device");
    stop(child);
    std::fs::remove_file(filler).unwrap();
    fx.resume_to_the_end();
}

/// The text inside the console's "ENGINE STOPPED" box, its lines joined with spaces.
fn stopped_box(screen: &str) -> Option<String> {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.contains("ENGINE STOPPED:"));
    lines.next()?;
    let inside: Vec<String> = lines
        .take_while(|l| !l.trim_start().starts_with('└'))
        .map(|l| l.trim().trim_matches('│').trim().to_string())
        .collect();
    Some(inside.join(" "))
}

#[test]
fn the_console_says_the_engine_stopped_why_and_what_to_do_when_the_journal_fails() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fx::new(dir.path(), dir.path().join("state"), &Backend::file());
    let t = support::tmux::Tmux::new("disk-full-console");
    let cmd = format!(
        "env CUTOVER_FAIL_APPEND_AT=25 CUTOVER_FAIL_APPEND_ERRNO=ENOSPC {bin} deploy --state-dir {state} {release}; echo \"exit $?\"; sleep 60",
        bin = support::CUTOVER,
        state = fx.state.display(),
        release = dir.path().join("release.toml").display(),
    );
    t.start(200, 50, &cmd);
    let screen = t.wait_for(
        "the console's engine-stopped box",
        |s| stopped_box(s).is_some_and(|b| b.contains("cutover resume")),
        90,
    );
    let text = stopped_box(&screen).unwrap_or_default();
    for needed in [
        "No space left on device",
        "took no action after the failed write",
        "last journaled split",
        "df -h",
        "cutover resume --state-dir",
    ] {
        assert!(text.contains(needed), "the box lacks {needed:?}:\n{screen}");
    }
    let bar = screen.lines().next().unwrap_or_default();
    assert!(bar.contains("ENGINE STOPPED"), "status bar: {bar}");
    // While the console runs, the proxies serve the journal's last split.
    let journaled = fx.journaled_splits();
    assert_eq!(fx.served_splits(), journaled, "{screen}");
    // Quitting (leave it paused) cannot reach the engine: the advice is printed on the
    // terminal the console gave back, and the exit code is 1.
    t.run(&["send-keys", "-t", "demo", "q"]);
    t.wait_for("the quit dialog", |s| s.contains("roll back"), 10);
    t.run(&["send-keys", "-t", "demo", "p"]);
    let after = t.wait_for("the exit code", |s| s.contains("exit "), 30);
    assert!(after.contains("exit 1"), "{after}");
    assert!(after.contains("could not be written"), "{after}");
    fx.resume_to_the_end();
}
