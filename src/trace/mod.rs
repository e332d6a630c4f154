//! OpenTelemetry traces of a release (issue 17): with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `…_TRACES_ENDPOINT`) set, each run is one trace, exported over OTLP/HTTP protobuf.
//! A subscriber of the engine's events, like the notifier: [`spans`] folds the events
//! into spans, [`export`] sends them in the background, [`config`] reads the `OTEL_*`
//! variables. The trace id and the root span id are journaled (entry kind
//! [`TRACE_ENTRY`]) before the engine starts, and `resume` reads them back, so the
//! resumed part of a run lands under the same root. Every process cutover starts for
//! the run (local replicas, argv smoke commands) gets `TRACEPARENT` naming that root.
//! Without the variables nothing is exported and no `TRACEPARENT` is set. See
//! `docs/tracing.md`.

pub mod config;
pub mod export;
pub mod spans;

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::engine::{Event, ReleaseState};
use crate::journal::{Entry, NewEntry};

pub use config::OtelConfig;

/// The variable child processes get (W3C Trace Context, OpenTelemetry's environment
/// carrier); not a secret, so service output is not scrubbed of it.
pub const TRACEPARENT: &str = "TRACEPARENT";

/// `kind` of the journal entry holding the run's trace id and root span id.
pub const TRACE_ENTRY: &str = "trace";

/// The ids that make one run one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    pub root_span_id: [u8; 8],
}

impl TraceIds {
    /// Fresh random ids (never all zero, which W3C forbids).
    pub fn random() -> TraceIds {
        let mut trace_id: [u8; 16] = rand::random();
        let mut root_span_id: [u8; 8] = rand::random();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if root_span_id == [0; 8] {
            root_span_id[7] = 1;
        }
        TraceIds {
            trace_id,
            root_span_id,
        }
    }

    /// The W3C `traceparent` of the release's root span (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.root_span_id))
    }

    /// What child processes get in their environment.
    pub fn child_env(&self) -> Vec<(String, String)> {
        vec![(TRACEPARENT.into(), self.traceparent())]
    }

    /// The journal entry recording them.
    pub fn entry(&self, at_ms: u64) -> NewEntry {
        NewEntry {
            at_ms,
            operator: None,
            kind: TRACE_ENTRY.into(),
            service: None,
            payload: serde_json::json!({
                "summary": format!("trace {}", hex(&self.trace_id)),
                "trace_id": hex(&self.trace_id),
                "span_id": hex(&self.root_span_id),
            }),
        }
    }

    /// The ids a run journaled (the last trace entry), if any.
    pub fn from_entries(entries: &[Entry]) -> Option<TraceIds> {
        let e = entries.iter().rev().find(|e| e.kind == TRACE_ENTRY)?;
        let trace_id = unhex(e.payload.get("trace_id")?.as_str()?)?;
        let root_span_id = unhex(e.payload.get("span_id")?.as_str()?)?;
        Some(TraceIds {
            trace_id,
            root_span_id,
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Tracing for one run: the exporter's settings and the run's ids.
#[derive(Debug, Clone)]
pub struct RunTracing {
    pub config: OtelConfig,
    pub ids: TraceIds,
}

/// The exporter's settings from the environment; a variable cutover cannot follow is a
/// warning (the release goes on without traces), never a refusal.
pub fn config_from_env() -> Option<OtelConfig> {
    match OtelConfig::from_process_env() {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(target: "cutover", "{why}");
            None
        }
    }
}

/// Fold the engine's events into spans and export them until the event stream closes,
/// then wait (bounded) for the last batch. `state` is the engine's state when the
/// subscription began; `prior` the events a resumed run journaled before (replayed to
/// rebuild the open spans, not exported again).
pub fn spawn_tracer(
    run: RunTracing,
    state: &ReleaseState,
    prior: &[Event],
    mut events: broadcast::Receiver<Event>,
) -> JoinHandle<()> {
    let mut tracer = spans::Tracer::new(run.ids.trace_id, run.ids.root_span_id, state);
    for e in prior {
        let _ = tracer.apply(e);
    }
    if !prior.is_empty() {
        tracer.resumed(crate::engine::Clock::now_ms(&crate::engine::SystemClock));
    }
    let flush = export::flush_limit(&run.config);
    let resource = resource(&run.config, state);
    let (sink, exporter) = export::spawn_exporter(run.config, run.ids.trace_id, resource);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    for span in tracer.apply(&e) {
                        sink.offer(span);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "the tracer fell behind; some spans may be incomplete"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        drop(sink);
        let _ = tokio::time::timeout(flush, exporter).await;
    })
}

/// The resource: `service.name`, `OTEL_RESOURCE_ATTRIBUTES`, and the run's CI/CD and
/// deployment attributes (one resource per run, as the CI/CD conventions ask).
fn resource(config: &OtelConfig, state: &ReleaseState) -> Vec<(String, String)> {
    let mut r = config.resource.clone();
    let mut add = |k: &str, v: &str| {
        if !r.iter().any(|(key, _)| key == k) {
            r.push((k.to_string(), v.to_string()));
        }
    };
    add("cicd.pipeline.name", &state.release);
    add("cicd.pipeline.run.id", &state.run_id);
    if let Some(env) = &state.environment {
        add("deployment.environment.name", env);
    }
    r
}

/// Every local replica of the run also gets `env` (its `TRACEPARENT`).
pub fn add_to_local(config: &mut crate::platform::local::LocalConfig, env: &[(String, String)]) {
    for service in &mut config.services {
        for run in service.revisions.values_mut() {
            for (k, v) in env {
                run.env.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The longest a finished session waits for its tracer (which itself gives the last
/// export request the exporter's timeout).
pub const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// Wait at most `limit` for a tracer to send its last spans.
pub async fn finish(tracer: Option<JoinHandle<()>>, limit: Duration) {
    if let Some(t) = tracer {
        let _ = tokio::time::timeout(limit, t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_and_ids_round_trip_through_the_journal_entry() {
        let ids = TraceIds::random();
        let tp = ids.traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        let new = ids.entry(5);
        let entry = Entry {
            seq: 2,
            at_ms: 5,
            operator: None,
            kind: new.kind,
            service: None,
            payload: new.payload,
            prev_hash: String::new(),
            hash: String::new(),
        };
        assert_eq!(TraceIds::from_entries(&[entry]), Some(ids));
        assert_eq!(unhex::<2>("zz00"), None);
        assert_eq!(unhex::<2>("é0"), None);
    }
}

#[cfg(test)]
mod fold_tests;
