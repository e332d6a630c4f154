//! Migration benchmark (issue 8, item 7). Run with `cargo bench --bench migration`.
//!
//! Part A: a column rename (`users.name` to `users.full_name`) while an old revision
//! (v1, uses `name`) and a new revision (v2, uses `full_name`) serve mixed reads and
//! writes under load. The two revisions are small in-process HTTP services (hyper) over one
//! SQLite file, and the load generator splits traffic by weight the way the local
//! platform's proxy would (the proxy/supervisor branches are being written in parallel).
//! "expand/contract" runs cutover's expand (add column, backfill, sync triggers), then
//! v2 at 10%, 50%, 100%, then contract (drop triggers and the old column); "naive rename"
//! runs `ALTER TABLE ... RENAME COLUMN` at the same point. Every write made while both
//! revisions take traffic is read back through the other revision.
//!
//! Part B: the effect of `lock_timeout` on queries queued behind a blocked DDL (PostgreSQL,
//! a server started here on loopback, as in the tests).

#[path = "../tests/support/net.rs"]
mod net;
#[path = "../tests/support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cutover::migrate::{Database, Dialect, MigrationFiles, RunOptions, StageOutcome, lint};
use cutover::release::{Dur, Migration};

const ROWS: i64 = 50_000;
const RATE: u64 = 400; // requests per second, all workers together
const WORKERS: u64 = 8;
const PHASE: Duration = Duration::from_millis(2500);

const EXPAND: &str = "ALTER TABLE users ADD COLUMN full_name TEXT;
UPDATE users SET full_name = name WHERE full_name IS NULL;
CREATE TRIGGER users_ins_old AFTER INSERT ON users WHEN NEW.full_name IS NULL
BEGIN UPDATE users SET full_name = NEW.name WHERE id = NEW.id; END;
CREATE TRIGGER users_ins_new AFTER INSERT ON users WHEN NEW.name IS NULL
BEGIN UPDATE users SET name = NEW.full_name WHERE id = NEW.id; END;
CREATE TRIGGER users_upd_old AFTER UPDATE OF name ON users WHEN NEW.full_name IS NOT NEW.name
BEGIN UPDATE users SET full_name = NEW.name WHERE id = NEW.id; END;
CREATE TRIGGER users_upd_new AFTER UPDATE OF full_name ON users WHEN NEW.name IS NOT NEW.full_name
BEGIN UPDATE users SET name = NEW.full_name WHERE id = NEW.id; END;
";
const CONTRACT: &str = "DROP TRIGGER users_ins_old;
DROP TRIGGER users_ins_new;
DROP TRIGGER users_upd_old;
DROP TRIGGER users_upd_new;
ALTER TABLE users DROP COLUMN name;
";
const PG_EXPAND: &str = "ALTER TABLE users ADD COLUMN full_name text;
UPDATE users SET full_name = name WHERE full_name IS NULL;
CREATE FUNCTION users_sync_name() RETURNS trigger AS $$
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
const PG_CONTRACT: &str = "DROP TRIGGER users_sync_name ON users;
DROP FUNCTION users_sync_name();
ALTER TABLE users DROP COLUMN name;
";
const NAIVE: &str = "ALTER TABLE users RENAME COLUMN name TO full_name;\n";

// ---------------------------------------------------------------- the two revisions

/// Where a revision keeps its data: a SQLite file or a PostgreSQL database.
#[derive(Clone)]
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

