//! The secret sweep (issue 13, item 7; the Grafana token and OTLP headers of issue 17 too):
//! distinct marker secrets planted in every field of a
//! release that can hold one (env values of both revisions of every service, webhook URL
//! paths written in the file and named by `env:VAR`, database URLs named by `env:VAR` with
//! a password, smoke command arguments, the local proxy's `pin_secret` named by `env:VAR`,
//! control-API tokens, a service that prints its environment (its own and what it inherits)
//! and answers it on `/env` for a smoke request), then cutover used as a person would, through the
//! real binary:
//! - `validate` and `deploy` of a broken copy (its problems on lines holding secrets);
//! - `deploy --headless`: one service promoted, two rolled back by failing smoke tests, two
//!   migrations applied, webhooks delivered over HTTPS;
//! - `kill -9` of a deploy mid-release, then `resume`;
//! - `serve --detach` (its log file in the state dir; two more webhooks that fail; loopback
//!   TCP with a token file), `ctl status`, the control API's snapshot and event stream
//!   (what `attach` reads: `attach` has no snapshot mode), `ctl rollback` with a wrong
//!   token (refused) and with the right one;
//! - `audit` (text, JSON, verify), `history`, `plan`, `migrate lint/status/dry-run`, and
//!   the errors about bad database URLs.
//!
//! No marker may appear in any output, any file under the state dir, any log or any
//! webhook body; and the run must really have happened (notifications delivered,
//! migrations applied, the rollbacks done, the resumed candidate relaunched with its
//! environment, the services' printed environment reaching their output only as `***`).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::net::free_port;
use support::pg::PgServer;
use support::tls::{pki, receiver};
use support::{CUTOVER, demo_replica, everything_under, wait_for};

/// The planted secrets: (where it was planted, the value).
struct Markers(Vec<(&'static str, String)>);

impl Markers {
    fn new() -> Markers {
        Markers(Vec::new())
    }

    /// A distinct value for `place` (no marker is a part of another).
    fn plant(&mut self, place: &'static str) -> String {
        let v = format!(
            "zq{}k{}mark{}",
            self.0.len(),
            std::process::id(),
            self.0.len()
        );
        self.0.push((place, v.clone()));
        v
    }
}

/// Every channel's text, and the leaks found in them.
struct Sweep<'a> {
    markers: &'a Markers,
    leaks: Vec<String>,
    channels: usize,
}

impl Sweep<'_> {
    /// Record every marker found in `text` (channel `what`), with a little context.
    fn check(&mut self, what: &str, text: &str) {
        self.channels += 1;
        for (place, m) in &self.markers.0 {
            if let Some(i) = text.find(m.as_str()) {
                let mut from = i.saturating_sub(80);
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let mut to = (i + m.len() + 40).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                self.leaks.push(format!(
                    "the {place} marker reached {what}: …{}…",
                    &text[from..to]
                ));
            }
        }
    }

    /// Run `cutover ARGS`, which must succeed, and check its output.
    fn run_ok(&mut self, env: &Env, args: &[&str]) -> Output {
        let out = env.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        self.output(&args.join(" "), &out);
        out
    }

    fn output(&mut self, what: &str, out: &Output) {
        self.check(&format!("{what} (stdout)"), &text(&out.stdout));
        self.check(&format!("{what} (stderr)"), &text(&out.stderr));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether a process runs whose command line has every one of `args` as an argument.
fn processes_with(args: &[&str]) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|cmd| {
                let have: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                args.iter().all(|a| have.contains(&a.as_bytes()))
            })
        })
}

/// The body of an HTTP/1.1 response (chunked or not) read to its end.
fn body_of(raw: &[u8]) -> String {
    let raw = text(raw);
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        return raw;
    };
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let (mut out, mut rest) = (String::new(), body);
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            out.push_str(&after[..n.min(after.len())]);
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// A raw GET on the control socket (what `attach` and `ctl` read), answered in full.
fn control_get(socket: &Path, path: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\ncutover-protocol: {}\r\ncutover-operator: sweeper\r\nConnection: close\r\n\r\n",
        cutover::control::protocol_version()
    )
    .unwrap();
    s
}

fn read_all(mut s: UnixStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    body_of(&buf)
}

