//! The control API: a running engine (`cutover serve`) shared by any number of front
//! ends (`cutover attach`, `cutover ctl`) over HTTP/1.1 + JSON with server-sent events,
//! on a Unix socket in the state directory (mode 0600) and optionally on loopback TCP
//! with bearer tokens. `PROTOCOL.md` at the repository root is the reference.
//!
//! * [`Hub`] numbers everything a client needs to see (engine events and presence
//!   changes) in one gap-free sequence, keeps the folded [`crate::engine::ReleaseState`]
//!   and a window of recent items, so a snapshot at `seq` plus the stream from `seq`
//!   is exactly the engine's history with no gap and no duplicate.
//! * [`server`] exposes the hub and the engine's command channel.
//! * [`client`] is the other side, used by `attach`, `ctl` and the tests.

pub mod client;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod request;
pub mod server;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use client::{Client, ClientError, CommandOutcome, Endpoint, EventStream};
pub use hub::{Attached, Hub, Item, ItemBody, PresenceGuard, Snapshot};
pub use server::{ControlServer, Listeners, ServerConfig, ServerError, bind_unix_socket};
pub use tokens::{Role, TokenError, Tokens};

/// The protocol version this build speaks. A peer with another major version is refused.
pub const PROTOCOL_MAJOR: u32 = 1;
pub const PROTOCOL_MINOR: u32 = 0;
/// The header carrying the version, both ways.
pub const PROTOCOL_HEADER: &str = "cutover-protocol";
/// The header a Unix-socket client names its operator in (TCP clients are named by
/// their token).
pub const OPERATOR_HEADER: &str = "cutover-operator";
/// `cutover-role: read-only` makes a Unix-socket client read-only.
pub const ROLE_HEADER: &str = "cutover-role";
/// How the `end` item's reason starts when a console handed its release over to a
/// background `cutover serve`: the same run is served again on the same socket shortly,
/// and clients may attach again (`cutover attach` does so by itself).
pub const HANDED_OVER: &str = "handed over";
/// The socket's file name in the state directory.
pub const SOCKET_NAME: &str = "cutover.sock";

/// `1.0`
pub fn protocol_version() -> String {
    format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}")
}

/// Check a peer's version string: `Ok` if the major version matches, else a sentence
/// naming both versions and the fix.
pub fn check_version(peer: Option<&str>, peer_is: &str) -> Result<(), String> {
    let Some(v) = peer else {
        return Err(format!(
            "the {peer_is} sent no `{PROTOCOL_HEADER}` header; this cutover speaks protocol {}: send `{PROTOCOL_HEADER}: {}`",
            protocol_version(),
            protocol_version()
        ));
    };
    let major = v
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(PROTOCOL_MAJOR) => Ok(()),
        Some(m) => Err(format!(
            "protocol version mismatch: the {peer_is} speaks {v} (major {m}), this cutover speaks {} (major {PROTOCOL_MAJOR}); use the same major version of cutover on both sides",
            protocol_version()
        )),
        None => Err(format!(
            "the {peer_is}'s `{PROTOCOL_HEADER}` header `{v}` is not a version like {}",
            protocol_version()
        )),
    }
}

/// `POST /v1/commands` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBody {
    pub command: crate::engine::Command,
    /// Why (journaled with the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/commands` answer (200 accepted, 409 refused by the engine, 403 not allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandAnswer {
    pub accepted: bool,
    /// What was done (accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why not (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<crate::engine::Refusal>,
    /// Who the server attributed the command to.
    pub operator: String,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `protocol_mismatch`, `unauthorized`, `forbidden`, `bad_request`, `not_found`,
    /// `gone`, `engine_stopped`.
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_with_the_same_major_are_accepted_others_refused_with_both_named() {
        assert!(check_version(Some("1.0"), "client").is_ok());
        assert!(check_version(Some("1.7"), "client").is_ok());
        let e = check_version(Some("2.0"), "client").unwrap_err();
        assert!(
            e.contains("2.0") && e.contains("1.0") && e.contains("mismatch"),
            "{e}"
        );
        assert!(
            check_version(None, "server")
                .unwrap_err()
                .contains("no `cutover-protocol`")
        );
        assert!(
            check_version(Some("x"), "client")
                .unwrap_err()
                .contains("not a version")
        );
    }
}
