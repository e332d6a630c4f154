//! Lint fixtures: each dangerous file is refused with the right rule, at the right line,
//! with a hint towards the safe alternative; safe files pass; allow comments work.

use std::path::Path;

use cutover::migrate::{Dialect, Rule, Severity, SqlFile, Stage, lint_file};

fn fixture(name: &str) -> SqlFile {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate/lint");
    SqlFile::load(&dir, name).expect("fixture exists")
}

/// (file, dialect, rule, line, words the hint must contain)
const DANGEROUS: &[(&str, Dialect, Rule, usize, &str)] = &[
    (
        "pg_drop_column.sql",
        Dialect::Postgres,
        Rule::DropColumn,
        4,
        "contract",
    ),
    (
        "pg_rename_column.sql",
        Dialect::Postgres,
        Rule::RenameColumn,
        2,
        "ADD the new column",
    ),
    (
        "pg_rename_table.sql",
        Dialect::Postgres,
        Rule::RenameTable,
        2,
        "view",
    ),
    (
        "pg_drop_table.sql",
        Dialect::Postgres,
        Rule::DropTable,
        1,
        "contract",
    ),
    (
        "pg_index.sql",
        Dialect::Postgres,
        Rule::NonConcurrentIndex,
        2,
        "CONCURRENTLY",
    ),
    (
        "pg_concurrent_in_tx.sql",
        Dialect::Postgres,
        Rule::ConcurrentIndexInTransaction,
        1,
        "cutover:no-transaction",
    ),
    (
        "pg_set_not_null.sql",
        Dialect::Postgres,
        Rule::SetNotNull,
        3,
        "NOT VALID",
    ),
    (
        "pg_type_change.sql",
        Dialect::Postgres,
        Rule::TypeChange,
        1,
        "new column",
    ),
    (
        "pg_not_null_no_default.sql",
        Dialect::Postgres,
        Rule::NotNullWithoutDefault,
        1,
        "DEFAULT",
    ),
    (
        "pg_transaction.sql",
        Dialect::Postgres,
        Rule::ExplicitTransaction,
        1,
        "remove BEGIN/COMMIT",
    ),
    (
        "pg_transaction.sql",
        Dialect::Postgres,
        Rule::ExplicitTransaction,
        3,
        "remove BEGIN/COMMIT",
    ),
    (
        "sqlite_rename_column.sql",
        Dialect::Sqlite,
        Rule::RenameColumn,
        2,
        "ADD the new column",
    ),
    (
        "sqlite_drop_column.sql",
        Dialect::Sqlite,
        Rule::DropColumn,
        3,
        "contract",
    ),
    (
        "sqlite_not_null.sql",
        Dialect::Sqlite,
        Rule::NotNullWithoutDefault,
        1,
        "DEFAULT",
    ),
    (
        "sqlite_rename_table.sql",
        Dialect::Sqlite,
        Rule::RenameTable,
        1,
        "view",
    ),
    (
        "sqlite_drop_table.sql",
        Dialect::Sqlite,
        Rule::DropTable,
        1,
        "contract",
    ),
];

#[test]
fn dangerous_expand_files_are_refused_with_rule_line_and_hint() {
    for &(name, dialect, rule, line, hint) in DANGEROUS {
        let file = fixture(name);
        let findings = lint_file(&file, Stage::Expand, dialect);
        let f = findings
            .iter()
            .find(|f| f.rule == rule && f.line == line)
            .unwrap_or_else(|| panic!("{name}: expected {rule} at line {line}, got {findings:#?}"));
        assert!(f.blocks(), "{name}: {rule} should block");
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.file, name);
        assert!(
            f.hint.contains(hint),
            "{name}: hint {:?} lacks {hint:?}",
            f.hint
        );
        assert!(!f.why.is_empty());
        let shown = f.to_string();
        assert!(
            shown.starts_with(&format!("{name}:{line}: error[{rule}]")),
            "{shown}"
        );
    }
}

#[test]
fn safe_expand_files_pass() {
    for (name, dialect) in [
        ("pg_safe_expand.sql", Dialect::Postgres),
        ("pg_concurrent_ok.sql", Dialect::Postgres),
        ("sqlite_safe_expand.sql", Dialect::Sqlite),
    ] {
        let findings = lint_file(&fixture(name), Stage::Expand, dialect);
        let blocking: Vec<_> = findings.iter().filter(|f| f.blocks()).collect();
        assert!(blocking.is_empty(), "{name}: {blocking:#?}");
    }
}

