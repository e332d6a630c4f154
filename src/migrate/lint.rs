//! Lint a migration's SQL before anything runs. PostgreSQL files go through the squawk
//! linter (its rules mapped to cutover's rule names and explanations); SQLite files are
//! parsed with `sqlparser` and checked by the same rules. Every finding names `file:line`,
//! why it breaks the revision that is still serving, and the safe alternative. A
//! `-- cutover:allow RULE` comment on a statement accepts a finding deliberately.

use std::fmt;

use serde::Serialize;
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, ObjectType, Statement as Ast,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::Stage;
use super::sql::{SqlFile, Statement, line_of};
use super::url::Dialect;

/// What a finding is about. The names (`drop-column`...) are what `-- cutover:allow` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    DropColumn,
    DropTable,
    RenameColumn,
    RenameTable,
    TypeChange,
    SetNotNull,
    NotNullWithoutDefault,
    NonConcurrentIndex,
    ConcurrentIndexInTransaction,
    ConstraintNotValid,
    UniqueConstraint,
    DefaultRewrite,
    MissingTimeout,
    ExplicitTransaction,
    UndoDropsForeignObject,
    Unparsed,
    UnknownAllow,
}

impl Rule {
    pub const ALL: &'static [Rule] = &[
        Rule::DropColumn,
        Rule::DropTable,
        Rule::RenameColumn,
        Rule::RenameTable,
        Rule::TypeChange,
        Rule::SetNotNull,
        Rule::NotNullWithoutDefault,
        Rule::NonConcurrentIndex,
        Rule::ConcurrentIndexInTransaction,
        Rule::ConstraintNotValid,
        Rule::UniqueConstraint,
        Rule::DefaultRewrite,
        Rule::MissingTimeout,
        Rule::ExplicitTransaction,
        Rule::UndoDropsForeignObject,
        Rule::Unparsed,
        Rule::UnknownAllow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::DropColumn => "drop-column",
            Rule::DropTable => "drop-table",
            Rule::RenameColumn => "rename-column",
            Rule::RenameTable => "rename-table",
            Rule::TypeChange => "type-change",
            Rule::SetNotNull => "set-not-null",
            Rule::NotNullWithoutDefault => "not-null-without-default",
            Rule::NonConcurrentIndex => "non-concurrent-index",
            Rule::ConcurrentIndexInTransaction => "concurrent-index-in-transaction",
            Rule::ConstraintNotValid => "constraint-not-valid",
            Rule::UniqueConstraint => "unique-constraint",
            Rule::DefaultRewrite => "default-rewrite",
            Rule::MissingTimeout => "missing-timeout",
            Rule::ExplicitTransaction => "explicit-transaction",
            Rule::UndoDropsForeignObject => "undo-drops-foreign-object",
            Rule::Unparsed => "unparsed",
            Rule::UnknownAllow => "unknown-allow",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// Rules about compatibility with the revision still serving: they apply to `expand`
    /// only (contract and undo_expand run when that revision is gone or being restored).
    fn compat_only(self) -> bool {
        matches!(
            self,
            Rule::DropColumn
                | Rule::DropTable
                | Rule::RenameColumn
                | Rule::RenameTable
                | Rule::NotNullWithoutDefault
        )
    }

