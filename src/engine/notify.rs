//! Webhook notifications: Slack-compatible JSON (`text` plus `blocks`) on release start,
//! pause, gate waiting, promotion, rollback, failure and completion; Grafana annotations
//! (`annotations.rs`) on the same path. Deliveries run in the
//! background with retries and backoff; a failing webhook is logged (without its path,
//! which often holds a token) and never blocks or fails the release.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

use super::annotations::Grafana;
use super::http;
use super::state::{Event, EventKind, describe};

/// Retry schedule of one delivery.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
    /// How long to wait for deliveries still in flight once the release ended.
    pub flush: Duration,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            flush: Duration::from_secs(5),
        }
    }
}

/// How webhooks name a release: with its environment and change ticket, if any
/// (`checkout (production, change CHG-1234)`).
pub fn label(r: &crate::release::ReleaseSection) -> String {
    let parts: Vec<String> = r
        .environment
        .iter()
        .cloned()
        .chain(r.change.iter().map(|c| format!("change {c}")))
        .collect();
    if parts.is_empty() {
        r.name.clone()
    } else {
        format!("{} ({})", r.name, parts.join(", "))
    }
}

/// The message for an event, if it is one people are told about.
pub fn message(release: &str, e: &Event) -> Option<serde_json::Value> {
    let icon = match &e.kind {
        EventKind::ReleaseStarted { .. } => ":rocket:",
        EventKind::Paused { .. } => ":double_vertical_bar:",
        EventKind::GateWaiting { .. } => ":raised_hand:",
        EventKind::Promoted { .. } => ":white_check_mark:",
        EventKind::RollbackStarted { .. } | EventKind::RolledBack { .. } => ":rewind:",
        EventKind::Failed { .. } => ":x:",
        EventKind::ReleaseFinished { exit_code: 0, .. } => ":tada:",
        EventKind::ReleaseFinished { .. } => ":warning:",
        _ => return None,
    };
    let text = format!("{icon} *{release}*: {}", describe(e));
    Some(serde_json::json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("cutover event {} ({})", e.seq, e.kind.journal_kind())}]}
        ]
    }))
}

/// Scheme, host and port of a URL: what logs may show (never the path, the query or a
/// `user:password@`).
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => {
            let host = u.host().unwrap_or("?");
            let port = u.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}/…", u.scheme_str().unwrap_or("http"))
        }
        Err(_) => "(invalid URL)".into(),
    }
}