struct Pool {
    target: Target,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    fn get(&self) -> Result<Conn, String> {
        if let Some(c) = self.idle.lock().map_err(|e| e.to_string())?.pop() {
            return Ok(c);
        }
        match &self.target {
            Target::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
                c.busy_timeout(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                Ok(Conn::Sqlite(c))
            }
            Target::Postgres(url) => postgres::Client::connect(url, postgres::NoTls)
                .map(|c| Conn::Postgres(Box::new(c)))
                .map_err(|e| e.to_string()),
        }
    }
    fn put(&self, c: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

/// One revision: which column it believes holds the name.
struct Revision {
    column: &'static str,
    pool: Pool,
}

fn db_op(rev: &Revision, method: &Method, path: &str, body: &str) -> Result<String, String> {
    let mut conn = rev.pool.get()?;
    let col = rev.column;
    let id = path
        .strip_prefix("/users/")
        .and_then(|s| s.parse::<i64>().ok());
    let r = match (&mut conn, method, id) {
        (Conn::Sqlite(c), &Method::GET, Some(id)) => c
            .query_row(
                &format!("SELECT {col} FROM users WHERE id = ?1"),
                [id],
                |r| r.get::<_, Option<String>>(0),
            )
            .map(|v| v.unwrap_or_default())
            .map_err(|e| e.to_string()),
        (Conn::Sqlite(c), &Method::PUT, Some(id)) => c
            .execute(
                &format!("UPDATE users SET {col} = ?1 WHERE id = ?2"),
                rusqlite::params![body, id],
            )
            .map(|n| n.to_string())
            .map_err(|e| e.to_string()),
        (Conn::Sqlite(c), &Method::POST, None) if path == "/users" => c
            .query_row(
                &format!("INSERT INTO users ({col}) VALUES (?1) RETURNING id"),
                [body],
                |r| r.get::<_, i64>(0),
            )
            .map(|id| id.to_string())
            .map_err(|e| e.to_string()),
        (Conn::Postgres(c), &Method::GET, Some(id)) => c
            .query_one(&format!("SELECT {col} FROM users WHERE id = $1"), &[&id])
            .and_then(|r| r.try_get::<_, Option<String>>(0))
            .map(|v| v.unwrap_or_default())
            .map_err(pg_err),
        (Conn::Postgres(c), &Method::PUT, Some(id)) => c
            .execute(
                &format!("UPDATE users SET {col} = $1 WHERE id = $2"),
                &[&body, &id],
            )
            .map(|n| n.to_string())
            .map_err(pg_err),
        (Conn::Postgres(c), &Method::POST, None) if path == "/users" => c
            .query_one(
                &format!("INSERT INTO users ({col}) VALUES ($1) RETURNING id"),
                &[&body],
            )
            .and_then(|r| r.try_get::<_, i64>(0))
            .map(|id| id.to_string())
            .map_err(pg_err),
        _ => Err(format!("no route {method} {path}")),
    };
    // A PostgreSQL connection whose session broke is not reused.
    let broken = matches!(&conn, Conn::Postgres(c) if c.is_closed());
    if !broken {
        rev.pool.put(conn);
    }
    r
}

fn pg_err(e: postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

async fn handle(rev: Arc<Revision>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let r = tokio::task::spawn_blocking(move || db_op(&rev, &method, &path, &body)).await;
    match r {
        Ok(Ok(text)) => reply(StatusCode::OK, text),
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn start_revision(target: &Target, column: &'static str) -> (SocketAddr, Arc<Revision>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let rev = Arc::new(Revision {
        column,
        pool: Pool {
            target: target.clone(),
            idle: Mutex::new(Vec::new()),
        },
    });
    let keep = rev.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let rev = rev.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let rev = rev.clone();
                    async move { Ok::<_, Infallible>(handle(rev, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, keep)
}

// ---------------------------------------------------------------- load and bookkeeping

#[derive(Default)]
struct PhaseStats {
    requests: [u64; 2],
    failures: [u64; 2],
    cross_ok: u64,
    cross_bad: u64,
    latency: Option<Histogram<u64>>,
    sample_error: Option<String>,
}

struct Shared {
    v1: SocketAddr,
    v2: Mutex<Option<SocketAddr>>,
    v2_share: AtomicU32,
    phase: AtomicUsize,
    stop: AtomicBool,
    ids: Mutex<Vec<i64>>,
    stats: Mutex<BTreeMap<usize, PhaseStats>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> Result<String, String> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

fn record(shared: &Shared, phase: usize, rev: usize, ok: bool, micros: u64, err: Option<String>) {
    let Ok(mut stats) = shared.stats.lock() else {
        return;
    };
    let s = stats.entry(phase).or_default();
    s.requests[rev] += 1;
    if !ok {
        s.failures[rev] += 1;
        if s.sample_error.is_none() {
            s.sample_error = err.map(|e| format!("v{}: {e}", rev + 1));
        }
    }
    let h = s.latency.get_or_insert_with(|| {
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
    });
    let _ = h.record(micros.max(1));
}

async fn worker(shared: Arc<Shared>, seed: u64) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut rng = StdRng::seed_from_u64(seed);
    let interval = Duration::from_micros(1_000_000 * WORKERS / RATE);
    let mut next = Instant::now();
    let mut counter = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        next += interval;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        } else {
            next = now;
        }
        let phase = shared.phase.load(Ordering::Relaxed);
        let share = shared.v2_share.load(Ordering::Relaxed);
        let v2 = shared.v2.lock().ok().and_then(|g| *g);
        let use_v2 = v2.is_some() && rng.random_range(0..100) < share;
        let (rev, addr) = match (use_v2, v2) {
            (true, Some(a)) => (1, a),
            _ => (0, shared.v1),
        };
        let both_live = v2.is_some() && share > 0 && share < 100;
        let roll: u32 = rng.random_range(0..100);
        counter += 1;
        let value = format!("user-{seed}-{counter}");
        let started = Instant::now();
        let (result, write_id) = if roll < 60 {
            let id = {
                let ids = shared.ids.lock().expect("ids lock");
                ids[rng.random_range(0..ids.len())]
            };
            (
                call(&client, addr, Method::GET, &format!("/users/{id}"), "").await,
                None,
            )
        } else if roll < 90 {
            let r = call(&client, addr, Method::POST, "/users", &value).await;
            let id = r.as_ref().ok().and_then(|s| s.parse::<i64>().ok());
            if let Some(id) = id {
                shared.ids.lock().expect("ids lock").push(id);
            }
            (r, id)
        } else {
            let id = {
                let ids = shared.ids.lock().expect("ids lock");
                ids[rng.random_range(0..ids.len())]
            };
            let r = call(&client, addr, Method::PUT, &format!("/users/{id}"), &value).await;
            (r, Some(id))
        };
        let micros = started.elapsed().as_micros() as u64;
        let ok = result.is_ok();
        record(&shared, phase, rev, ok, micros, result.err());
        // Cross-version read-after-write: read the write back through the other revision.
        if let (true, true, Some(id), Some(v2addr)) = (ok, both_live, write_id, v2) {
            let (other, other_addr) = if rev == 0 {
                (1, v2addr)
            } else {
                (0, shared.v1)
            };
            let t = Instant::now();
            let r = call(
                &client,
                other_addr,
                Method::GET,
                &format!("/users/{id}"),
                "",
            )
            .await;
            let good = r.as_deref() == Ok(value.as_str());
            record(
                &shared,
                phase,
                other,
                r.is_ok(),
                t.elapsed().as_micros() as u64,
                r.clone().err(),
            );
            if let Ok(mut st) = shared.stats.lock() {
                let s = st.entry(phase).or_default();
                if good {
                    s.cross_ok += 1
                } else {
                    s.cross_bad += 1
                }
            }
        }
    }
}

// ---------------------------------------------------------------- scenario A

struct Row {
    scenario: &'static str,
    phase: String,
    stats: PhaseStats,
    note: String,
}

fn make_db(dir: &Path) -> PathBuf {
    let path = dir.join("app.db");
    let c = rusqlite::Connection::open(&path).expect("create db");
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
    )
    .expect("schema");
    c.execute_batch("BEGIN").expect("begin");
    {
        let mut st = c
            .prepare("INSERT INTO users (name) VALUES (?1)")
            .expect("prepare");
        for i in 0..ROWS {
            st.execute([format!("seed-{i}")]).expect("seed");
        }
    }
    c.execute_batch("COMMIT").expect("commit");
    path
}

fn make_pg_db(admin_url: &str, db: &str) -> String {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("create database");
    let (server, _) = admin_url.rsplit_once('/').expect("URL with a database");
    let url = format!("{server}/{db}");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    c.batch_execute(&format!(
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text);
         INSERT INTO users (name) SELECT 'seed-' || g FROM generate_series(1, {ROWS}) g;"
    ))
    .expect("seed");
    url
}

/// `pg_url`: a PostgreSQL database made by [`make_pg_db`] (outside the runtime: the
/// synchronous client must not run on a runtime thread); `None` for SQLite.
async fn scenario(name: &'static str, safe: bool, pg_url: Option<String>) -> (Vec<Row>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (target, database, dialect, expand, contract) = match pg_url {
        None => {
            let path = make_db(dir.path());
            (
                Target::Sqlite(path),
                "sqlite://app.db".to_string(),
                Dialect::Sqlite,
                EXPAND,
                CONTRACT,
            )
        }
        Some(url) => (
            Target::Postgres(url.clone()),
            url,
            Dialect::Postgres,
            PG_EXPAND,
            PG_CONTRACT,
        ),
    };
    std::fs::write(
        dir.path().join("expand.sql"),
        if safe { expand } else { NAIVE },
    )
    .expect("write");
    std::fs::write(dir.path().join("contract.sql"), contract).expect("write");
    let m = Migration {
        name: "rename-user-name".into(),
        database,
        expand: "expand.sql".into(),
        contract: safe.then(|| "contract.sql".into()),
        undo_expand: None,
        services: vec!["users".into()],
        bake: Dur::from_secs(0),
    };
    let files = MigrationFiles::load(&m, dir.path()).expect("files");
    let lint_report = lint(&files, dialect);
    let lint_note = if lint_report.is_clean() {
        "lint: clean".to_string()
    } else {
        let f = lint_report
            .blocking()
            .next()
            .map(|f| format!("{}:{} {}", f.file, f.line, f.rule))
            .unwrap_or_default();
        format!("lint: REFUSED ({f}); run anyway for the comparison")
    };