    /// Why it breaks the running revision (or the service while it runs).
    pub fn why(self) -> &'static str {
        match self {
            Rule::DropColumn => {
                "the revision still serving reads and writes this column; its queries fail with \"no such column\" the moment expand commits, and the old revision cannot be rolled back to"
            }
            Rule::DropTable => {
                "the revision still serving uses this table; every query on it fails once expand commits, and its data is gone"
            }
            Rule::RenameColumn => {
                "the revision still serving uses the old name; its reads and inserts fail at once (a naive rename is the classic outage)"
            }
            Rule::RenameTable => {
                "the revision still serving uses the old table name; all its queries on the table fail at once"
            }
            Rule::TypeChange => {
                "changing a column's type rewrites the table under an exclusive lock (every query waits), and the old revision may write values the new type rejects"
            }
            Rule::SetNotNull => {
                "SET NOT NULL scans the whole table under an exclusive lock, and the old revision's inserts that leave the column out start failing"
            }
            Rule::NotNullWithoutDefault => {
                "the old revision's INSERTs do not name this column; without a DEFAULT they fail with a NOT NULL violation (and the ALTER itself fails on a non-empty table)"
            }
            Rule::NonConcurrentIndex => {
                "CREATE/DROP INDEX without CONCURRENTLY blocks every write to the table for the whole index build"
            }
            Rule::ConcurrentIndexInTransaction => {
                "CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block; cutover runs a file in one transaction unless told otherwise, so the stage would fail"
            }
            Rule::ConstraintNotValid => {
                "adding a constraint validates every row while holding a lock that blocks writes"
            }
            Rule::UniqueConstraint => {
                "adding a UNIQUE constraint builds its index under an exclusive lock, blocking reads and writes"
            }
            Rule::DefaultRewrite => {
                "a volatile DEFAULT makes PostgreSQL rewrite the whole table under an exclusive lock"
            }
            Rule::MissingTimeout => {
                "without lock_timeout an ALTER waiting for a lock makes every later query on the table queue behind it"
            }
            Rule::ExplicitTransaction => {
                "cutover runs a stage and its history row in one transaction; a COMMIT/BEGIN in the file splits that, so a crash could apply statements twice"
            }
            Rule::UndoDropsForeignObject => {
                "undo_expand runs when a service rolled back and its old revision serves again; dropping something expand did not create destroys schema or data that revision uses"
            }
            Rule::Unparsed => "the linter could not parse this statement, so it could not check it",
            Rule::UnknownAllow => {
                "an allow comment naming an unknown rule allows nothing (a typo would silently keep the statement blocked or hide intent)"
            }
        }
    }

    /// The safe alternative.
    pub fn hint(self) -> &'static str {
        match self {
            Rule::DropColumn => {
                "drop the column in the contract file, which runs after every listed service is promoted"
            }
            Rule::DropTable => {
                "drop the table in the contract file, after every listed service is promoted"
            }
            Rule::RenameColumn => {
                "expand: ADD the new column, backfill it and keep both in sync (trigger or dual writes); contract: drop the old column"
            }
            Rule::RenameTable => {
                "expand: create the new table (or a view with the new name) and keep both in sync; contract: drop the old one"
            }
            Rule::TypeChange => {
                "expand: add a new column of the new type, backfill and sync it; contract: drop the old column"
            }
            Rule::SetNotNull => {
                "add CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT, then SET NOT NULL (PostgreSQL 12+ skips the scan); do it in contract once every writer sets the column"
            }
            Rule::NotNullWithoutDefault => {
                "give the column a DEFAULT, or add it nullable in expand and make it NOT NULL in contract"
            }
            Rule::NonConcurrentIndex => {
                "use CREATE INDEX CONCURRENTLY (and DROP INDEX CONCURRENTLY) in a file whose first line is `-- cutover:no-transaction`"
            }
            Rule::ConcurrentIndexInTransaction => {
                "make `-- cutover:no-transaction` the file's first line (cutover then runs it statement by statement, resuming after the last finished one)"
            }
            Rule::ConstraintNotValid => {
                "add the constraint NOT VALID, then run ALTER TABLE ... VALIDATE CONSTRAINT in a later statement"
            }
            Rule::UniqueConstraint => {
                "CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX"
            }
            Rule::DefaultRewrite => {
                "add the column without a default (or with a constant), then backfill in batches"
            }
            Rule::MissingTimeout => {
                "nothing to do when cutover runs the file (it sets lock_timeout and statement_timeout and retries); if it may be run by hand, start it with SET lock_timeout = '2s'"
            }
            Rule::ExplicitTransaction => {
                "remove BEGIN/COMMIT; use `-- cutover:no-transaction` for statements that cannot run in a transaction"
            }
            Rule::Unparsed => {
                "check the statement by hand; the dry run will still execute it on a copy"
            }
            Rule::UndoDropsForeignObject => {
                "drop only what the expand file adds (its new tables, columns, indexes, views and triggers)"
            }
            Rule::UnknownAllow => {
                "use one of the rule names cutover reports (e.g. drop-column, rename-column)"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Refuses the migration unless allowed.
    Error,
    /// Reported; does not refuse.
    Warning,
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub stage: Stage,
    /// The file as written in the release.
    pub file: String,
    pub line: usize,
    /// The first line of the statement.
    pub statement: String,
    /// What the statement does.
    pub message: String,
    pub why: &'static str,
    pub hint: &'static str,
    /// Accepted by a `-- cutover:allow` comment on the statement.
    pub allowed: bool,
}

impl Finding {
    /// Whether this finding refuses the migration.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Error && !self.allowed
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match (self.severity, self.allowed) {
            (_, true) => "allowed",
            (Severity::Error, _) => "error",
            (Severity::Warning, _) => "warning",
        };
        writeln!(
            f,
            "{}:{}: {sev}[{}] ({}) {}",
            self.file, self.line, self.rule, self.stage, self.message
        )?;
        writeln!(f, "  statement: {}", self.statement)?;
        writeln!(f, "  why: {}", self.why)?;
        writeln!(f, "  fix: {}", self.hint)
    }
}

