//! The journal in PostgreSQL, for real: each test starts its own server (tests/support/pg.rs;
//! the test fails when the server binaries are missing) and runs `cutover` against it with
//! `--journal postgres://…` (or `CUTOVER_JOURNAL`). The release is
//! tests/fixtures/crash-release.toml on the local platform (canary a, blue-green b,
//! rolling c), with `CUTOVER_CRASH_TRACE=1` so every acting platform call leaves a line on
//! stderr (`cutover-crash-hook: platform …`): "no platform call after the lease was lost"
//! is checked on those lines.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::lines::{Lines, collect};
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

    /// The newest run's id in the database.
    fn run_id(&self) -> String {
        self.db()
            .query_one(
                "SELECT run_id FROM cutover_journal_runs ORDER BY started_ms DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0)
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

fn new_entry(kind: &str) -> cutover::journal::NewEntry {
    cutover::journal::NewEntry {
        at_ms: 1,
        operator: None,
        kind: kind.into(),
        service: None,
        payload: serde_json::json!({"summary": kind}),
    }
}

/// The journal in `fx`'s database with a lease far longer than a test: only the database
/// can refuse a writer.
fn long_lease(fx: &Fx) -> cutover::journal::JournalStore {
    cutover::journal::JournalStore::Postgres(
        cutover::journal::pg::PgStore::parse(&fx.url, &fx.state)
            .unwrap()
            .with_lease(Duration::from_secs(600)),
    )
}

/// Every lease ends now, on the database's clock (its holders cannot tell).
fn expire_leases(fx: &Fx) {
    fx.db()
        .execute(
            "UPDATE cutover_journal_leases SET expires_at = clock_timestamp()",
            &[],
        )
        .unwrap();
}

#[test]
fn a_writer_with_an_older_epoch_is_refused_by_the_database() {
    use cutover::journal::{Journal, JournalError};
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "fencing");
    let store = long_lease(&fx);
    let mut a = Journal::create(&store, "fencing", "0").unwrap();
    a.append(new_entry("one")).unwrap();
    let run = a.run_id().to_string();
    // B may not take a run whose lease holds.
    let held = Journal::open(&store, &run).unwrap_err();
    assert!(
        matches!(held, JournalError::Leased { epoch: 1, .. }),
        "{held}"
    );
    // The lease expires on the database's clock (A cannot tell): B takes over at epoch 2.
    expire_leases(&fx);
    let mut b = Journal::open(&store, &run).unwrap();
    assert_eq!(b.lease().unwrap().epoch(), 2);
    assert!(a.still_writer().is_ok(), "A's own bound still holds");
    let refused = a.append(new_entry("two-from-a")).unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, JournalError::LeaseLost(_)) && text.contains("newer epoch 2"),
        "{text}"
    );
    assert!(a.still_writer().is_err(), "A knows it lost the lease");
    assert!(a.append(new_entry("three-from-a")).is_err());
    b.append(new_entry("two-from-b")).unwrap();
    let epochs: Vec<(i64, i64)> = fx
        .db()
        .query(
            "SELECT seq, epoch FROM cutover_journal_entries ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(epochs, vec![(1, 1), (2, 2)]);
    let rec = cutover::journal::read_run(&store, &run).unwrap();
    assert!(rec.verification.is_ok(), "{:?}", rec.verification);
    let kinds: Vec<&str> = rec.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["one", "two-from-b"]);
}

#[test]
fn a_writer_whose_connection_broke_finds_a_newer_epoch_and_says_it_lost_the_lease() {
    use cutover::journal::{Journal, JournalError};
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "broken");
    let store = long_lease(&fx);
    let mut a = Journal::create(&store, "broken", "0").unwrap();
    a.append(new_entry("one")).unwrap();
    let run = a.run_id().to_string();
    expire_leases(&fx);
    let mut b = Journal::open(&store, &run).unwrap();
    b.append(new_entry("two-from-b")).unwrap();
    // A's session ends under it (as the server ends one stopped inside a transaction):
    // reconnected, it finds B's entry at its seq.
    let mut admin = pg.client("postgres");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = 'broken' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    let refused = a.append(new_entry("two-from-a")).unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, JournalError::LeaseLost(_)) && text.contains("newer epoch 2"),
        "{text}"
    );
    assert!(a.still_writer().is_err());
    b.append(new_entry("three-from-b")).unwrap();
    let rec = cutover::journal::read_run(&store, &run).unwrap();
    let kinds: Vec<&str> = rec.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["one", "two-from-b", "three-from-b"]);
}

