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
