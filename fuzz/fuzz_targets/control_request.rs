//! What the control API server reads out of a request (`src/control/request.rs`, called by
//! `server.rs` on every request): the `cutover-protocol` version, the Unix-socket operator
//! and role headers, the bearer token checked against a token file, the `/v1/events` query
//! and the `POST /v1/commands` body. The input is five header lines, then the body.
//! (Framing and header syntax are hyper's; the server hands these functions what hyper
//! accepted, which is any visible text, so here they take any UTF-8.)
#![no_main]

use std::sync::LazyLock;

use cutover::control::request::{
    EventsQuery, bearer, parse_command_body, unix_operator, unix_role,
};
use cutover::control::{Tokens, check_version};
use libfuzzer_sys::fuzz_target;

static TOKENS: LazyLock<Option<Tokens>> = LazyLock::new(|| {
    Tokens::parse(
        "[[token]]\nname = \"ada\"\nrole = \"operator\"\ntoken = \"0123456789abcdef0123\"\n\
         [[token]]\nname = \"bob\"\nrole = \"read-only\"\ntoken = \"fedcba9876543210fedc\"\n",
    )
    .ok()
});

fn field(s: &[u8]) -> Option<&str> {
    // An empty line is a header that was not sent.
    (!s.is_empty())
        .then(|| std::str::from_utf8(s).ok())
        .flatten()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |b| *b == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let (protocol, operator, role, authorization, query) = (
        field(next()),
        field(next()),
        field(next()),
        field(next()),
        field(next()),
    );
    let body = next();

    if let Err(msg) = check_version(protocol, "client") {
        assert!(!msg.is_empty());
    }
    let name = unix_operator(operator);
    assert!(
        !name.is_empty() && !name.chars().any(char::is_control),
        "{name:?}"
    );
    let _ = unix_role(role);
    if let (Some(tokens), Some(t)) = (TOKENS.as_ref(), bearer(authorization)) {
        let _ = tokens.check(t);
    }
    let _ = EventsQuery::parse(query);
    match parse_command_body(body) {
        Ok(cmd) => {
            // What the server does with an accepted body: journal and show it.
            let _ = cmd.command.to_string();
            let _ = serde_json::to_string(&cmd);
        }
        Err(msg) => assert!(msg.starts_with("the body is not a command")),
    }
});
