//! A fault-injecting HTTP proxy on loopback, in front of moto: it counts requests per AWS
//! operation and, when told, answers an operation with throttling or a 5xx instead of
//! forwarding it, or forwards it and then reports a 5xx (a lost answer).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 400 with the protocol's throttling error, without forwarding.
    Throttle,
    /// Answer with this status and no body, without forwarding.
    Status(u16),
    /// Forward (so the change happens), then answer with this status.
    ForwardThenStatus(u16),
    /// Answer with this status and body, without forwarding.
    Respond(u16, &'static str),
}

struct Rule {
    operation: String,
    fault: Fault,
    remaining: u32,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    counts: BTreeMap<String, u32>,
    faults_served: u32,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.trim_end_matches('/').to_string();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), client.clone(), upstream.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint,
            state,
            task,
        }
    }

    /// Serve `fault` to the next `times` requests of `operation` (`ModifyRule`,
    /// `DescribeServices`); `u32::MAX` for every one.
    pub fn inject(&self, operation: &str, fault: Fault, times: u32) {
        self.state.lock().expect("state").rules.push(Rule {
            operation: operation.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        self.state.lock().expect("state").rules.clear();
    }

    /// Requests of `operation` seen so far (faulted ones included).
    pub fn count(&self, operation: &str) -> u32 {
        self.state
            .lock()
            .expect("state")
            .counts
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    pub fn faults_served(&self) -> u32 {
        self.state.lock().expect("state").faults_served
    }
}

fn operation(req_target: Option<&str>, body: &[u8]) -> String {
    if let Some(t) = req_target {
        return t.rsplit('.').next().unwrap_or(t).to_string();
    }
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("unknown")
        .to_string()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let op = operation(target.as_deref(), &body);
    let fault = {
        let mut st = state.lock().expect("state");
        *st.counts.entry(op.clone()).or_insert(0) += 1;
        let f = st
            .rules
            .iter_mut()
            .find(|r| r.operation == op && r.remaining > 0)
            .map(|r| {
                if r.remaining != u32::MAX {
                    r.remaining -= 1;
                }
                r.fault
            });
        if f.is_some() {
            st.faults_served += 1;
        }
        f
    };
    match fault {
        Some(Fault::Throttle) => return Ok(throttle(target.is_some())),
        Some(Fault::Status(s)) => return Ok(status(s)),
        Some(Fault::Respond(s, body)) => {
            let mut r = status(s);
            *r.body_mut() = Full::new(Bytes::from_static(body.as_bytes()));
            return Ok(r);
        }
        _ => {}
    }
    let uri = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut fwd = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in parts.headers.iter() {
        fwd = fwd.header(k, v);
    }
    let fwd = fwd.body(Full::new(body)).expect("request");
    let answer = match client.request(fwd).await {
        Ok(resp) => {
            let (p, b) = resp.into_parts();
            let b = b.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Response::from_parts(p, Full::new(b))
        }
        Err(_) => status(502),
    };
    if let Some(Fault::ForwardThenStatus(s)) = fault {
        return Ok(status(s));
    }
    Ok(answer)
}

fn status(s: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn throttle(json: bool) -> Response<Full<Bytes>> {
    let (ctype, body) = if json {
        (
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        )
    } else {
        (
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>".to_string(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut()
        .insert("content-type", ctype.parse().expect("header"));
    if json {
        r.headers_mut().insert(
            "x-amzn-errortype",
            "ThrottlingException".parse().expect("header"),
        );
    }
    r
}
