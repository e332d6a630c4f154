//! The proxy's data path, by hand: one task per client connection reads each request head
//! (`httparse`), routes it (`Inner::route` in `proxy.rs`: the same split, pins and
//! refusals as before), writes the head straight to a pooled keep-alive backend connection
//! (`backend_pool.rs`) from the same task, streams the body both ways and gives the backend
//! connection back when the exchange was clean. No spawned client task, no channel, no
//! `HeaderMap`: header fields are copied from the read buffer to the write buffer, minus the
//! hop-by-hop ones (`h1_framing.rs`).
//!
//! What it handles: Content-Length and chunked bodies both ways (a chunked response is
//! passed through verbatim to an HTTP/1.1 client and de-chunked for an HTTP/1.0 one, which
//! then sees the connection close), bodies delimited by the backend closing, pipelined
//! requests (answered in order), `Connection: close` and HTTP/1.0 keep-alive,
//! `Expect: 100-continue` (the proxy answers `100 Continue` itself before reading the body
//! and does not forward the expectation), HEAD/1xx/204/304 without a body, a backend's
//! interim 1xx responses (skipped), an answer the backend sends before it read the whole
//! request body (relayed; then both connections close). Refused: a malformed head (400), a
//! head over [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields (431), both
//! Content-Length and Transfer-Encoding or a Transfer-Encoding not ending in chunked (400),
//! an expectation other than 100-continue (417), `CONNECT` (501). `Upgrade` is hop-by-hop and removed, as
//! the hyper path did: an upgrade request reaches the backend as a plain request.
//!
//! A backend that fails before answering (refused, reset, a bad head) gets the client a
//! 502; one that fails mid-body gets the client's connection closed (the head was sent);
//! both count as a connection error of the revision and never hang. A pooled connection
//! that turns out closed before any answer byte is retried once on a new connection when
//! the request had no body and is idempotent (its whole head is still at hand).
//!
//! A client that leaves while its backend works is noticed at once: while the proxy waits
//! for the answer's head or for more of its body, one `select!` watches the client's
//! socket beside the backend's (no task, no channel). EOF with nothing pipelined behind
//! the request, or a reset, abandons the exchange: the backend connection is dropped (not
//! pooled), the in-flight count goes down (a drain stops waiting), and the stats count
//! what the hyper path counted: nothing before the head (neither a response nor a
//! connection error), the response (at its head) when the body was being relayed.
//! Bytes the client pipelined meanwhile are kept for the next exchange; an EOF behind
//! them is a half-close, and every request sent before it is answered (`check_client`).
//! No idle or read timeouts, as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::backend_pool::{BackendConn, IoBuf};
use super::h1_framing::{
    Chunked, Field, Framing, HeadError, MAX_HEAD, MAX_HEADERS, field, named_by_connection,
    origin_form, request_framing, response_framing,
};
use super::pin::may_pin;
use super::proxy::{InFlightGuard, Inner, Refusal};
use crate::platform::TEST_ROUTE_HEADER;

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// One routed request, ready to be sent: its head is in the connection's `out` buffer.
struct Plan {
    head_len: usize,
    body: Framing,
    keep_alive: bool,
    expect_continue: bool,
    head_request: bool,
    http10: bool,
    pinned: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 section 9.2.2).
    idempotent: bool,
    guard: InFlightGuard,
}

impl Plan {
    /// A request that was written on a pooled connection which then closed without a
    /// byte of answer may be sent again on a new one: it has no body (its head is all
    /// there is, still at hand) and doing it twice is harmless.
    fn resendable(&self) -> bool {
        self.body == Framing::Empty && self.idempotent
    }
}

/// What reading a request head gave.
enum Head {
    Routed(Plan),
    /// The proxy answers itself (refusal, bad head); `Next` says whether the connection
    /// can go on (only when the request had no body to skip).
    Answer(Refusal, Next),
}

