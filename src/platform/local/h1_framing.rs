//! HTTP/1.1 message framing for the proxy's hand-written path (`proxy_h1.rs`), pure and
//! panic-free on any input (the `proxy_h1` fuzz target): what a request or response head
//! says about its body and its connection (RFC 9112 sections 6 and 9), which header fields
//! are hop-by-hop, and a streaming decoder of the chunked transfer coding that finds where
//! a chunked body ends (so the proxy can pass it through verbatim) and, when asked, yields
//! its data (to de-chunk for an HTTP/1.0 client).
//!
//! Heads themselves are parsed by `httparse`; this module reads its output.

/// Largest request or response head the proxy reads (431 / 502 beyond it).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head (431 / 502 beyond it), hyper's default as before.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) and longest trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a request without Content-Length or Transfer-Encoding; a response to HEAD;
    /// 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (a response only).
    UntilClose,
}

/// Why a head was refused: the status the proxy answers (400, 431, 501) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

impl HeadError {
    const fn bad(reason: &'static str) -> Self {
        HeadError {
            status: 400,
            reason,
        }
    }
}

/// The header fields the proxy treats specially, recognised by name (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Expect,
    /// `x-cutover-revision`
    Route,
    /// `x-cutover-pin-secret`
    PinSecret,
    /// Other hop-by-hop fields (RFC 9110 section 7.6.1 and the usual non-standard ones):
    /// `keep-alive`, `proxy-connection`, `te`, `trailer`, `upgrade`,
    /// `proxy-authorization`, `proxy-authenticate`.
    HopByHop,
    Other,
}

/// Which of the fields above `name` is; one length switch, then at most two compares.
pub fn field(name: &str) -> Field {
    let n = name.as_bytes();
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 if is("te") => Field::HopByHop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("upgrade") || is("trailer") => Field::HopByHop,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        14 if is("content-length") => Field::ContentLength,
        16 if is("proxy-connection") => Field::HopByHop,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        18 if is("x-cutover-revision") => Field::Route,
        18 if is("proxy-authenticate") => Field::HopByHop,
        19 if is("proxy-authorization") => Field::HopByHop,
        20 if is("x-cutover-pin-secret") => Field::PinSecret,
        _ => Field::Other,
    }
}

/// The comma-separated tokens of a list-valued field, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// What the `Connection` fields of a head say: `close`, `keep-alive`, and whether they
/// name other fields (which are then hop-by-hop too: see [`Connection::names`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Connection {
    pub close: bool,
    pub keep_alive: bool,
    pub names_others: bool,
}

impl Connection {
    pub fn add(&mut self, value: &[u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else {
                self.names_others = true;
            }
        }
    }
}

/// Whether one of the `Connection` values in `headers` names the field `name`.
pub fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| field(h.name) == Field::Connection)
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// A Content-Length value: digits only, all copies equal (RFC 9112 section 6.3).
fn content_length(prev: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    const BAD: HeadError = HeadError::bad("invalid Content-Length");
    let mut result = None;
    // `Content-Length: 5, 5` is allowed when every member is the same.
    for t in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
        if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
        let n = t.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if result.is_some_and(|r| r != n) {
            return Err(BAD);
        }
        result = Some(n);
    }
    let n = result.ok_or(BAD)?;
    match prev {
        Some(p) if p != n => Err(BAD),
        _ => Ok(n),
    }
}

/// Whether the last transfer coding of a Transfer-Encoding value is `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    tokens(value)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

/// What a request head says about its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1 only).
    pub expect_continue: bool,
    pub has_host: bool,
    /// A `Connection` field names other fields, to be removed too.
    pub connection_names_others: bool,
}

/// Read a request head's framing. `version` is httparse's minor version (0 or 1).
/// Refuses what a proxy must not pass on: both Content-Length and Transfer-Encoding
/// (request smuggling), a Transfer-Encoding whose last coding is not chunked, an invalid
/// or conflicting Content-Length, an Expect other than 100-continue (417).
pub fn request_framing(
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<RequestFraming, HeadError> {
    let mut length = None;
    let mut chunked = None;
    let mut conn = Connection::default();
    let mut expect_continue = false;
    let mut has_host = false;
    for h in headers {
        match field(h.name) {
            Field::ContentLength => length = Some(content_length(length, h.value)?),
            Field::TransferEncoding => chunked = Some(ends_chunked(h.value)),
            Field::Connection => conn.add(h.value),
            Field::Host => has_host = true,
            Field::Expect => {
                if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = version >= 1;
                } else {
                    return Err(HeadError {
                        status: 417,
                        reason: "the only expectation this proxy meets is 100-continue",
                    });
                }
            }
            _ => {}
        }
    }
    let body = match (chunked, length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::bad(
                "both Content-Length and Transfer-Encoding; send one",
            ));
        }
        (Some(true), None) if version >= 1 => Framing::Chunked,
        (Some(_), None) => {
            return Err(HeadError::bad(
                "a Transfer-Encoding that does not end in chunked (or in an HTTP/1.0 request)",
            ));
        }
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    let keep_alive = if version >= 1 {
        !conn.close
    } else {
        conn.keep_alive && !conn.close
    };
    Ok(RequestFraming {
        body,
        keep_alive,
        expect_continue: expect_continue && body != Framing::Empty,
        has_host,
        connection_names_others: conn.names_others,
    })
}

