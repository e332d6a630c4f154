//! Replica output becomes `tracing` events with target `service`. Alone in its own test
//! binary, with a global subscriber: tracing's per-callsite interest cache makes
//! thread-local subscribers unreliable while other tests log in parallel.

use std::sync::{Arc, Mutex};

use cutover::platform::local::supervisor::{ReplicaSpec, Supervisor};
use tracing_subscriber::layer::SubscriberExt;

/// Collects the fields of events with target `service`, one string per event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "service" {
            return;
        }
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", f.name(), v));
            }
        }
        let mut v = V(String::new());
        event.record(&mut v);
        self.0.lock().unwrap().push(v.0);
    }
}

#[tokio::test]
async fn output_lines_become_service_events() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::new(dir.path()).unwrap();
    let spec = ReplicaSpec {
        service: "svc".into(),
        revision: "v1".into(),
        replica: 1,
        command: ["sh", "-c", "echo hello; echo oops >&2; printf 'no newline'"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        args: vec![],
        env: Default::default(),
        scrub: Default::default(),
    };
    let r = sup.start(spec).await.unwrap();
    r.subscribe().wait_for(|s| s.exit.is_some()).await.unwrap();
    let events = capture.0.lock().unwrap().clone();
    let find = |msg: &str, stream: &str| {
        events.iter().any(|e| {
            e.contains(&format!("message={msg} "))
                && e.contains("service=svc ")
                && e.contains("revision=v1 ")
                && e.contains("replica=1 ")
                && e.contains(&format!("stream=\"{stream}\""))
        })
    };
    assert!(find("hello", "stdout"), "{events:?}");
    assert!(find("oops", "stderr"), "{events:?}");
    assert!(find("no newline", "stdout"), "{events:?}");
}