/// A deploy killed (SIGKILL) once service a shifted traffic: an interrupted run whose lease
/// runs out `lease` later.
fn interrupted_run(fx: &Fx, lease: &str) -> String {
    let (mut child, out, _err) = fx.deploy(&[("CUTOVER_JOURNAL_LEASE", lease)]);
    wait_line(&out, "\"v2\",30]", &mut child);
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    fx.wait_no_replicas();
    let run = fx.run_id();
    support::wait_for(
        "the killed engine's lease to expire",
        Duration::from_secs(30),
        || {
            fx.db()
                .query_one(
                    "SELECT bool_and(expires_at < clock_timestamp()) FROM cutover_journal_leases",
                    &[],
                )
                .unwrap()
                .get::<_, bool>(0)
        },
    );
    run
}

#[test]
fn two_engines_racing_for_one_run_exactly_one_acts() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "racing");
    let run = interrupted_run(&fx, "2s");
    let before = fx.entries();
    let args = ["resume", "--headless", "--output", "json", "--run", &run];
    let lease = [("CUTOVER_JOURNAL_LEASE", "2s")];
    let (mut one, out1, err1) = fx.spawn(&args, false, &lease);
    let (mut two, out2, err2) = fx.spawn(&args, false, &lease);
    let c1 = wait_exit(&mut one, Duration::from_secs(120));
    let c2 = wait_exit(&mut two, Duration::from_secs(120));
    let (winner, loser, loser_err) = match (c1, c2) {
        (0, 2) => (&out1, &err2, &err1),
        (2, 0) => (&out2, &err1, &err2),
        other => panic!(
            "exit codes {other:?}\n{}\n{}\n{}\n{}",
            text(&out1),
            text(&err1),
            text(&out2),
            text(&err2)
        ),
    };
    let refused = text(loser);
    assert!(
        refused.contains("is held by") && refused.contains("epoch 2"),
        "{refused}"
    );
    assert!(
        platform_calls_after(loser, 0).is_empty(),
        "the refused engine acted: {refused}"
    );
    assert!(
        !text(loser_err).contains("lost its lease"),
        "{}",
        text(loser_err)
    );
    assert_promoted(winner);
    // Every entry after the takeover is the winner's, at epoch 2.
    let epochs: Vec<i64> = fx
        .db()
        .query(
            "SELECT DISTINCT epoch FROM cutover_journal_entries WHERE seq > $1",
            &[&before],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(epochs, vec![2]);
    fx.ok(&["audit", "verify", &run]);
    fx.wait_no_replicas();
}

/// SIGCONT to a leader stopped past its lease: it exits 1 saying it lost the lease, with
/// no platform call after it continued.
fn continued_without_acting(child: &mut Child, err: &Lines) {
    let from = err.lock().unwrap().len();
    signal(child, libc::SIGCONT);
    let code = wait_exit(child, Duration::from_secs(60));
    let said = text(err);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("lost its lease"), "{said}");
    assert!(said.contains("no platform call"), "{said}");
    assert!(
        platform_calls_after(err, from).is_empty(),
        "platform calls after the pause: {said}"
    );
}

#[test]
fn a_leader_stopped_past_its_lease_does_not_act_when_it_continues() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "paused");
    let (mut child, out, err) = fx.deploy(&[("CUTOVER_JOURNAL_LEASE", "2s")]);
    wait_line(&out, "\"v2\",30]", &mut child);
    signal(&child, libc::SIGSTOP);
    // Past the lease, a standby takes the run over (a newer epoch, a lease of its own).
    std::thread::sleep(Duration::from_millis(3500));
    let n = fx
        .db()
        .execute(
            "UPDATE cutover_journal_leases SET epoch = epoch + 1, holder = 'standby',
                    expires_at = clock_timestamp() + interval '10 minutes'
              WHERE expires_at < clock_timestamp()",
            &[],
        )
        .unwrap();
    assert_eq!(n, 1, "the stopped leader's lease had not expired");
    let entries = fx.entries();
    continued_without_acting(&mut child, &err);
    assert_eq!(
        fx.entries(),
        entries,
        "the stopped leader wrote after its lease"
    );
    fx.wait_no_replicas();
}