struct Env {
    dir: PathBuf,
    state: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    /// `cutover ARGS` with the test's environment (service logs on stderr).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CUTOVER);
        c.args(args)
            .env("CUTOVER_STATE_DIR", &self.state)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .current_dir(&self.dir);
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `cutover ARGS` in the background, its output going to files in the test's dir.
    fn spawn(&self, args: &[&str], name: &str) -> Running {
        let (out, err) = (
            self.dir.join(format!("{name}.out")),
            self.dir.join(format!("{name}.err")),
        );
        let child = self
            .cmd(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Running { child, out, err }
    }

    /// A file only its owner may read (token files must be).
    fn write_private(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, body);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn write(&self, name: &str, body: &str) -> String {
        std::fs::write(self.dir.join(name), body).unwrap();
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// Wait for the process: its exit code, stdout and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let code = self.child.wait().unwrap().code();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        (code, read(&self.out), read(&self.err))
    }
}

/// A release of one canary service (`local` its `[service.local]`) that holds at
/// `weight` % for `pause`.
fn canary(release: &str, notify: &str, service: &str, hold: (u8, &str), local: &str) -> String {
    let (weight, pause) = hold;
    format!(
        r#"[release]
name = "{release}"
platform = "local"
progress_deadline = "120s"

{notify}
[[service]]
name = "{service}"
strategy = "canary"
steps = [ {{ set_weight = {weight} }}, {{ pause = "{pause}" }} ]
{HEALTH}{local}"#
    )
}

const HEALTH: &str =
    "[service.health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\nhealthy_after = 1\n";

/// A `[service.local]` table: the demo service printing `var` (whose values are `old` and
/// `new` in the two revisions) and `inherited`, variables it inherits from cutover's
/// environment (the release's `env:` webhook or database).
fn local(tag: &str, var: &str, old: &str, new: &str, inherited: &[&str]) -> String {
    let inherited: String = inherited
        .iter()
        .map(|v| format!(", \"--print-env\", \"{v}\""))
        .collect();
    format!(
        r#"[service.local]
listen = "127.0.0.1:{}"
drain_timeout = "500ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "{tag}", "--print-env", "{var}"{inherited}]
current = {{ revision = "v1", env = {{ {var} = "{old}" }} }}
target = {{ revision = "v2", env = {{ {var} = "{new}" }} }}
"#,
        free_port()
    )
}

#[test]
fn no_planted_secret_leaves_the_process() {
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls = pki();
    let (hook_addr, received) = receiver(&rt, tls.server);
    let pg = PgServer::start();
    pg.create_db("sweep");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let tag = format!("sweep{}", std::process::id());

    let mut m = Markers::new();
    let hook = m.plant("webhook path (in the file)");
    let hook_env = m.plant("webhook path (env:VAR)");
    let dead_hook = m.plant("webhook path (nothing listening)");
    let untrusted_hook = m.plant("webhook path (untrusted certificate)");
    let token = m.plant("control API token");
    let wrong_token = m.plant("a wrong control API token");
    let pin = m.plant("local proxy pin secret (env:VAR)");
    let pg_pw = m.plant("database password (env:VAR)");
    let argv_ok = m.plant("passing smoke command argument");
    let argv_fail = m.plant("failing smoke command argument");
    let api_v1 = m.plant("api v1 env value");
    let api_v2 = m.plant("api v2 env value");
    let web_v1 = m.plant("web v1 env value");
    let web_v2 = m.plant("web v2 env value");
    let job_v1 = m.plant("job v1 env value");
    let job_v2 = m.plant("job v2 env value");
    let res_v1 = m.plant("resumed service's v1 env value");
    let res_v2 = m.plant("resumed service's v2 env value");
    let srv_v1 = m.plant("served service's v1 env value");
    let srv_v2 = m.plant("served service's v2 env value");
    let slash_pw = m.plant("database password holding '/' (env:VAR)");
    let kv_pw = m.plant("database password in key=value form (env:VAR)");
    let grafana_token = m.plant("Grafana annotation token (env:VAR)");
    let otlp_header = m.plant("OTLP exporter header (OTEL_EXPORTER_OTLP_HEADERS)");

    let hook_url = format!(
        "https://localhost:{}/services/T0/B0/{hook_env}",
        hook_addr.port()
    );
    let sqlite = dir.join("app.db");
    // An empty file is an empty SQLite database.
    std::fs::write(&sqlite, "").unwrap();
    let env = Env {
        dir: dir.clone(),
        state: dir.join("state"),
        vars: vec![
            ("SSL_CERT_FILE".into(), ca.to_string_lossy().into_owned()),
            ("SWEEP_HOOK_URL".into(), hook_url),
            ("SWEEP_PIN".into(), format!("{pin}-{pin}")),
            (
                "SWEEP_SQLITE_URL".into(),
                format!("sqlite://{}", sqlite.display()),
            ),
            (
                "SWEEP_PG_URL".into(),
                format!("postgres://postgres:{pg_pw}@127.0.0.1:{}/sweep", pg.port),
            ),
            (
                "SWEEP_SLASH_URL".into(),
                format!("postgres://app:{slash_pw}/x@127.0.0.1:{}/app", free_port()),
            ),
            (
                "SWEEP_KV_URL".into(),
                format!("host=127.0.0.1 user=app password={kv_pw} dbname=app"),
            ),
            ("SWEEP_GRAFANA_TOKEN".into(), grafana_token),
            // Every command traces to the receiver, with a secret header.
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("https://localhost:{}", hook_addr.port()),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS".into(),
                format!("x-sweep-auth={otlp_header}"),
            ),
        ],
    };
    std::fs::write(
        dir.join("lite.sql"),
        "CREATE TABLE sweep_lite (id INTEGER);\n",
    )
    .unwrap();
    std::fs::write(dir.join("pg.sql"), "CREATE TABLE sweep_pg (id integer);\n").unwrap();
    let notify = format!(
        "[notify]\nwebhooks = [\"https://localhost:{}/services/T0/B0/{hook}\", \"env:SWEEP_HOOK_URL\"]\n[notify.grafana]\nurl = \"https://localhost:{}\"\ntoken = \"env:SWEEP_GRAFANA_TOKEN\"\n",
        hook_addr.port(),
        hook_addr.port()
    );
    let mut sweep = Sweep {
        markers: &m,
        leaks: Vec::new(),
        channels: 0,
    };

