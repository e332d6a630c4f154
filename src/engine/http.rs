//! A minimal HTTP/1 client for smoke tests and webhooks: one request per connection,
//! bounded by a timeout; `https://` goes through [`crate::tls`] (system store plus
//! `SSL_CERT_FILE`, never an insecure fallback).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The answer to a request: status and (at most 4 KiB of) body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Send `method url` with `headers` and `body`; fails with a sentence on any problem.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<(String, Vec<u8>)>,
    timeout: Duration,
) -> Result<Answer, String> {
    request_limited(method, url, headers, body, timeout, 4096).await
}

/// [`request`] keeping at most `max_body` bytes of the body (a metrics API's JSON).
pub async fn request_limited(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<(String, Vec<u8>)>,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, String> {
    let inner = request_inner(method, url, headers, body, max_body);
    match tokio::time::timeout(timeout, inner).await {
        Ok(r) => r,
        Err(_) => Err(format!("{method} {url} timed out after {timeout:?}")),
    }
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<(String, Vec<u8>)>,
    max_body: usize,
) -> Result<Answer, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => None,
        Some("https") => Some(crate::tls::client().map_err(|e| format!("{method} {url}: {e}"))?),
        _ => {
            return Err(format!(
                "`{url}`: only http:// and https:// URLs are supported"
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| format!("{method} {url}: connect: {e}"))?;
    let default_port = if tls.is_some() { 443 } else { 80 };
    let authority = match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host.clone(),
    };
    let req = build(method, &uri, &authority, headers, body)
        .map_err(|e| format!("{method} {url}: invalid request: {e}"))?;
    let result = match tls {
        None => exchange(TokioIo::new(stream), req, max_body).await,
        Some(client) => {
            let stream = client
                .connect(&host, stream)
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?;
            exchange(TokioIo::new(stream), req, max_body).await
        }
    };
    result.map_err(|e| format!("{method} {url}: {e}"))
}

fn build(
    method: &str,
    uri: &hyper::Uri,
    authority: &str,
    headers: &[(String, String)],
    body: Option<(String, Vec<u8>)>,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "cutover")
        .header(hyper::header::CONNECTION, "close");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    req.body(Full::new(payload))
}

/// One request on a fresh connection (`Connection: close`), then the connection is dropped.
async fn exchange<I>(io: I, req: Request<Full<Bytes>>, max_body: usize) -> Result<Answer, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let result = match sender.send_request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(max_body)]).to_string();
            Ok(Answer { status, body: text })
        }
        Err(e) => Err(e.to_string()),
    };
    conn.abort();
    result
}