#[test]
fn connections_killed_server_side_mid_run_are_reconnected_and_nothing_is_lost() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "killed");
    let (mut child, out, err) = fx.deploy(&[]);
    let mut admin = pg.client("postgres");
    let mut killed = 0;
    for at in ["\"v2\",30]", "\"v2\",60]"] {
        wait_line(&out, at, &mut child);
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = 'killed' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        killed += rows.len();
    }
    assert!(
        killed >= 2,
        "the engine's and the lease's sessions: {killed}"
    );
    let code = wait_exit(&mut child, Duration::from_secs(120));
    assert_eq!(code, 0, "{}\n{}", text(&out), text(&err));
    assert_promoted(&out);
    // One engine throughout, the chain whole: nothing doubled, nothing missing.
    let epochs: Vec<i64> = fx
        .db()
        .query("SELECT DISTINCT epoch FROM cutover_journal_entries", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(epochs, vec![1]);
    let verify: serde_json::Value =
        serde_json::from_str(&fx.ok(&["audit", "verify", "--output", "json"])).unwrap();
    assert!(verify["runs"][0]["problem"].is_null(), "{verify}");
    assert_eq!(verify["runs"][0]["entries"].as_i64(), Some(fx.entries()));
    fx.wait_no_replicas();
}

/// `cutover ARGS` with `CUTOVER_JOURNAL=url`, exit 0; the password never in its output.
fn with_journal(url: &str, args: &[&str]) -> String {
    let o = Command::new(support::CUTOVER)
        .args(args)
        .env("CUTOVER_JOURNAL", url)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "cutover {args:?}: {err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{args:?}"
    );
    out.into_owned()
}

/// `cutover ARGS` on the file journal under `state` (no `CUTOVER_JOURNAL`), exit 0.
fn file_ok(state: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new(support::CUTOVER)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CUTOVER_STATE_DIR")
        .env_remove("CUTOVER_JOURNAL")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cutover {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn export_and_import_move_runs_between_the_backends_with_the_chain_checked() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "exported");
    let (mut child, out, err) = fx.deploy(&[]);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(120)),
        0,
        "{}",
        text(&err)
    );
    assert_promoted(&out);
    let run = fx.run_id();
    // An unfinished run stays where it is.
    let unfinished = interrupted_run(&fx_second_run(&fx), "2s");

    let files = fx.dir.join("exported-state");
    let to = files.to_str().unwrap();
    let moved = with_journal(
        &fx.url,
        &["journal", "export", "--to", to, "--output", "json"],
    );
    let moved: Vec<serde_json::Value> = moved
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(moved[0]["run_id"], run.as_str());
    assert_eq!(moved[0]["result"], "copied");
    assert_eq!(moved[1]["run_id"], unfinished.as_str());
    assert_eq!(moved[1]["result"], "unfinished: left where it is");

    // The same answers from the files as from the database.
    let pg_verify = fx.ok(&["audit", "verify", &run, "--output", "json"]);
    assert_eq!(
        file_ok(&files, &["audit", "verify", &run, "--output", "json"]),
        pg_verify
    );
    for args in [
        vec!["audit", run.as_str(), "--output", "json"],
        vec!["audit", run.as_str()],
        vec!["report", run.as_str(), "--format", "json"],
        vec!["report", run.as_str(), "--format", "md"],
    ] {
        assert_eq!(file_ok(&files, &args), fx.ok(&args), "{args:?}");
    }
    // Exporting again changes nothing.
    let again = with_journal(&fx.url, &["journal", "export", "--to", to, "--run", &run]);
    assert!(again.contains("already there"), "{again}");

    // Into another database: the same chain, the same report.
    pg.create_db("imported");
    let url2 = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/imported",
        pg.port
    );
    let o = Command::new(support::CUTOVER)
        .args([
            "journal",
            "import",
            "--from",
            to,
            "--journal",
            "env:PGJ_IMPORT",
        ])
        .env("PGJ_IMPORT", &url2)
        .env_remove("CUTOVER_JOURNAL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains(&run) && said.contains("copied"), "{said}");
    assert!(!said.contains(PASSWORD));
    let in2 = |args: &[&str]| with_journal(&url2, args);
    assert_eq!(
        in2(&["audit", "verify", &run, "--output", "json"]),
        pg_verify
    );
    assert_eq!(
        in2(&["report", &run, "--format", "json"]),
        fx.ok(&["report", &run, "--format", "json"])
    );

    // An altered entry in the files stops an import before anything is written.
    let journal = files.join("runs").join(&run).join("journal.jsonl");
    let altered =
        std::fs::read_to_string(&journal)
            .unwrap()
            .replacen("traffic v1 70%", "traffic v1 71%", 1);
    std::fs::write(&journal, altered).unwrap();
    pg.create_db("refused");
    let url3 = format!("postgres://postgres@127.0.0.1:{}/refused", pg.port);
    let o = Command::new(support::CUTOVER)
        .args(["journal", "import", "--from", to, "--journal", &url3])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("does not verify"), "{e}");
    let mut c = postgres::Client::connect(&url3, postgres::NoTls).unwrap();
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('cutover_journal_runs') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    if exists {
        let n: i64 = c
            .query_one("SELECT count(*) FROM cutover_journal_runs", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "a run was imported from a chain that does not verify");
    }
    fx.wait_no_replicas();
}

