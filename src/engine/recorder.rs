//! Where the engine writes every decision *before* acting on it. The durable
//! implementation is the journal ([`crate::journal`]); tests and benchmarks use
//! [`MemoryRecorder`]. A record that cannot be written stops the engine: acting on an
//! unrecorded decision would make resume guess.

use std::sync::{Arc, Mutex};

use super::state::Event;

/// Why a record could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot record to the journal: {0}")]
pub struct RecordError(pub String);

/// Durable, ordered storage of engine events.
pub trait Recorder: Send {
    /// The run's id (journal run id, or a test name).
    fn run_id(&self) -> String;
    /// Store one event durably before returning.
    fn record(&mut self, event: &Event) -> Result<(), RecordError>;
    /// Mark the run finished with an outcome (`promoted`, `rolled_back`, ...).
    fn finish(&mut self, outcome: &str) -> Result<(), RecordError>;
    /// Whether this engine may still write the run (a journal in PostgreSQL: its lease
    /// holds). Asked before every reconcile pass: a lost lease stops the engine before it
    /// acts again.
    fn still_writer(&self) -> Result<(), RecordError> {
        Ok(())
    }
}

/// Events in memory, shared so a test can read them while the engine runs.
#[derive(Debug, Clone, Default)]
pub struct MemoryRecorder {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub finished: Arc<Mutex<Option<String>>>,
}

impl MemoryRecorder {
    pub fn new() -> MemoryRecorder {
        MemoryRecorder::default()
    }
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Recorder for MemoryRecorder {
    fn run_id(&self) -> String {
        "memory".into()
    }
    fn record(&mut self, event: &Event) -> Result<(), RecordError> {
        self.events
            .lock()
            .map_err(|_| RecordError("memory recorder poisoned".into()))?
            .push(event.clone());
        Ok(())
    }
    fn finish(&mut self, outcome: &str) -> Result<(), RecordError> {
        *self
            .finished
            .lock()
            .map_err(|_| RecordError("memory recorder poisoned".into()))? =
            Some(outcome.to_string());
        Ok(())
    }
}

/// The durable recorder: every event becomes one journal entry, its payload the event
/// with a one-line `summary` for `cutover audit`.
pub struct JournalRecorder {
    journal: crate::journal::Journal,
}

impl JournalRecorder {
    pub fn new(journal: crate::journal::Journal) -> JournalRecorder {
        JournalRecorder { journal }
    }
    pub fn journal(&self) -> &crate::journal::Journal {
        &self.journal
    }
}

/// The payload of an engine event in the journal.
pub fn event_payload(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "summary": super::state::describe(event),
        "event": event,
    })
}

/// The engine events stored in journal entries, in order (other entries are skipped).
pub fn events_from_entries(entries: &[crate::journal::Entry]) -> Vec<Event> {
    entries
        .iter()
        .filter_map(|e| e.payload.get("event"))
        .filter_map(|v| serde_json::from_value::<Event>(v.clone()).ok())
        .collect()
}

impl Recorder for JournalRecorder {
    fn run_id(&self) -> String {
        self.journal.run_id().to_string()
    }
    fn record(&mut self, event: &Event) -> Result<(), RecordError> {
        let entry = crate::journal::NewEntry {
            at_ms: event.at_ms,
            operator: event.kind.operator().map(str::to_string),
            kind: event.kind.journal_kind().to_string(),
            service: event.kind.service().map(str::to_string),
            payload: event_payload(event),
        };
        let journal = &mut self.journal;
        off_the_async_workers(|| journal.append(entry))
            .map(|_| ())
            .map_err(|e| RecordError(e.to_string()))
    }
    fn finish(&mut self, outcome: &str) -> Result<(), RecordError> {
        let journal = &mut self.journal;
        off_the_async_workers(|| journal.finish(outcome)).map_err(|e| RecordError(e.to_string()))
    }
    fn still_writer(&self) -> Result<(), RecordError> {
        self.journal
            .still_writer()
            .map_err(|e| RecordError(e.to_string()))
    }
}

/// Run a journal write (a write and an fdatasync, which a slow disk can hold for a second)
/// without holding up the runtime's other tasks: on a multi-threaded runtime the worker
/// hands its queued tasks (proxies, the control API) to another thread first. The caller
/// still waits for the write, so "journaled before it acts" is unchanged. On a
/// current-thread runtime (unit tests) or outside one, the write runs in place.
fn off_the_async_workers<T>(write: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}
