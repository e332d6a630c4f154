//! Located problems in a release file: `FILE:LINE:COL: message`, the offending line with a
//! caret, and a hint that says how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column (columns count characters, not bytes).
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The text of the offending line and the caret's width, for display.
    pub excerpt: Option<(String, usize)>,
}

impl Diagnostic {
    /// `FILE:LINE:COL: message` — the first line of the display form, handy in tests.
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl Diagnostic {
    /// Hide the release's secret values (an env value, a webhook URL, a smoke argument on
    /// the offending line): `***` in the message and hint, and in the excerpt as many `*`
    /// as the value has characters, so the caret still points at the right column.
    pub fn hide(&mut self, secrets: &crate::secrets::Secrets) {
        self.message = secrets.scrub(&self.message);
        if let Some(h) = self.hint.as_mut() {
            *h = secrets.scrub(h);
        }
        if let Some((line, _)) = self.excerpt.as_mut() {
            *line = secrets.scrub_keeping_width(line);
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        if let Some((text, width)) = &self.excerpt {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, " {num} | {text}")?;
            writeln!(
                f,
                " {pad} | {}{}",
                " ".repeat(self.col.saturating_sub(1)),
                "^".repeat((*width).max(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of a source text to lines and columns.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub fn new(file: &Path, text: &str) -> SourceMap {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            file: file.to_path_buf(),
            text: text.to_string(),
            line_starts,
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line + 1, col)
    }

    fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).map_or(self.text.len(), |e| *e);
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }

    /// A diagnostic at `span` (a byte range; `None` means the start of the file).
    pub fn diagnostic(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let span = span.unwrap_or(0..0);
        let (line, col) = self.position(span.start);
        let text = self.line_text(line).to_string();
        // The caret covers the span on its first line.
        let line_end_col = text.chars().count() + 1;
        let (_, end_col) = self.position(span.end.max(span.start));
        let (end_line, _) = self.position(span.end.max(span.start));
        let width = if end_line == line {
            end_col.saturating_sub(col)
        } else {
            line_end_col.saturating_sub(col)
        };
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
            hint,
            excerpt: if text.is_empty() {
                None
            } else {
                Some((text, width))
            },
        }
    }
}

/// The known word nearest to `word`, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&w, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(w.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let m = SourceMap::new(Path::new("r.toml"), "a = 1\nbé = \"x\"\n");
        assert_eq!(m.position(0), (1, 1));
        assert_eq!(m.position(6), (2, 1));
        // 'é' is two bytes; the '=' after it is the 4th character.
        assert_eq!(m.position(10), (2, 4));
    }

    #[test]
    fn suggests_the_nearest_key() {
        let keys = ["depends_on", "strategy", "steps", "name"];
        assert_eq!(nearest("dependson", &keys), Some("depends_on"));
        assert_eq!(nearest("stratgey", &keys), Some("strategy"));
        assert_eq!(nearest("completely_else", &keys), None);
    }

    #[test]
    fn renders_excerpt_with_caret_and_hint() {
        let m = SourceMap::new(Path::new("r.toml"), "x = 1\nstratgey = \"canary\"\n");
        let d = m.diagnostic(
            Some(6..14),
            "unknown key `stratgey`",
            Some("did you mean `strategy`?".into()),
        );
        let text = d.to_string();
        assert!(
            text.starts_with("r.toml:2:1: unknown key `stratgey`\n"),
            "{text}"
        );
        assert!(
            text.contains(" 2 | stratgey = \"canary\"\n   | ^^^^^^^^\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  hint: did you mean `strategy`?\n"),
            "{text}"
        );
    }

    #[test]
    fn a_problem_on_a_line_holding_a_secret_never_shows_it() {
        let text = r#"
[release]
name = "r"
platform = "local"
[notify]
webhooks = ["ftp://hooks.example.com/services/HOOKMARK"]
[[service]]
name = "api"
strategy = "rolling"
[[service.smoke]]
name = "s"
command = ["probe", "--token", "ARGVMARK", "{url}"]
[service.local]
listen = "127.0.0.1:18999"
command = ["cutover", "demo-service", "--port", "{port}"]
current = { revision = "v1", env = { API_KEY = "OLDENVMARK", N = 5 } }
target = { revision = "v2", env = { API_KEY = "NEWENVMARK" }, bogus = 1 }
"#;
        let diags =
            crate::release::load_str(Path::new("r.toml"), text, Path::new(".")).unwrap_err();
        let shown: String = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(diags.len(), 3, "{shown}");
        for m in ["HOOKMARK", "OLDENVMARK", "NEWENVMARK"] {
            assert!(!shown.contains(m), "{m} shown: {shown}");
        }
        // The caret still points under the offending text (the masked value keeps its width).
        assert!(
            shown.contains(
                " 16 | current = { revision = \"v1\", env = { API_KEY = \"**********\", N = 5 } }\n    |                                                                  ^\n"
            ),
            "{shown}"
        );
        assert!(shown.contains("webhook 0 is not an http(s) URL"), "{shown}");
    }
}