/// The same journal with the release on fresh ports (a second run while the first one's
/// proxies may still be draining).
fn fx_second_run(fx: &Fx) -> Fx {
    let mut text = RELEASE.replace("MARKER", &fx.marker);
    for s in ["A", "B", "C"] {
        text = text.replace(&format!("PORT_{s}"), &free_port().to_string());
    }
    let dir = fx.dir.join("second");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("release.toml"), text).unwrap();
    Fx {
        dir,
        state: fx.state.clone(),
        marker: fx.marker.clone(),
        url: fx.url.clone(),
    }
}

/// Another machine on the same journal: its own state directory (socket, side files).
fn other_machine(fx: &Fx, name: &str) -> Fx {
    Fx {
        dir: fx.dir.clone(),
        state: fx.dir.join(name),
        marker: fx.marker.clone(),
        url: fx.url.clone(),
    }
}

/// `serve --standby --output json` on `machine`, once it says it watches.
fn standby(machine: &Fx, env: &[(&str, &str)]) -> (Child, Lines, Lines) {
    let (mut child, out, err) =
        machine.spawn(&["serve", "--standby", "--output", "json"], false, env);
    wait_line(&err, "standby watching", &mut child);
    (child, out, err)
}

/// `(seq, epoch, kind, at_ms)` of every entry of `run`, in order.
fn entry_epochs(fx: &Fx, run: &str) -> Vec<(i64, i64, String, u64)> {
    fx.db()
        .query(
            "SELECT seq, epoch, line FROM cutover_journal_entries WHERE run_id = $1 ORDER BY seq",
            &[&run],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let line: serde_json::Value = serde_json::from_str(r.get::<_, &str>(2)).unwrap();
            (
                r.get(0),
                r.get(1),
                line["kind"].as_str().unwrap_or_default().to_string(),
                line["at_ms"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Epochs never go back in seq order: each epoch's entries follow the previous one's.
fn assert_one_engine_per_epoch(entries: &[(i64, i64, String, u64)]) {
    let epochs: Vec<i64> = entries.iter().map(|e| e.1).collect();
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "entries of an older epoch after a newer one: {entries:?}"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_standby_takes_over_a_killed_leader_and_finishes_the_run() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "standby");
    let lease = Duration::from_secs(3);
    let env = [("CUTOVER_JOURNAL_LEASE", "3s")];
    // Two standbys on two other "machines": exactly one may take the run over.
    let (one, two) = (
        other_machine(&fx, "standby-1"),
        other_machine(&fx, "standby-2"),
    );
    let (mut sb1, out1, err1) = standby(&one, &env);
    let (mut sb2, out2, err2) = standby(&two, &env);
    let (mut leader, out, _err) = fx.deploy(&env);
    wait_line(&out, "\"v2\",30]", &mut leader);
    let killed_ms = now_ms();
    signal(&leader, libc::SIGKILL);
    let _ = leader.wait();
    let run = fx.run_id();
    support::wait_for("a standby to take over", Duration::from_secs(30), || {
        entry_epochs(&fx, &run).iter().any(|e| e.2 == "takeover")
    });
    let entries = entry_epochs(&fx, &run);
    let takeovers: Vec<_> = entries.iter().filter(|e| e.2 == "takeover").collect();
    assert_eq!(takeovers.len(), 1, "{entries:?}");
    assert_eq!(takeovers[0].1, 2, "the takeover raised the epoch by one");
    // Within the lease plus one renewal period: the killed leader's last renewal was at
    // most a third of the lease before the kill, and standbys look every sixth of it.
    let took = Duration::from_millis(takeovers[0].3.saturating_sub(killed_ms));
    eprintln!("takeover {took:?} after the kill (lease {lease:?})");
    assert!(
        took <= lease + lease / 3,
        "the takeover came {took:?} after the kill"
    );

    // `ctl` with the journal finds the engine serving the run now.
    let ctl = fx.out(&["ctl", "status", "--run", &run]);
    let said = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        ctl.status.success() && said.contains("\"services\""),
        "{said}{}",
        String::from_utf8_lossy(&ctl.stderr)
    );

    let ended = |e: &Lines| text(e).contains("ended here (exit 0)");
    support::wait_for(
        "the run to end on the standby that took it over",
        Duration::from_secs(120),
        || ended(&err1) || ended(&err2),
    );
    let (winner, w_out, w_err, loser_err) = if ended(&err1) {
        (1, &out1, &err1, &err2)
    } else {
        (2, &out2, &err2, &err1)
    };
    let said = text(w_err);
    assert!(
        said.contains("took run") && said.contains("at epoch 2"),
        "{said}"
    );
    assert!(said.contains("relaunches on this host"), "{said}");
    assert!(
        platform_calls_after(loser_err, 0).is_empty(),
        "standby {} acted too: {}",
        3 - winner,
        text(loser_err)
    );
    assert!(!text(loser_err).contains("took run"), "{}", text(loser_err));
    assert_promoted(w_out);
    let entries = entry_epochs(&fx, &run);
    assert_one_engine_per_epoch(&entries);
    let epochs: std::collections::BTreeSet<i64> = entries.iter().map(|e| e.1).collect();
    assert_eq!(epochs, [1, 2].into(), "{entries:?}");
    // What the standby relaunched is journaled: a's baseline and candidate at least.
    let audit = fx.ok(&["audit", &run, "--output", "json"]);
    let takeover: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "takeover")
        .unwrap();
    let relaunched = takeover["payload"]["relaunched"].to_string();
    for rev in ["v1", "v2"] {
        assert!(
            relaunched.contains(&format!("{{\"revision\":\"{rev}\",\"service\":\"a\"}}")),
            "{relaunched}"
        );
    }
    assert!(!audit.contains(PASSWORD));
    fx.ok(&["audit", "verify", &run]);
    // Both standbys keep watching after the run finished, until told to stop.
    for (sb, err) in [(&mut sb1, &err1), (&mut sb2, &err2)] {
        assert!(sb.try_wait().unwrap().is_none(), "{}", text(err));
        signal(sb, libc::SIGTERM);
        assert_eq!(wait_exit(sb, Duration::from_secs(10)), 0, "{}", text(err));
        assert!(!text(err).contains(PASSWORD));
    }
    assert!(!text(&out1).contains(PASSWORD) && !text(&out2).contains(PASSWORD));
    fx.wait_no_replicas();
}

#[test]
fn a_leader_stopped_past_its_lease_is_fenced_by_a_standby_and_says_so() {
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "stopped");
    let env = [("CUTOVER_JOURNAL_LEASE", "2s")];
    let machine = other_machine(&fx, "standby");
    let (mut sb, sb_out, sb_err) = standby(&machine, &env);
    let (mut leader, out, err) = fx.deploy(&env);
    wait_line(&out, "\"v2\",30]", &mut leader);
    signal(&leader, libc::SIGSTOP);
    let run = fx.run_id();
    support::wait_for("the standby to take over", Duration::from_secs(30), || {
        entry_epochs(&fx, &run).iter().any(|e| e.1 == 2)
    });
    // The stopped leader still holds the local platform's ports on this one host, so the
    // standby's first attempt cannot serve the run: it lets the lease go and retries.
    let leader_entries = entry_epochs(&fx, &run).iter().filter(|e| e.1 == 1).count();
    continued_without_acting(&mut leader, &err);
    wait_line(&sb_err, "ended here (exit 0)", &mut sb);
    let entries = entry_epochs(&fx, &run);
    assert_eq!(
        entries.iter().filter(|e| e.1 == 1).count(),
        leader_entries,
        "the stopped leader wrote after the takeover: {entries:?}"
    );
    assert_one_engine_per_epoch(&entries);
    // Epoch 2's attempt found the ports held and let the lease go; epoch 3 finished.
    let said = text(&sb_err);
    assert!(said.contains("trying again"), "{said}");
    let takeovers: Vec<i64> = (entries.iter())
        .filter(|e| e.2 == "takeover")
        .map(|e| e.1)
        .collect();
    assert_eq!(takeovers, [2, 3], "{entries:?}");
    assert_promoted(&sb_out);
    fx.ok(&["audit", "verify", &run]);
    signal(&sb, libc::SIGTERM);
    assert_eq!(wait_exit(&mut sb, Duration::from_secs(10)), 0);
    fx.wait_no_replicas();
}