/// Lint one file for one stage.
pub fn lint_file(file: &SqlFile, stage: Stage, dialect: Dialect) -> Vec<Finding> {
    let stmts = file.statements();
    let mut raw: Vec<(Rule, usize, String)> = Vec::new(); // rule, byte offset, message
    for s in &stmts {
        let kw = s.keyword();
        if matches!(
            kw.as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK" | "END" | "START" | "SAVEPOINT" | "RELEASE"
        ) {
            raw.push((
                Rule::ExplicitTransaction,
                s.start,
                format!("transaction control statement {kw}"),
            ));
        }
    }
    if dialect == Dialect::Postgres && !file.no_transaction() {
        // cutover wraps a file in a transaction, so even a lone CONCURRENTLY statement
        // would fail (squawk only flags it when the file has several statements).
        for s in &stmts {
            let words = s.words(6);
            if matches!(
                words.first().map(String::as_str),
                Some("CREATE" | "DROP" | "REINDEX")
            ) && words.iter().any(|w| w == "CONCURRENTLY")
            {
                raw.push((
                    Rule::ConcurrentIndexInTransaction,
                    s.start,
                    format!(
                        "{} ... CONCURRENTLY inside cutover's stage transaction",
                        words[0]
                    ),
                ));
            }
        }
    }
    match dialect {
        Dialect::Postgres => lint_postgres(file, &mut raw),
        Dialect::Sqlite => lint_sqlite(&stmts, &mut raw),
    }
    findings_from(file, stage, &stmts, raw)
}

fn findings_from(
    file: &SqlFile,
    stage: Stage,
    stmts: &[Statement],
    raw: Vec<(Rule, usize, String)>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (rule, offset, message) in raw {
        if stage != Stage::Expand && rule.compat_only() {
            continue;
        }
        let stmt = stmts
            .iter()
            .find(|s| s.start <= offset && offset <= s.end)
            .or_else(|| stmts.iter().rev().find(|s| s.start <= offset));
        let allowed = stmt.is_some_and(|s| s.allow.iter().any(|a| a == rule.name()));
        let severity = match rule {
            Rule::MissingTimeout | Rule::Unparsed | Rule::UnknownAllow => Severity::Warning,
            _ => Severity::Error,
        };
        findings.push(Finding {
            rule,
            severity,
            stage,
            file: file.shown.clone(),
            line: line_of(&file.text, offset),
            statement: stmt.map(Statement::head).unwrap_or_default(),
            message,
            why: rule.why(),
            hint: rule.hint(),
            allowed,
        });
    }
    for s in stmts {
        for a in &s.allow {
            if Rule::from_name(a).is_none() {
                findings.push(Finding {
                    rule: Rule::UnknownAllow,
                    severity: Severity::Warning,
                    stage,
                    file: file.shown.clone(),
                    line: s.line,
                    statement: s.head(),
                    message: format!("`-- cutover:allow {a}` names no known rule"),
                    why: Rule::UnknownAllow.why(),
                    hint: Rule::UnknownAllow.hint(),
                    allowed: false,
                });
            }
        }
    }
    findings.sort_by_key(|a| (a.line, a.rule));
    findings.dedup_by(|a, b| a.line == b.line && a.rule == b.rule);
    findings
}