async fn deliver(url: String, headers: Vec<(String, String)>, body: Vec<u8>, opts: NotifyOptions) {
    let mut backoff = opts.first_backoff;
    for attempt in 1..=opts.attempts.max(1) {
        let r = http::request(
            "POST",
            &url,
            &headers,
            Some(("application/json".into(), body.clone())),
            opts.timeout,
        )
        .await;
        match r {
            Ok(a) if (200..300).contains(&a.status) => return,
            Ok(a) => {
                tracing::warn!(webhook = %redact(&url), attempt, status = a.status, "webhook refused the notification")
            }
            Err(e) => {
                tracing::warn!(webhook = %redact(&url), attempt, error = %e.replace(&url, &redact(&url)), "webhook delivery failed")
            }
        }
        if attempt < opts.attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
    tracing::error!(webhook = %redact(&url), "giving up on a notification after {} attempts", opts.attempts);
}

/// Send notifications for `events` to every webhook (and Grafana annotations) until the
/// channel closes; then wait up to `flush` for deliveries in flight.
pub fn spawn_notifier(
    release: String,
    webhooks: Vec<String>,
    grafana: Option<Grafana>,
    mut events: broadcast::Receiver<Event>,
    opts: NotifyOptions,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut inflight = JoinSet::new();
        let mut started_ms = grafana.as_ref().and_then(|g| g.started_ms);
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "notifier fell behind; some notifications were skipped"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if let EventKind::ReleaseStarted { .. } = e.kind {
                started_ms = Some(e.at_ms);
            }
            if let Some(g) = &grafana
                && let Some(a) = g.annotation(&release, started_ms, &e)
            {
                let body = serde_json::to_vec(&a).unwrap_or_default();
                inflight.spawn(deliver(g.endpoint(), g.headers(), body, opts.clone()));
            }
            let Some(msg) = message(&release, &e) else {
                continue;
            };
            let body = serde_json::to_vec(&msg).unwrap_or_default();
            for url in &webhooks {
                inflight.spawn(deliver(url.clone(), Vec::new(), body.clone(), opts.clone()));
            }
            while inflight.try_join_next().is_some() {}
        }
        let _ = tokio::time::timeout(opts.flush, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;
    use crate::engine::state::Trigger;

    /// An in-process webhook: fails the first `fail_first` requests with 500.
    async fn hook(fail_first: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(0usize));
        let got2 = got.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let got = got2.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = {
                                let mut s = seen.lock().unwrap();
                                *s += 1;
                                *s
                            };
                            if n <= fail_first {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(500)
                                        .body(Full::new(Bytes::from("no")))
                                        .unwrap(),
                                );
                            }
                            got.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            Ok(Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/services/T000/SECRET"), got)
    }

    #[test]
    fn messages_name_the_environment_and_the_change_ticket() {
        let mut r = crate::release::load_str(
            std::path::Path::new("t.toml"),
            "[release]\nname = \"shop\"\n[[service]]\nname = \"a\"\nstrategy = \"blue_green\"\n[service.local]\nlisten = \"127.0.0.1:1\"\ncommand = [\"x\", \"{port}\"]\ncurrent = { revision = \"v1\" }\ntarget = { revision = \"v2\" }\n",
            std::path::Path::new("."),
        )
        .unwrap()
        .release;
        assert_eq!(label(&r), "shop");
        r.change = Some("CHG-1234".into());
        assert_eq!(label(&r), "shop (change CHG-1234)");
        r.environment = Some("production".into());
        assert_eq!(label(&r), "shop (production, change CHG-1234)");
        let m = message(
            &label(&r),
            &ev(
                1,
                EventKind::ReleaseStarted {
                    operator: "ann".into(),
                },
            ),
        )
        .unwrap();
        assert!(
            m["text"]
                .as_str()
                .unwrap()
                .contains("*shop (production, change CHG-1234)*")
        );
    }

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            at_ms: 0,
            kind,
        }
    }

    #[tokio::test]
    async fn webhooks_get_slack_json_and_failures_are_retried() {
        let (url, got) = hook(2).await;
        let (tx, rx) = broadcast::channel(16);
        let opts = NotifyOptions {
            first_backoff: Duration::from_millis(20),
            ..Default::default()
        };
        let dead = "http://127.0.0.1:9/hook".to_string();
        let task = spawn_notifier("rel".into(), vec![url, dead], None, rx, opts);
        tx.send(ev(
            1,
            EventKind::ReleaseStarted {
                operator: "ann".into(),
            },
        ))
        .unwrap();
        tx.send(ev(
            2,
            EventKind::WeightsSet {
                service: "a".into(),
                weights: vec![],
            },
        ))
        .unwrap();
        tx.send(ev(
            3,
            EventKind::RollbackStarted {
                service: "a".into(),
                reason: "judge".into(),
                trigger: Trigger::Automatic,
            },
        ))
        .unwrap();
        drop(tx);
        task.await.unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        let texts: Vec<&str> = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert!(
            texts.iter().any(|t| t.contains("release started by ann")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("rolling back automatically: judge")),
            "{texts:?}"
        );
        assert_eq!(got[0]["blocks"][0]["type"], "section");
        assert_eq!(
            redact("http://127.0.0.1:9/services/T000/SECRET"),
            "http://127.0.0.1:9/…"
        );
        assert_eq!(
            redact("https://user:s3cret@hooks.example.com/x?token=t0k"),
            "https://hooks.example.com/…"
        );
    }
}