/// What a response head says about its body and whether its connection may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    pub body: Framing,
    /// The backend keeps the connection open after this response.
    pub reusable: bool,
    pub connection_names_others: bool,
}

/// Read a response head's framing (RFC 9112 section 6.3). `head_request`: the request was
/// HEAD (no body whatever the fields say). An invalid Content-Length is an error (the
/// proxy answers 502).
pub fn response_framing(
    version: u8,
    status: u16,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Result<ResponseFraming, HeadError> {
    let mut length = None;
    let mut chunked = None;
    let mut conn = Connection::default();
    for h in headers {
        match field(h.name) {
            Field::ContentLength => length = Some(content_length(length, h.value)?),
            Field::TransferEncoding => chunked = Some(ends_chunked(h.value)),
            Field::Connection => conn.add(h.value),
            _ => {}
        }
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    let keep_alive = if version >= 1 {
        !conn.close
    } else {
        conn.keep_alive && !conn.close
    };
    Ok(ResponseFraming {
        body,
        reusable: keep_alive && body != Framing::UntilClose,
        connection_names_others: conn.names_others,
    })
}

/// The origin-form target to send a backend: an absolute-form target (as sent to a
/// forward proxy) becomes its path and query; anything else is kept.
pub fn origin_form(target: &str) -> &str {
    let lower_starts = |p: &str| {
        target
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let rest = if lower_starts("http://") {
        &target[7..]
    } else if lower_starts("https://") {
        &target[8..]
    } else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host?q` has an empty path: the caller writes `/` before the query.
        Some(i) => &rest[i..],
        None => "",
    }
}

/// Where a chunked body stands in [`Chunked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` read so far.
    Size {
        digits: u8,
    },
    /// After the size: whitespace and extensions up to CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside a chunk's data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(pub &'static str);

/// A streaming decoder of the chunked transfer coding (RFC 9112 section 7.1): feed it the
/// bytes as they arrive; it says how many belong to the body and when the body ended.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    /// Data bytes left in the current chunk (or the size being read).
    remaining: u64,
    /// Bytes of the current size line or of the trailer section, bounded.
    line: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    pub fn new() -> Self {
        Chunked {
            state: State::Size { digits: 0 },
            remaining: 0,
            line: 0,
        }
    }

    /// The body ended (the last chunk, trailers and the final CRLF were read).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Read from `input` up to the end of the body. Returns how many bytes of `input`
    /// belong to the body (all of them unless the body ended inside `input`); `data` is
    /// called with each run of chunk data in order.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok(i),
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let take = self.remaining.min(avail) as usize;
                    data(&input[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size { digits } => {
                    if let Some(d) = (b as char).to_digit(16) {
                        if digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.remaining = self.remaining * 16 + u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError("a chunk size must start with a hex digit"));
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if matches!(b, b';' | b' ' | b'\t') {
                        self.state = State::Ext;
                    } else {
                        return Err(ChunkError("invalid character in a chunk size"));
                    }
                    self.line += 1;
                }
                State::Ext => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError("invalid character in a chunk extension"));
                    }
                    self.line += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("a chunk size line must end in CRLF"));
                    }
                    self.line = 0;
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data must be followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data must be followed by CRLF"));
                    }
                    self.state = State::Size { digits: 0 };
                    self.remaining = 0;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::FinalLf
                    } else if b == b'\n' {
                        return Err(ChunkError("a trailer line must end in CRLF"));
                    } else {
                        State::Trailer
                    };
                    self.line += 1;
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if b == b'\n' {
                        return Err(ChunkError("a trailer line must end in CRLF"));
                    }
                    self.line += 1;
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError("a trailer line must end in CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError("the last chunk must end in CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            if self.line > MAX_CHUNK_LINE {
                return Err(ChunkError("chunk size line or trailers too long"));
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut c = Chunked::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(piece.max(1)) {
            used += c.feed(part, |d| out.extend_from_slice(d))?;
            if c.is_done() {
                break;
            }
        }
        Ok((out, used))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for piece in 1..body.len() {
            let (data, used) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "piece {piece}");
            assert_eq!(used, end, "piece {piece}");
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki\r\n",
            b"4\r\nWikiX\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\n\n",
            b"4;a\nb\r\n",
        ] {
            assert!(
                decode_in_pieces(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("1;{}\r\n", "e".repeat(5000));
        assert!(decode_in_pieces(long.as_bytes(), 7).is_err());
    }

    #[test]
    fn request_framing_follows_rfc_9112() {
        let f = request_framing(1, &[h("Host", "a"), h("Content-Length", "12")]).unwrap();
        assert_eq!(f.body, Framing::Length(12));
        assert!(f.keep_alive && f.has_host && !f.expect_continue);
        let f = request_framing(1, &[h("transfer-encoding", "gzip, chunked")]).unwrap();
        assert_eq!(f.body, Framing::Chunked);
        let f = request_framing(0, &[h("connection", "Keep-Alive")]).unwrap();
        assert!(f.keep_alive);
        assert!(!request_framing(0, &[]).unwrap().keep_alive);
        let f = request_framing(1, &[h("connection", "close, x-a")]).unwrap();
        assert!(!f.keep_alive && f.connection_names_others);
        let f =
            request_framing(1, &[h("expect", "100-Continue"), h("content-length", "3")]).unwrap();
        assert!(f.expect_continue);
        assert_eq!(
            request_framing(1, &[h("expect", "x")]).unwrap_err().status,
            417
        );
        for bad in [
            vec![h("content-length", "1"), h("transfer-encoding", "chunked")],
            vec![h("transfer-encoding", "chunked, gzip")],
            vec![h("content-length", "1"), h("content-length", "2")],
            vec![h("content-length", "-1")],
            vec![h("content-length", "1, 2")],
            vec![h("content-length", "99999999999999999999")],
        ] {
            assert_eq!(request_framing(1, &bad).unwrap_err().status, 400, "{bad:?}");
        }
        let f = request_framing(1, &[h("content-length", "7, 7")]).unwrap();
        assert_eq!(f.body, Framing::Length(7));
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let r = |status, head, hs: &[httparse::Header<'_>]| {
            response_framing(1, status, head, hs).unwrap()
        };
        assert_eq!(
            r(200, true, &[h("content-length", "5")]).body,
            Framing::Empty
        );
        assert_eq!(r(204, false, &[]).body, Framing::Empty);
        assert_eq!(
            r(304, false, &[h("content-length", "5")]).body,
            Framing::Empty
        );
        assert_eq!(r(200, false, &[]).body, Framing::UntilClose);
        assert!(!r(200, false, &[]).reusable);
        assert_eq!(
            r(200, false, &[h("Transfer-Encoding", "chunked")]).body,
            Framing::Chunked
        );
        assert!(
            !r(
                200,
                false,
                &[h("connection", "close"), h("content-length", "1")]
            )
            .reusable
        );
        assert!(
            !response_framing(0, 200, false, &[h("content-length", "1")])
                .unwrap()
                .reusable
        );
        assert!(response_framing(1, 200, false, &[h("content-length", "x")]).is_err());
    }

    #[test]
    fn absolute_targets_become_origin_form() {
        assert_eq!(origin_form("/a?b"), "/a?b");
        assert_eq!(origin_form("http://h:1/a?b"), "/a?b");
        assert_eq!(origin_form("HTTPS://h/x"), "/x");
        assert_eq!(origin_form("http://h"), "");
        assert_eq!(origin_form("http://h?q"), "?q");
        assert_eq!(origin_form("*"), "*");
    }

    #[test]
    fn fields_are_recognised_case_insensitively() {
        assert_eq!(field("X-Cutover-Revision"), Field::Route);
        assert_eq!(field("X-CUTOVER-PIN-SECRET"), Field::PinSecret);
        assert_eq!(field("Proxy-Authenticate"), Field::HopByHop);
        assert_eq!(field("Keep-Alive"), Field::HopByHop);
        assert_eq!(field("TE"), Field::HopByHop);
        for name in [
            "te",
            "upgrade",
            "trailer",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
        ] {
            assert_eq!(field(&name.to_uppercase()), Field::HopByHop, "{name}");
        }
        assert_eq!(field("content-type"), Field::Other);
        let hs = [h("Connection", "x-a, close")];
        assert!(named_by_connection(&hs, "X-A"));
        assert!(!named_by_connection(&hs, "x-b"));
    }
}
