//! `cutover migrate lint|dry-run|status` as people run them.

use std::path::Path;
use std::process::Command;

use cutover::migrate::{Database, MigrationFiles, RunOptions};

fn cutover(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example_copy() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("migration.toml"),
        dir.path().join("migration.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for f in [
        "0007_expand.sql",
        "0007_contract.sql",
        "0007_undo_expand.sql",
    ] {
        std::fs::copy(
            root.join("migrations").join(f),
            dir.path().join("migrations").join(f),
        )
        .unwrap();
    }
    let c = rusqlite::Connection::open(dir.path().join("data/customers.db")).unwrap();
    c.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT);
         INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Grace Hopper');",
    )
    .unwrap();
    dir
}

#[test]
fn lint_refuses_a_dangerous_file_with_exit_2() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrate/lint/sqlite_rename_column.sql");
    let (code, out, _) = cutover(&[
        "migrate",
        "lint",
        f.to_str().unwrap(),
        "--dialect",
        "sqlite",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("sqlite_rename_column.sql:2: error[rename-column]"),
        "{out}"
    );
    assert!(out.contains("fix: expand: ADD the new column"), "{out}");
    let (code, out, _) = cutover(&[
        "migrate",
        "lint",
        f.to_str().unwrap(),
        "--dialect",
        "sqlite",
        "--stage",
        "contract",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn lint_of_a_file_ending_inside_an_unterminated_comment_with_multibyte_text_does_not_panic() {
    // The input the fuzz target `migrate_sql` keeps as
    // fuzz/corpus/migrate_sql/regress-unterminated-comment-multibyte.sql.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tail.sql");
    std::fs::write(&f, "ALTER TABLE t ADD COLUMN c text;\n/* 日本").unwrap();
    let (code, out, err) = cutover(&["migrate", "lint", f.to_str().unwrap()]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cutover(&["migrate", "lint", f.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The unterminated comment is reported (a warning), not a crash.
    let findings = v[0]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["line"] == 2
            && f["message"]
                .as_str()
                .is_some_and(|m| m.contains("block comment"))),
        "{out}"
    );
    assert_eq!(v[0]["refused"], false, "{out}");
}

#[test]
fn dry_run_and_status_on_the_example_release() {
    let dir = example_copy();
    let release = dir.path().join("migration.toml");
    let r = release.to_str().unwrap();
    let (code, out, _) = cutover(&["migrate", "lint", r]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = cutover(&["migrate", "dry-run", r]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ column customers.first_name TEXT"), "{out}");
    assert!(out.contains("real database untouched"), "{out}");
    let (code, out, _) = cutover(&["migrate", "status", r]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Pending") && out.contains("nothing applied yet"),
        "{out}"
    );

    // Apply expand as the engine would, then edit the applied file: status reports drift.
    let loaded = cutover::release::load(&release, &Default::default()).unwrap();
    let m = &loaded.release.migrations[0];
    let files = MigrationFiles::load(m, &loaded.base_dir).unwrap();
    let mut db = Database::connect(&m.database, &loaded.base_dir).unwrap();
    db.expand(&m.name, &files, &RunOptions::default()).unwrap();
    let (code, out, _) = cutover(&["migrate", "status", r, "--output", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "expanded");
    assert_eq!(v[0]["history"][0]["stage"], "expand");

    let expand = dir.path().join("migrations/0007_expand.sql");
    let text = std::fs::read_to_string(&expand).unwrap();
    std::fs::write(&expand, text.replace("TEXT", "TEXT NOT NULL DEFAULT ''")).unwrap();
    let (code, out, _) = cutover(&["migrate", "status", r]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("DRIFT: migrations/0007_expand.sql changed"),
        "{out}"
    );

    let (code, _, err) = cutover(&["migrate", "status", r, "--migration", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no migration named \"nope\"") && err.contains("split-customer-name"),
        "{err}"
    );
}
