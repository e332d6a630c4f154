//! PostgreSQL for real: each test starts its own server on a loopback port (see
//! tests/support/pg.rs) and fails when the server binaries are missing.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use cutover::migrate::{
    Database, MigrateError, MigrationFiles, MigrationState, RunOptions, Stage, StageOutcome,
    dry_run,
};
use cutover::release::{Dur, Migration};
use support::pg::PgServer;

const EXPAND: &str = "ALTER TABLE users ADD COLUMN full_name text;
UPDATE users SET full_name = name WHERE full_name IS NULL;
CREATE OR REPLACE FUNCTION users_sync_name() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.full_name IS NULL THEN NEW.full_name := NEW.name; END IF;
    IF NEW.name IS NULL THEN NEW.name := NEW.full_name; END IF;
  ELSIF NEW.name IS DISTINCT FROM OLD.name THEN
    NEW.full_name := NEW.name;
  ELSIF NEW.full_name IS DISTINCT FROM OLD.full_name THEN
    NEW.name := NEW.full_name;
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER users_sync_name BEFORE INSERT OR UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION users_sync_name();
";
const CONTRACT: &str = "DROP TRIGGER users_sync_name ON users;
DROP FUNCTION users_sync_name();
ALTER TABLE users DROP COLUMN name;
ALTER TABLE users ALTER COLUMN full_name SET NOT NULL;
";
const UNDO: &str = "DROP TRIGGER IF EXISTS users_sync_name ON users;
DROP FUNCTION IF EXISTS users_sync_name();
ALTER TABLE users DROP COLUMN IF EXISTS full_name;
";

struct Fx {
    _dir: tempfile::TempDir,
    base: PathBuf,
    m: Migration,
    url: String,
}

fn setup(pg: &PgServer, db: &str, expand: &str, contract: Option<&str>, undo: Option<&str>) -> Fx {
    let url = pg.create_db(db);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text);
         INSERT INTO users (name) VALUES ('Ada'), ('Grace');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("expand.sql"), expand).unwrap();
    if let Some(s) = contract {
        std::fs::write(base.join("contract.sql"), s).unwrap();
    }
    if let Some(s) = undo {
        std::fs::write(base.join("undo.sql"), s).unwrap();
    }
    let m = Migration {
        name: "split-name".into(),
        database: url.clone(),
        expand: "expand.sql".into(),
        contract: contract.map(|_| "contract.sql".into()),
        undo_expand: undo.map(|_| "undo.sql".into()),
        services: vec!["users-api".into()],
        bake: Dur::from_secs(0),
    };
    Fx {
        _dir: dir,
        base,
        m,
        url,
    }
}

fn opts() -> RunOptions {
    RunOptions {
        actor: "tester@ci".into(),
        ..RunOptions::default()
    }
}

