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
        return raw.to_string();
    };
    let (scheme, rest) = raw.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let host = &authority[at + 1..];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***@{host}", &userinfo[..colon]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
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
    format!("{scheme}{authority}{tail}")
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
        let (target, _) = resolve(&raw, base_dir)?;
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
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if let Some(at) = authority.rfind('@')
        && let Some((_, pw)) = authority[..at].split_once(':')
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
    }
}
