//! The client side of the control API (`attach`, `ctl`, tests, the benchmark): one
//! HTTP/1.1 connection per request over the Unix socket, loopback TCP, or TCP with TLS to
//! a remote server (verified against the system store plus `SSL_CERT_FILE`). A token is
//! never sent in clear text to a host that is not loopback.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use super::hub::{Item, Snapshot};
use super::{
    CommandAnswer, CommandBody, ErrorBody, OPERATOR_HEADER, PROTOCOL_HEADER, ROLE_HEADER,
    check_version, protocol_version,
};
use crate::engine::{Command, Refusal};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`, plain HTTP (loopback).
    Tcp(String),
    /// `host:port`, HTTP over TLS (a remote server).
    Https(String),
}

impl Endpoint {
    /// `http://127.0.0.1:7070` or `https://host.example:7070` (a trailing `/` is fine).
    pub fn from_url(url: &str) -> Result<Endpoint, ClientError> {
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return Err(ClientError::Usage(format!(
                    "--url {url}: write http://127.0.0.1:PORT (this machine) or https://HOST:PORT (a server with --tls-cert)"
                )));
            }
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || !host.contains(':') {
            return Err(ClientError::Usage(format!(
                "--url {url}: name the host and port, e.g. http://127.0.0.1:7070"
            )));
        }
        Ok(if tls {
            Endpoint::Https(host.to_string())
        } else {
            Endpoint::Tcp(host.to_string())
        })
    }

    /// Whether the host of a TCP endpoint is this machine (a loopback address or
    /// `localhost`). Names other than `localhost` count as remote.
    pub fn is_loopback(&self) -> bool {
        let hostport = match self {
            Endpoint::Unix(_) => return true,
            Endpoint::Tcp(h) | Endpoint::Https(h) => h,
        };
        let host = match hostport.rsplit_once(':') {
            Some((h, _)) => h,
            None => hostport.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(h) => write!(f, "http://{h}"),
            Endpoint::Https(h) => write!(f, "https://{h}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach cutover at {endpoint}: {source} (is `cutover serve` running there?)")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("talking to {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("{0}")]
    Protocol(String),
    /// The server answered with an error (`code` from PROTOCOL.md).
    #[error("{message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
}

impl ClientError {
    /// The server refused because of the caller's credentials (401/403).
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            ClientError::Server {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// What happened to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Accepted { message: String, operator: String },
    Refused(Refusal),
}

/// A control API client.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
    operator: String,
    read_only: bool,
    /// The roots an `https://` server is checked against; the process-wide system store
    /// plus `SSL_CERT_FILE` when unset.
    trust: Option<std::sync::Arc<crate::tls::Client>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("operator", &self.operator)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Client {
    pub fn new(endpoint: Endpoint, operator: &str) -> Client {
        Client {
            endpoint,
            token: None,
            operator: operator.to_string(),
            read_only: false,
            trust: None,
        }
    }
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }
    /// Ask the server to treat this client as read-only (Unix socket; TCP roles come
    /// from the token).
    /// Check `https://` servers against these roots instead of the process-wide ones.
    pub fn with_trust(mut self, trust: std::sync::Arc<crate::tls::Client>) -> Client {
        self.trust = Some(trust);
        self
    }

    pub fn read_only(mut self, yes: bool) -> Client {
        self.read_only = yes;
        self
    }
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    /// The same client (operator, read-only, trust) for a server at another endpoint,
    /// with the token that one takes (a run taken over by a standby: `session/follow.rs`).
    pub fn moved_to(&self, endpoint: Endpoint, token: Option<String>) -> Client {
        Client {
            endpoint,
            token,
            ..self.clone()
        }
    }
    pub fn operator(&self) -> &str {
        &self.operator
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        version: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        let endpoint = self.endpoint.to_string();
        let transport = |message: String| ClientError::Transport {
            endpoint: endpoint.clone(),
            message,
        };
        let connect = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let mut req = Request::builder().method(method).uri(path);
        req = req.header(PROTOCOL_HEADER, version);
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_string(),
            Endpoint::Tcp(h) | Endpoint::Https(h) => h.clone(),
        };
        if self.token.is_some()
            && matches!(self.endpoint, Endpoint::Tcp(_))
            && !self.endpoint.is_loopback()
        {
            return Err(ClientError::Usage(format!(
                "refusing to send a token in clear text to {}: use https:// (the server needs --tls-cert and --tls-key)",
                self.endpoint
            )));
        }
        req = req.header(HOST, host);
        if let Ok(v) = HeaderValue::from_str(&self.operator) {
            req = req.header(OPERATOR_HEADER, v);
        }
        if self.read_only {
            req = req.header(ROLE_HEADER, "read-only");
        }
        if let Some(t) = &self.token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(format!("cannot build the request: {e}")))?;
        let resp = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p).await.map_err(connect)?;
                request_on(s, req).await
            }
            Endpoint::Tcp(h) => {
                let s = TcpStream::connect(h).await.map_err(connect)?;
                let _ = s.set_nodelay(true);
                request_on(s, req).await
            }
            Endpoint::Https(h) => {
                let s = TcpStream::connect(h).await.map_err(connect)?;
                let _ = s.set_nodelay(true);
                let name = h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n);
                let s = match &self.trust {
                    Some(t) => t.connect(name, s).await,
                    None => match crate::tls::client() {
                        Ok(t) => t.connect(name, s).await,
                        Err(e) => Err(e),
                    },
                }
                .map_err(&transport)?;
                request_on(s, req).await
            }
        }
        .map_err(|e| transport(e.to_string()))?;
        let server_version = resp
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok());
        check_version(server_version, "server").map_err(ClientError::Protocol)?;
        Ok(resp)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self.send(method, path, body, &protocol_version()).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport {
                endpoint: self.endpoint.to_string(),
                message: e.to_string(),
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    fn server_error(status: StatusCode, bytes: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(e) => ClientError::Server {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Server {
                status: status.as_u16(),
                code: "unknown".into(),
                message: format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            },
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ClientError::Protocol(format!(
                "{}: the server's answer cannot be read: {e}",
                self.endpoint
            ))
        })
    }

    /// The full state and the sequence number it includes.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let (status, bytes) = self.call(Method::GET, "/v1/snapshot", None).await?;
        if status != StatusCode::OK {
            return Err(Self::server_error(status, &bytes));
        }
        self.decode(&bytes)
    }

    /// Send a command; `Refused` is the engine's answer, `Err` anything else (denied,
    /// transport, protocol).
    pub async fn command(
        &self,
        command: Command,
        reason: Option<String>,
    ) -> Result<CommandOutcome, ClientError> {
        let body = serde_json::to_vec(&CommandBody { command, reason })
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        let (status, bytes) = self.call(Method::POST, "/v1/commands", Some(body)).await?;
        match status {
            StatusCode::OK | StatusCode::CONFLICT => {
                let a: CommandAnswer = self.decode(&bytes)?;
                match (a.accepted, a.refusal) {
                    (false, Some(r)) => Ok(CommandOutcome::Refused(r)),
                    _ => Ok(CommandOutcome::Accepted {
                        message: a.message.unwrap_or_default(),
                        operator: a.operator,
                    }),
                }
            }
            _ => Err(Self::server_error(status, &bytes)),
        }
    }

    /// The stream of items after `from`; `attach` puts this client on the presence list
    /// for as long as the stream is open.
    pub async fn events(&self, from: u64, attach: bool) -> Result<EventStream, ClientError> {
        self.events_with_version(from, attach, &protocol_version())
            .await
    }

    /// As [`Client::events`], claiming another protocol version (for tests).
    pub async fn events_with_version(
        &self,
        from: u64,
        attach: bool,
        version: &str,
    ) -> Result<EventStream, ClientError> {
        let path = format!(
            "/v1/events?from={from}{}",
            if attach { "&attach=1" } else { "" }
        );
        let resp = self.send(Method::GET, &path, None, version).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(Self::server_error(status, &bytes));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            endpoint: self.endpoint.to_string(),
            idle_limit: None,
        })
    }

    /// Snapshot, then the live stream from it, on the presence list.
    pub async fn attach(&self) -> Result<(Snapshot, EventStream), ClientError> {
        let snap = self.snapshot().await?;
        let stream = self.events(snap.seq, true).await?;
        Ok((snap, stream))
    }
}

