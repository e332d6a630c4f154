//! Who may pin a request to a revision through the local proxy (`x-cutover-revision`):
//! a client on this machine always (the engine's smoke tests), a client elsewhere only when
//! it also sends the release's shared secret (`[release] pin_secret = "env:VAR"`) in
//! [`PIN_SECRET_HEADER`]. The secret is compared in constant time, never forwarded to a
//! replica, never logged, and its `Debug` shows no value.

use std::net::SocketAddr;

use hyper::header::HeaderValue;

use crate::control::tokens::constant_time_eq;

/// The request header that carries the shared pin secret.
pub const PIN_SECRET_HEADER: &str = "x-cutover-pin-secret";

/// Shorter secrets are refused: a guessable secret would reopen the proxy's test route.
pub const MIN_PIN_SECRET_LEN: usize = 16;

/// The shared secret that lets a client on another machine pin requests to a revision.
#[derive(Clone)]
pub struct PinSecret {
    value: String,
}

impl std::fmt::Debug for PinSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinSecret(***)")
    }
}

impl PinSecret {
    /// The secret a release names with `pin_secret = "env:VAR"`, read from the environment.
    /// The error names the variable and the fix, never the value.
    pub fn from_spec(spec: &str) -> Result<PinSecret, String> {
        let Some(var) = spec.trim().strip_prefix("env:") else {
            return Err(
                "pin_secret must name an environment variable: write \"env:CUTOVER_PIN_SECRET\""
                    .into(),
            );
        };
        let value = std::env::var(var).map_err(|_| {
            format!(
                "pin_secret env:{var}: the environment variable is not set; export {var} with the shared secret (at least {MIN_PIN_SECRET_LEN} characters, e.g. `openssl rand -hex 24`)"
            )
        })?;
        PinSecret::new(value.trim())
            .map_err(|e| format!("pin_secret env:{var}: {e}; export {var} with a longer secret"))
    }

    /// A secret of at least [`MIN_PIN_SECRET_LEN`] characters that is a valid header value.
    pub fn new(value: &str) -> Result<PinSecret, String> {
        if value.chars().count() < MIN_PIN_SECRET_LEN {
            return Err(format!(
                "the secret is shorter than {MIN_PIN_SECRET_LEN} characters"
            ));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err("the secret cannot be sent in an HTTP header (control characters)".into());
        }
        Ok(PinSecret {
            value: value.to_string(),
        })
    }

    /// Whether `offered` is this secret (constant time; the length does not show either).
    pub fn matches(&self, offered: &HeaderValue) -> bool {
        constant_time_eq(self.value.as_bytes(), offered.as_bytes())
    }

    /// The value itself, for the set of secrets scrubbed from text.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// Whether a client reached the proxy from this machine: over loopback, or from the very
/// address it connected to (a process here calling the service's own non-loopback address;
/// the kernel routes that locally, and refuses such a source from outside).
pub fn from_this_machine(peer: SocketAddr, local: Option<SocketAddr>) -> bool {
    peer.ip().is_loopback() || local.is_some_and(|l| l.ip() == peer.ip())
}

/// Whether a pinned request may be honoured.
pub fn may_pin(
    this_machine: bool,
    secret: Option<&PinSecret>,
    offered: Option<&HeaderValue>,
) -> bool {
    this_machine || matches!((secret, offered), (Some(s), Some(o)) if s.matches(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pin-secret-0123456789";

    #[test]
    fn a_remote_client_pins_only_with_the_configured_secret() {
        let s = PinSecret::new(SECRET).unwrap();
        let right = HeaderValue::from_static(SECRET);
        let wrong = HeaderValue::from_static("pin-secret-0123456788");
        let prefix = HeaderValue::from_static("pin-secret-01234");
        assert!(may_pin(true, None, None));
        assert!(may_pin(true, Some(&s), Some(&wrong)));
        assert!(may_pin(false, Some(&s), Some(&right)));
        assert!(!may_pin(false, Some(&s), Some(&wrong)));
        assert!(!may_pin(false, Some(&s), Some(&prefix)));
        assert!(!may_pin(false, Some(&s), None));
        // No secret configured: nothing a remote client sends opens the route.
        assert!(!may_pin(false, None, Some(&right)));
    }

    #[test]
    fn this_machine_is_loopback_or_the_address_it_called() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(from_this_machine(
            a("127.0.0.1:5000"),
            Some(a("127.0.0.1:80"))
        ));
        assert!(from_this_machine(a("[::1]:5000"), None));
        assert!(from_this_machine(
            a("10.1.2.3:5000"),
            Some(a("10.1.2.3:8080"))
        ));
        assert!(!from_this_machine(
            a("10.1.2.4:5000"),
            Some(a("10.1.2.3:8080"))
        ));
        assert!(!from_this_machine(a("10.1.2.4:5000"), None));
    }

    #[test]
    fn short_or_missing_secrets_are_refused_without_showing_them() {
        assert!(PinSecret::new("short").is_err());
        let s = PinSecret::new(SECRET).unwrap();
        assert!(!format!("{s:?}").contains(SECRET));
        let var = format!("CUTOVER_TEST_PIN_{}", std::process::id());
        let err = PinSecret::from_spec(&format!("env:{var}")).unwrap_err();
        assert!(err.contains(&var) && err.contains("not set"), "{err}");
        let err = PinSecret::from_spec(SECRET).unwrap_err();
        assert!(err.contains("env:") && !err.contains(SECRET), "{err}");
    }
}
