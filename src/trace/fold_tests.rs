//! The span fold on a scripted run: the tree, the rollback, and that a resumed tracer
//! (journal replayed) ends the same spans with the same ids.

use std::collections::BTreeMap;

use super::spans::{SpanData, Tracer, Value};
use crate::engine::{Event, EventKind, FinalStatus, ReleaseState, Trigger, VerdictInfo};
use crate::judge::Outcome;
use crate::plan::Action;

fn state() -> ReleaseState {
    let mut s = ReleaseState::empty();
    s.release = "shop".into();
    s.run_id = "run-1".into();
    s.environment = Some("staging".into());
    s.waves = vec![vec!["db".into()], vec!["api".into(), "web".into()]];
    s
}

fn step(service: &str, index: usize, action: Action, description: &str) -> EventKind {
    EventKind::StepStarted {
        service: service.into(),
        index,
        of: 2,
        action,
        description: description.into(),
        until_ms: None,
    }
}

fn run() -> Vec<Event> {
    let kinds = vec![
        EventKind::ReleaseStarted {
            operator: "ann".into(),
        },
        EventKind::ServiceStarted {
            service: "db".into(),
        },
        step(
            "db",
            1,
            Action::Launch {
                revision: "v2".into(),
                replicas: Some(1),
            },
            "launch v2",
        ),
        EventKind::Promoted {
            service: "db".into(),
        },
        EventKind::ServiceStarted {
            service: "api".into(),
        },
        step("api", 1, Action::SetWeight { weight: 10 }, "shift 10%"),
        step(
            "api",
            2,
            Action::Analysis { duration_ms: 1000 },
            "analyze 1s",
        ),
        EventKind::Verdict {
            service: "api".into(),
            verdict: VerdictInfo {
                outcome: Outcome::Fail,
                judge: "threshold".into(),
                summary: "errors too high".into(),
                explanation: vec!["errors: FAIL".into()],
                at_ms: 0,
            },
        },
        EventKind::RollbackStarted {
            service: "api".into(),
            reason: "judge".into(),
            trigger: Trigger::Automatic,
        },
        EventKind::RolledBack {
            service: "api".into(),
            reason: "judge".into(),
        },
        EventKind::Skipped {
            service: "web".into(),
            reason: "api did not promote".into(),
        },
        EventKind::ReleaseFinished {
            services: BTreeMap::from([
                ("db".to_string(), FinalStatus::Promoted),
                ("api".to_string(), FinalStatus::RolledBack),
                ("web".to_string(), FinalStatus::Skipped),
            ]),
            exit_code: 3,
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            seq: i as u64 + 2,
            at_ms: 1000 + i as u64,
            kind,
        })
        .collect()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {:?}", names(spans)))
}

fn names(spans: &[SpanData]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn attr<'a>(s: &'a SpanData, k: &str) -> Option<&'a Value> {
    s.attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v)
}

#[test]
fn a_run_is_a_tree_with_the_rollback_marked() {
    let mut t = Tracer::new([7; 16], [9; 8], &state());
    let spans: Vec<SpanData> = run().iter().flat_map(|e| t.apply(e)).collect();
    let root = named(&spans, "RUN shop");
    assert!(root.server && root.parent.is_none() && root.span_id == [9; 8]);
    assert_eq!(
        attr(root, "cicd.pipeline.result"),
        Some(&Value::Str("failure".into()))
    );
    assert_eq!(
        attr(root, "deployment.environment.name"),
        Some(&Value::Str("staging".into()))
    );
    assert!(root.error.is_some());
    assert!(root.events.iter().any(|e| e.name == "rollback"));
    let w1 = named(&spans, "wave 1");
    let w2 = named(&spans, "wave 2");
    assert_eq!((w1.parent, w2.parent), (Some([9; 8]), Some([9; 8])));
    assert!(w1.error.is_none() && w2.error.is_some());
    let db = named(&spans, "service db");
    let api = named(&spans, "service api");
    let web = named(&spans, "service web");
    assert_eq!(db.parent, Some(w1.span_id));
    assert_eq!(
        (api.parent, web.parent),
        (Some(w2.span_id), Some(w2.span_id))
    );
    assert!(db.error.is_none());
    assert!(api.error.as_deref().is_some_and(|m| m.contains("judge")));
    assert!(api.events.iter().any(|e| e.name == "rollback"));
    assert_eq!(named(&spans, "launch v2").parent, Some(db.span_id));
    let analyze = named(&spans, "analyze 1s");
    assert_eq!(analyze.parent, Some(api.span_id));
    assert!(analyze.events.iter().any(|e| e.name == "verdict"));
    assert_eq!(analyze.error.as_deref(), Some("errors too high"));
    assert!(named(&spans, "shift 10%").error.is_none());
    assert_eq!(named(&spans, "rollback api").parent, Some(api.span_id));
    let mut ids: Vec<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
}

#[test]
fn a_resumed_tracer_ends_the_same_spans_with_the_same_ids() {
    let events = run();
    let mut whole = Tracer::new([7; 16], [9; 8], &state());
    let all: Vec<SpanData> = events.iter().flat_map(|e| whole.apply(e)).collect();
    for cut in 1..events.len() {
        let mut before = Tracer::new([7; 16], [9; 8], &state());
        let first: Vec<SpanData> = events[..cut].iter().flat_map(|e| before.apply(e)).collect();
        // A new process: the journal replayed, nothing exported again.
        let mut after = Tracer::new([7; 16], [9; 8], &state());
        for e in &events[..cut] {
            let _ = after.apply(e);
        }
        let rest: Vec<SpanData> = events[cut..].iter().flat_map(|e| after.apply(e)).collect();
        let joined: Vec<SpanData> = first.into_iter().chain(rest).collect();
        assert_eq!(joined, all, "cut after {cut} events");
    }
}