/// Serve one client connection until it closes, asks to, or shutdown is asked (between
/// exchanges; an idle connection closes at once).
pub(super) async fn serve_connection(
    inner: Arc<Inner>,
    mut client: TcpStream,
    this_machine: bool,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut cbuf = IoBuf::new();
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    // The client shut its write side after pipelining requests: they are answered, and
    // its socket is no longer watched (it reads as ready for good).
    let mut read_closed = false;
    loop {
        if stop.has_changed().unwrap_or(true) {
            return;
        }
        let head = match read_head(
            &inner,
            &mut client,
            &mut cbuf,
            &mut out,
            this_machine,
            &mut stop,
        )
        .await
        {
            Some(h) => h,
            None => return,
        };
        let next = match head {
            Head::Answer(refusal, next) => {
                let close = next == Next::Close || stop.has_changed().unwrap_or(true);
                out.clear();
                write_answer(&mut out, &refusal, close);
                if client.write_all(&out).await.is_err() {
                    return;
                }
                if close {
                    linger_close(&mut client).await;
                    return;
                }
                Next::KeepAlive
            }
            Head::Routed(plan) => {
                exchange(
                    &inner,
                    &mut client,
                    &mut cbuf,
                    &mut read_closed,
                    &mut out,
                    plan,
                    &stop,
                )
                .await
            }
        };
        if next == Next::Close {
            return;
        }
    }
}

/// Read until a whole head is buffered, then check and route it. `None`: the client
/// closed (or shutdown was asked) before a head arrived, or a read failed.
async fn read_head(
    inner: &Inner,
    client: &mut TcpStream,
    cbuf: &mut IoBuf,
    out: &mut Vec<u8>,
    this_machine: bool,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Option<Head> {
    loop {
        if !cbuf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(cbuf.filled()) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = plan_request(inner, &req, n, out, this_machine);
                    if matches!(head, Head::Answer(..)) {
                        // Answered here: the head is done with. (Left in the buffer, it
                        // was parsed and refused again and again, every copy of the
                        // refusal an answer the client never asked for, and every later
                        // answer on the connection paired with an earlier request.)
                        cbuf.consume(n);
                    }
                    return Some(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Some(Head::Answer(
                        Refusal::text(
                            431,
                            format!(
                                "cutover proxy: more than {MAX_HEADERS} header fields; send fewer\n"
                            ),
                        ),
                        Next::Close,
                    ));
                }
                Err(e) => {
                    return Some(Head::Answer(
                        Refusal::text(400, format!("cutover proxy: malformed request head: {e}\n")),
                        Next::Close,
                    ));
                }
            }
        }
        let idle = cbuf.is_empty();
        let spare = cbuf.spare(MAX_HEAD);
        if spare.is_empty() {
            return Some(Head::Answer(
                Refusal::text(
                    431,
                    format!(
                        "cutover proxy: the request head is larger than {} KiB; send a smaller one\n",
                        MAX_HEAD / 1024
                    ),
                ),
                Next::Close,
            ));
        }
        let n = if idle {
            // Waiting for the next request: shutdown closes the connection now.
            tokio::select! {
                biased;
                r = client.read(spare) => r.ok()?,
                _ = stop.changed() => return None,
            }
        } else {
            client.read(spare).await.ok()?
        };
        if n == 0 {
            // Closed; a partial head is dropped (nothing was routed for it).
            return None;
        }
        cbuf.advance_end(n);
    }
}

