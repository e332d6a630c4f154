//! SQL files: loading, the line-ending-normalised checksum, and splitting into statements
//! with their line numbers and `-- cutover:` comments.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::MigrateError;

/// The comment that marks a statement as deliberately allowed: `-- cutover:allow rule[, rule]`.
pub const ALLOW_MARKER: &str = "cutover:allow";
/// A leading comment that makes cutover run the file statement by statement outside a
/// transaction (needed for `CREATE INDEX CONCURRENTLY` on PostgreSQL).
pub const NO_TRANSACTION_MARKER: &str = "cutover:no-transaction";

/// One migration SQL file, read and checksummed.
#[derive(Debug, Clone)]
pub struct SqlFile {
    /// The path as written in the release (used in messages and the history table).
    pub shown: String,
    /// Where it was read from.
    pub path: PathBuf,
    pub text: String,
    /// `v1:sha256:<hex>` of the text with CRLF/CR turned into LF and a BOM removed.
    pub checksum: String,
}

impl SqlFile {
    /// Read `relative` (as written in the release) from `base_dir`.
    pub fn load(base_dir: &Path, relative: &str) -> Result<SqlFile, MigrateError> {
        let path = base_dir.join(relative);
        let bytes = std::fs::read(&path).map_err(|source| MigrateError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| MigrateError::NotUtf8 { path: path.clone() })?;
        Ok(SqlFile::from_text(relative, path, text))
    }

    /// A file from text already in memory.
    pub fn from_text(shown: &str, path: PathBuf, text: String) -> SqlFile {
        let checksum = checksum(&text);
        SqlFile {
            shown: shown.to_string(),
            path,
            text,
            checksum,
        }
    }

    /// Whether the file asks to run outside a transaction (a leading
    /// `-- cutover:no-transaction` comment before the first statement).
    pub fn no_transaction(&self) -> bool {
        let stmts = split(&self.text);
        let head_end = stmts.first().map(|s| s.start).unwrap_or(self.text.len());
        self.text[..head_end].lines().any(|l| {
            l.trim_start().strip_prefix("--").map(str::trim) == Some(NO_TRANSACTION_MARKER)
        })
    }

    pub fn statements(&self) -> Vec<Statement> {
        split(&self.text)
    }
}

/// The checksum recorded in the history table: `v1:sha256:` and the hex SHA-256 of the
/// text with a leading BOM removed and every CRLF or lone CR turned into LF, so a checkout
/// with different line endings does not look like an edit.
pub fn checksum(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("v1:sha256:{hex}")
}

/// One SQL statement of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The statement text without its terminating `;` (comments inside kept).
    pub text: String,
    /// Byte offset of its first character in the file.
    pub start: usize,
    /// Byte offset just past its last character (before the `;`).
    pub end: usize,
    /// 1-based line of its first character.
    pub line: usize,
    /// Rules allowed by `-- cutover:allow` comments before it, inside it, or after it on
    /// the line where it ends.
    pub allow: Vec<String>,
}

impl Statement {
    /// The first word, upper-cased (`ALTER`, `CREATE`, `BEGIN`...).
    pub fn keyword(&self) -> String {
        first_words(&self.text, 1)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// The first `n` words, upper-cased.
    pub fn words(&self, n: usize) -> Vec<String> {
        first_words(&self.text, n)
    }

    /// The first line of the statement, for messages.
    pub fn head(&self) -> String {
        let line = self.text.lines().next().unwrap_or("").trim();
        if line.len() > 80 {
            let mut cut = 77;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &line[..cut])
        } else {
            line.to_string()
        }
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn first_words(text: &str, n: usize) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = strip_comments(text);
    while words.len() < n {
        let t = rest.trim_start();
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        if end == 0 {
            break;
        }
        words.push(t[..end].to_ascii_uppercase());
        rest = t[end..].to_string();
    }
    words
}

fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let code = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push(' ');
    }
    out
}

fn parse_allow(comment: &str, into: &mut Vec<String>) {
    let c = comment.trim();
    if let Some(rest) = c.strip_prefix(ALLOW_MARKER) {
        for r in rest.split([',', ' ', '\t']) {
            let r = r.trim();
            if !r.is_empty() {
                into.push(r.to_string());
            }
        }
    }
}