#[test]
fn drops_pass_in_contract_but_lock_rules_still_apply() {
    let drop = lint_file(
        &fixture("pg_drop_column.sql"),
        Stage::Contract,
        Dialect::Postgres,
    );
    assert!(drop.iter().all(|f| !f.blocks()), "{drop:#?}");
    let sqlite = lint_file(
        &fixture("sqlite_drop_column.sql"),
        Stage::Contract,
        Dialect::Sqlite,
    );
    assert!(sqlite.iter().all(|f| !f.blocks()), "{sqlite:#?}");
    let index = lint_file(&fixture("pg_index.sql"), Stage::Contract, Dialect::Postgres);
    assert!(
        index
            .iter()
            .any(|f| f.rule == Rule::NonConcurrentIndex && f.blocks())
    );
}

#[test]
fn missing_timeouts_warn_once_without_blocking() {
    let findings = lint_file(
        &fixture("pg_rename_column.sql"),
        Stage::Expand,
        Dialect::Postgres,
    );
    let timeouts: Vec<_> = findings
        .iter()
        .filter(|f| f.rule == Rule::MissingTimeout)
        .collect();
    assert!(!timeouts.is_empty() && timeouts.len() <= 2, "{timeouts:#?}");
    assert!(
        timeouts
            .iter()
            .all(|f| f.severity == Severity::Warning && !f.blocks())
    );
    let safe = lint_file(
        &fixture("pg_safe_expand.sql"),
        Stage::Expand,
        Dialect::Postgres,
    );
    assert!(
        safe.iter().all(|f| f.rule != Rule::MissingTimeout),
        "{safe:#?}"
    );
}

#[test]
fn allow_comments_accept_one_statement_and_typos_are_reported() {
    let findings = lint_file(&fixture("pg_allowed.sql"), Stage::Expand, Dialect::Postgres);
    let table = findings
        .iter()
        .find(|f| f.rule == Rule::DropTable)
        .expect("drop-table found");
    assert!(table.allowed && !table.blocks(), "{table:#?}");
    assert_eq!(table.line, 3);
    // `drop-colum` is a typo: the drop stays blocked and the typo is reported.
    let column = findings
        .iter()
        .find(|f| f.rule == Rule::DropColumn)
        .expect("drop-column found");
    assert!(column.blocks());
    let typo = findings
        .iter()
        .find(|f| f.rule == Rule::UnknownAllow)
        .expect("typo reported");
    assert_eq!(typo.line, 4);
    assert!(typo.message.contains("drop-colum"));
}

#[test]
fn undo_expand_may_drop_only_what_expand_created() {
    use cutover::migrate::lint::lint_undo;
    let expand = SqlFile::from_text(
        "expand.sql",
        "expand.sql".into(),
        "ALTER TABLE users ADD COLUMN full_name TEXT;\nCREATE TABLE audit (id INTEGER);\nCREATE INDEX users_full_name ON users (full_name);\n".into(),
    );
    let undo = SqlFile::from_text(
        "undo.sql",
        "undo.sql".into(),
        "DROP INDEX users_full_name;\nALTER TABLE users DROP COLUMN full_name;\nDROP TABLE audit;\nALTER TABLE users DROP COLUMN name;\nDROP TABLE orders;\n".into(),
    );
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let findings = lint_undo(&expand, &undo, dialect);
        let lines: Vec<usize> = findings.iter().map(|f| f.line).collect();
        assert_eq!(lines, [4, 5], "{dialect}: {findings:#?}");
        assert!(
            findings
                .iter()
                .all(|f| f.rule == Rule::UndoDropsForeignObject && f.blocks())
        );
        assert!(
            findings[0].message.contains("column users.name"),
            "{}",
            findings[0].message
        );
        assert!(
            findings[1].message.contains("table orders"),
            "{}",
            findings[1].message
        );
    }
}

#[test]
fn a_trigger_based_postgres_rename_lints_clean_in_every_stage() {
    use cutover::migrate::{MigrationFiles, lint};
    let f = |name: &str, text: &str| SqlFile::from_text(name, name.into(), text.into());
    let files = MigrationFiles {
        expand: f(
            "expand.sql",
            "ALTER TABLE users ADD COLUMN full_name text;\n\
             CREATE FUNCTION users_sync_name() RETURNS trigger AS $$\nBEGIN\n  NEW.full_name := coalesce(NEW.full_name, NEW.name);\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\n\
             CREATE TRIGGER users_sync_name BEFORE INSERT OR UPDATE ON users\n  FOR EACH ROW EXECUTE FUNCTION users_sync_name();\n",
        ),
        contract: Some(f(
            "contract.sql",
            "DROP TRIGGER users_sync_name ON users;\nDROP FUNCTION users_sync_name();\nALTER TABLE users DROP COLUMN name;\n",
        )),
        undo_expand: Some(f(
            "undo.sql",
            "DROP TRIGGER IF EXISTS users_sync_name ON users;\nDROP FUNCTION IF EXISTS users_sync_name();\nALTER TABLE users DROP COLUMN IF EXISTS full_name;\n",
        )),
    };
    let report = lint(&files, Dialect::Postgres);
    let blocking: Vec<_> = report.blocking().collect();
    assert!(blocking.is_empty(), "{blocking:#?}");
}