/// Check a complete request head, route it, and write the head the backend gets into
/// `out`.
fn plan_request(
    inner: &Inner,
    req: &httparse::Request<'_, '_>,
    head_len: usize,
    out: &mut Vec<u8>,
    this_machine: bool,
) -> Head {
    let version = req.version.unwrap_or(1);
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let framing = match request_framing(version, req.headers) {
        Ok(f) => f,
        Err(HeadError { status, reason }) => {
            return Head::Answer(
                Refusal::text(status, format!("cutover proxy: {reason}\n")),
                Next::Close,
            );
        }
    };
    // After a refusal the connection goes on only if no body follows the head.
    let after_refusal = if framing.body == Framing::Empty && framing.keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    if method == "CONNECT" {
        return Head::Answer(
            Refusal::text(
                501,
                "cutover proxy: CONNECT is not supported; send the request itself\n".into(),
            ),
            Next::Close,
        );
    }
    let mut wanted: Option<&[u8]> = None;
    let mut offered: Option<&[u8]> = None;
    for h in req.headers.iter() {
        match field(h.name) {
            Field::Route => wanted = Some(h.value),
            Field::PinSecret => offered = Some(h.value),
            _ => {}
        }
    }
    let pinned = wanted.is_some();
    if pinned {
        let offered = offered.and_then(|v| hyper::header::HeaderValue::from_bytes(v).ok());
        if !may_pin(this_machine, inner.pin_secret(), offered.as_ref()) {
            return Head::Answer(
                Refusal::text(
                    403,
                    format!(
                        "cutover proxy: the {TEST_ROUTE_HEADER} header is honoured only from this machine, or with the release's pin secret in {}; send the request without it\n",
                        super::pin::PIN_SECRET_HEADER
                    ),
                ),
                after_refusal,
            );
        }
    }
    let guard = match inner.route(wanted) {
        Ok(g) => g,
        Err(refusal) => return Head::Answer(refusal, after_refusal),
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let target = origin_form(target);
    if !target.starts_with(['/', '*']) {
        out.push(b'/');
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let keep = match field(h.name) {
            Field::PinSecret
            | Field::HopByHop
            | Field::Connection
            | Field::Expect
            | Field::TransferEncoding => false,
            Field::Host | Field::ContentLength | Field::Route | Field::Other => {
                !framing.connection_names_others || !named_by_connection(req.headers, h.name)
            }
        };
        if keep {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    if framing.body == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !framing.has_host {
        push_field(out, b"host", guard.backend().host.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Head::Routed(Plan {
        head_len,
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        head_request: method == "HEAD",
        http10: version == 0,
        pinned,
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        guard,
    })
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A short answer written by the proxy itself.
fn write_answer(out: &mut Vec<u8>, refusal: &Refusal, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, refusal.status);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(refusal.status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(refusal.text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(rev) = &refusal.revision {
        push_field(out, TEST_ROUTE_HEADER.as_bytes(), rev.as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(refusal.text.as_bytes());
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// How long a connection closed after a refusal keeps reading what the client still sends.
const LINGER: Duration = Duration::from_millis(500);
/// At most this much is read and dropped then.
const LINGER_MAX: usize = 1 << 20;

/// Close after an answer while the client may still be sending (an unread body or head):
/// send FIN, then read and drop what comes for a short while, so that the kernel does not
/// reset the connection for unread data, which can destroy the answer before the client
/// read it (nginx's lingering close).
async fn linger_close(client: &mut TcpStream) {
    let _ = client.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0;
        while total < LINGER_MAX {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Why an exchange with a backend failed.
#[derive(Debug)]
enum Failure {
    /// Before the response head reached the client: answer 502.
    BeforeHead(String),
    /// The backend failed after the head was sent: close the client's connection.
    MidBody(String),
    /// The client went away or sent a broken body: close, not the backend's fault.
    Client,
}

/// Send one routed request and relay the answer.
async fn exchange(
    inner: &Inner,
    client: &mut TcpStream,
    cbuf: &mut IoBuf,
    read_closed: &mut bool,
    out: &mut Vec<u8>,
    plan: Plan,
    stop: &watch::Receiver<Option<Duration>>,
) -> Next {
    cbuf.consume(plan.head_len);
    let started = Instant::now();
    let backend = plan.guard.backend().clone();
    let mut result = None;
    // A request without a body can be sent again whole if a pooled connection turns out
    // closed before it answered; its head stays in `out` until the answer starts.
    let mut fresh_only = false;
    for _attempt in 0..2 {
        let conn = if fresh_only {
            None
        } else {
            backend.take_idle()
        };
        let mut conn = match conn {
            Some(c) => c,
            None => match Box::pin(backend.connect()).await {
                Ok(c) => c,
                Err(e) => {
                    result = Some(Err(Failure::BeforeHead(e.to_string())));
                    break;
                }
            },
        };
        match send_and_relay(client, cbuf, read_closed, out, &mut conn, &plan, stop).await {
            // `Retry` comes only from a pooled connection, for a request without a body.
            Err(Retry) => {
                fresh_only = true;
                continue;
            }
            Ok(done) => {
                if let Ok(ok) = &done
                    && ok.reusable
                {
                    backend.put_idle(conn);
                }
                result = Some(done);
                break;
            }
        }
    }
    let revision = plan.guard.revision();
    match result {
        Some(Ok(ok)) => {
            if !plan.pinned {
                revision
                    .stats
                    .record_response_at(ok.status, ok.head_at - started, ok.head_at);
            }
            drop(plan.guard);
            if ok.cut {
                linger_close(client).await;
            }
            ok.next
        }
        Some(Err(Failure::Client)) | None => Next::Close,
        Some(Err(Failure::MidBody(e))) => {
            if !plan.pinned {
                revision.stats.record_connection_error();
            }
            tracing::debug!(service = %inner.service(), revision = %revision.name, backend = %backend.addr, error = %e, "backend failed mid-response");
            Next::Close
        }
        Some(Err(Failure::BeforeHead(e))) => {
            if !plan.pinned {
                revision.stats.record_connection_error();
            }
            tracing::debug!(service = %inner.service(), revision = %revision.name, backend = %backend.addr, error = %e, "backend unreachable");
            let refusal = Refusal {
                status: 502,
                revision: revision.header.clone(),
                text: format!(
                    "cutover proxy: revision `{}` of service `{}` at {} could not be reached: {}\n",
                    revision.name,
                    inner.service(),
                    backend.addr,
                    e
                ),
            };
            // A request body the backend did not take is still (partly) unread: close.
            let close = !(plan.keep_alive && plan.body == Framing::Empty);
            drop(plan.guard);
            out.clear();
            write_answer(out, &refusal, close);
            if client.write_all(out).await.is_err() {
                Next::Close
            } else if close {
                linger_close(client).await;
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
    }
}

/// A pooled connection was found closed before any byte of an answer.
struct Retry;

/// A relayed exchange.
struct Done {
    status: u16,
    head_at: Instant,
    reusable: bool,
    next: Next,
    /// The request body was cut short by an early answer: the client may still be sending.
    cut: bool,
}

/// Write the request (head in `out`, then its body) on `conn`, read the answer's head,
/// write it to the client, and stream the answer's body.
async fn send_and_relay(
    client: &mut TcpStream,
    cbuf: &mut IoBuf,
    read_closed: &mut bool,
    out: &mut Vec<u8>,
    conn: &mut BackendConn,
    plan: &Plan,
    stop: &watch::Receiver<Option<Duration>>,
) -> Result<Result<Done, Failure>, Retry> {
    // The head, with as much of the body as is already buffered.
    let mut body_left = match plan.body {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::new();
    let head_end = out.len();
    let body_done = match plan.body {
        Framing::Empty | Framing::UntilClose => true,
        Framing::Length(_) => {
            let take = (cbuf.filled().len() as u64).min(body_left) as usize;
            out.extend_from_slice(&cbuf.filled()[..take]);
            cbuf.consume(take);
            body_left -= take as u64;
            body_left == 0
        }
        Framing::Chunked => match chunked.feed(cbuf.filled(), |_| {}) {
            Ok(used) => {
                out.extend_from_slice(&cbuf.filled()[..used]);
                cbuf.consume(used);
                chunked.is_done()
            }
            Err(_) => return Ok(Err(Failure::Client)),
        },
    };
    let written = conn.stream.write_all(out).await;
    // Keep only the head for a retry (there is a body only when no retry happens).
    out.truncate(head_end);
    if written.is_err() {
        return if conn.reused && plan.body == Framing::Empty {
            Err(Retry)
        } else {
            Ok(Err(Failure::BeforeHead(
                "writing the request failed".into(),
            )))
        };
    }
    let mut cut = false;
    if !body_done {
        if plan.expect_continue
            && client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return Ok(Err(Failure::Client));
        }
        match stream_request_body(client, cbuf, conn, plan.body, body_left, chunked).await {
            Ok(sent) => cut = sent == BodySent::Cut,
            Err(f) => return Ok(Err(f)),
        }
    }

    // The answer's head (interim 1xx answers skipped). Meanwhile the client is watched: one
    // that leaves abandons the exchange (see `check_client`).
    let mut got_any = false;
    let mut watching = !*read_closed;
    let (status, framing, head_at) = loop {
        if !conn.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(conn.buf.filled()) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(502);
                    if (100..200).contains(&status) && status != 101 {
                        conn.buf.consume(n);
                        continue;
                    }
                    if status == 101 {
                        return Ok(Err(Failure::BeforeHead(
                            "the backend switched protocols, which this proxy does not relay"
                                .into(),
                        )));
                    }
                    let head_at = Instant::now();
                    let framing = match response_framing(
                        resp.version.unwrap_or(1),
                        status,
                        plan.head_request,
                        resp.headers,
                    ) {
                        Ok(f) => f,
                        Err(e) => return Ok(Err(Failure::BeforeHead(e.reason.into()))),
                    };
                    let dechunk = framing.body == Framing::Chunked && plan.http10;
                    let close = !plan.keep_alive
                        || cut
                        || framing.body == Framing::UntilClose
                        || dechunk
                        || stop.has_changed().unwrap_or(true);
                    let route = plan.guard.revision().header.as_ref();
                    out.clear();
                    out.extend_from_slice(b"HTTP/1.1 ");
                    push_status(out, status);
                    out.push(b' ');
                    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
                    out.extend_from_slice(b"\r\n");
                    for h in resp.headers.iter() {
                        let keep = match field(h.name) {
                            Field::HopByHop | Field::Connection | Field::TransferEncoding => false,
                            Field::Route if route.is_some() => false,
                            _ => {
                                !framing.connection_names_others
                                    || !named_by_connection(resp.headers, h.name)
                            }
                        };
                        if keep {
                            push_field(out, h.name.as_bytes(), h.value);
                        }
                    }
                    if framing.body == Framing::Chunked && !dechunk {
                        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    }
                    if let Some(rev) = route {
                        push_field(out, TEST_ROUTE_HEADER.as_bytes(), rev.as_bytes());
                    }
                    if close {
                        out.extend_from_slice(b"connection: close\r\n");
                    } else if plan.http10 {
                        out.extend_from_slice(b"connection: keep-alive\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                    conn.buf.consume(n);
                    let next = if close { Next::Close } else { Next::KeepAlive };
                    break (status, (framing, dechunk, next), head_at);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Ok(Err(Failure::BeforeHead(format!(
                        "malformed response head: {e}"
                    ))));
                }
            }
        }
        let spare = conn.buf.spare(MAX_HEAD);
        if spare.is_empty() {
            return Ok(Err(Failure::BeforeHead(format!(
                "the response head is larger than {} KiB",
                MAX_HEAD / 1024
            ))));
        }
        let Ok(read) = read_watching(
            &mut conn.stream,
            spare,
            client,
            cbuf,
            read_closed,
            &mut watching,
        )
        .await
        else {
            return Ok(Err(Failure::Client));
        };
        match read {
            // The request was written: sent again only if doing it twice is harmless.
            Ok(0) | Err(_) if !got_any && conn.reused && plan.resendable() => return Err(Retry),
            Ok(0) => {
                return Ok(Err(Failure::BeforeHead(
                    "the connection closed before a complete answer".into(),
                )));
            }
            Err(e) => return Ok(Err(Failure::BeforeHead(e.to_string()))),
            Ok(n) => {
                got_any = true;
                conn.buf.advance_end(n);
            }
        }
    };
    let (framing, dechunk, next) = framing;
    match relay_response_body(client, cbuf, read_closed, out, conn, framing.body, dechunk).await {
        Ok(()) => Ok(Ok(Done {
            status,
            head_at,
            reusable: framing.reusable && !cut,
            next,
            cut,
        })),
        // The client went away mid-answer (a failed write, or it closed while the proxy
        // waited for more of the body): the backend answered, so the response counts, as
        // the hyper path counted it (at its head); its connection is not reused (the body
        // was not read to its end).
        Err(Failure::Client) => Ok(Ok(Done {
            status,
            head_at,
            reusable: false,
            next: Next::Close,
            cut: false,
        })),
        Err(f) => Ok(Err(f)),
    }
}

/// How much of a request body reached the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodySent {
    Whole,
    /// The backend answered (or closed) before it had the whole body: its answer is
    /// relayed, then both connections close (the rest of the client's body is unread).
    Cut,
}

/// Stream the rest of a request body from the client to the backend, watching the backend
/// meanwhile: one that answers early (a 413, say) or stops reading is not waited on.
async fn stream_request_body(
    client: &mut TcpStream,
    cbuf: &mut IoBuf,
    conn: &mut BackendConn,
    framing: Framing,
    mut left: u64,
    mut chunked: Chunked,
) -> Result<BodySent, Failure> {
    loop {
        let cap = cbuf.data.len();
        let spare = cbuf.spare(cap);
        let n = tokio::select! {
            biased;
            r = client.read(spare) => match r {
                Ok(0) | Err(_) => return Err(Failure::Client),
                Ok(n) => n,
            },
            r = conn.stream.readable() => {
                if r.is_err() || early_answer(conn) {
                    return Ok(BodySent::Cut);
                }
                continue;
            }
        };
        cbuf.advance_end(n);
        let (used, done) = match framing {
            Framing::Length(_) => {
                let take = (cbuf.filled().len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0)
            }
            Framing::Chunked => {
                let used = chunked
                    .feed(cbuf.filled(), |_| {})
                    .map_err(|_| Failure::Client)?;
                (used, chunked.is_done())
            }
            Framing::Empty | Framing::UntilClose => (0, true),
        };
        let mut data = &cbuf.filled()[..used];
        while !data.is_empty() {
            tokio::select! {
                biased;
                r = conn.stream.writable() => {
                    if r.is_err() {
                        return Ok(BodySent::Cut);
                    }
                    match conn.stream.try_write(data) {
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // Reset or closed: an answer it sent first is still read.
                        Err(_) => return Ok(BodySent::Cut),
                    }
                }
                r = conn.stream.readable() => {
                    if r.is_err() || early_answer(conn) {
                        return Ok(BodySent::Cut);
                    }
                }
            }
        }
        cbuf.consume(used);
        if done {
            return Ok(BodySent::Whole);
        }
    }
}

/// The backend's connection reads as ready while the request body is still being sent:
/// true when it sent bytes (kept in its buffer, an answer's start) or closed; false when
/// the readiness was stale.
fn early_answer(conn: &mut BackendConn) -> bool {
    let spare = conn.buf.spare(MAX_HEAD);
    if spare.is_empty() {
        return true;
    }
    match conn.stream.try_read(spare) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Ok(n) => {
            conn.buf.advance_end(n);
            true
        }
        Err(_) => true,
    }
}

/// The client left while the proxy waited on its backend.
struct Gone;

/// Read from the backend into `spare` while watching the client (`check_client`), the one
/// `select!` that notices a client leaving; `watching` turns off for good when the client
/// can no longer be watched in this exchange.
async fn read_watching(
    backend: &mut TcpStream,
    spare: &mut [u8],
    client: &TcpStream,
    cbuf: &mut IoBuf,
    read_closed: &mut bool,
    watching: &mut bool,
) -> Result<std::io::Result<usize>, Gone> {
    loop {
        tokio::select! {
            biased;
            r = backend.read(&mut *spare) => return Ok(r),
            r = client.readable(), if *watching => {
                match r.map_or(Client::Gone, |()| check_client(client, cbuf, read_closed)) {
                    Client::Here => {}
                    Client::Unwatched => *watching = false,
                    Client::Gone => return Err(Gone),
                }
            }
        }
    }
}

/// What the client's socket says while the proxy waits on the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Nothing to conclude: the readiness was stale, or the client pipelined more bytes
    /// (kept in its buffer, the next requests).
    Here,
    /// Still owed answers but no longer watched: it shut its write side after pipelining
    /// (its socket would read as ready for good), or its buffer is full of pipelined
    /// bytes (read on once the exchange ends).
    Unwatched,
    /// Closed (EOF with no request of its left to answer but this one) or reset.
    Gone,
}

/// The client's socket reads as ready while its request is with the backend: read what it
/// sent into `cbuf`, without losing a byte of a pipelined request, and tell whether the
/// client is gone.
///
/// EOF is the client leaving when nothing it sent after this request is left: that is how
/// HTTP/1.1 clients stop waiting (curl, browsers and load generators close; none shuts
/// only its write side and then waits), and it is what hyper (its default, no
/// `half_close`) and nginx (without `proxy_ignore_client_abort`) take it for. TCP cannot
/// tell a `close` from a `shutdown(Write)`. An EOF behind pipelined bytes is a half-close:
/// the client sent those requests before it, so it waits for their answers; all are given,
/// then the connection closes. A reset is gone whatever is buffered (nothing can be
/// written to it).
fn check_client(client: &TcpStream, cbuf: &mut IoBuf, read_closed: &mut bool) -> Client {
    loop {
        // Not grown here: a full buffer is the next requests, read on after this one.
        let cap = cbuf.data.len();
        let spare = cbuf.spare(cap);
        if spare.is_empty() {
            return Client::Unwatched;
        }
        match client.try_read(spare) {
            Ok(0) if cbuf.is_empty() => return Client::Gone,
            Ok(0) => {
                *read_closed = true;
                return Client::Unwatched;
            }
            Ok(n) => cbuf.advance_end(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Client::Here,
            Err(_) => return Client::Gone,
        }
    }
}

/// Write the response head (in `out`) and stream the body from the backend to the client.
async fn relay_response_body(
    client: &mut TcpStream,
    cbuf: &mut IoBuf,
    read_closed: &mut bool,
    out: &mut Vec<u8>,
    conn: &mut BackendConn,
    framing: Framing,
    dechunk: bool,
) -> Result<(), Failure> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::new();
    // The first pass sends the head with what is already buffered; then read and relay,
    // watching the client meanwhile (a slow body is not streamed to a client that left).
    let mut first = true;
    let mut watching = !*read_closed;
    loop {
        if !first {
            let cap = conn.buf.data.len();
            let spare = conn.buf.spare(cap);
            let read = read_watching(
                &mut conn.stream,
                spare,
                client,
                cbuf,
                read_closed,
                &mut watching,
            )
            .await
            .map_err(|Gone| Failure::Client)?;
            match read {
                Ok(0) if framing == Framing::UntilClose => {
                    return Ok(());
                }
                Ok(0) => {
                    return Err(Failure::MidBody(
                        "the connection closed before the end of the body".into(),
                    ));
                }
                Err(e) => return Err(Failure::MidBody(e.to_string())),
                Ok(n) => conn.buf.advance_end(n),
            }
        }
        let done = match framing {
            Framing::Empty => true,
            Framing::Length(_) => {
                let take = (conn.buf.filled().len() as u64).min(left) as usize;
                out.extend_from_slice(&conn.buf.filled()[..take]);
                conn.buf.consume(take);
                left -= take as u64;
                left == 0
            }
            Framing::UntilClose => {
                out.extend_from_slice(conn.buf.filled());
                conn.buf.consume(usize::MAX);
                false
            }
            Framing::Chunked => {
                let used = if dechunk {
                    chunked.feed(conn.buf.filled(), |d| out.extend_from_slice(d))
                } else {
                    chunked.feed(conn.buf.filled(), |_| {})
                };
                let used = used.map_err(|e| Failure::MidBody(e.to_string()))?;
                if !dechunk {
                    out.extend_from_slice(&conn.buf.filled()[..used]);
                }
                conn.buf.consume(used);
                chunked.is_done()
            }
        };
        first = false;
        if !out.is_empty() {
            if client.write_all(out).await.is_err() {
                return Err(Failure::Client);
            }
            out.clear();
        }
        if done {
            return Ok(());
        }
    }
}