    let (v1, rev1) = start_revision(&target, "name").await;
    let shared = Arc::new(Shared {
        v1,
        v2: Mutex::new(None),
        v2_share: AtomicU32::new(0),
        phase: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        ids: Mutex::new((1..=ROWS).collect()),
        stats: Mutex::new(BTreeMap::new()),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| tokio::spawn(worker(shared.clone(), i + 1)))
        .collect();

    let mut phases: Vec<(String, String)> = Vec::new();
    let opts = RunOptions {
        lock_timeout: Duration::from_secs(2),
        actor: "bench".into(),
        ..RunOptions::default()
    };
    let apply = |stage: &'static str| {
        let base = dir.path().to_path_buf();
        let m = m.clone();
        let files = files.clone();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = Database::connect(&m.database, &base).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let r = match stage {
                "expand" => db.expand(&m.name, &files, &opts),
                _ => db.contract(&m.name, &files, &opts),
            };
            match r {
                Ok(StageOutcome::Applied { attempts, .. }) => Ok(format!(
                    "{stage} took {} ms, {attempts} attempt(s)",
                    t.elapsed().as_millis()
                )),
                Ok(other) => Ok(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
    };
    fn set_phase(shared: &Shared, phases: &mut Vec<(String, String)>, idx: usize, label: &str) {
        shared.phase.store(idx, Ordering::Relaxed);
        phases.push((label.to_string(), String::new()));
    }

    set_phase(&shared, &mut phases, 0, "v1 only");
    tokio::time::sleep(PHASE).await;

    set_phase(
        &shared,
        &mut phases,
        1,
        if safe {
            "expand (v1 serving)"
        } else {
            "naive rename (v1 serving)"
        },
    );
    tokio::time::sleep(PHASE / 3).await;
    let note = match apply("expand").await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => format!("FAILED: {e}"),
        Err(e) => format!("FAILED: {e}"),
    };
    phases[1].1 = note;
    tokio::time::sleep(PHASE * 2 / 3).await;

    let (v2, rev2) = start_revision(&target, "full_name").await;
    if let Ok(mut g) = shared.v2.lock() {
        *g = Some(v2);
    }
    for (i, share) in [(2usize, 10u32), (3, 50), (4, 100)] {
        shared.v2_share.store(share, Ordering::Relaxed);
        set_phase(
            &shared,
            &mut phases,
            i,
            &format!("v2 {share}% / v1 {}%", 100 - share),
        );
        tokio::time::sleep(PHASE).await;
    }
    if safe {
        set_phase(&shared, &mut phases, 5, "contract (v1 drained)");
        tokio::time::sleep(PHASE / 3).await;
        let note = match apply("contract").await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => format!("FAILED: {e}"),
            Err(e) => format!("FAILED: {e}"),
        };
        phases[5].1 = note;
        tokio::time::sleep(PHASE * 2 / 3).await;
    } else {
        set_phase(&shared, &mut phases, 5, "(no contract)");
        tokio::time::sleep(PHASE).await;
    }
    set_phase(&shared, &mut phases, 6, "v2 only");
    tokio::time::sleep(PHASE).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    // Close pooled connections off the runtime threads (the synchronous PostgreSQL client
    // blocks when dropped).
    for rev in [rev1, rev2] {
        let conns = std::mem::take(&mut *rev.pool.idle.lock().expect("pool lock"));
        let _ = tokio::task::spawn_blocking(move || drop(conns)).await;
    }