fn lint_postgres(file: &SqlFile, raw: &mut Vec<(Rule, usize, String)>) {
    use squawk_linter::{Linter, Rule as Sq};
    let include = [
        Sq::RequireConcurrentIndexCreation,
        Sq::RequireConcurrentIndexDeletion,
        Sq::ConstraintMissingNotValid,
        Sq::AddingForeignKeyConstraint,
        Sq::ChangingColumnType,
        Sq::AddingNotNullableField,
        Sq::RenamingColumn,
        Sq::RenamingTable,
        Sq::DisallowedUniqueConstraint,
        Sq::BanDropColumn,
        Sq::BanDropTable,
        Sq::AddingRequiredField,
        Sq::AddingFieldWithDefault,
        Sq::RequireLockTimeout,
        Sq::RequireStatementTimeout,
    ];
    let mut linter = Linter::from(include);
    linter.settings.assume_in_transaction = !file.no_transaction();
    let parse = squawk_syntax::SourceFile::parse(&file.text);
    for e in parse.errors() {
        raw.push((
            Rule::Unparsed,
            usize::from(e.range().start()),
            format!("PostgreSQL parse error: {}", e.message()),
        ));
    }
    let mut lock_timeout_reported = false;
    let mut statement_timeout_reported = false;
    for v in linter.lint(&parse, &file.text) {
        let rule = match v.code {
            Sq::RequireConcurrentIndexCreation | Sq::RequireConcurrentIndexDeletion => {
                Rule::NonConcurrentIndex
            }
            Sq::ConstraintMissingNotValid | Sq::AddingForeignKeyConstraint => {
                Rule::ConstraintNotValid
            }
            Sq::ChangingColumnType => Rule::TypeChange,
            Sq::AddingNotNullableField => Rule::SetNotNull,
            Sq::RenamingColumn => Rule::RenameColumn,
            Sq::RenamingTable => Rule::RenameTable,
            Sq::DisallowedUniqueConstraint => Rule::UniqueConstraint,
            Sq::BanDropColumn => Rule::DropColumn,
            Sq::BanDropTable => Rule::DropTable,
            Sq::AddingRequiredField => Rule::NotNullWithoutDefault,
            Sq::AddingFieldWithDefault => Rule::DefaultRewrite,
            Sq::RequireLockTimeout => {
                if lock_timeout_reported {
                    continue;
                }
                lock_timeout_reported = true;
                Rule::MissingTimeout
            }
            Sq::RequireStatementTimeout => {
                if statement_timeout_reported {
                    continue;
                }
                statement_timeout_reported = true;
                Rule::MissingTimeout
            }
            _ => continue,
        };
        raw.push((rule, usize::from(v.text_range.start()), v.message));
    }
}

fn lint_sqlite(stmts: &[Statement], raw: &mut Vec<(Rule, usize, String)>) {
    let dialect = SQLiteDialect {};
    for s in stmts {
        let kw = s.keyword();
        if matches!(
            kw.as_str(),
            "BEGIN" | "COMMIT" | "ROLLBACK" | "END" | "SAVEPOINT" | "RELEASE"
        ) {
            continue;
        }
        let parsed = match Parser::parse_sql(&dialect, &s.text) {
            Ok(p) => p,
            Err(e) => {
                // sqlparser does not know every SQLite form (trigger WHEN clauses, some
                // pragmas); report and let the dry run execute it.
                let first = s
                    .text
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ");
                raw.push((
                    Rule::Unparsed,
                    s.start,
                    format!("could not parse `{first} ...` ({e})"),
                ));
                continue;
            }
        };
        for ast in parsed {
            check_sqlite_stmt(&ast, s.start, raw);
        }
    }
}

fn check_sqlite_stmt(ast: &Ast, at: usize, raw: &mut Vec<(Rule, usize, String)>) {
    match ast {
        Ast::AlterTable(alter) => {
            let table = alter.name.to_string();
            for op in &alter.operations {
                match op {
                    AlterTableOperation::DropColumn { column_names, .. } => {
                        for c in column_names {
                            raw.push((Rule::DropColumn, at, format!("drops column {table}.{c}")));
                        }
                    }
                    AlterTableOperation::RenameColumn {
                        old_column_name,
                        new_column_name,
                    } => raw.push((
                        Rule::RenameColumn,
                        at,
                        format!("renames column {table}.{old_column_name} to {new_column_name}"),
                    )),
                    AlterTableOperation::RenameTable { table_name } => raw.push((
                        Rule::RenameTable,
                        at,
                        format!("renames table {table} to {table_name}"),
                    )),
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        let not_null = column_def
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull));
                        let has_default = column_def.options.iter().any(|o| {
                            matches!(
                                o.option,
                                ColumnOption::Default(_) | ColumnOption::Generated { .. }
                            )
                        });
                        if not_null && !has_default {
                            raw.push((
                                Rule::NotNullWithoutDefault,
                                at,
                                format!(
                                    "adds NOT NULL column {table}.{} without a DEFAULT",
                                    column_def.name
                                ),
                            ));
                        }
                    }
                    AlterTableOperation::AlterColumn { column_name, op } => match op {
                        AlterColumnOperation::SetNotNull => raw.push((
                            Rule::SetNotNull,
                            at,
                            format!("sets {table}.{column_name} NOT NULL"),
                        )),
                        AlterColumnOperation::SetDataType { data_type, .. } => raw.push((
                            Rule::TypeChange,
                            at,
                            format!("changes the type of {table}.{column_name} to {data_type}"),
                        )),
                        _ => {}
                    },
                    AlterTableOperation::ChangeColumn { old_name, .. }
                    | AlterTableOperation::ModifyColumn {
                        col_name: old_name, ..
                    } => raw.push((
                        Rule::TypeChange,
                        at,
                        format!("changes the definition of {table}.{old_name}"),
                    )),
                    _ => {}
                }
            }
        }
        Ast::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            for n in names {
                raw.push((Rule::DropTable, at, format!("drops table {n}")));
            }
        }
        _ => {}
    }
}

