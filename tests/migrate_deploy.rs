//! `cutover deploy --headless` of a release with a `[[migration]]`, end to end as real
//! processes: demo services behind the local platform, SQLite and a real PostgreSQL
//! (started by the test: tests/support/pg.rs; the test fails when the server is missing),
//! `cutover load` through the proxy during the whole deploy, a dangerous expand refused
//! before the database is touched, a contract left pending and run with `cutover migrate
//! contract`, and a SIGKILL while expand runs followed by `cutover resume`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::net::free_port;
use support::pg::PgServer;

const BIN: &str = support::CUTOVER;

const SQLITE_EXPAND: &str = "ALTER TABLE customers ADD COLUMN first_name TEXT;
ALTER TABLE customers ADD COLUMN last_name TEXT;
UPDATE customers
   SET first_name = substr(full_name, 1, instr(full_name || ' ', ' ') - 1),
       last_name  = trim(substr(full_name, instr(full_name || ' ', ' ')))
 WHERE first_name IS NULL;
";
const PG_EXPAND: &str = "ALTER TABLE customers ADD COLUMN first_name text;
ALTER TABLE customers ADD COLUMN last_name text;
UPDATE customers SET first_name = split_part(full_name, ' ', 1),
                     last_name = split_part(full_name, ' ', 2)
 WHERE first_name IS NULL;
";
const CONTRACT: &str = "ALTER TABLE customers DROP COLUMN full_name;\n";
const UNDO: &str =
    "ALTER TABLE customers DROP COLUMN first_name;\nALTER TABLE customers DROP COLUMN last_name;\n";

struct Fx {
    dir: tempfile::TempDir,
    port: u16,
}

