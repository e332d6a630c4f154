//! The values a release marks or resolves as secret, and the scrubber that removes them
//! from text cutover did not write itself (smoke-response bodies, a smoke command's
//! stderr, a replica's last output line) before that text is journaled, shown or sent.
//!
//! Secret values are: every revision's environment values (local and ECS), webhook URLs
//! (whole, and their path and query, which carry Slack-style tokens), the arguments of smoke
//! commands, database URLs and their passwords, the proxy's pin secret, and values resolved
//! from `env:VAR`.
//! Values shorter than [`MIN_LEN`] characters are not scrubbed: replacing `1` or `on` in
//! every message would make the messages unreadable without hiding anything.

use crate::release::Release;

/// Shorter values are left in text (see the module documentation).
pub const MIN_LEN: usize = 4;
/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// A set of secret values, longest first (so a value that contains another is masked whole).
#[derive(Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.values.len())
    }
}

impl Secrets {
    /// The secret values a release holds in its own text.
    pub fn from_release(release: &Release) -> Secrets {
        let mut s = Secrets::default();
        // The proxy's shared pin secret (`pin_secret = "env:VAR"`): what the variable holds.
        if let Some(var) =
            (release.release.pin_secret.as_deref()).and_then(|p| p.trim().strip_prefix("env:"))
            && let Ok(value) = std::env::var(var)
        {
            s.extend([value]);
        }
        s.extend(release.env_values.iter().cloned());
        // `[metrics]`: an `env:` URL (it may carry credentials), password and token.
        if let Some(m) = &release.metrics {
            for v in [&m.url, &m.username, &m.password, &m.bearer_token]
                .into_iter()
                .flatten()
            {
                if let Some(var) = v.trim().strip_prefix("env:")
                    && let Ok(value) = std::env::var(var)
                {
                    s.add_url(&value);
                }
            }
        }
        if let Some(n) = &release.notify {
            for url in &n.webhooks {
                match url.strip_prefix("env:") {
                    // A webhook named by `env:VAR`: what the variable holds is the secret.
                    Some(var) => {
                        if let Ok(value) = std::env::var(var) {
                            s.add_url(&value);
                        }
                    }
                    None => s.add_url(url),
                }
            }
        }
        if let Some(g) = release.notify.as_ref().and_then(|n| n.grafana.as_ref()) {
            // Grafana's token (also one wrongly written in the file, which validation
            // refuses: its excerpt must not show it), and its URL when a variable holds it.
            for v in [&g.token, &g.url] {
                if let Some(var) = v.strip_prefix("env:")
                    && let Ok(value) = std::env::var(var)
                {
                    s.extend([value]);
                }
            }
            if !g.token.starts_with("env:") && !g.token.is_empty() {
                s.extend([g.token.clone()]);
            }
        }
        for svc in &release.services {
            if let Some(local) = &svc.local {
                for run in [&local.current, &local.target] {
                    s.extend(run.env.values().cloned());
                }
            }
            if let Some(ecs) = &svc.ecs {
                s.extend(ecs.env.values().cloned());
            }
            for smoke in &svc.smoke {
                if let Some(argv) = &smoke.command {
                    s.extend(
                        argv.iter()
                            .skip(1)
                            .filter(|a| !a.contains("{url}"))
                            .cloned(),
                    );
                }
            }
        }
        for m in &release.migrations {
            s.add_database_url(&m.database);
            // A database named by `env:VAR`: what the variable holds is secret too.
            if let Some(var) = m.database.trim().strip_prefix("env:")
                && let Ok(value) = std::env::var(var)
            {
                s.add_database_url(&value);
            }
        }
        s
    }

    /// Add values (resolved `env:` values, say). Short ones are ignored.
    pub fn extend(&mut self, values: impl IntoIterator<Item = String>) {
        for v in values {
            let v = v.trim().to_string();
            if v.chars().count() >= MIN_LEN && !self.values.contains(&v) {
                self.values.push(v);
            }
        }
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// A URL, its path-and-query, and the password of its user info.
    pub fn add_url(&mut self, url: &str) {
        let mut v = vec![url.to_string()];
        if let Some((_, rest)) = url.split_once("://") {
            if let Some(i) = rest.find(['/', '?']) {
                let tail = &rest[i..];
                if tail.len() > 1 {
                    v.push(tail.to_string());
                }
            }
            v.extend(password_of(rest));
        }
        self.extend(v);
    }

    /// A database URL and its password (user info or `password=` parameter). Its host and
    /// path (the database's name or file) are not secret: messages show them, as
    /// [`crate::migrate::RedactedUrl`] does.
    pub fn add_database_url(&mut self, url: &str) {
        let mut v = vec![url.to_string()];
        if let Some((_, rest)) = url.split_once("://") {
            v.extend(password_of(rest));
            if let Some((_, query)) = rest.rsplit_once('?') {
                v.extend(query.split('&').filter_map(|kv| {
                    let (k, val) = kv.split_once('=')?;
                    k.eq_ignore_ascii_case("password").then(|| val.to_string())
                }));
            }
        }
        self.extend(v);
    }

    /// Whether `value` is exactly one of the secret values.
    pub fn is_secret(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value.trim()) && value.trim().chars().count() >= MIN_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// `text` with every secret value replaced by as many `*` as it has characters: for
    /// an excerpt of a file under which a caret points at a column.
    pub fn scrub_keeping_width(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), &"*".repeat(v.chars().count()));
            }
        }
        out
    }
}

