//! The SQL statement splitter and the migration linter, as `cutover migrate lint FILE.sql`
//! and the engine's lint stage run them, on any UTF-8 text (the CLI refuses other bytes
//! with a message). The first byte picks the dialect and stage; a NUL in the rest splits it
//! into an expand file and an `undo_expand` file for the undo lint.
#![no_main]

use std::path::PathBuf;

use cutover::migrate::sql::{SqlFile, line_of, split};
use cutover::migrate::{Dialect, Stage, lint::lint_undo, lint_file};
use libfuzzer_sys::fuzz_target;

fn file(text: &str) -> SqlFile {
    SqlFile::from_text("fuzz.sql", PathBuf::from("fuzz.sql"), text.to_string())
}

fn statements(text: &str) {
    let mut last_end = 0;
    for s in split(text) {
        // Offsets are real: the statement is the text between them, in file order.
        assert!(
            s.start >= last_end && s.start <= s.end && s.end <= text.len(),
            "{s:?}"
        );
        assert_eq!(text.get(s.start..s.end), Some(s.text.as_str()), "{s:?}");
        assert_eq!(s.line, line_of(text, s.start));
        last_end = s.end;
        let _ = (s.keyword(), s.words(4), s.head());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let dialect = if mode & 1 == 0 {
        Dialect::Postgres
    } else {
        Dialect::Sqlite
    };
    let stage = match (mode >> 1) % 3 {
        0 => Stage::Expand,
        1 => Stage::Contract,
        _ => Stage::UndoExpand,
    };
    statements(text);
    let f = file(text);
    let _ = f.no_transaction();
    for finding in lint_file(&f, stage, dialect) {
        let _ = finding.to_string();
    }
    if let Some((expand, undo)) = text.split_once('\0') {
        for finding in lint_undo(&file(expand), &file(undo), dialect) {
            let _ = finding.to_string();
        }
    }
});
