//! A minimal HTTP/1 client over loopback for smoke tests and webhooks: one request per
//! connection, bounded by a timeout.

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
    match tokio::time::timeout(timeout, request_inner(method, url, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("{method} {url} timed out after {timeout:?}")),
    }
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<(String, Vec<u8>)>,
) -> Result<Answer, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("`{url}`: only http:// URLs are supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{method} {url}: connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let conn = tokio::spawn(conn);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
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
    let req = req
        .body(Full::new(payload))
        .map_err(|e| format!("{method} {url}: invalid request: {e}"))?;
    let result = match sender.send_request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_string();
            Ok(Answer { status, body: text })
        }
        Err(e) => Err(format!("{method} {url}: {e}")),
    };
    conn.abort();
    result
}