/// How a secret value is shown where telling values apart matters (the journal's release
/// entry, `cutover diff`): `sha256:` and the first 16 hex digits of its SHA-256.
pub fn fingerprint(value: &str) -> String {
    format!(
        "sha256:{}",
        &crate::journal::sha256_hex(value.as_bytes())[..16]
    )
}

/// The password of a URL's user info (`rest` is what follows `://`; the user info ends at
/// the last '@', so a password may hold '/', '?' or '@').
fn password_of(rest: &str) -> Option<String> {
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!user.contains(['/', '?'])).then(|| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_values_are_masked_first_and_short_ones_are_left() {
        let mut s = Secrets::default();
        s.extend(["abcd".to_string(), "xxabcdxx".to_string(), "on".to_string()]);
        assert_eq!(s.scrub("got xxabcdxx and abcd, on"), "got *** and ***, on");
    }

    #[test]
    fn scrubbing_an_excerpt_keeps_its_columns() {
        let mut s = Secrets::default();
        s.extend(["tökenvalue".to_string()]);
        let line = r#"env = { A = "tökenvalue", B = 5 }"#;
        let shown = s.scrub_keeping_width(line);
        assert_eq!(shown, r#"env = { A = "**********", B = 5 }"#);
        assert_eq!(shown.chars().count(), line.chars().count());
    }

    #[test]
    fn webhook_paths_and_database_passwords_are_secret() {
        let mut s = Secrets::default();
        s.add_url("https://hooks.example.com/services/T000/B000/XYZSECRET");
        s.add_url("postgres://app:pa/ss@db/app");
        let text = "POST /services/T000/B000/XYZSECRET failed; login app:pa/ss refused";
        let shown = s.scrub(text);
        assert!(!shown.contains("XYZSECRET"), "{shown}");
        assert!(!shown.contains("pa/ss"), "{shown}");
    }

    #[test]
    fn a_database_url_hides_its_password_and_keeps_its_host_and_name() {
        let mut s = Secrets::default();
        s.add_database_url("postgres://app:pa/ss@db.internal/shop");
        s.add_database_url("postgres://db2/orders?user=app&password=qw/erty");
        let shown = s.scrub(
            "postgres://app:***@db.internal/shop: login pa/ss refused; db2/orders with qw/erty",
        );
        assert_eq!(
            shown,
            "postgres://app:***@db.internal/shop: login *** refused; db2/orders with ***"
        );
    }

    #[test]
    fn a_release_gives_its_env_values_webhooks_and_smoke_arguments() {
        let text = r#"
[release]
name = "r"
platform = "local"
[notify]
webhooks = ["https://hooks.example.com/services/HOOKMARK"]
[[service]]
name = "api"
strategy = "rolling"
[[service.smoke]]
name = "s"
command = ["probe", "--token", "ARGVMARK", "{url}"]
[service.local]
listen = "127.0.0.1:18999"
command = ["cutover", "demo-service", "--port", "{port}"]
current = { revision = "v1", env = { API_KEY = "OLDENVMARK" } }
target = { revision = "v2", env = { API_KEY = "NEWENVMARK" } }
"#;
        let release = crate::release::load_str("r.toml".as_ref(), text, ".".as_ref()).unwrap();
        let s = Secrets::from_release(&release);
        let shown =
            s.scrub("env OLDENVMARK NEWENVMARK, hook /services/HOOKMARK, argv ARGVMARK, url {url}");
        for m in ["OLDENVMARK", "NEWENVMARK", "HOOKMARK", "ARGVMARK"] {
            assert!(!shown.contains(m), "{m} in {shown}");
        }
        assert!(shown.contains("{url}"));
        assert!(!format!("{s:?}").contains("MARK"));
    }

    #[test]
    fn the_proxy_pin_secret_from_its_variable_is_secret() {
        // SAFETY: the variable name is unique to this test.
        unsafe { std::env::set_var("CUTOVER_TEST_PIN_SECRET", "PINMARK-0123456789") };
        let text = r#"
[release]
name = "r"
pin_secret = "env:CUTOVER_TEST_PIN_SECRET"
[[service]]
name = "api"
strategy = "rolling"
[service.local]
listen = "127.0.0.1:18998"
command = ["cutover", "demo-service", "--port", "{port}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;
        let release = crate::release::load_str("r.toml".as_ref(), text, ".".as_ref()).unwrap();
        let shown = Secrets::from_release(&release).scrub("got PINMARK-0123456789 back");
        assert_eq!(shown, "got *** back");
    }
}