fn columns(url: &str) -> Vec<String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn expand_serves_both_revisions_then_contract_and_history() {
    let pg = PgServer::start();
    let fx = setup(&pg, "app", EXPAND, Some(CONTRACT), Some(UNDO));
    let files = MigrationFiles::load(&fx.m, &fx.base).unwrap();
    let mut db = Database::connect(&fx.m.database, &fx.base).unwrap();
    db.expand("split-name", &files, &opts()).unwrap();

    // Old revision writes `name`, new revision writes `full_name`: each reads the other's.
    let mut c = postgres::Client::connect(&fx.url, postgres::NoTls).unwrap();
    c.execute("INSERT INTO users (name) VALUES ('old-writer')", &[])
        .unwrap();
    c.execute("INSERT INTO users (full_name) VALUES ('new-writer')", &[])
        .unwrap();
    let full: String = c
        .query_one("SELECT full_name FROM users WHERE name = 'old-writer'", &[])
        .unwrap()
        .get(0);
    assert_eq!(full, "old-writer");
    let name: String = c
        .query_one("SELECT name FROM users WHERE full_name = 'new-writer'", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, "new-writer");
    // Updates through either column show through the other.
    c.execute(
        "UPDATE users SET name = 'old-edit' WHERE name = 'old-writer'",
        &[],
    )
    .unwrap();
    c.execute(
        "UPDATE users SET full_name = 'new-edit' WHERE full_name = 'new-writer'",
        &[],
    )
    .unwrap();
    let pairs: Vec<(String, String)> = c
        .query(
            "SELECT name, full_name FROM users WHERE name LIKE '%-edit' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        pairs,
        [
            ("old-edit".to_string(), "old-edit".to_string()),
            ("new-edit".to_string(), "new-edit".to_string())
        ]
    );

    assert!(matches!(
        db.expand("split-name", &files, &opts()).unwrap(),
        StageOutcome::AlreadyApplied { .. }
    ));
    let e = db.undo_expand("split-name", &files, &RunOptions::default());
    assert!(e.is_ok());
    assert_eq!(columns(&fx.url), ["id", "name"]);
    db.expand("split-name", &files, &opts()).unwrap();
    db.contract("split-name", &files, &opts()).unwrap();
    assert_eq!(columns(&fx.url), ["id", "full_name"]);
    let status = db.status("split-name", &files).unwrap();
    assert_eq!(status.state, MigrationState::Contracted);
    let stages: Vec<Stage> = status.history.iter().map(|h| h.stage).collect();
    assert_eq!(
        stages,
        [
            Stage::Expand,
            Stage::UndoExpand,
            Stage::Expand,
            Stage::Contract
        ]
    );
    assert!(status.checksum_drift.is_empty() && status.schema_drift.is_none());

    // Out-of-band change: reported by status, refused by the next stage.
    c.batch_execute("CREATE INDEX by_hand ON users (full_name)")
        .unwrap();
    assert!(
        db.status("split-name", &files)
            .unwrap()
            .schema_drift
            .is_some()
    );
}