impl Fx {
    /// A release directory: the SQL files and `release.toml` naming `database`.
    fn new(database: &str, expand: &str, bake: &str) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("migrations");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("expand.sql"), expand).unwrap();
        std::fs::write(m.join("contract.sql"), CONTRACT).unwrap();
        std::fs::write(m.join("undo.sql"), UNDO).unwrap();
        let port = free_port();
        let marker = format!("migdeploy{}x{port}", std::process::id());
        let health =
            "[service.health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nhealthy_after = 1\n";
        let text = format!(
            "[release]
name = \"split-customer-name\"
platform = \"local\"
progress_deadline = \"60s\"

[[service]]
name = \"customers\"
strategy = \"canary\"
steps = [ {{ set_weight = 20 }}, {{ pause = \"1s\" }}, {{ set_weight = 60 }}, {{ pause = \"1s\" }} ]
{health}[service.local]
listen = \"127.0.0.1:{port}\"
drain_timeout = \"1s\"
command = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\", \"--service\", \"{marker}-{{service}}\"]
current = {{ revision = \"v1\" }}
target = {{ revision = \"v2\" }}

[[service]]
name = \"billing\"
depends_on = [\"customers\"]
strategy = \"blue_green\"
blue_green = {{ keep_old_for = \"1s\" }}
{health}[service.local]
listen = \"127.0.0.1:{port_b}\"
drain_timeout = \"1s\"
command = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\", \"--service\", \"{marker}-{{service}}\"]
current = {{ revision = \"v1\" }}
target = {{ revision = \"v2\" }}

[[migration]]
name = \"split-customer-name\"
database = \"{database}\"
expand = \"migrations/expand.sql\"
contract = \"migrations/contract.sql\"
undo_expand = \"migrations/undo.sql\"
services = [\"customers\", \"billing\"]
bake = \"{bake}\"
",
            port_b = free_port(),
        );
        std::fs::write(dir.path().join("release.toml"), text).unwrap();
        Fx { dir, port }
    }

    fn sqlite(expand: &str, bake: &str) -> Fx {
        let fx = Fx::new("sqlite://data/customers.db", expand, bake);
        std::fs::create_dir_all(fx.dir.path().join("data")).unwrap();
        let c = rusqlite::Connection::open(fx.db_path()).unwrap();
        c.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL DEFAULT '');
             INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Grace Hopper');",
        )
        .unwrap();
        fx
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/customers.db")
    }

    fn release(&self) -> PathBuf {
        self.dir.path().join("release.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--state-dir")
            .arg(self.state())
            .env_remove("CUTOVER_STATE_DIR");
        c
    }

    fn deploy(&self, extra: &[&str]) -> Child {
        let mut args = vec!["deploy", "--headless", "--output", "json"];
        args.extend_from_slice(extra);
        self.cmd(&args)
            .arg(self.release())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn sqlite_columns(&self) -> Vec<String> {
        let c = rusqlite::Connection::open(self.db_path()).unwrap();
        let mut st = c
            .prepare("SELECT name FROM pragma_table_info('customers') ORDER BY cid")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn sqlite_history(&self) -> Vec<String> {
        support::sqlite_migration_history(&self.db_path())
    }
}

/// Wait for a child with a bound, reading its output meanwhile (a full pipe would block
/// it); SIGKILL and fail on timeout.
fn wait_output(child: Child, within: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill has no memory preconditions; pid is our unreaped child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "process did not finish within {within:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The JSON event lines of a headless run.
fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn phases(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["type"] == "migration")
        .map(|e| e["phase"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Milliseconds from lint to expand applied, for the record.
fn lint_to_expanded_ms(ev: &[serde_json::Value]) -> u64 {
    let at = |phase: &str| {
        ev.iter()
            .find(|e| e["type"] == "migration" && e["phase"] == phase)
            .and_then(|e| e["at_ms"].as_u64())
            .unwrap_or(0)
    };
    at("expanded").saturating_sub(at("linted"))
}

fn index_of(ev: &[serde_json::Value], f: impl Fn(&serde_json::Value) -> bool) -> usize {
    ev.iter().position(f).expect("event not found")
}

/// Until the proxy serves the baseline (it answers 503 before any backend is healthy).
fn wait_listening(port: u16) {
    support::local::wait_proxy_answers(port);
}

/// Load through the proxy while a `--keep-running` deploy runs (long enough to cover
/// the whole release), then SIGTERM the deploy: (deploy output, load output).
fn run_with_load(child: Child, port: u16) -> (Output, Output) {
    wait_listening(port);
    let load = support::local::cli_load(port, 15);
    let load = wait_output(load, Duration::from_secs(60));
    // SAFETY: kill has no memory preconditions; the child is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    (wait_output(child, Duration::from_secs(60)), load)
}

/// Deploy with `--allow-contract` under load; checks the order of the journaled steps
/// and that the load saw no failed request. Returns the event lines.
fn deploy_under_load(fx: &Fx) -> Vec<serde_json::Value> {
    let child = fx.deploy(&["--allow-contract", "--keep-running"]);
    let (out, load) = run_with_load(child, fx.port);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap();
    println!("load through the proxy during the SQLite deploy: {report}");
    println!(
        "SQLite lint + dry run + expand: {} ms",
        lint_to_expanded_ms(&events(&out))
    );
    assert!(report["requests"].as_u64().unwrap() > 300, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let ev = events(&out);
    assert_eq!(
        phases(&ev),
        [
            "linted",
            "dry_run_ok",
            "expanding",
            "expanded",
            "contracting",
            "contracted"
        ],
        "{stdout}"
    );
    // Expand before the first listed service started; contract after the last promoted.
    let expanded = index_of(&ev, |e| {
        e["type"] == "migration" && e["phase"] == "expanded"
    });
    let started = index_of(&ev, |e| {
        e["type"] == "service_started" && e["service"] == "customers"
    });
    let promoted = index_of(&ev, |e| {
        e["type"] == "promoted" && e["service"] == "billing"
    });
    let contracting = index_of(&ev, |e| {
        e["type"] == "migration" && e["phase"] == "contracting"
    });
    assert!(expanded < started, "{stdout}");
    assert!(promoted < contracting, "{stdout}");
    let bake = ev[contracting]["at_ms"].as_u64().unwrap() - ev[promoted]["at_ms"].as_u64().unwrap();
    assert!(bake >= 1000, "bake of 1s respected: {bake} ms");
    ev
}

#[test]
fn sqlite_release_deploys_end_to_end_under_load() {
    let fx = Fx::sqlite(SQLITE_EXPAND, "1s");
    deploy_under_load(&fx);
    assert_eq!(fx.sqlite_columns(), ["id", "first_name", "last_name"]);
    assert_eq!(fx.sqlite_history(), ["expand applied", "contract applied"]);
    let c = rusqlite::Connection::open(fx.db_path()).unwrap();
    let first: String = c
        .query_row("SELECT first_name FROM customers WHERE id = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(first, "Grace");
}

#[test]
fn postgres_release_deploys_end_to_end_under_load() {
    let pg = PgServer::start();
    let url = pg.create_db("deploy_e2e");
    {
        // Closed before the deploy: the dry run copies the database with
        // CREATE DATABASE ... TEMPLATE, which needs it free of other sessions.
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text NOT NULL DEFAULT '');
             INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Grace Hopper');",
        )
        .unwrap();
    }
    let fx = Fx::new("env:CUTOVER_E2E_DB", PG_EXPAND, "1s");
    // The URL reaches the deploy through the environment (`env:VAR`).
    let child = {
        let mut cmd = fx.cmd(&[
            "deploy",
            "--headless",
            "--output",
            "json",
            "--allow-contract",
            "--keep-running",
        ]);
        cmd.arg(fx.release())
            .env("CUTOVER_E2E_DB", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (out, load) = run_with_load(child, fx.port);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap();
    println!("load through the proxy during the PostgreSQL deploy: {report}");
    assert_eq!(report["failed"], 0, "{report}");
    let ev = events(&out);
    println!(
        "PostgreSQL lint + dry run + expand: {} ms",
        lint_to_expanded_ms(&ev)
    );
    assert_eq!(
        phases(&ev),
        [
            "linted",
            "dry_run_ok",
            "expanding",
            "expanded",
            "contracting",
            "contracted"
        ],
        "{stdout}"
    );
    let dry = ev
        .iter()
        .find(|e| e["phase"] == "dry_run_ok")
        .unwrap()
        .to_string();
    assert!(dry.contains("copy"), "{dry}");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let cols: Vec<String> = c
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["id", "first_name", "last_name"]);
    let stages: Vec<String> = c
        .query("SELECT stage FROM cutover_migrations ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stages, ["expand", "contract"]);
}

#[test]
fn a_missing_database_stops_the_deploy_before_anything_starts() {
    // The release names a SQLite file nobody created.
    let fx = Fx::new(
        "sqlite://data/nope.db",
        "ALTER TABLE customers ADD COLUMN x TEXT;\n",
        "1s",
    );
    let out = wait_output(fx.deploy(&[]), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("migration split-customer-name")
            && stderr.contains("data/nope.db")
            && stderr.contains("create the database first or fix the path")
            && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert!(
        events(&out).is_empty(),
        "no event, no journal: {:?}",
        events(&out)
    );
    let runs = fx.cmd(&["history", "--output", "json"]).output().unwrap();
    let listed: serde_json::Value =
        serde_json::from_slice(&runs.stdout).unwrap_or(serde_json::Value::Null);
    assert!(
        listed.as_array().is_none_or(|a| a.is_empty()),
        "no run to resume: {listed}"
    );
    assert!(
        !fx.dir.path().join("data/nope.db").exists(),
        "not created by the check"
    );
}

#[test]
fn a_dangerous_expand_is_refused_before_the_database_is_touched() {
    let fx = Fx::sqlite("ALTER TABLE customers DROP COLUMN full_name;\n", "1s");
    let out = wait_output(fx.deploy(&["--allow-contract"]), Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let ev = events(&out);
    let failed = ev
        .iter()
        .find(|e| e["type"] == "migration" && e["phase"] == "failed")
        .unwrap_or_else(|| panic!("{stdout}"));
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("migrations/expand.sql:1") && detail.contains("drop-column"),
        "{detail}"
    );
    let lines = failed["lines"].to_string();
    assert!(lines.contains("contract"), "the safe alternative: {lines}");
    assert!(
        !ev.iter().any(|e| e["type"] == "launched"),
        "no candidate launched: {stdout}"
    );
    assert!(fx.sqlite_history().is_empty(), "no history table written");
    assert_eq!(fx.sqlite_columns(), ["id", "full_name"]);
    // The text printer shows the same finding.
    let text = fx
        .cmd(&["deploy", "--headless"])
        .arg(fx.release())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("migration split-customer-name: failed: lint refused"),
        "{printed}"
    );
}

#[test]
fn headless_without_allow_contract_leaves_it_pending_and_migrate_contract_runs_it() {
    let fx = Fx::sqlite(SQLITE_EXPAND, "1s");
    let out = wait_output(fx.deploy(&[]), Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let ev = events(&out);
    let pending = ev
        .iter()
        .find(|e| e["phase"] == "contract_pending")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        pending["detail"]
            .as_str()
            .unwrap()
            .contains("cutover migrate contract"),
        "{pending}"
    );
    let summary = ev.iter().find(|e| e["type"] == "summary").unwrap();
    assert_eq!(
        summary["migrations"]["split-customer-name"], "contract pending",
        "{summary}"
    );
    assert_eq!(fx.sqlite_history(), ["expand applied"]);
    std::thread::sleep(Duration::from_millis(1100));
    let run = fx
        .cmd(&["migrate", "contract", "--migration", "split-customer-name"])
        .arg(fx.release())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains("contract applied"), "{said}");
    assert_eq!(fx.sqlite_history(), ["expand applied", "contract applied"]);
    assert_eq!(fx.sqlite_columns(), ["id", "first_name", "last_name"]);
    // Again: refused, since it is contracted now.
    let again = fx
        .cmd(&["migrate", "contract", "--migration", "split-customer-name"])
        .arg(fx.release())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("Contracted"));
}

#[test]
fn a_kill_while_expand_runs_then_resume_applies_each_stage_once() {
    // A slow expand (a recursive count inside the transaction) so the kill lands in it.
    let slow = format!(
        "{SQLITE_EXPAND}UPDATE customers SET last_name = last_name || (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT '' FROM c WHERE x = 3000000);\n"
    );
    let fx = Fx::sqlite(&slow, "1s");
    let mut child = fx.deploy(&["--allow-contract"]);
    // Read event lines until expand is journaled as started, then SIGKILL.
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(
            n > 0 && Instant::now() < deadline,
            "no expanding event:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("\"phase\":\"expanding\"") {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        !seen.contains("\"phase\":\"expanded\""),
        "killed before expand was journaled done"
    );
    // The newest run is unfinished: `migrate contract` must not go by an older one.
    let early = fx
        .cmd(&["migrate", "contract"])
        .arg(fx.release())
        .args(["--migration", "split-customer-name"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&early.stderr).to_string();
    assert_eq!(early.status.code(), Some(2), "{said}");
    assert!(said.contains("has not finished"), "{said}");
    let resume = fx
        .cmd(&[
            "resume",
            "--headless",
            "--output",
            "json",
            "--allow-contract",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(resume, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    assert!(
        phases(&ev).ends_with(&[
            "expanded".to_string(),
            "contracting".to_string(),
            "contracted".to_string()
        ]),
        "{text}"
    );
    // Each stage is in the history table exactly once.
    assert_eq!(fx.sqlite_history(), ["expand applied", "contract applied"]);
    assert_eq!(fx.sqlite_columns(), ["id", "first_name", "last_name"]);
    assert!(Path::new(&fx.db_path()).exists());
}
