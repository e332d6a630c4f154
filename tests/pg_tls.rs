//! The PostgreSQL journal over TLS: a server that rejects plain TCP (`hostnossl … reject`)
//! with a certificate from a throwaway CA. With the CA in `SSL_CERT_FILE` a deploy
//! journals there and every reading command works; without it the connection is refused
//! with what to do, and the URL's password is never printed. Needs Debian's `postgresql`.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::net::free_port;
use support::pg::PgServer;
use support::tls::pki_for;

const PASSWORD: &str = "s3cret-pg-tls";

fn release(port: u16) -> String {
    format!(
        r#"[release]
name = "pg-tls"
platform = "local"
progress_deadline = "5m"

[[service]]
name = "api"
strategy = "blue_green"
blue_green = {{ auto_promote = true, keep_old_for = "1s" }}
[service.health]
interval = "200ms"
timeout = "150ms"
healthy_after = 1
[service.local]
listen = "127.0.0.1:{port}"
replicas = 1
drain_timeout = "200ms"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}", "--service", "pgtls-{{service}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
    )
}

fn cutover(state: &Path, journal: &str, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(support::CUTOVER);
    c.args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CUTOVER_STATE_DIR")
        .env("CUTOVER_JOURNAL", journal);
    match ca {
        Some(ca) => c.env("SSL_CERT_FILE", ca),
        None => c.env_remove("SSL_CERT_FILE"),
    };
    let out = c.output().expect("run cutover");
    let text = support::output_text(&out);
    assert!(!text.contains(PASSWORD), "the password in {args:?}: {text}");
    out
}

#[test]
fn the_journal_speaks_tls_to_a_server_that_only_takes_tls() {
    let pki = pki_for(&["127.0.0.1"]);
    let pg = PgServer::start_tls(&pki.cert_pem, &pki.key_pem);
    pg.create_db("tlsjournal");
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = pki.write(dir.path());
    let file = dir.path().join("release.toml");
    std::fs::write(&file, release(free_port())).unwrap();
    let state = dir.path().join("state");
    let url = |mode: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/tlsjournal?sslmode={mode}",
            pg.port
        )
    };

    // Trusting the server's CA: the deploy journals over TLS (plain TCP is rejected).
    let file = file.to_str().unwrap();
    let deploy = cutover(
        &state,
        &url("require"),
        Some(&ca),
        &["deploy", file, "--headless"],
    );
    assert!(deploy.status.success(), "{}", support::output_text(&deploy));
    let history = cutover(
        &state,
        &url("prefer"),
        Some(&ca),
        &["history", "--output", "json"],
    );
    assert!(
        history.status.success(),
        "{}",
        support::output_text(&history)
    );
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["release"], "pg-tls", "{runs}");
    let run = runs[0]["run_id"].as_str().expect("a run id").to_string();
    let verify = cutover(
        &state,
        &url("require"),
        Some(&ca),
        &["audit", "verify", &run],
    );
    assert!(verify.status.success(), "{}", support::output_text(&verify));
    let mut admin = pg.client("tlsjournal");
    let entries: i64 = admin
        .query_one("SELECT count(*) FROM cutover_journal_entries", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("the journal's table: {e}"));
    assert!(entries > 5, "{entries} entries");

    // Without the CA the certificate is refused, and the error says what to do.
    let refused = cutover(&state, &url("require"), None, &["history"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        support::output_text(&refused)
    );
    let text = support::output_text(&refused);
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert!(text.contains("SSL_CERT_FILE"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");

    // sslmode=disable against this server: rejected by the server, said plainly.
    let plain = cutover(&state, &url("disable"), Some(&ca), &["history"]);
    assert_ne!(plain.status.code(), Some(0));
    let text = support::output_text(&plain);
    assert!(
        text.contains("pg_hba.conf rejects connection") && text.contains("no encryption"),
        "{text}"
    );
}

#[test]
fn migrations_reach_a_tls_only_database_too() {
    let pki = pki_for(&["127.0.0.1"]);
    let pg = PgServer::start_tls(&pki.cert_pem, &pki.key_pem);
    pg.create_db("tlsmigrate");
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = pki.write(dir.path());
    std::fs::write(
        dir.path().join("expand.sql"),
        "ALTER TABLE customers ADD COLUMN first_name TEXT;\n",
    )
    .unwrap();
    let text = format!(
        "{}\n[[migration]]\nname = \"first-name\"\ndatabase = \"env:PGTLS_URL\"\nexpand = \"expand.sql\"\nservices = [\"api\"]\n",
        release(free_port())
    );
    let file = dir.path().join("release.toml");
    std::fs::write(&file, text).unwrap();
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/tlsmigrate?sslmode=require",
        pg.port
    );
    let status = |ca: Option<&Path>| {
        let mut c = Command::new(support::CUTOVER);
        c.args(["migrate", "status"])
            .arg(&file)
            .env("PGTLS_URL", &url);
        match ca {
            Some(ca) => c.env("SSL_CERT_FILE", ca),
            None => c.env_remove("SSL_CERT_FILE"),
        };
        let out = c.output().unwrap();
        let text = support::output_text(&out);
        assert!(!text.contains(PASSWORD), "the password: {text}");
        (out.status.code(), text)
    };
    let (code, text) = status(Some(&ca));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("first-name"), "{text}");
    let (code, text) = status(None);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("invalid peer certificate") && text.contains("SSL_CERT_FILE"),
        "{text}"
    );
}
