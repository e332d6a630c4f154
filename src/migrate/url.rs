//! Database URLs as written in a release (`sqlite://PATH`, `postgres://...`, `env:VAR`) and
//! their redacted form. Every message and error shows a [`RedactedUrl`], never the raw URL.

use std::fmt;
use std::path::{Path, PathBuf};

use super::MigrateError;

/// The kind of database behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database URL fit for printing: the password (in the user info or a `password=`
/// query parameter) is replaced by `***`. For `env:VAR` it shows the variable's name and
/// the redacted URL it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl {
    shown: String,
}

impl RedactedUrl {
    /// Redact a raw URL (never stored).
    pub fn new(raw: &str) -> RedactedUrl {
        RedactedUrl { shown: redact(raw) }
    }

    fn from_env(var: &str, raw: &str) -> RedactedUrl {
        RedactedUrl {
            shown: format!("env:{var} ({})", redact(raw)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.shown)
    }
}

impl serde::Serialize for RedactedUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown)
    }
}

fn redact(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return redact_key_values(raw);
    };
    let (scheme, rest) = raw.split_at(scheme_end + 3);
    // The user info ends at the *last* '@': a password may hold '@', '/' or '?' unencoded,
    // so cutting the authority at the first '/' would leave part of it in the "path".
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let (host, tail) = after.split_at(host_end);
    let userinfo = match userinfo {
        Some(u) => match u.find(':') {
            Some(colon) if !u[..colon].contains(['/', '?']) => format!("{}:***@", &u[..colon]),
            // Not a plain `user` or `user:password`: an '@' in the path or query. Show none of it.
            _ if u.contains(['/', '?', '=', ':']) => "***@".to_string(),
            _ => format!("{u}@"),
        },
        None => String::new(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{userinfo}{host}{tail}")
}

/// libpq's `key=value` connection string (`host=db user=app password='s e/c' dbname=app`):
/// the value of `password` (quoted or not, spaces around `=` allowed) becomes `***`.
fn redact_key_values(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = find_key(rest, "password") {
        out.push_str(&rest[..pos]);
        let after_key = &rest[pos + "password".len()..];
        let value = after_key.trim_start();
        let Some(value) = value.strip_prefix('=') else {
            out.push_str(&rest[pos..pos + "password".len()]);
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // Up to the closing quote; `\'` and `\\` are escapes inside it.
            let mut chars = quoted.char_indices();
            let mut close = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        close = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + close
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str("password=***");
        rest = &value[end.min(value.len())..];
    }
    out.push_str(rest);
    out
}

/// Where `key` starts as a whole word (case-insensitive) in `s`.
fn find_key(s: &str, key: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(key) {
        let at = from + i;
        let before_ok = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        if before_ok {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// A database location resolved from the release (after `env:` lookup).
#[derive(Clone)]
pub enum DbTarget {
    /// A SQLite file (relative paths resolved against the release directory).
    Sqlite { path: PathBuf },
    /// A PostgreSQL connection string (kept private; print [`DbTarget::redacted`]).
    Postgres { conninfo: String },
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbTarget::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
            DbTarget::Postgres { conninfo } => write!(f, "Postgres({})", redact(conninfo)),
        }
    }
}

impl DbTarget {
    pub fn dialect(&self) -> Dialect {
        match self {
            DbTarget::Sqlite { .. } => Dialect::Sqlite,
            DbTarget::Postgres { .. } => Dialect::Postgres,
        }
    }
}

/// Resolve `sqlite://PATH`, `postgres://...`/`postgresql://...` or `env:VAR` into a target
/// and its printable form. `base_dir` is the release file's directory.
pub fn resolve(spec: &str, base_dir: &Path) -> Result<(DbTarget, RedactedUrl), MigrateError> {
    let spec = spec.trim();
    if let Some(var) = spec.strip_prefix("env:") {
        if var.is_empty() {
            return Err(MigrateError::BadUrl {
                url: RedactedUrl::new(spec),
                reason: "env: names no variable; write env:DATABASE_URL".into(),
            });
        }
        let raw = std::env::var(var).map_err(|_| MigrateError::EnvMissing {
            var: var.to_string(),
        })?;
        if raw.starts_with("env:") {
            return Err(MigrateError::BadUrl {
                url: RedactedUrl::from_env(var, &raw),
                reason: "the variable holds another env: reference; put the URL itself in it"
                    .into(),
            });
        }
        // An error about what the variable holds names the variable (redacted value).
        let (target, _) = resolve(&raw, base_dir).map_err(|e| match e {
            MigrateError::BadUrl { reason, .. } => MigrateError::BadUrl {
                url: RedactedUrl::from_env(var, &raw),
                reason,
            },
            e => e,
        })?;
        return Ok((target, RedactedUrl::from_env(var, &raw)));
    }
    let shown = RedactedUrl::new(spec);
    if let Some(path) = spec.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(MigrateError::BadUrl {
                url: shown,
                reason: "sqlite:// names no file; write sqlite://data/app.db".into(),
            });
        }
        let p = Path::new(path);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        return Ok((DbTarget::Sqlite { path }, shown));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok((
            DbTarget::Postgres {
                conninfo: spec.to_string(),
            },
            shown,
        ));
    }
    Err(MigrateError::BadUrl {
        url: shown,
        reason: "not a sqlite://, postgres:// or env: URL; write sqlite://data/app.db, \
                 postgres://user@host/db or env:DATABASE_URL"
            .into(),
    })
}

/// Replace any occurrence of `secret` in `message` (driver errors sometimes echo parts of
/// the connection string).
pub(crate) fn scrub(message: &str, conninfo: &str) -> String {
    let mut out = message.to_string();
    if let Some(pw) = password_of(conninfo)
        && !pw.is_empty()
    {
        out = out.replace(&pw, "***");
    }
    out.replace(conninfo, &redact(conninfo))
}

fn password_of(conninfo: &str) -> Option<String> {
    let rest = &conninfo[conninfo.find("://")? + 3..];
    // The user info ends at the last '@' (as in `redact`): a password may hold '/' or '?'.
    if let Some(at) = rest.rfind('@')
        && let Some((user, pw)) = rest[..at].split_once(':')
        && !user.contains(['/', '?'])
    {
        return Some(pw.to_string());
    }
    let query = &rest[rest.find('?')? + 1..];
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.eq_ignore_ascii_case("password").then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            RedactedUrl::new("postgres://app:s3cret@db.internal:5432/shop").to_string(),
            "postgres://app:***@db.internal:5432/shop"
        );
        assert_eq!(
            RedactedUrl::new("postgres://db/shop?user=app&password=s3cret&sslmode=require")
                .to_string(),
            "postgres://db/shop?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            RedactedUrl::new("postgres://app@db/shop").to_string(),
            "postgres://app@db/shop"
        );
        // A password containing '@' still disappears entirely.
        let shown = RedactedUrl::new("postgres://app:p@ss@db/shop").to_string();
        assert!(!shown.contains("p@ss"), "{shown}");
        // ... and so does one holding '/' or '?' (the host part used to end at the first '/').
        assert_eq!(
            RedactedUrl::new("postgres://app:pa/ss@db/app").to_string(),
            "postgres://app:***@db/app"
        );
        assert_eq!(
            RedactedUrl::new("postgres://app:p?a/s@db:5432/app?sslmode=require").to_string(),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        // An '@' in the query never lets a password parameter through.
        let shown = RedactedUrl::new("postgres://db/app?password=x/y@z").to_string();
        assert!(!shown.contains("x/y"), "{shown}");
    }

    #[test]
    fn key_value_connection_strings_hide_the_password() {
        assert_eq!(
            RedactedUrl::new("host=db user=app password=s3cr/et dbname=app").to_string(),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(
            RedactedUrl::new("host=db PASSWORD = 'a b\\' c' dbname=app").to_string(),
            "host=db password=*** dbname=app"
        );
        assert_eq!(
            RedactedUrl::new("host=db password=tail").to_string(),
            "host=db password=***"
        );
        // A key that merely ends in "password" is not the password.
        assert_eq!(
            RedactedUrl::new("host=db oldpassword=x").to_string(),
            "host=db oldpassword=x"
        );
        // Redaction never panics on odd input.
        for s in [
            "password",
            "password=",
            "password='",
            "password='\\",
            "日本password=ü",
        ] {
            let shown = RedactedUrl::new(s).to_string();
            assert!(!shown.contains('ü'), "{s} -> {shown}");
        }
    }

    #[test]
    fn an_env_variable_holding_a_key_value_string_is_shown_redacted_in_errors() {
        // SAFETY: the variable name is unique to this test.
        unsafe {
            std::env::set_var(
                "CUTOVER_TEST_URL_KV",
                "env:host=db user=app password=hunter2 dbname=app",
            )
        };
        let err = resolve("env:CUTOVER_TEST_URL_KV", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("CUTOVER_TEST_URL_KV"), "{err}");
        // SAFETY: as above.
        unsafe {
            std::env::set_var(
                "CUTOVER_TEST_URL_KV2",
                "host=db user=app password=hunter2 dbname=app",
            )
        };
        let err = resolve("env:CUTOVER_TEST_URL_KV2", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("password=***"), "{err}");
        // The error names the variable the text came from.
        assert!(err.contains("env:CUTOVER_TEST_URL_KV2"), "{err}");
    }

    #[test]
    fn env_urls_show_the_variable_and_hide_the_password() {
        // SAFETY: the variable name is unique to this test.
        unsafe { std::env::set_var("CUTOVER_TEST_URL_REDACT", "postgres://u:hunter2@h/d") };
        let (target, shown) = resolve("env:CUTOVER_TEST_URL_REDACT", Path::new(".")).unwrap();
        assert_eq!(
            shown.to_string(),
            "env:CUTOVER_TEST_URL_REDACT (postgres://u:***@h/d)"
        );
        assert!(!format!("{target:?}").contains("hunter2"));
        let err = resolve("env:CUTOVER_TEST_URL_MISSING_VAR", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("CUTOVER_TEST_URL_MISSING_VAR"));
    }

    #[test]
    fn sqlite_paths_resolve_against_the_release_dir() {
        let (t, _) = resolve("sqlite://data/app.db", Path::new("/rel")).unwrap();
        assert!(matches!(t, DbTarget::Sqlite { path } if path == Path::new("/rel/data/app.db")));
        let (t, _) = resolve("sqlite:///abs/app.db", Path::new("/rel")).unwrap();
        assert!(matches!(t, DbTarget::Sqlite { path } if path == Path::new("/abs/app.db")));
        assert!(resolve("mysql://x/y", Path::new(".")).is_err());
    }

    #[test]
    fn scrub_removes_password_from_driver_messages() {
        let m = scrub(
            "error connecting to postgres://u:hunter2@h/d: refused (password hunter2)",
            "postgres://u:hunter2@h/d",
        );
        assert!(!m.contains("hunter2"), "{m}");
        // A password holding '/' is found too (the authority does not end at the first '/').
        let m = scrub(
            "password authentication failed (tried pa/ss)",
            "postgres://app:pa/ss@db/app",
        );
        assert_eq!(m, "password authentication failed (tried ***)");
        let m = scrub("x q/p y", "postgres://db/app?password=q/p");
        assert_eq!(m, "x *** y");
    }
}