async fn request_on<S>(
    stream: S,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("control client connection: {e}");
        }
    });
    sender.send_request(req).await
}

/// Server-sent items, in order.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    endpoint: String,
    /// Give up when nothing at all (not even a keep-alive) arrives for this long.
    idle_limit: Option<std::time::Duration>,
}

impl EventStream {
    /// Treat silence (no item and no keep-alive, which the server sends every 5 s) for
    /// `limit` as a broken connection: `next` then fails instead of waiting forever on
    /// a peer that died without closing.
    pub fn with_idle_limit(mut self, limit: std::time::Duration) -> EventStream {
        self.idle_limit = Some(limit);
        self
    }

    /// The next item; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Item>, ClientError> {
        loop {
            if let Some(pos) = find_blank_line(&self.buf) {
                let block = self.buf.split_to(pos + 2);
                let text = String::from_utf8_lossy(&block);
                let mut event = "message";
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = match v.trim() {
                            "error" => "error",
                            "event" | "presence" | "end" => "item",
                            // A newer minor version's item type: skip it.
                            _ => "unknown",
                        };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() || event == "unknown" {
                    continue; // keep-alive comment, or an item this version does not know
                }
                if event == "error" {
                    let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                    return Err(ClientError::Server {
                        status: 200,
                        code: v["code"].as_str().unwrap_or("error").to_string(),
                        message: v["message"].as_str().unwrap_or(&data).to_string(),
                    });
                }
                return serde_json::from_str::<Item>(&data).map(Some).map_err(|e| {
                    ClientError::Protocol(format!("{}: unreadable stream item: {e}", self.endpoint))
                });
            }
            let frame = match self.idle_limit {
                Some(limit) => match tokio::time::timeout(limit, self.body.frame()).await {
                    Ok(f) => f,
                    Err(_) => {
                        return Err(ClientError::Transport {
                            endpoint: self.endpoint.clone(),
                            message: format!(
                                "nothing, not even a keep-alive, for {}",
                                crate::duration::format_duration(limit)
                            ),
                        });
                    }
                },
                None => self.body.frame().await,
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(ClientError::Transport {
                        endpoint: self.endpoint.clone(),
                        message: e.to_string(),
                    });
                }
                None => return Ok(None),
            }
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}