fn object_name(n: &impl std::fmt::Display) -> String {
    let full = n.to_string();
    let last = full.rsplit('.').next().unwrap_or(&full);
    last.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
        .to_ascii_lowercase()
}

fn parse_stmts(file: &SqlFile, dialect: Dialect) -> Vec<(usize, Ast)> {
    let pg = sqlparser::dialect::PostgreSqlDialect {};
    let lite = SQLiteDialect {};
    let mut out = Vec::new();
    for s in file.statements() {
        let parsed = match dialect {
            Dialect::Postgres => Parser::parse_sql(&pg, &s.text),
            Dialect::Sqlite => Parser::parse_sql(&lite, &s.text),
        };
        if let Ok(p) = parsed {
            out.extend(p.into_iter().map(|a| (s.start, a)));
        }
    }
    out
}

/// `undo_expand` may drop only what `expand` created: anything else belongs to the
/// revision that is serving again after the rollback.
pub fn lint_undo(expand: &SqlFile, undo: &SqlFile, dialect: Dialect) -> Vec<Finding> {
    use std::collections::HashSet;
    let mut created: HashSet<String> = HashSet::new();
    let mut new_tables: HashSet<String> = HashSet::new();
    for (_, ast) in parse_stmts(expand, dialect) {
        match ast {
            Ast::CreateTable(ct) => {
                new_tables.insert(object_name(&ct.name));
                created.insert(format!("table {}", object_name(&ct.name)));
            }
            Ast::CreateView(cv) => {
                created.insert(format!("view {}", object_name(&cv.name)));
            }
            Ast::CreateIndex(ci) => {
                if let Some(n) = &ci.name {
                    created.insert(format!("index {}", object_name(n)));
                }
            }
            Ast::CreateTrigger(ct) => {
                created.insert(format!("trigger {}", object_name(&ct.name)));
            }
            Ast::AlterTable(at) => {
                let t = object_name(&at.name);
                for op in &at.operations {
                    if let AlterTableOperation::AddColumn { column_def, .. } = op {
                        created.insert(format!("column {t}.{}", object_name(&column_def.name)));
                    }
                }
            }
            _ => {}
        }
    }
    let mut raw = Vec::new();
    let mut check = |what: String, at: usize| {
        if !created.contains(&what) {
            raw.push((
                Rule::UndoDropsForeignObject,
                at,
                format!("drops {what}, which the expand file does not create"),
            ));
        }
    };
    for (at, ast) in parse_stmts(undo, dialect) {
        match ast {
            Ast::Drop {
                object_type, names, ..
            } => {
                let kind = match object_type {
                    ObjectType::Table => "table",
                    ObjectType::View => "view",
                    ObjectType::Index => "index",
                    _ => continue,
                };
                for n in names {
                    check(format!("{kind} {}", object_name(&n)), at);
                }
            }
            Ast::DropTrigger(dt) => check(format!("trigger {}", object_name(&dt.trigger_name)), at),
            Ast::AlterTable(alter) => {
                let t = object_name(&alter.name);
                if new_tables.contains(&t) {
                    continue;
                }
                for op in &alter.operations {
                    if let AlterTableOperation::DropColumn { column_names, .. } = op {
                        for c in column_names {
                            check(format!("column {t}.{}", object_name(c)), at);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    findings_from(undo, Stage::UndoExpand, &undo.statements(), raw)
        .into_iter()
        .filter(|f| f.rule == Rule::UndoDropsForeignObject)
        .collect()
}

/// All findings of a migration's files (expand, contract, undo_expand).
pub fn lint(files: &super::MigrationFiles, dialect: Dialect) -> LintReport {
    let mut findings = lint_file(&files.expand, Stage::Expand, dialect);
    if let Some(c) = &files.contract {
        findings.extend(lint_file(c, Stage::Contract, dialect));
    }
    if let Some(u) = &files.undo_expand {
        findings.extend(lint_file(u, Stage::UndoExpand, dialect));
        findings.extend(lint_undo(&files.expand, u, dialect));
    }
    LintReport { findings }
}

/// The result of linting a migration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LintReport {
    pub findings: Vec<Finding>,
}

impl LintReport {
    /// Findings that refuse the migration.
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.blocks())
    }

    pub fn is_clean(&self) -> bool {
        self.blocking().next().is_none()
    }
}