    // 1. deploy: api promoted (after both migrations' expand), web and job rolled back by a
    //    smoke test each (web's `/env` answer and job's command's stderr carry secrets).
    let main = env.write(
        "sweep.toml",
        &format!(
            r#"[release]
name = "sweep"
platform = "local"
progress_deadline = "60s"

{notify}
[[migration]]
name = "lite"
database = "env:SWEEP_SQLITE_URL"
expand = "lite.sql"
services = ["api"]

[[migration]]
name = "pg"
database = "env:SWEEP_PG_URL"
expand = "pg.sql"
services = ["api"]

[[service]]
name = "api"
strategy = "canary"
steps = [ {{ set_weight = 50 }}, {{ pause = "1s" }} ]
[[service.smoke]]
name = "probe"
command = ["test", "{argv_ok}", "!=", "{{url}}"]
{HEALTH}{api}
[[service]]
name = "web"
strategy = "blue_green"
blue_green = {{ keep_old_for = "1s" }}
[[service.smoke]]
name = "echo"
request = "GET /env"
expect_status = 418
{HEALTH}{web}
[[service]]
name = "job"
strategy = "blue_green"
blue_green = {{ keep_old_for = "1s" }}
[[service.smoke]]
name = "argv"
command = ["ls", "/nonexistent/{argv_fail}"]
{HEALTH}{job}"#,
            api = local(
                &format!("{tag}-api"),
                "API_TOKEN",
                &api_v1,
                &api_v2,
                &["SWEEP_HOOK_URL", "SWEEP_PG_URL"]
            ),
            web = local(&format!("{tag}-web"), "WEB_TOKEN", &web_v1, &web_v2, &[]),
            job = local(&format!("{tag}-job"), "JOB_TOKEN", &job_v1, &job_v2, &[]),
        ),
    );
    // A broken copy: its problems sit on lines holding secrets (a webhook that is not
    // http(s), a bad key beside an env value); the errors point there without showing them.
    let broken = env.write(
        "broken.toml",
        &std::fs::read_to_string(&main)
            .unwrap()
            .replace("\"https://localhost:", "\"ftp://localhost:")
            .replace(
                "target = { revision = \"v2\", env = { API_TOKEN",
                "target = { bogus = 1, revision = \"v2\", env = { API_TOKEN",
            ),
    );
    for cmd in ["validate", "deploy"] {
        let out = env.run(&[cmd, &broken]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("webhook 0 is not an http(s) URL") && err.contains("unknown key `bogus`"),
            "{cmd}: {err}"
        );
        sweep.output(&format!("{cmd} of a broken release"), &out);
    }
    for args in [
        vec!["validate", &main],
        vec!["plan", &main],
        vec!["plan", "--output", "json", &main],
        vec!["migrate", "lint", &main],
        vec!["migrate", "lint", "--output", "json", &main],
    ] {
        sweep.run_ok(&env, &args);
    }
    let out = env.run(&["deploy", "--headless", &main]);
    sweep.output("deploy", &out);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{shown}\n{}", text(&out.stderr));
    for svc in ["web", "job"] {
        assert!(shown.contains(&format!("{svc}: ROLLED BACK")), "{shown}");
    }
    let err = text(&out.stderr);
    assert!(
        err.contains("API_TOKEN=*** SWEEP_HOOK_URL=*** SWEEP_PG_URL=***")
            && err.contains("WEB_TOKEN=***"),
        "the services' printed environment is not in the log, scrubbed: {err}"
    );
    let json = env.run(&["audit", "--output", "json", "sweep"]);
    let journal = text(&json.stdout);
    assert!(
        journal.contains("smoke test echo failed") && journal.contains("WEB_TOKEN=***"),
        "the echo smoke test's body did not reach the rollback reason: {journal}"
    );
    assert!(
        journal.contains("smoke test argv failed") && journal.contains("No such file"),
        "the argv smoke test's stderr did not reach the rollback reason: {journal}"
    );
    let status = env.run(&["migrate", "status", &main]);
    sweep.output("migrate status", &status);
    for name in ["lite", "pg"] {
        assert!(
            text(&status.stdout).contains(name),
            "{}",
            text(&status.stdout)
        );
    }
    let tables: i64 = pg
        .client("sweep")
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sweep_pg'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "the pg migration's expand was not applied");
    for args in [
        ["migrate", "dry-run", "--output", "text", &main],
        ["migrate", "dry-run", "--output", "json", &main],
        ["migrate", "status", "--output", "json", &main],
    ] {
        let out = env.run(&args);
        sweep.output(&args.join(" "), &out);
    }