#[test]
fn lock_timeout_is_set_and_retried_with_backoff() {
    let pg = PgServer::start();
    let fx = setup(
        &pg,
        "app",
        "ALTER TABLE users ADD COLUMN full_name text;\n",
        None,
        None,
    );
    let files = MigrationFiles::load(&fx.m, &fx.base).unwrap();
    let mut db = Database::connect(&fx.m.database, &fx.base).unwrap();

    // A long read transaction holds ACCESS SHARE; the ALTER needs ACCESS EXCLUSIVE.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let url = fx.url.clone();
    let reader = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.query("SELECT count(*) FROM users", &[]).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        tx.commit().unwrap();
    });
    ready_rx.recv().unwrap();
    let quick = RunOptions {
        lock_timeout: Duration::from_millis(200),
        max_attempts: 2,
        backoff: Duration::from_millis(50),
        ..opts()
    };
    let started = std::time::Instant::now();
    let e = db.expand("split-name", &files, &quick).unwrap_err();
    assert!(
        matches!(e, MigrateError::LockTimeout { attempts: 2, .. }),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(db.history().unwrap().is_empty());
    assert_eq!(columns(&fx.url), ["id", "name"]);

    // The reader finishes while cutover backs off: a later attempt succeeds.
    go_tx.send(()).unwrap();
    let patient = RunOptions {
        lock_timeout: Duration::from_millis(200),
        max_attempts: 10,
        backoff: Duration::from_millis(100),
        ..opts()
    };
    let o = db.expand("split-name", &files, &patient).unwrap();
    reader.join().unwrap();
    match o {
        StageOutcome::Applied { attempts, .. } => assert!(attempts > 1, "{attempts}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(columns(&fx.url), ["id", "name", "full_name"]);
}

#[test]
fn interrupted_stages_apply_exactly_once_including_concurrent_index_files() {
    let pg = PgServer::start();
    let fx = setup(
        &pg,
        "app",
        "CREATE TABLE audit (id bigserial PRIMARY KEY, note text);\nINSERT INTO audit (note) VALUES ('seeded');\nALTER TABLE users ADD COLUMN full_name text;\n",
        None,
        None,
    );
    let files = MigrationFiles::load(&fx.m, &fx.base).unwrap();
    let mut db = Database::connect(&fx.m.database, &fx.base).unwrap();
    let crash = RunOptions {
        failpoint_after_statements: Some(3),
        ..opts()
    };
    assert!(matches!(
        db.expand("split-name", &files, &crash).unwrap_err(),
        MigrateError::Failpoint(_)
    ));
    assert!(db.history().unwrap().is_empty());
    assert_eq!(columns(&fx.url), ["id", "name"]);
    db.expand("split-name", &files, &opts()).unwrap();
    db.expand("split-name", &files, &opts()).unwrap();
    let mut c = postgres::Client::connect(&fx.url, postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM audit", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // A no-transaction file (CREATE INDEX CONCURRENTLY) resumes after its last statement.
    std::fs::write(
        fx.base.join("cic.sql"),
        "-- cutover:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_full_name ON users (full_name);\nINSERT INTO audit (note) VALUES ('after index');\nCREATE INDEX CONCURRENTLY IF NOT EXISTS audit_note ON audit (note);\n",
    )
    .unwrap();
    let m2 = Migration {
        name: "indexes".into(),
        expand: "cic.sql".into(),
        ..fx.m.clone()
    };
    let files2 = MigrationFiles::load(&m2, &fx.base).unwrap();
    let crash = RunOptions {
        failpoint_after_statements: Some(2),
        ..opts()
    };
    assert!(db.expand("indexes", &files2, &crash).is_err());
    assert_eq!(
        db.state("indexes").unwrap(),
        MigrationState::Interrupted(Stage::Expand)
    );
    let o = db.expand("indexes", &files2, &opts()).unwrap();
    assert!(
        matches!(
            o,
            StageOutcome::Applied {
                resumed_after: 2,
                ..
            }
        ),
        "{o:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM audit WHERE note = 'after index'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let valid: i64 = c
        .query_one("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN ('users_full_name', 'audit_note') AND i.indisvalid", &[])
        .unwrap()
        .get(0);
    assert_eq!(valid, 2);
}

#[test]
fn dry_run_uses_a_template_copy_or_a_schema_copy_when_the_database_is_busy() {
    let pg = PgServer::start();
    let fx = setup(&pg, "app", EXPAND, Some(CONTRACT), Some(UNDO));
    let files = MigrationFiles::load(&fx.m, &fx.base).unwrap();
    let report = dry_run(&fx.m, &files, &fx.base, &opts()).unwrap();
    assert!(report.ok, "{report}");
    assert!(report.method.contains("TEMPLATE"), "{report}");
    assert!(report.real_untouched);
    assert_eq!(report.steps.len(), 4);
    assert_eq!(columns(&fx.url), ["id", "name"]);

    // SET NOT NULL over a NULL row fails on the copy, with the real database untouched.
    let mut c = postgres::Client::connect(&fx.url, postgres::NoTls).unwrap();
    c.execute("INSERT INTO users (name) VALUES (NULL)", &[])
        .unwrap();
    drop(c);
    let report = dry_run(&fx.m, &files, &fx.base, &opts()).unwrap();
    assert!(!report.ok);
    let last = report.steps.last().unwrap();
    assert_eq!(last.stage, Stage::Contract);
    assert!(last.error.as_deref().unwrap().contains("null"), "{report}");

    // A service holding a session: no TEMPLATE possible, schema-only copy instead.
    let _service = postgres::Client::connect(&fx.url, postgres::NoTls).unwrap();
    let report = dry_run(&fx.m, &files, &fx.base, &opts()).unwrap();
    assert!(report.method.contains("schema-only"), "{report}");
    assert!(report.ok, "{report}");
    assert!(!report.notes.is_empty());
    let mut c = pg.client("postgres");
    let leftovers: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'cutover_dry_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    let mut db = Database::connect(&fx.m.database, &fx.base).unwrap();
    assert_eq!(db.state("split-name").unwrap(), MigrationState::Pending);
}

#[test]
fn passwords_never_appear_in_errors_and_env_urls_work() {
    let pg = PgServer::start();
    let fx = setup(
        &pg,
        "app",
        "ALTER TABLE users ADD COLUMN full_name text;\n",
        None,
        None,
    );
    // Nothing listens on port 1.
    let e = Database::connect("postgres://app:hunter2@127.0.0.1:1/app", &fx.base).unwrap_err();
    let msg = e.to_string();
    assert!(
        !msg.contains("hunter2") && msg.contains("app:***@127.0.0.1:1"),
        "{msg}"
    );
    // SAFETY: unique variable name, set before any thread reads it.
    unsafe {
        std::env::set_var(
            "CUTOVER_PG_TEST_URL",
            fx.url.replace("postgres@", "postgres:s3cret@"),
        )
    };
    let mut db = Database::connect("env:CUTOVER_PG_TEST_URL", &fx.base).unwrap();
    assert!(
        db.url()
            .to_string()
            .starts_with("env:CUTOVER_PG_TEST_URL (postgres://postgres:***@")
    );
    let m = Migration {
        database: "env:CUTOVER_PG_TEST_URL".into(),
        ..fx.m.clone()
    };
    let files = MigrationFiles::load(&m, &fx.base).unwrap();
    std::fs::write(
        fx.base.join("bad.sql"),
        "ALTER TABLE nope ADD COLUMN x int;\n",
    )
    .unwrap();
    let bad = MigrationFiles {
        expand: cutover::migrate::SqlFile::load(&fx.base, "bad.sql").unwrap(),
        ..files.clone()
    };
    let e = db.expand("bad", &bad, &opts()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bad.sql:1") && msg.contains("nope") && !msg.contains("s3cret"),
        "{msg}"
    );
    db.expand(&m.name, &files, &opts()).unwrap();
}

const SLOW_EXPAND: &str = "CREATE TABLE audit (id bigserial PRIMARY KEY, note text);
INSERT INTO audit (note) VALUES ('seeded');
SELECT pg_sleep((SELECT n FROM knob));
ALTER TABLE users ADD COLUMN full_name text;
";

/// Run by `a_killed_process_mid_expand_commits_nothing_and_resume_applies_once` in a child
/// process, which it kills while the expand runs.
#[test]
#[ignore = "child process of the crash test"]
fn crash_child_pg() {
    let url = std::env::var("CUTOVER_CRASH_PG_URL").expect("set by the parent");
    let base = PathBuf::from(std::env::var("CUTOVER_CRASH_BASE").expect("set by the parent"));
    let m = Migration {
        name: "slow".into(),
        database: url,
        expand: "expand.sql".into(),
        contract: None,
        undo_expand: None,
        services: vec!["users-api".into()],
        bake: Dur::from_secs(0),
    };
    let files = MigrationFiles::load(&m, &base).unwrap();
    let mut db = Database::connect(&m.database, &base).unwrap();
    println!("applying");
    db.expand(&m.name, &files, &opts()).unwrap();
    println!("finished");
}

#[test]
fn a_killed_process_mid_expand_commits_nothing_and_resume_applies_once() {
    use std::io::BufRead;
    let pg = PgServer::start();
    let fx = setup(&pg, "app", SLOW_EXPAND, None, None);
    let mut c = postgres::Client::connect(&fx.url, postgres::NoTls).unwrap();
    c.batch_execute("CREATE TABLE knob (n float8); INSERT INTO knob VALUES (30);")
        .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_pg",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CUTOVER_CRASH_PG_URL", &fx.url)
        .env("CUTOVER_CRASH_BASE", &fx.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("applying") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before applying"
        );
    }
    // Wait until the child's session is inside pg_sleep, i.e. mid-stage.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'",
                &[],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never reached the slow statement"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    // The server notices the dead client at its next read; end the orphaned backend now.
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()", &[])
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut db = Database::connect(&fx.m.database, &fx.base).unwrap();
    assert!(db.history().unwrap().is_empty());
    assert_eq!(columns(&fx.url), ["id", "name"]);
    let audit: bool = c
        .query_one("SELECT to_regclass('audit') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!audit, "the interrupted stage left its table behind");

    c.execute("UPDATE knob SET n = 0", &[]).unwrap();
    let m = Migration {
        name: "slow".into(),
        ..fx.m.clone()
    };
    let files = MigrationFiles::load(&m, &fx.base).unwrap();
    assert!(matches!(
        db.expand("slow", &files, &opts()).unwrap(),
        StageOutcome::Applied { .. }
    ));
    assert!(matches!(
        db.expand("slow", &files, &opts()).unwrap(),
        StageOutcome::AlreadyApplied { .. }
    ));
    let n: i64 = c
        .query_one("SELECT count(*) FROM audit", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(columns(&fx.url), ["id", "name", "full_name"]);
}
