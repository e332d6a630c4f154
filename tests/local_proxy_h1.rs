//! The proxy's hand-written HTTP/1 path (`src/platform/local/proxy_h1.rs`) byte by byte:
//! raw clients and raw or hyper backends over loopback, for what the proxy now frames
//! itself (chunked both ways, pipelining, 100-continue, HEAD, early closes, resets, bad and
//! oversized heads, hop-by-hop fields, clients that leave while their backend works).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cutover::platform::local::h1_framing::Chunked;
use cutover::platform::local::proxy::{DrainOutcome, ServiceProxy};
use cutover::platform::local::stats::ProxyStats;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every await in these tests is bounded: a hang is a failure, not a stuck run.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {LIMIT:?} (a hang)"))
}

/// A hyper backend that answers with what it received: `METHOD TARGET`, each header
/// field as `name: value`, an empty line, then the body.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let mut text = format!("{} {}\n", req.method(), req.uri());
                        for (k, v) in req.headers() {
                            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
                        }
                        text.push('\n');
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut all = text.into_bytes();
                        all.extend_from_slice(&body);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(all))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A backend that reads one request head per exchange and answers each with the next of
/// `answers` (raw bytes), then does what `after` says with the connection.
#[derive(Clone, Copy)]
enum After {
    KeepOpen,
    /// Close (FIN) after the last answer.
    Close,
    /// Close with a TCP reset (SO_LINGER 0).
    Reset,
}

async fn scripted_backend(answers: Vec<Vec<u8>>, after: After) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for answer in answers.iter() {
                    if !read_one_head(&mut stream, &mut buf).await {
                        return;
                    }
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
                match after {
                    After::Close => drop(stream),
                    After::KeepOpen => {
                        let mut sink = [0u8; 1024];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                    After::Reset => {
                        // Let the proxy relay what was written before the reset.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        // Linger 0 does not block on drop, which is why tokio deprecated it.
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                        drop(stream);
                    }
                }
            });
        }
    });
    addr
}

/// Read one request head (these requests have no body) off `buf`, reading more into it
/// as needed; false when the connection ended first.
async fn read_one_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            buf.drain(..i + 4);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn proxy_to(backend: SocketAddr) -> (ServiceProxy, Arc<ProxyStats>) {
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("svc", "127.0.0.1:0".parse().unwrap(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![backend]);
    proxy.set_weights(&vec![("v1".to_string(), 100)]).unwrap();
    (proxy, stats)
}

/// One response as a raw client reads it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection with its read buffer.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Read more; false at the end of the stream (closed or reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match within("read", self.stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Read one response to a request (`head_request`: no body whatever it says).
    /// `None` when the connection ended before a whole response.
    async fn response(&mut self, head_request: bool) -> Option<Resp> {
        let (status, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (r.code.unwrap(), headers, n);
            }
            if !self.fill().await {
                return None;
            }
        };
        self.buf.drain(..head_len);
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        } else if get("transfer-encoding").is_some_and(|t| t.ends_with("chunked")) {
            let mut c = Chunked::new();
            loop {
                let used = c.feed(&self.buf, |d| body.extend_from_slice(d)).unwrap();
                self.buf.drain(..used);
                if c.is_done() {
                    break;
                }
                if !self.fill().await {
                    return None;
                }
            }
        } else if let Some(n) = get("content-length") {
            let n: usize = n.parse().unwrap();
            while self.buf.len() < n {
                if !self.fill().await {
                    return None;
                }
            }
            body = self.buf.drain(..n).collect();
        } else {
            while self.fill().await {}
            body = std::mem::take(&mut self.buf);
        }
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    /// True when the proxy closed the connection (EOF or reset) with nothing more sent.
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