    // 2. kill -9 mid-release, then resume: the candidate comes back with its environment.
    let cache = format!("{tag}-cache");
    let resumable = env.write(
        "resume.toml",
        &canary(
            "sweep-resume",
            &notify,
            "cache",
            (50, "6s"),
            &local(&cache, "CACHE_TOKEN", &res_v1, &res_v2, &["SWEEP_HOOK_URL"]),
        ),
    );
    let mut deploy = env.spawn(&["deploy", "--headless", &resumable], "killed");
    wait_for("the candidate launched", Duration::from_secs(60), || {
        demo_replica(&cache, "v2").is_some()
    });
    deploy.child.kill().unwrap();
    let (_, out, err) = deploy.finish();
    sweep.check("the killed deploy (stdout)", &out);
    sweep.check("the killed deploy (stderr)", &err);
    let resume = env.spawn(&["resume", "--headless"], "resume");
    let mut environ = String::new();
    wait_for("the candidate relaunched", Duration::from_secs(60), || {
        demo_replica(&cache, "v2")
            .and_then(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
            .map(|e| environ = text(&e).replace('\0', "\n"))
            .is_some_and(|()| environ.contains("CACHE_TOKEN="))
    });
    assert!(
        environ
            .lines()
            .any(|l| l == format!("CACHE_TOKEN={res_v2}")),
        "the relaunched candidate lacks its environment value"
    );
    let (code, out, err) = resume.finish();
    sweep.check("resume (stdout)", &out);
    sweep.check("resume (stderr)", &err);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("CACHE_TOKEN=*** SWEEP_HOOK_URL=***"),
        "the resumed candidate's printed environment is not in the log, scrubbed: {err}"
    );

