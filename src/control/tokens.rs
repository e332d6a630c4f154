//! Bearer tokens for the TCP listener: a TOML file of named tokens, each operator or
//! read-only, checked in constant time. Tokens are never printed, logged or journaled:
//! errors name the file and the entry, never the secret.
//!
//! ```toml
//! [[token]]
//! name = "alice"          # the operator the token acts as (journaled)
//! role = "operator"       # or "read-only"
//! token = "long random string, at least 16 characters"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read and send commands.
    Operator,
    /// Read only: snapshot, event stream, presence.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::ReadOnly => "read-only",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "token file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("token file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    token: String,
}

/// One accepted token, kept only as its SHA-256.
struct Known {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens a server accepts.
pub struct Tokens {
    known: Vec<Known>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<(&str, &str)> = self
            .known
            .iter()
            .map(|k| (k.name.as_str(), k.role.as_str()))
            .collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Equal in time independent of where they differ (both sides hashed to 32 bytes first,
/// so the length of the secret does not show either).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(digest(a).ct_eq(&digest(b)))
}

/// Refuse a secret file others can read.
pub(crate) fn check_private(path: &Path) -> Result<(), TokenError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

impl Tokens {
    /// Read and check a token file (private mode, at least one entry, unique names and
    /// tokens, tokens of 16+ characters).
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text).map_err(|message| TokenError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse the TOML text (errors never quote a token).
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let file: File = toml::from_str(text).map_err(|e| {
            // toml's message may quote the offending line, which can be a token: keep
            // only the position and the first sentence.
            let first = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {first}; expected [[token]] entries with name, role (\"operator\" or \"read-only\") and token")
                }
                None => format!("{first}; expected [[token]] entries with name, role and token"),
            }
        })?;
        if file.token.is_empty() {
            return Err("no [[token]] entries; add one with name, role and token".into());
        }
        let mut known: Vec<Known> = Vec::new();
        for (i, e) in file.token.into_iter().enumerate() {
            let at = format!("token #{} ({})", i + 1, e.name);
            if e.name.trim().is_empty() || e.name.chars().any(char::is_control) {
                return Err(format!(
                    "token #{}: name must be a non-empty printable operator name",
                    i + 1
                ));
            }
            if e.token.chars().count() < 16 {
                return Err(format!(
                    "{at}: the token is shorter than 16 characters; generate one with e.g. `openssl rand -hex 24`"
                ));
            }
            let d = digest(e.token.as_bytes());
            if known.iter().any(|k| k.name == e.name) {
                return Err(format!(
                    "{at}: the name is used twice; each person gets their own token"
                ));
            }
            if known.iter().any(|k| bool::from(k.digest.ct_eq(&d))) {
                return Err(format!("{at}: the same token is listed twice"));
            }
            known.push(Known {
                name: e.name,
                role: e.role,
                digest: d,
            });
        }
        Ok(Tokens { known })
    }

    /// Who presents `token`, if anyone. Every entry is compared (no early exit).
    pub fn check(&self, token: &str) -> Option<(String, Role)> {
        let d = digest(token.as_bytes());
        let mut found: Option<&Known> = None;
        for k in &self.known {
            if bool::from(k.digest.ct_eq(&d)) {
                found = Some(k);
            }
        }
        found.map(|k| (k.name.clone(), k.role))
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The token a client presents, from `--token-file`: either a file holding just the
/// token, or a server token file, from which the entry named `operator` (or the only
/// entry) is taken. The file must not be readable by others.
pub fn client_token(path: &Path, operator: Option<&str>) -> Result<String, TokenError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| TokenError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if text.contains("[[token]]") {
        let file: File = toml::from_str(&text)
            .map_err(|_| invalid("not a valid token file (see PROTOCOL.md)".into()))?;
        let pick: Vec<&Entry> = match operator {
            Some(op) => file.token.iter().filter(|e| e.name == op).collect(),
            None => file.token.iter().collect(),
        };
        return match pick.as_slice() {
            [one] => Ok(one.token.clone()),
            [] => Err(invalid(format!(
                "no token named {}",
                operator.unwrap_or("(any)")
            ))),
            _ => Err(invalid(
                "several tokens; pass --operator NAME to pick one".into(),
            )),
        };
    }
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() {
        return Err(invalid(
            "the file is empty; put the token on its first line".into(),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[token]]
name = "alice"
role = "operator"
token = "alice-0123456789abcdef"

[[token]]
name = "watcher"
role = "read-only"
token = "watch-0123456789abcdef"
"#;

    #[test]
    fn tokens_map_to_their_name_and_role() {
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.check("alice-0123456789abcdef"),
            Some(("alice".into(), Role::Operator))
        );
        assert_eq!(
            t.check("watch-0123456789abcdef"),
            Some(("watcher".into(), Role::ReadOnly))
        );
        assert_eq!(t.check("alice-0123456789abcdeX"), None);
        assert_eq!(t.check(""), None);
        assert!(!format!("{t:?}").contains("0123456789"));
    }

    #[test]
    fn constant_time_compare_is_a_correct_compare() {
        assert!(constant_time_eq(b"same secret", b"same secret"));
        assert!(!constant_time_eq(b"same secret", b"same secreT"));
        assert!(!constant_time_eq(b"short", b"short but longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bad_files_are_refused_without_quoting_the_secret() {
        let short = "[[token]]\nname = \"a\"\nrole = \"operator\"\ntoken = \"tooshort\"\n";
        let e = Tokens::parse(short).err().unwrap();
        assert!(
            e.contains("shorter than 16") && !e.contains("tooshort"),
            "{e}"
        );
        let role = "[[token]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"secret-secret-secret\"\n";
        let e = Tokens::parse(role).err().unwrap();
        assert!(e.contains("line") && !e.contains("secret-secret"), "{e}");
        let dup = format!(
            "{FILE}\n[[token]]\nname = \"bob\"\nrole = \"operator\"\ntoken = \"alice-0123456789abcdef\"\n"
        );
        assert!(Tokens::parse(&dup).err().unwrap().contains("listed twice"));
        assert!(Tokens::parse("").err().unwrap().contains("no [[token]]"));
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.toml");
        std::fs::write(&p, FILE).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Tokens::load(&p),
            Err(TokenError::Permissions { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Tokens::load(&p).unwrap().len(), 2);
        assert_eq!(
            client_token(&p, Some("watcher")).unwrap(),
            "watch-0123456789abcdef"
        );
        assert!(client_token(&p, None).is_err());
        let raw = dir.path().join("raw");
        std::fs::write(&raw, "alice-0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(client_token(&raw, None).unwrap(), "alice-0123456789abcdef");
    }
}
