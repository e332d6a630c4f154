//! What a headless run prints: one line (or JSON object) per event, and the closing
//! summary.

use std::collections::BTreeMap;
use std::io::Write;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::spec::Output;
use crate::engine::{Event, ReleaseState, describe};

fn stamp(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// One line on stdout. A closed stdout (`| head`) loses the line, never the run: the
/// release goes on and the journal has everything.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn spawn_printer(mut rx: broadcast::Receiver<Event>, output: Output) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                // Analysis windows are evidence for the report and `--output json`; one
                // line each would bury the decisions in the text.
                Ok(e)
                    if output == Output::Text
                        && matches!(e.kind, crate::engine::EventKind::AnalysisSample { .. }) => {}
                Ok(e) => {
                    let line = match output {
                        Output::Json => serde_json::to_string(&e).unwrap_or_default(),
                        Output::Text => format!("{}  {}", stamp(e.at_ms), describe(&e)),
                    };
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if output == Output::Text {
                        say(&format!("({n} events not shown: the printer fell behind)"));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// The closing summary of a run.
pub fn summary_json(
    state: &ReleaseState,
    exit_code: u8,
    extra: serde_json::Value,
) -> serde_json::Value {
    let services: BTreeMap<&str, &str> = state
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    let reasons: BTreeMap<&str, &str> = state
        .services
        .iter()
        .filter_map(|s| s.reason.as_deref().map(|r| (s.name.as_str(), r)))
        .collect();
    let mut v = serde_json::json!({
        "type": "summary",
        "release": state.release,
        "run_id": state.run_id,
        "services": services,
        "reasons": reasons,
        "exit_code": exit_code,
        "started_at_ms": state.started_at_ms,
        "finished_at_ms": state.finished_at_ms,
    });
    if !state.migrations.is_empty()
        && let Some(obj) = v.as_object_mut()
    {
        let migrations: BTreeMap<&str, &str> = state
            .migrations
            .iter()
            .map(|m| (m.name.as_str(), m.phase.as_str()))
            .collect();
        obj.insert("migrations".into(), serde_json::json!(migrations));
    }
    // With tenants: each tenant's outcome (services are already `TENANT/SERVICE`), and
    // the failure budget's count.
    if let Some(f) = &state.fleet
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("tenants".into(), serde_json::json!(f.summary()));
        obj.insert(
            "failure_budget".into(),
            serde_json::json!({"budget": f.budget, "failures": f.failures, "exceeded": f.exceeded}),
        );
    }
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

pub fn print_summary(
    state: &ReleaseState,
    exit_code: u8,
    output: Output,
    extra: serde_json::Value,
    text_extra: &[String],
) {
    match output {
        Output::Json => say(&summary_json(state, exit_code, extra).to_string()),
        Output::Text => {
            say("");
            say(&format!(
                "release {} (run {}):",
                state.release, state.run_id
            ));
            for s in &state.services {
                match &s.reason {
                    Some(r) => say(&format!("  {:<16} {:<12} {r}", s.name, s.status.as_str())),
                    None => say(&format!("  {:<16} {}", s.name, s.status.as_str())),
                }
            }
            for m in &state.migrations {
                say(&format!(
                    "  migration {:<16} {}: {}",
                    m.name,
                    m.phase.as_str(),
                    m.detail
                ));
            }
            for l in text_extra {
                say(l);
            }
            say(&format!("exit {exit_code}"));
        }
    }
}
