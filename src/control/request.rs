//! What the control server reads out of a request, as pure functions of its text: the
//! command body, the `/v1/events` query, the Unix-socket operator and role headers and the
//! bearer token. `server.rs` calls these on every request; they are public so the fuzz
//! target `control_request` (see `fuzz/`) reaches exactly the code the server runs.

use super::CommandBody;
use super::tokens::Role;

/// `POST /v1/commands`: the body as a command, or a sentence with an example of one.
pub fn parse_command_body(bytes: &[u8]) -> Result<CommandBody, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!("the body is not a command: {e}; send e.g. {{\"command\": {{\"command\": \"promote\", \"service\": \"payments\"}}, \"reason\": \"...\"}}")
    })
}

/// The value of `key` in a query string (`a=1&b`: `b` has the empty value).
pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// `GET /v1/events?from=SEQ&attach=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsQuery {
    /// Stream the items after this sequence number (0: from the start of the window).
    pub from: u64,
    /// Count the caller as attached (presence) while the stream is open.
    pub attach: bool,
}

impl EventsQuery {
    pub fn parse(query: Option<&str>) -> Result<EventsQuery, &'static str> {
        let from = match query_param(query, "from").map(str::parse::<u64>) {
            Some(Ok(n)) => n,
            None => 0,
            Some(Err(_)) => {
                return Err("`from` must be a sequence number (from a snapshot's `seq`)");
            }
        };
        let attach = matches!(query_param(query, "attach"), Some("1" | "true"));
        Ok(EventsQuery { from, attach })
    }
}

/// The operator a Unix-socket client names in `cutover-operator`: trimmed, `unknown` when
/// missing, empty or holding control characters (it is journaled and shown).
pub fn unix_operator(header: Option<&str>) -> String {
    header
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .unwrap_or("unknown")
        .to_string()
}

/// A Unix-socket client is an operator unless it sends `cutover-role: read-only`.
pub fn unix_role(header: Option<&str>) -> Role {
    match header {
        Some(r) if r.trim() == "read-only" => Role::ReadOnly,
        _ => Role::Operator,
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, trimmed.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_query_takes_from_and_attach_and_refuses_a_bad_from() {
        assert_eq!(
            EventsQuery::parse(Some("from=12&attach=1")),
            Ok(EventsQuery {
                from: 12,
                attach: true
            })
        );
        assert_eq!(
            EventsQuery::parse(None),
            Ok(EventsQuery {
                from: 0,
                attach: false
            })
        );
        assert_eq!(
            EventsQuery::parse(Some("attach=yes&from")),
            Err("`from` must be a sequence number (from a snapshot's `seq`)")
        );
        assert!(EventsQuery::parse(Some("from=-1")).is_err());
    }

    #[test]
    fn operator_role_and_token_headers() {
        assert_eq!(unix_operator(Some("  ada ")), "ada");
        assert_eq!(unix_operator(Some("a\u{1b}[2J")), "unknown");
        assert_eq!(unix_operator(None), "unknown");
        assert_eq!(unix_role(Some(" read-only ")), Role::ReadOnly);
        assert_eq!(unix_role(Some("admin")), Role::Operator);
        assert_eq!(bearer(Some("Bearer  t0k ")), Some("t0k"));
        assert_eq!(bearer(Some("Basic t0k")), None);
    }

    #[test]
    fn a_body_that_is_not_a_command_is_refused_with_an_example() {
        let e = parse_command_body(b"{\"command\": 3}").unwrap_err();
        assert!(e.starts_with("the body is not a command:"), "{e}");
        assert!(e.contains("\"promote\""), "{e}");
        let ok = parse_command_body(
            br#"{"command": {"command": "promote", "service": "payments"}, "reason": "ok"}"#,
        )
        .unwrap();
        assert_eq!(ok.reason.as_deref(), Some("ok"));
    }
}