/// Issue 19, "attached consoles follow the new leader": a leader `serve` journaled in
/// PostgreSQL, the console's link attached with `--run RUN --journal URL` and a token file
/// (what `cutover attach` runs on: `ConnectArgs::client`/`follow`), `kill -9` of the
/// leader; a standby on another socket and TCP port takes the run over and the link moves
/// there by itself, with the same token file, says so, and its commands reach the new
/// leader, which journals them at epoch 2. Beside it, the real console (`cutover attach
/// --run` in tmux, the journal in `CUTOVER_JOURNAL`) shows who serves the run now.
#[test]
fn an_attached_link_follows_the_run_to_the_standby_that_took_it_over() {
    use cutover::cli::{ConnectArgs, JournalArg, StateDirArg};
    use cutover::engine::{Command as EngineCommand, CommandRequest};

    let started = Instant::now();
    let pg = PgServer::start();
    let (_tmp, fx) = Fx::new(&pg, "follow");
    // a holds 30 % for a minute: long enough to act on it after the takeover.
    let release = fx.dir.join("release.toml");
    let file = std::fs::read_to_string(&release).unwrap();
    let held = file.replacen("{ pause = \"1s\" }", "{ pause = \"60s\" }", 1);
    assert_ne!(file, held);
    std::fs::write(&release, held).unwrap();
    let tokens = fx.dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"follow-token-0123456789\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tokens_arg = tokens.to_str().unwrap();
    let env = [("CUTOVER_JOURNAL_LEASE", "2s")];

    let machine = other_machine(&fx, "standby");
    let standby_port = free_port();
    let standby_listen = format!("127.0.0.1:{standby_port}");
    let (mut sb, sb_out, sb_err) = machine.spawn(
        &[
            "serve",
            "--standby",
            "--output",
            "json",
            "--listen",
            &standby_listen,
            "--token-file",
            tokens_arg,
        ],
        false,
        &env,
    );
    wait_line(&sb_err, "standby watching", &mut sb);
    let (mut leader, out, _err) = fx.spawn(&["serve", "--output", "json"], true, &env);
    wait_line(&out, "\"v2\",30]", &mut leader);
    let run = fx.run_id();

    // `cutover attach --run RUN --journal URL --token-file F --operator alice`, with the
    // leader's state directory: no takeover yet, so its socket.
    let connect = ConnectArgs {
        state: StateDirArg {
            state_dir: Some(fx.state.clone()),
        },
        socket: None,
        url: None,
        token_file: Some(tokens.clone()),
        operator: Some("alice".into()),
        run: Some(run.clone()),
        journal: JournalArg {
            journal: Some(fx.url.clone()),
        },
    };
    let client = connect.client().unwrap();
    assert_eq!(
        client.endpoint(),
        &cutover::control::Endpoint::Unix(fx.state.join("cutover.sock"))
    );
    let follow = connect.follow().unwrap();
    assert!(follow.is_some(), "a run in PostgreSQL is followed");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guard = rt.enter();
    let remote = rt
        .block_on(cutover::session::remote_link_following(
            client,
            follow,
            Some(&run),
        ))
        .unwrap();
    let mut link = remote.link;
    let mut conn = link
        .connection
        .take()
        .expect("a remote link reports its connection");
    assert_eq!(link.state.borrow().run_id, run);

    // And the console itself, `cutover attach --run RUN` in a real terminal, the journal
    // in the environment (never on the command line).
    let tmux = support::tmux::Tmux::new("pg-follow");
    let attach = format!(
        "{} attach --run {run} --state-dir {} --token-file {tokens_arg} --operator alice; sleep 60",
        support::CUTOVER,
        fx.state.display()
    );
    let journal_env = format!("CUTOVER_JOURNAL={}", fx.url);
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "240",
        "-y",
        "40",
        "-e",
        &journal_env,
        "-e",
        "CUTOVER_STATE_DIR=",
        &attach,
    ]);
    tmux.wait_for(
        "the console attached to the leader",
        |s| s.contains("attached:") && !s.contains("DISCONNECTED"),
        30,
    );

    signal(&leader, libc::SIGKILL);
    let killed = Instant::now();
    let _ = leader.wait();
    let lost = rt
        .block_on(tokio::time::timeout(
            Duration::from_secs(20),
            conn.wait_for(|c| c.lost.is_some()),
        ))
        .expect("the link notices the leader is gone")
        .unwrap()
        .clone();
    let why = lost.lost.unwrap_or_default();
    assert!(why.contains("looking in the journal"), "{why}");
    let back = rt
        .block_on(tokio::time::timeout(
            Duration::from_secs(30),
            conn.wait_for(|c| c.lost.is_none() && c.served_by.is_some()),
        ))
        .expect("the link follows the run to the standby")
        .unwrap()
        .clone();
    eprintln!(
        "the link followed the run {:?} after the kill (lease 2 s)",
        killed.elapsed()
    );
    let served_by = back.served_by.unwrap_or_default();
    assert_eq!(
        served_by,
        format!("http://{standby_listen} (epoch 2)"),
        "where the console says the run is served now"
    );
    assert!(!served_by.contains(PASSWORD) && !why.contains(PASSWORD));

    let screen = tmux.wait_for(
        "the console to follow the run",
        |s| s.contains(&format!("served by {served_by}")) && !s.contains("DISCONNECTED"),
        30,
    );
    assert!(!screen.contains(PASSWORD), "{screen}");

    // A command from the console now goes to the new leader, which journals it at epoch 2
    // with the token's name.
    let send = |command: EngineCommand| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        link.commands
            .try_send(CommandRequest {
                command,
                operator: "alice".into(),
                reply: Some(tx),
                note: Some("follow drill".into()),
                denied: None,
            })
            .unwrap();
        rt.block_on(tokio::time::timeout(Duration::from_secs(20), rx))
            .expect("an answer")
            .expect("a reply")
    };
    let paused = send(EngineCommand::Pause { service: None });
    assert!(paused.is_ok(), "{paused:?}");
    let commands: Vec<(i64, String)> = fx
        .db()
        .query(
            "SELECT epoch, line FROM cutover_journal_entries WHERE run_id = $1 ORDER BY seq",
            &[&run],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        .filter(|(_, l)| l.contains("\"command_accepted\"") && l.contains("pause"))
        .collect();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].0, 2, "journaled by the standby's engine");
    assert!(
        commands[0].1.contains("\"operator\":\"alice\""),
        "{commands:?}"
    );
    // The state the console renders comes from the new leader too.
    rt.block_on(tokio::time::timeout(
        Duration::from_secs(10),
        link.state
            .wait_for(|s| s.status == cutover::engine::ReleaseStatus::Paused),
    ))
    .expect("the pause reaches the followed link")
    .unwrap();

    // `history` on the first machine shows the run held by the standby's lease (no pid:
    // the engine is another machine's process).
    let history = fx.ok(&["history"]);
    let row = history
        .lines()
        .find(|l| l.contains(&run))
        .unwrap_or_default();
    assert!(
        row.contains("running (leased, epoch 2, until 20"),
        "{history}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&fx.ok(&["history", "--output", "json"])).unwrap();
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["state"], "running", "{listed}");
    assert_eq!(listed["lease"]["epoch"], 2, "{listed}");
    assert!(
        listed["lease"]["until_ms"].as_u64().unwrap() > now_ms() - 60_000,
        "{listed}"
    );

    // Done: roll back through the same link; the standby ends the run and keeps watching.
    let rolled = send(EngineCommand::Rollback { service: None });
    assert!(rolled.is_ok(), "{rolled:?}");
    wait_line(&sb_err, "ended here (exit 3)", &mut sb);
    let all = entry_epochs(&fx, &run);
    assert_one_engine_per_epoch(&all);
    fx.ok(&["audit", "verify", &run]);
    signal(&sb, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut sb, Duration::from_secs(10)),
        0,
        "{}",
        text(&sb_err)
    );
    for said in [text(&sb_out), text(&sb_err)] {
        assert!(!said.contains(PASSWORD) && !said.contains("follow-token-0123456789"));
    }
    drop(link);
    drop(guard);
    rt.shutdown_timeout(Duration::from_secs(1));
    fx.wait_no_replicas();
    eprintln!("followed in {:?} in all", started.elapsed());
}