    let mut stats = std::mem::take(&mut *shared.stats.lock().expect("stats"));
    let rows = phases
        .into_iter()
        .enumerate()
        .map(|(i, (phase, note))| Row {
            scenario: name,
            phase,
            stats: stats.remove(&i).unwrap_or_default(),
            note,
        })
        .collect();
    (rows, lint_note)
}

// ---------------------------------------------------------------- scenario B

struct LockRow {
    setting: String,
    ddl: String,
    worst_ms: f64,
    median_ms: f64,
    slow: usize,
    total: usize,
}

fn lock_case(pgs: &pg::PgServer, db: &str, setting: &str, how: &str) -> LockRow {
    let url = pgs.create_db(db);
    let mut setup = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    setup
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, name text);
             INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 10000) g;",
        )
        .expect("setup");
    let hold = Duration::from_secs(3);
    // Session A: a long read transaction holding ACCESS SHARE on users.
    let url_a = url.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url_a, postgres::NoTls).expect("connect A");
        let mut tx = c.transaction().expect("begin");
        tx.query("SELECT count(*) FROM users", &[]).expect("read");
        let _ = ready_tx.send(());
        std::thread::sleep(hold);
        tx.commit().expect("commit");
    });
    let _ = ready_rx.recv();
    let start = Instant::now();
    // Session B: the DDL.
    let url_b = url.clone();
    let how = how.to_string();
    let ddl = std::thread::spawn(move || -> String {
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        if how == "cutover" {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(
                dir.path().join("expand.sql"),
                "ALTER TABLE users ADD COLUMN full_name text;\n",
            )
            .expect("write");
            let m = Migration {
                name: "add-full-name".into(),
                database: url_b.clone(),
                expand: "expand.sql".into(),
                contract: None,
                undo_expand: None,
                services: vec!["users".into()],
                bake: Dur::from_secs(0),
            };
            let files = MigrationFiles::load(&m, dir.path()).expect("files");
            let mut db = Database::connect(&m.database, dir.path()).expect("connect");
            let opts = RunOptions {
                lock_timeout: Duration::from_millis(500),
                max_attempts: 20,
                backoff: Duration::from_millis(250),
                actor: "bench".into(),
                ..RunOptions::default()
            };
            match db.expand(&m.name, &files, &opts) {
                Ok(StageOutcome::Applied { attempts, .. }) => {
                    format!(
                        "applied after {attempts} attempts, {:.1} s",
                        t.elapsed().as_secs_f64()
                    )
                }
                Ok(o) => format!("{o:?}"),
                Err(e) => format!("failed: {e}"),
            }
        } else {
            let mut c = postgres::Client::connect(&url_b, postgres::NoTls).expect("connect B");
            c.batch_execute(&format!("SET lock_timeout = '{how}'"))
                .expect("set");
            match c.batch_execute("ALTER TABLE users ADD COLUMN full_name text") {
                Ok(()) => format!("waited {:.1} s, then applied", t.elapsed().as_secs_f64()),
                Err(e) => format!(
                    "cancelled after {:.2} s: {}",
                    t.elapsed().as_secs_f64(),
                    e.as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string())
                ),
            }
        }
    });
    // Session C: an application reading every 50 ms while A holds its lock.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect C");
    std::thread::sleep(Duration::from_millis(300));
    let mut lat = Vec::new();
    while start.elapsed() < hold + Duration::from_millis(300) {
        let t = Instant::now();
        c.query("SELECT count(*) FROM users", &[]).expect("reader");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = holder.join();
    let ddl = ddl.join().unwrap_or_else(|_| "panicked".into());
    lat.sort_by(|a, b| a.total_cmp(b));
    LockRow {
        setting: setting.to_string(),
        ddl,
        worst_ms: lat.last().copied().unwrap_or(0.0),
        median_ms: lat.get(lat.len() / 2).copied().unwrap_or(0.0),
        slow: lat.iter().filter(|&&l| l > 100.0).count(),
        total: lat.len(),
    }
}

