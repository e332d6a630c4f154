//! Sending finished spans: a bounded queue in front of one background task that batches
//! them (`OTEL_BSP_*`) and POSTs OpenTelemetry's own protobuf messages
//! (`ExportTraceServiceRequest`, from `opentelemetry-proto`) to the OTLP/HTTP endpoint
//! through [`crate::engine::http`] (TLS by [`crate::tls`]). A full queue drops the span
//! and counts it; a failed or slow request is logged (the endpoint without its path or
//! credentials, never a header) and the batch is given up: exporting never waits the
//! release and never fails it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::OtelConfig;
use super::spans::{Attrs, SpanData, Value};
use crate::engine::notify::redact;

/// Where the tracer puts finished spans; never waits.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<SpanData>,
    dropped: Arc<AtomicU64>,
}

impl SpanSink {
    /// Queue a span, or drop it (counted) when the queue is full.
    pub fn offer(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Start the exporter for spans of `trace_id`; it ends once every [`SpanSink`] is dropped
/// and the last batch was sent (or given up).
pub fn spawn_exporter(
    config: OtelConfig,
    trace_id: [u8; 16],
    resource: Vec<(String, String)>,
) -> (SpanSink, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<SpanData>(config.max_queue.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = SpanSink {
        tx,
        dropped: dropped.clone(),
    };
    let resource = Resource {
        attributes: resource
            .into_iter()
            .map(|(k, v)| key_value(&k, &Value::Str(v)))
            .collect(),
        ..Default::default()
    };
    let task = tokio::spawn(async move {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut sent = 0u64;
        let mut failed = 0u64;
        loop {
            let deadline = tokio::time::sleep(config.schedule_delay);
            tokio::pin!(deadline);
            let closed = loop {
                tokio::select! {
                    s = rx.recv() => match s {
                        Some(s) => {
                            batch.push(s);
                            if batch.len() >= config.max_batch {
                                break false;
                            }
                        }
                        None => break true,
                    },
                    _ = &mut deadline, if !batch.is_empty() => break false,
                }
            };
            if !batch.is_empty() {
                let spans = std::mem::take(&mut batch);
                let n = spans.len() as u64;
                // The first failure is a warning, later ones debug lines: a collector
                // that is down must not flood the log; the end says how many were lost.
                if send(&config, &resource, trace_id, spans, failed == 0).await {
                    sent += n;
                } else {
                    failed += n;
                }
            }
            if closed {
                break;
            }
        }
        let dropped = dropped.load(Ordering::Relaxed);
        if dropped > 0 || failed > 0 {
            tracing::warn!(
                endpoint = %redact(&config.endpoint),
                sent,
                failed,
                dropped,
                "some spans of this release were not exported (queue full or collector unreachable)"
            );
        }
    });
    (sink, task)
}

/// One export request; `false` when the collector did not take it.
async fn send(
    config: &OtelConfig,
    resource: &Resource,
    trace_id: [u8; 16],
    spans: Vec<SpanData>,
    loud: bool,
) -> bool {
    let body = encode(resource, trace_id, spans);
    let r = crate::engine::http::request(
        "POST",
        &config.endpoint,
        &config.headers,
        Some(("application/x-protobuf".into(), body)),
        config.timeout,
    )
    .await;
    let shown = redact(&config.endpoint);
    match r {
        Ok(a) if (200..300).contains(&a.status) => true,
        Ok(a) => {
            if loud {
                tracing::warn!(endpoint = %shown, status = a.status, "the OTLP collector refused a batch of spans");
            } else {
                tracing::debug!(endpoint = %shown, status = a.status, "the OTLP collector refused a batch of spans");
            }
            false
        }
        Err(e) => {
            let e = e.replace(&config.endpoint, &shown);
            if loud {
                tracing::warn!(endpoint = %shown, error = %e, "exporting spans failed");
            } else {
                tracing::debug!(endpoint = %shown, error = %e, "exporting spans failed");
            }
            false
        }
    }
}

/// The OTLP request for `spans`.
pub fn encode(resource: &Resource, trace_id: [u8; 16], spans: Vec<SpanData>) -> Vec<u8> {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "cutover".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(|s| to_proto(trace_id, s)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

fn nanos(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn to_proto(trace_id: [u8; 16], s: SpanData) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // W3C trace flags: sampled; bit 8: whether the parent is remote is known (it is not).
        flags: 0x101,
        name: s.name,
        kind: if s.server {
            span::SpanKind::Server as i32
        } else {
            span::SpanKind::Internal as i32
        },
        start_time_unix_nano: nanos(s.start_ms),
        end_time_unix_nano: nanos(s.end_ms),
        attributes: attrs(&s.attrs),
        events: s
            .events
            .into_iter()
            .map(|e| span::Event {
                time_unix_nano: nanos(e.at_ms),
                name: e.name,
                attributes: attrs(&e.attrs),
                ..Default::default()
            })
            .collect(),
        status: Some(match s.error {
            Some(message) => Status {
                message,
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        }),
        ..Default::default()
    }
}

fn attrs(a: &Attrs) -> Vec<KeyValue> {
    a.iter().map(|(k, v)| key_value(k, v)).collect()
}

fn key_value(k: &str, v: &Value) -> KeyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(n) => any_value::Value::IntValue(*n),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// How long the session waits for the last batch once the release ended.
pub fn flush_limit(config: &OtelConfig) -> Duration {
    config.timeout + Duration::from_secs(1)
}