    // 3. serve, read it as attach and ctl do, roll back with ctl.
    // Two more webhooks that fail: nothing listens on one, the other's certificate is
    // from a CA nobody trusts. Their failures are logged without their paths.
    let (untrusted, untrusted_got) = receiver(&rt, pki().server);
    let failing = format!(
        "[notify]\nwebhooks = [\"https://localhost:{}/services/T0/B0/{hook}\", \"https://localhost:{}/services/{dead_hook}\", \"https://localhost:{}/services/{untrusted_hook}\", \"env:SWEEP_HOOK_URL\"]\n",
        hook_addr.port(),
        free_port(),
        untrusted.port()
    );
    // The release's pin secret, read from its variable, which the service also prints.
    let served = env.write(
        "serve.toml",
        &canary(
            "sweep-serve",
            &failing,
            "edge",
            (20, "60s"),
            &local(
                &format!("{tag}-edge"),
                "EDGE_TOKEN",
                &srv_v1,
                &srv_v2,
                &["SWEEP_HOOK_URL", "SWEEP_PIN"],
            ),
        )
        .replace(
            "progress_deadline = \"120s\"\n",
            "progress_deadline = \"120s\"\npin_secret = \"env:SWEEP_PIN\"\n",
        ),
    );
    // Loopback TCP with tokens too: a token is a secret of its own.
    let tokens = env.write_private(
        "tokens.toml",
        &format!("[[token]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"{token}-{token}\"\n"),
    );
    let alice = env.write_private("alice.token", &format!("{token}-{token}\n"));
    let wrong = env.write_private("wrong.token", &format!("{wrong_token}-{wrong_token}\n"));
    let url = format!("http://127.0.0.1:{}", free_port());
    let listen = url.trim_start_matches("http://");
    // In the background: its output goes to the log file cutover keeps in the state dir.
    let launch = sweep.run_ok(
        &env,
        &[
            "serve",
            "--detach",
            "--linger",
            "1s",
            "--listen",
            listen,
            "--token-file",
            &tokens,
            &served,
        ],
    );
    let socket = env.state.join("cutover.sock");
    let mut status = String::new();
    wait_for("the served canary at 20 %", Duration::from_secs(60), || {
        if !socket.exists() {
            return false;
        }
        let o = env.run(&["ctl", "status"]);
        status = text(&o.stdout);
        serde_json::from_str::<serde_json::Value>(&status).is_ok_and(|v| {
            v["services"][0]["candidate_weight"] == 20
                || v["state"]["services"][0]["candidate_weight"] == 20
        })
    });
    sweep.check("ctl status", &status);
    let events = control_get(&socket, "/v1/events?from=0&attach=1");
    let snapshot = read_all(control_get(&socket, "/v1/snapshot"));
    assert!(snapshot.contains("sweep-serve"), "{snapshot}");
    sweep.check("the control API's snapshot", &snapshot);
    let refused = env.run(&[
        "ctl",
        "rollback",
        "edge",
        "--url",
        &url,
        "--token-file",
        &wrong,
    ]);
    sweep.output("ctl rollback with a wrong token", &refused);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    let tcp_status = sweep.run_ok(
        &env,
        &["ctl", "status", "--url", &url, "--token-file", &alice],
    );
    assert!(text(&tcp_status.stdout).contains("sweep-serve"));
    let rollback = env.run(&[
        "ctl",
        "rollback",
        "edge",
        "--reason",
        // An operator pasting a secret into the journaled note.
        &format!("the canary logs {srv_v2}"),
        "--url",
        &url,
        "--token-file",
        &alice,
    ]);
    sweep.output("ctl rollback", &rollback);
    assert_eq!(
        rollback.status.code(),
        Some(0),
        "{}",
        text(&rollback.stderr)
    );
    let stream = read_all(events);
    sweep.check("the control API's event stream", &stream);
    assert!(
        stream.contains("rollback_started") && stream.contains("the release finished (exit 3)"),
        "{stream}"
    );
    // The server flushes its notifications after the end: wait until it is gone.
    wait_for(
        "the background serve exited",
        Duration::from_secs(60),
        || !processes_with(&["serve", &served]),
    );
    let log = std::fs::read_dir(&env.state)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("serve-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_else(|| panic!("no serve log in the state dir ({})", text(&launch.stdout)));
    assert!(
        log.contains("EDGE_TOKEN=*** SWEEP_HOOK_URL=*** SWEEP_PIN=***"),
        "{log}"
    );
    assert!(
        log.contains("webhook delivery failed") && log.contains("unknown authority"),
        "{log}"
    );
    assert!(untrusted_got.lock().unwrap().is_empty());

    // 4. what people read afterwards.
    for args in [
        vec!["history"],
        vec!["history", "--output", "json"],
        vec!["audit"],
        vec!["audit", "--output", "json"],
        vec!["audit", "sweep"],
        vec!["audit", "--output", "json", "sweep"],
        vec!["audit", "sweep-resume"],
        vec!["audit", "--output", "json", "sweep-resume"],
        vec!["audit", "verify"],
        vec!["report"],
        vec!["report", "--format", "html"],
        vec!["report", "--format", "json"],
        vec!["stats"],
        vec!["stats", "--output", "json"],
        vec!["validate", &resumable],
        vec!["plan", &served],
    ] {
        sweep.run_ok(&env, &args);
    }

    let served_audit = text(&sweep.run_ok(&env, &["audit", "sweep-serve"]).stdout);
    assert!(
        served_audit.contains("unauthenticated")
            && served_audit.contains("alice: rollback edge")
            && served_audit.contains("the canary logs ***"),
        "the refused and the accepted command are not both journaled: {served_audit}"
    );

    // 5. errors about database URLs name the variable, never its secret.
    for var in ["SWEEP_SLASH_URL", "SWEEP_KV_URL"] {
        let file = env.write(
            &format!("{var}.toml"),
            &format!(
                r#"[release]
name = "sweep-bad-db"
platform = "local"

[[migration]]
name = "bad"
database = "env:{var}"
expand = "pg.sql"
services = ["api"]

[[service]]
name = "api"
strategy = "rolling"
{HEALTH}{api}"#,
                api = local(&format!("{tag}-bad"), "API_TOKEN", &api_v1, &api_v2, &[]),
            ),
        );
        for args in [
            vec!["migrate", "status", &file],
            vec!["migrate", "dry-run", &file],
        ] {
            let out = env.run(&args);
            assert_ne!(out.status.code(), Some(0), "{args:?}");
            let err = text(&out.stderr);
            assert!(err.contains(var), "{args:?} {var}: {err}");
            sweep.output(&format!("{} ({var})", args.join(" ")), &out);
        }
    }

    // 6. the webhook receiver got the notifications, with nothing secret in their bodies.
    let got = received.lock().unwrap().clone();
    for path in [hook.as_str(), hook_env.as_str()] {
        assert!(
            got.iter().any(|(p, _)| p.ends_with(path)),
            "nothing delivered to the webhook ending in the {path} marker"
        );
    }
    // The Grafana annotations and the OTLP traces reached it too (their secrets travel in
    // headers only).
    for path in ["/api/annotations", "/v1/traces"] {
        assert!(
            got.iter().any(|(p, _)| p.ends_with(path)),
            "nothing was posted to {path}"
        );
    }
    let bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    assert!(
        bodies.iter().any(|b| b.contains("sweep-resume")),
        "{bodies:?}"
    );
    assert!(bodies.iter().any(|b| b.contains("web")), "{bodies:?}");
    for (i, b) in bodies.iter().enumerate() {
        sweep.check(&format!("webhook body {i}"), b);
    }

    // 7. every file under the state dir (journals, run records, pid files, logs, and the
    // release reports each finished run wrote beside its journal).
    let reports = std::fs::read_dir(env.state.join("runs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| {
            ["report.html", "report.md", "report.json"]
                .iter()
                .all(|f| d.path().join(f).is_file())
        })
        .count();
    assert!(reports >= 1, "no run directory holds its release report");
    let files = everything_under(&env.state);
    assert!(files.contains("sweep-serve"));
    sweep.check("the state dir", &files);

    assert!(
        sweep.leaks.is_empty(),
        "{} leak(s) over {} channels:\n{}",
        sweep.leaks.len(),
        sweep.channels,
        sweep.leaks.join("\n")
    );
    eprintln!(
        "secret sweep: {} markers, {} channels, {:?}",
        m.0.len(),
        sweep.channels,
        started.elapsed()
    );
}