// ---------------------------------------------------------------- report

fn q(h: &Option<Histogram<u64>>, p: f64) -> String {
    match h {
        Some(h) if !h.is_empty() => format!("{:.1}", h.value_at_quantile(p) as f64 / 1000.0),
        _ => "-".into(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("# Migration benchmark (issue 8)");
    println!(
        "A: rename users.name -> users.full_name ({ROWS} rows; SQLite in WAL mode, and PostgreSQL on loopback), {RATE} req/s target from {WORKERS} workers, \
         60% read / 30% insert / 10% update, {} s per phase; revisions are in-process hyper services, traffic split by the load generator; \
         request counts include the cross-version read-backs",
        PHASE.as_secs_f64()
    );
    let pgs = pg::PgServer::start();
    let admin = pgs.url("postgres");
    let mut all = Vec::new();
    let mut notes = Vec::new();
    for (name, safe, pg_db) in [
        ("SQLite expand/contract", true, None),
        ("SQLite naive rename", false, None),
        ("PostgreSQL expand/contract", true, Some("bench_safe")),
        ("PostgreSQL naive rename", false, Some("bench_naive")),
    ] {
        let pg_url = pg_db.map(|db| make_pg_db(&admin, db));
        let (rows, lint_note) = rt.block_on(scenario(name, safe, pg_url));
        notes.push(format!("{name}: {lint_note}"));
        all.extend(rows);
    }
    println!();
    println!(
        "| scenario | phase | v1 req | v1 failed | v2 req | v2 failed | cross-version reads ok / wrong | p50 ms | p99 ms | note |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut totals: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for r in &all {
        let s = &r.stats;
        let t = totals.entry(r.scenario).or_default();
        t.0 += s.requests[0] + s.requests[1];
        t.1 += s.failures[0] + s.failures[1];
        t.2 += s.cross_ok;
        t.3 += s.cross_bad;
        let note = match (&r.note, &s.sample_error) {
            (n, Some(e)) if !n.is_empty() => format!("{n}; e.g. {e}"),
            (_, Some(e)) => format!("e.g. {e}"),
            (n, None) => n.clone(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            r.scenario,
            r.phase,
            s.requests[0],
            s.failures[0],
            s.requests[1],
            s.failures[1],
            s.cross_ok,
            s.cross_bad,
            q(&s.latency, 0.5),
            q(&s.latency, 0.99),
            note.replace('|', "/")
        );
    }
    println!();
    println!("| scenario | requests | failed | cross-version reads ok | wrong or failed |");
    println!("|---|---|---|---|---|");
    for (name, (req, fail, ok, bad)) in &totals {
        println!("| {name} | {req} | {fail} | {ok} | {bad} |");
    }
    for n in notes {
        println!("{n}");
    }

    println!();
    println!(
        "B: PostgreSQL, session A holds a read transaction on users for 3 s; B runs ALTER TABLE ... ADD COLUMN 0.2 s in; C (an app) runs SELECT count(*) every 50 ms"
    );
    let cases = [
        ("lock_timeout = 0 (none)", "lock_a", "0"),
        ("lock_timeout = 500ms, no retry", "lock_b", "500ms"),
        (
            "cutover expand: lock_timeout 500ms + retry/backoff",
            "lock_c",
            "cutover",
        ),
    ];
    println!();
    println!("| DDL session | DDL outcome | app SELECT worst ms | median ms | SELECTs > 100 ms |");
    println!("|---|---|---|---|---|");
    for (label, db, how) in cases {
        let r = lock_case(&pgs, db, label, how);
        println!(
            "| {} | {} | {:.0} | {:.1} | {} of {} |",
            r.setting, r.ddl, r.worst_ms, r.median_ms, r.slow, r.total
        );
    }
    drop(pgs);
}