/// Split SQL text into statements on `;`, skipping `;` inside quotes ('...', "..."),
/// dollar quotes (`$$...$$`, `$tag$...$tag$`), comments, and the `BEGIN ... END` body of
/// a `CREATE TRIGGER`.
pub fn split(text: &str) -> Vec<Statement> {
    let bytes = text.as_bytes();
    let mut out: Vec<Statement> = Vec::new();
    let mut pending_allow: Vec<String> = Vec::new();
    let mut start: Option<usize> = None;
    let mut allow_in: Vec<String> = Vec::new();
    let mut depth: i32 = 0;
    let mut is_trigger: Option<bool> = None;
    // Index in `out` of the statement that ended on the current line (for trailing comments).
    let mut ended_on_line: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                ended_on_line = None;
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = text[i..].find('\n').map(|e| i + e).unwrap_or(text.len());
                let comment = &text[i + 2..end];
                if start.is_some() {
                    parse_allow(comment, &mut allow_in);
                } else if let Some(idx) = ended_on_line {
                    parse_allow(comment, &mut out[idx].allow);
                } else {
                    parse_allow(comment, &mut pending_allow);
                }
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // An unterminated comment runs to the end of the file: its body is all of
                // it (not the file less two bytes, which may cut a character in half).
                let close = text[i + 2..].find("*/").map(|e| i + 2 + e);
                let (body_end, end) = match close {
                    Some(c) => (c, c + 2),
                    None => (text.len(), text.len()),
                };
                let body = text[i + 2..body_end].to_string();
                if start.is_some() {
                    parse_allow(&body, &mut allow_in);
                } else {
                    parse_allow(&body, &mut pending_allow);
                }
                i = end;
            }
            b'\'' | b'"' | b'`' => {
                start.get_or_insert(i);
                // PostgreSQL escape strings (E'...') take backslash escapes.
                let escapes = c == b'\'' && i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                let mut j = i + 1;
                while j < bytes.len() {
                    if escapes && bytes[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if bytes[j] == c {
                        if bytes.get(j + 1) == Some(&c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                i = (j + 1).min(bytes.len());
            }
            b'$' => {
                start.get_or_insert(i);
                // A dollar quote: $tag$ where tag is empty or an identifier.
                let tag_end = text[i + 1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map(|e| i + 1 + e);
                match tag_end {
                    Some(te)
                        if bytes[te] == b'$'
                            && !bytes[i + 1..te].first().is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &text[i..=te];
                        let close = text[te + 1..].find(tag).map(|e| te + 1 + e + tag.len());
                        i = close.unwrap_or(text.len());
                    }
                    _ => i += 1,
                }
            }
            b';' if depth <= 0 => {
                if let Some(s) = start.take() {
                    let mut allow = std::mem::take(&mut pending_allow);
                    allow.append(&mut allow_in);
                    let stmt_text = text[s..i].trim_end().to_string();
                    out.push(Statement {
                        end: s + stmt_text.len(),
                        text: stmt_text,
                        start: s,
                        line: line_of(text, s),
                        allow,
                    });
                    ended_on_line = Some(out.len() - 1);
                }
                depth = 0;
                is_trigger = None;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let s = *start.get_or_insert(i);
                let end = text[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map(|e| i + e)
                    .unwrap_or(text.len());
                let word = text[i..end].to_ascii_uppercase();
                if is_trigger.is_none() {
                    let w = first_words(&text[s..end], 5);
                    if w.first().map(String::as_str) != Some("CREATE") {
                        is_trigger = Some(false);
                    } else if let Some(x) = w
                        .iter()
                        .skip(1)
                        .find(|x| !matches!(x.as_str(), "TEMP" | "TEMPORARY" | "OR" | "REPLACE"))
                    {
                        is_trigger = Some(x == "TRIGGER");
                    }
                }
                if is_trigger == Some(true) {
                    match word.as_str() {
                        "BEGIN" | "CASE" => depth += 1,
                        "END" => depth -= 1,
                        _ => {}
                    }
                }
                i = end;
            }
            _ => {
                start.get_or_insert(i);
                i += 1;
            }
        }
    }
    if let Some(s) = start {
        let stmt_text = text[s..].trim_end().to_string();
        if !stmt_text.is_empty() {
            let mut allow = pending_allow;
            allow.append(&mut allow_in);
            out.push(Statement {
                end: s + stmt_text.len(),
                text: stmt_text,
                start: s,
                line: line_of(text, s),
                allow,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_line_endings_but_not_content() {
        let lf = checksum("ALTER TABLE t ADD COLUMN c text;\nSELECT 1;\n");
        let crlf = checksum("ALTER TABLE t ADD COLUMN c text;\r\nSELECT 1;\r\n");
        let bom = checksum("\u{feff}ALTER TABLE t ADD COLUMN c text;\nSELECT 1;\n");
        assert_eq!(lf, crlf);
        assert_eq!(lf, bom);
        assert!(lf.starts_with("v1:sha256:") && lf.len() == 10 + 64);
        assert_ne!(
            lf,
            checksum("ALTER TABLE t ADD COLUMN d text;\nSELECT 1;\n")
        );
    }

    #[test]
    fn splits_with_lines_quotes_and_comments() {
        let sql = "-- header\nCREATE TABLE a (x text default ';');\n\n/* c; */ INSERT INTO a VALUES ('it''s; fine');\nSELECT $$;$$, $f$ ; $f$\n";
        let s = split(sql);
        assert_eq!(s.len(), 3, "{s:#?}");
        assert_eq!(s[0].line, 2);
        assert_eq!(s[0].keyword(), "CREATE");
        assert_eq!(s[1].line, 4);
        assert_eq!(s[1].text, "INSERT INTO a VALUES ('it''s; fine')");
        assert_eq!(s[2].line, 5);
        assert!(s[2].text.ends_with("$f$ ; $f$"));
        let e = split("INSERT INTO a VALUES (E'it\\'s; fine');\nSELECT 1;");
        assert_eq!(e.len(), 2, "{e:#?}");
    }

    #[test]
    fn trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a\nWHEN NEW.x IS NULL\nBEGIN\n  UPDATE a SET x = CASE WHEN 1 THEN 'y' END WHERE rowid = NEW.rowid;\n  SELECT 1;\nEND;\nCREATE TABLE b (y int);";
        let s = split(sql);
        assert_eq!(s.len(), 2, "{s:#?}");
        assert!(s[0].text.ends_with("END"));
        assert_eq!(s[1].line, 7);
        // A transaction-control BEGIN is its own statement.
        assert_eq!(split("BEGIN; CREATE TABLE c (z int); COMMIT;").len(), 3);
    }

    #[test]
    fn allow_comments_attach_to_their_statement() {
        let sql = "-- cutover:allow drop-column\nALTER TABLE a DROP COLUMN x;\nALTER TABLE a DROP COLUMN y; -- cutover:allow drop-column, rename-table\nALTER TABLE a DROP COLUMN z;\n";
        let s = split(sql);
        assert_eq!(s[0].allow, vec!["drop-column"]);
        assert_eq!(s[1].allow, vec!["drop-column", "rename-table"]);
        assert!(s[2].allow.is_empty());
    }

    #[test]
    fn an_unterminated_comment_ending_in_a_multibyte_character_is_its_own_body() {
        // Found by hand, then by the `migrate_sql` fuzz target: the body's end was the
        // file's length less two bytes, inside `本`.
        let s = split("SELECT 1;\n/* 日本");
        assert_eq!(s.len(), 1, "{s:#?}");
        assert_eq!(s[0].text, "SELECT 1");
        let s = split("/* cutover:allow drop-column 日本\nALTER TABLE a DROP COLUMN b;");
        assert!(s.is_empty(), "all of it is the comment: {s:#?}");
        let f = SqlFile::from_text("x.sql", "x.sql".into(), "/* 日本".into());
        assert!(f.statements().is_empty());
        assert!(!f.no_transaction());
    }

    #[test]
    fn no_transaction_marker_must_lead() {
        let f = |t: &str| SqlFile::from_text("x.sql", "x.sql".into(), t.into()).no_transaction();
        assert!(f(
            "-- cutover:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (x);"
        ));
        assert!(!f("CREATE INDEX i ON a (x);\n-- cutover:no-transaction\n"));
    }
}