fn counted(stats: &ProxyStats) -> (u64, u64) {
    let c = stats
        .get("svc", "v1")
        .unwrap()
        .counters(Duration::from_secs(1));
    (c.requests, c.connection_errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_and_response_bodies_pass_through() {
    // Request: chunked in, the backend (hyper) reads the whole body.
    let (proxy, _) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"6;ext=1\r\n world\r\n0\r\ntrailer-x: 1\r\n\r\n")
        .await;
    let r = within("chunked request", c.response(false)).await.unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with("POST /up\n"), "{text}");
    assert!(text.ends_with("\n\nhello world"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert_eq!(r.header("x-cutover-revision"), Some("v1"));
    proxy.shutdown().await;

    // Response: chunked out of the backend, in pieces, passed through to a 1.1 client and
    // the connection kept.
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-b: 1\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n".to_vec();
    let backend = scripted_backend(vec![chunked; 3], After::KeepOpen).await;
    let (proxy, stats) = proxy_to(backend).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let r = within("chunked response", c.response(false)).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "Wikipedia"));
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.header("x-b"), Some("1"));
        assert_eq!(r.header("connection"), None);
    }
    // An HTTP/1.0 client gets it de-chunked, and the connection closes to end it.
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await;
    let r = within("de-chunked", c.response(false)).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "Wikipedia"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(counted(&stats), (3, 0));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_the_backend_closing_is_relayed_then_the_client_closed() {
    // Neither Content-Length nor chunked: the body ends when the backend closes, so the
    // client learns the end the same way.
    let answer = b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nuntil the end".to_vec();
    let (proxy, stats) = proxy_to(scripted_backend(vec![answer], After::Close).await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("until close", c.response(false)).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "until the end"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(counted(&stats), (1, 0));
    assert_eq!(proxy.in_flight("v1"), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_while_the_body_is_sent_is_relayed_and_the_connection_closed() {
    // The backend reads the head only and refuses the upload at once (it does not read
    // the body): the client gets the 413 while it is still sending, not a hang or a 502.
    let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n".to_vec();
    let (proxy, stats) = proxy_to(scripted_backend(vec![answer], After::KeepOpen).await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"PUT /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n")
        .await;
    c.send(&[b'x'; 1024]).await;
    let r = within("early answer", c.response(false)).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (413, "too big\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed().await);
    assert_eq!(counted(&stats), (1, 0));
    assert_eq!(proxy.in_flight("v1"), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (proxy, stats) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(
            format!("POST /r{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nb{i}").as_bytes(),
        );
    }
    all.extend_from_slice(b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    c.send(&all).await;
    for i in 0..5 {
        let r = within("pipelined", c.response(false)).await.unwrap();
        let text = r.text();
        assert!(text.starts_with(&format!("POST /r{i}\n")), "{text}");
        assert!(text.ends_with(&format!("\n\nb{i}")), "{text}");
    }
    let r = within("last", c.response(false)).await.unwrap();
    assert!(r.text().starts_with("GET /last\n"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed().await);
    assert_eq!(counted(&stats), (6, 0));
    assert_eq!(proxy.in_flight("v1"), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_early_releases_its_request_and_the_proxy_goes_on() {
    // A large response the client stops reading after the head.
    let big = vec![b'x'; 4 << 20];
    let mut answer =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", big.len()).into_bytes();
    answer.extend_from_slice(&big);
    let backend = scripted_backend(vec![answer], After::KeepOpen).await;
    let (proxy, _) = proxy_to(backend).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(c.fill().await);
    drop(c);
    // A client that closes before its request was answered, half-way through its head.
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhos").await;
    drop(c);
    within("in flight back to 0", async {
        while proxy.in_flight("v1") > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The proxy still serves.
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("after", c.response(false)).await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, big.len()));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_mid_response_closes_the_client_and_counts_an_error() {
    let partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec();
    let backend = scripted_backend(vec![partial], After::Reset).await;
    let (proxy, stats) = proxy_to(backend).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    // The head and the ten bytes arrive, then the connection ends: never a hang.
    assert!(within("cut response", c.response(false)).await.is_none());
    assert_eq!(counted(&stats), (1, 1));

    // Reset before any answer byte: the client gets a 502 naming the revision.
    let backend = scripted_backend(vec![], After::Reset).await;
    let (proxy2, stats2) = proxy_to(backend).await;
    let mut c = Client::connect(proxy2.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("502", c.response(false)).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-cutover-revision"), Some("v1"));
    assert!(r.text().contains("could not be reached"), "{}", r.text());
    assert_eq!(counted(&stats2), (1, 1));
    // The client's connection goes on after a 502 to a body-less request.
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(
        within("502 again", c.response(false)).await.unwrap().status,
        502
    );
    assert_eq!(proxy2.in_flight("v1"), 0);
    proxy.shutdown().await;
    proxy2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_read() {
    let (proxy, _) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"PUT /x HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n")
        .await;
    // The interim answer comes before any body byte was sent.
    let interim = within("100", c.response(false)).await.unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"data").await;
    let r = within("final", c.response(false)).await.unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("\n\ndata"), "{text}");
    assert!(
        !text.contains("expect:"),
        "the expectation is the proxy's: {text}"
    );
    // Any other expectation: 417.
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"PUT /x HTTP/1.1\r\nhost: x\r\nexpect: tea\r\ncontent-length: 4\r\n\r\n")
        .await;
    assert_eq!(within("417", c.response(false)).await.unwrap().status, 417);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_answers_have_no_body_and_the_connection_goes_on() {
    // hyper's echo answers HEAD with the length of the GET body and no body.
    let (proxy, _) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"HEAD /h HTTP/1.1\r\nhost: x\r\n\r\nGET /g HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let r = within("HEAD", c.response(true)).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_some_and(|n| n != "0"));
    let r = within("GET after HEAD", c.response(false)).await.unwrap();
    assert!(r.text().starts_with("GET /g\n"), "{}", r.text());
    proxy.shutdown().await;

    let answers = vec![
        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n".to_vec(),
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ];
    let (proxy, stats) = proxy_to(scripted_backend(answers, After::KeepOpen).await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    for expect in [204, 304, 200] {
        c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let r = within("no body", c.response(false)).await.unwrap();
        assert_eq!(r.status, expect);
        if expect == 200 {
            assert_eq!(r.text(), "ok", "the interim 103 is not relayed");
        }
    }
    assert_eq!(counted(&stats), (3, 0));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_heads_are_refused_with_400_and_431() {
    let (proxy, stats) = proxy_to(echo_backend().await).await;
    let addr = proxy.local_addr();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n".to_vec(), 400),
        (b"\x00\x01\x02 / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/2.7\r\n\r\n".to_vec(), 400),
        (
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n".to_vec(),
            501,
        ),
        (
            format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024)).into_bytes(),
            431,
        ),
        (
            format!("GET / HTTP/1.1\r\n{}\r\n", "x-a: 1\r\n".repeat(101)).into_bytes(),
            431,
        ),
    ];
    for (request, status) in cases {
        let mut c = Client::connect(addr).await;
        // The oversized head may be refused before all of it was written.
        let _ = c.stream.write_all(&request).await;
        let r = within("refusal", c.response(false)).await.unwrap();
        assert_eq!(
            r.status,
            status,
            "{}",
            String::from_utf8_lossy(&request[..40.min(request.len())])
        );
        assert!(r.text().starts_with("cutover proxy: "), "{}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed().await);
    }
    // Nothing reached the backend, nothing was counted.
    assert!(
        stats
            .get("svc", "v1")
            .is_some_and(|s| s.counters(Duration::from_secs(1)).requests == 0)
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_and_the_pin_secret_never_reach_the_backend() {
    let (proxy, _) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(
        b"GET http://example.test/abs?q=1 HTTP/1.1\r\nhost: example.test\r\nconnection: x-hint, keep-alive\r\nx-hint: 1\r\nkeep-alive: timeout=5\r\nte: trailers\r\nupgrade: websocket\r\nproxy-connection: keep-alive\r\nproxy-authorization: Basic eA==\r\nproxy-authenticate: Basic\r\nx-cutover-pin-secret: not-for-replicas-0123456789\r\nx-cutover-revision: v1\r\nx-end-to-end: yes\r\n\r\n",
    )
    .await;
    let r = within("hop-by-hop", c.response(false)).await.unwrap();
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert!(
        text.starts_with("GET /abs?q=1\n"),
        "absolute-form rewritten: {text}"
    );
    for gone in [
        "connection:",
        "x-hint:",
        "keep-alive:",
        "te:",
        "upgrade:",
        "proxy-connection:",
        "proxy-authorization:",
        "proxy-authenticate:",
        "x-cutover-pin-secret",
        "not-for-replicas",
    ] {
        assert!(!text.contains(gone), "{gone} forwarded: {text}");
    }
    assert!(
        text.contains("x-end-to-end: yes") && text.contains("host: example.test"),
        "{text}"
    );
    assert!(text.contains("x-cutover-revision: v1"), "{text}");
    // A request without Host gets the replica's address.
    c.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let r = within("no host", c.response(false)).await.unwrap();
    assert!(r.text().contains("host: 127.0.0.1:"), "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let (proxy, _) = proxy_to(echo_backend().await).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(
        within("first", c.response(false)).await.unwrap().status,
        200
    );
    // The connection is idle now: shutdown does not wait out its grace for it.
    let started = std::time::Instant::now();
    within("shutdown", proxy.shutdown_within(Duration::from_secs(30))).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(c.closed().await);
}

const OK_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A backend that reads one request head per exchange, sends `early` at once (say, a head
/// and part of a body), holds the rest of its answer for `hold` and then sends `rest`.
/// Answers in order on a keep-alive connection. `abandoned` counts the connections the
/// proxy closed while an answer was being held.
struct HoldingBackend {
    addr: SocketAddr,
    abandoned: Arc<AtomicUsize>,
}

async fn holding_backend(
    early: &'static [u8],
    hold: Duration,
    rest: &'static [u8],
) -> HoldingBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let abandoned = Arc::new(AtomicUsize::new(0));
    let counter = abandoned.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if !read_one_head(&mut stream, &mut buf).await {
                        return;
                    }
                    if stream.write_all(early).await.is_err() {
                        return;
                    }
                    // Hold the rest, noticing the proxy closing meanwhile (a pipelined
                    // head arriving is kept for the next round).
                    let held = tokio::time::sleep(hold);
                    tokio::pin!(held);
                    loop {
                        let mut chunk = [0u8; 4096];
                        tokio::select! {
                            _ = &mut held => break,
                            r = stream.read(&mut chunk) => match r {
                                Ok(0) | Err(_) => {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            },
                        }
                    }
                    if stream.write_all(rest).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    HoldingBackend { addr, abandoned }
}

async fn until(what: &str, within_: Duration, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(within_, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {within_:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_answer_is_released_at_once_and_a_drain_ends() {
    let hold = Duration::from_secs(10);
    let backend = holding_backend(b"", hold, OK_ANSWER).await;
    let (proxy, stats) = proxy_to(backend.addr).await;
    let proxy = Arc::new(proxy);
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await;
    until("the request in flight", LIMIT, || {
        proxy.in_flight("v1") == 1
    })
    .await;
    let started = std::time::Instant::now();
    let drain = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.drain("v1", Duration::from_secs(30)).await }
    });
    // The drain waits for the request while the client is there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!drain.is_finished());
    assert_eq!(proxy.in_flight("v1"), 1);
    drop(c);
    until(
        "in flight back to 0 after the client closed",
        Duration::from_secs(1),
        || proxy.in_flight("v1") == 0,
    )
    .await;
    assert_eq!(within("drain", drain).await.unwrap(), DrainOutcome::Drained);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
    // The backend connection was dropped, not kept for the pool.
    until(
        "the backend sees its connection closed",
        Duration::from_secs(1),
        || backend.abandoned.load(Ordering::SeqCst) == 1,
    )
    .await;
    // As with hyper: neither a response nor a connection error (the backend did nothing wrong).
    assert_eq!(counted(&stats), (0, 0));
    // The proxy still serves (on a new backend connection).
    let backend2 = echo_backend().await;
    proxy.set_backends("v1", vec![backend2]);
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("after", c.response(false)).await.unwrap();
    assert!(r.text().starts_with("GET /after\n"), "{}", r.text());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_body_is_released_at_once_and_its_response_counted() {
    let backend = holding_backend(
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst",
        Duration::from_secs(10),
        b"-last",
    )
    .await;
    let (proxy, stats) = proxy_to(backend.addr).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n").await;
    while find(&c.buf, b"first").is_none() {
        assert!(c.fill().await, "the head and the first bytes arrive");
    }
    assert_eq!(proxy.in_flight("v1"), 1);
    // A reset this time (SO_LINGER 0), the other way a client goes.
    #[allow(deprecated)]
    c.stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    let started = std::time::Instant::now();
    let outcome = within(
        "drain_backend",
        proxy.drain_backend(backend.addr, Duration::from_secs(30)),
    )
    .await;
    assert_eq!(outcome, DrainOutcome::Drained);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "drain took {took:?}");
    // The revision's gauge is released just after the replica's.
    until(
        "the revision's in-flight count at 0",
        Duration::from_secs(1),
        || proxy.in_flight("v1") == 0,
    )
    .await;
    until(
        "the backend sees its connection closed",
        Duration::from_secs(1),
        || backend.abandoned.load(Ordering::SeqCst) == 1,
    )
    .await;
    // As with hyper: the response was counted at its head; no connection error.
    assert_eq!(counted(&stats), (1, 0));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelining_client_that_half_closes_gets_every_answer() {
    // Each answer waits long enough for the half-close to be seen while the proxy waits.
    let backend = holding_backend(b"", Duration::from_millis(300), OK_ANSWER).await;
    let (proxy, stats) = proxy_to(backend.addr).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\nGET /two HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    c.stream.shutdown().await.unwrap();
    for i in 0..2 {
        let r = within("pipelined answer", c.response(false))
            .await
            .unwrap_or_else(|| panic!("answer {i} lost"));
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    // Then the proxy closes: the client sends nothing more.
    assert!(c.closed().await);
    assert_eq!(counted(&stats), (2, 0));
    assert_eq!(backend.abandoned.load(Ordering::SeqCst), 0);
    assert_eq!(proxy.in_flight("v1"), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_while_the_backend_works_is_kept_and_answered() {
    let backend = holding_backend(b"", Duration::from_millis(300), OK_ANSWER).await;
    let (proxy, stats) = proxy_to(backend.addr).await;
    let mut c = Client::connect(proxy.local_addr()).await;
    c.send(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n").await;
    until("the first request in flight", LIMIT, || {
        proxy.in_flight("v1") == 1
    })
    .await;
    // Sent while the proxy waits on the backend: read then, kept for the next exchange.
    c.send(b"GET /two HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    for _ in 0..2 {
        let r = within("answer", c.response(false)).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert!(c.closed().await);
    assert_eq!(counted(&stats), (2, 0));
    assert_eq!(backend.abandoned.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

/// The rollback-latency anomaly (docs/reliability.md): a request the proxy refused itself on
/// a keep-alive connection (503 before any split, 502 for a pin to an unknown revision)
/// stayed in the connection's buffer and was refused again and again, so the client got
/// answers it never asked for and every later answer paired with an earlier request. Each
/// request here gets exactly one answer, its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_answered_once_and_the_next_gets_its_own_answer() {
    let backend = echo_backend().await;
    let stats = ProxyStats::new();
    let proxy = ServiceProxy::bind("svc", "127.0.0.1:0".parse().unwrap(), stats.clone())
        .await
        .unwrap();
    proxy.set_backends("v1", vec![backend]);
    let mut c = Client::connect(proxy.local_addr()).await;

    // No split yet: the proxy answers 503 and keeps the connection.
    c.send(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("503", c.response(false)).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    // Give a repeated refusal time to arrive before the next request is sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set_weights(&vec![("v1".to_string(), 100)]).unwrap();
    c.send(b"GET /two HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = within("answer to /two", c.response(false)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("GET /two\n"), "{}", r.text());

    // Pinned to a revision the proxy does not know: 502, then the next request.
    c.send(b"GET /three HTTP/1.1\r\nhost: x\r\nx-cutover-revision: nope\r\n\r\n")
        .await;
    let r = within("502", c.response(false)).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"GET /four HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let r = within("answer to /four", c.response(false)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("GET /four\n"), "{}", r.text());
    // Nothing else on the connection: it closes after the last answer.
    assert!(c.closed().await, "bytes after the last answer: {:?}", c.buf);
    assert_eq!(counted(&stats), (2, 0));
    proxy.shutdown().await;
}
