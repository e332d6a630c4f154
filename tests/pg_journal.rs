//! The journal in PostgreSQL, for real: each test starts its own server (tests/support/pg.rs;
//! the test fails when the server binaries are missing) and runs `cutover` against it with
//! `--journal postgres://…` (or `CUTOVER_JOURNAL`). The release is
//! tests/fixtures/crash-release.toml on the local platform (canary a, blue-green b,
//! rolling c), with `CUTOVER_CRASH_TRACE=1` so every acting platform call leaves a line on
//! stderr (`cutover-crash-hook: platform …`): "no platform call after the lease was lost"
//! is checked on those lines.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::local::processes_with;
use support::net::free_port;
use support::pg::PgServer;

const RELEASE: &str = include_str!("fixtures/crash-release.toml");
const PASSWORD: &str = "pgjournal-s3cret-pw";

struct Fx {
    dir: PathBuf,
    state: PathBuf,
    marker: String,
    /// The journal's URL, with a password (the server trusts any).
    url: String,
}

impl Fx {
    fn new(pg: &PgServer, db: &str) -> (tempfile::TempDir, Fx) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let marker = format!("pgjournal{}x{}", std::process::id(), free_port());
        let mut text = RELEASE.replace("MARKER", &marker);
        for s in ["A", "B", "C"] {
            text = text.replace(&format!("PORT_{s}"), &free_port().to_string());
        }
        std::fs::write(dir.join("release.toml"), text).unwrap();
        pg.create_db(db);
        let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}", pg.port);
        let fx = Fx {
            state: dir.join("state"),
            dir,
            marker,
            url,
        };
        (tmp, fx)
    }

    /// `cutover ARGS --state-dir STATE`, the journal in `CUTOVER_JOURNAL`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::CUTOVER);
        c.args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .env_remove("CUTOVER_STATE_DIR")
            .env("CUTOVER_JOURNAL", &self.url);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "cutover {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            !text.contains(PASSWORD),
            "the password in {args:?}'s output"
        );
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains(PASSWORD),
            "the password on {args:?}'s stderr"
        );
        text
    }

    /// `deploy --headless --output json` with the platform trace; stdout and stderr lines.
    fn deploy(&self, env: &[(&str, &str)]) -> (Child, Lines, Lines) {
        self.spawn(&["deploy", "--headless", "--output", "json"], true, env)
    }

    fn spawn(&self, args: &[&str], file: bool, env: &[(&str, &str)]) -> (Child, Lines, Lines) {
        let mut c = self.cmd(args);
        if file {
            c.arg(self.dir.join("release.toml"));
        }
        c.env("CUTOVER_CRASH_TRACE", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        (child, out, err)
    }

    fn db(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// The only run's id in the database.
    fn run_id(&self) -> String {
        let rows = self
            .db()
            .query("SELECT run_id FROM cutover_journal_runs", &[])
            .unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].get(0)
    }

    fn entries(&self) -> i64 {
        self.db()
            .query_one("SELECT count(*) FROM cutover_journal_entries", &[])
            .unwrap()
            .get(0)
    }

    fn wait_no_replicas(&self) {
        support::wait_for("the replicas to stop", Duration::from_secs(10), || {
            processes_with(&self.marker).is_empty()
        });
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

fn text(lines: &Lines) -> String {
    lines.lock().unwrap().join("\n")
}

fn wait_line(lines: &Lines, what: &str, child: &mut Child) -> usize {
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

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "cutover did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The summary line of a `--output json` run.
fn summary(out: &Lines) -> serde_json::Value {
    let lines = out.lock().unwrap();
    serde_json::from_str(lines.last().map(String::as_str).unwrap_or_default()).unwrap()
}

fn assert_promoted(out: &Lines) {
    let s = summary(out);
    for svc in ["a", "b", "c"] {
        assert_eq!(s["services"][svc], "promoted", "{s}");
    }
}

/// Platform calls traced on stderr from line `from` on.
fn platform_calls_after(err: &Lines, from: usize) -> Vec<String> {
    err.lock().unwrap()[from..]
        .iter()
        .filter(|l| l.starts_with("cutover-crash-hook: platform"))
        .cloned()
        .collect()
}

#[test]
fn a_deploy_journaled_in_postgres_reads_back_through_every_command() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "deploys");
    let (mut child, out, err) = fx.deploy(&[]);
    let code = wait_exit(&mut child, Duration::from_secs(120));
    assert_eq!(code, 0, "{}\n{}", text(&out), text(&err));
    assert_promoted(&out);
    assert!(!text(&out).contains(PASSWORD) && !text(&err).contains(PASSWORD));
    let run = fx.run_id();
    // Nothing of the journal is on this machine: only the run's side files (the report).
    assert!(!fx.state.join("runs").exists());
    assert!(
        fx.state
            .join("pg-runs")
            .join(&run)
            .join("report.html")
            .is_file()
    );

    let history: serde_json::Value =
        serde_json::from_str(&fx.ok(&["history", "--output", "json"])).unwrap();
    assert_eq!(history[0]["run_id"], run.as_str(), "{history}");
    assert_eq!(history[0]["outcome"], "promoted", "{history}");
    assert_eq!(history[0]["state"], "finished", "{history}");
    assert_eq!(
        history[0]["entries"].as_i64(),
        Some(fx.entries()),
        "{history}"
    );

    let verify: serde_json::Value =
        serde_json::from_str(&fx.ok(&["audit", "verify", "--output", "json"])).unwrap();
    let v = &verify["runs"][0];
    assert_eq!(v["run_id"], run.as_str(), "{verify}");
    assert!(v["problem"].is_null(), "{verify}");
    assert_eq!(v["entries"].as_i64(), Some(fx.entries()), "{verify}");
    let audit = fx.ok(&["audit", &run]);
    assert!(audit.contains("a: traffic v1 70%, v2 30%"), "{audit}");
    let raw = fx.ok(&["audit", &run, "--output", "json"]);
    assert_eq!(raw.lines().count() as i64, fx.entries());

    let report: serde_json::Value =
        serde_json::from_str(&fx.ok(&["report", &run, "--format", "json"])).unwrap();
    assert_eq!(report["outcome"], "promoted", "{report}");
    assert_eq!(report["journal"]["last_hash"], v["last_hash"], "{report}");
    let stats: serde_json::Value =
        serde_json::from_str(&fx.ok(&["stats", "--output", "json"])).unwrap();
    assert_eq!(stats["deployments"], 1, "{stats}");

    // `--journal env:VAR` reads the same; an unknown run names the database, not the URL.
    let o = fx
        .cmd(&["audit", "verify", "nope-run", "--journal", "env:PGJ_URL"])
        .env("PGJ_URL", &fx.url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!e.contains(PASSWORD) && e.contains("nope-run"), "{e}");
    fx.wait_no_replicas();
}
