//! The hub between one engine and any number of attached clients: it numbers every item
//! (engine event or presence change) in one gap-free sequence, folds the engine's events
//! into its own [`ReleaseState`], keeps a window of recent items and fans them out.
//!
//! A client takes a [`Snapshot`] (state + presence as of `seq`) and then streams from
//! `seq`: under the hub's lock, the backlog after `seq` is copied and the live
//! subscription is taken, so nothing is missed or repeated.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::tokens::Role;
use crate::engine::{Clock, Event, ReleaseState, SystemClock};

/// How many recent items a client can resume from.
pub const WINDOW: usize = 8192;
/// Per-client live queue; a client further behind is cut off and must re-snapshot.
pub const CLIENT_QUEUE: usize = 4096;

/// Someone attached to the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// Unique for the server's lifetime.
    pub id: u64,
    pub operator: String,
    pub role: Role,
    pub since_ms: u64,
    /// `unix` or `tcp`.
    pub via: String,
}

/// One numbered item of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub seq: u64,
    #[serde(flatten)]
    pub body: ItemBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ItemBody {
    /// An engine event, in engine order.
    Event { event: Event },
    /// Who is attached now (after someone attached or detached).
    Presence { attached: Vec<Attached> },
    /// The server stops serving (the release finished and the server exits, or it is
    /// shutting down); the stream ends after this.
    End { reason: String },
}

/// The state a client starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub protocol: String,
    /// The last item this snapshot includes; stream from here.
    pub seq: u64,
    pub state: ReleaseState,
    pub attached: Vec<Attached>,
}

impl Snapshot {
    /// Fold one streamed item in (what an attached client does).
    pub fn apply(&mut self, item: &Item) {
        self.seq = item.seq;
        match &item.body {
            ItemBody::Event { event } => self.state.apply(event),
            ItemBody::Presence { attached } => self.attached = attached.clone(),
            ItemBody::End { .. } => {}
        }
    }
}

struct Inner {
    seq: u64,
    state: ReleaseState,
    /// Counters for `/metrics` the state does not keep.
    counts: super::metrics::Counts,
    recent: VecDeque<Arc<Item>>,
    attached: BTreeMap<u64, Attached>,
    next_id: u64,
    ended: bool,
}

/// See the module docs.
pub struct Hub {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Item>>,
}

/// Why a stream cannot start where asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("sequence {from} is ahead of the server (latest is {latest})")]
    Ahead { from: u64, latest: u64 },
    #[error(
        "sequence {from} is older than the {WINDOW} items the server keeps (oldest is {oldest}); take a new snapshot"
    )]
    Gone { from: u64, oldest: u64 },
}

/// A client's live subscription: the backlog after `from`, then the live items.
pub struct Subscription {
    pub backlog: Vec<Arc<Item>>,
    pub live: broadcast::Receiver<Arc<Item>>,
}

/// Keeps someone in the presence list; dropping it detaches them (and tells everyone).
pub struct PresenceGuard {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.hub.detach(self.id);
    }
}

impl Hub {
    /// A hub starting from the engine's state before it runs, fed by `events` (take both
    /// from the engine before [`crate::engine::spawn`] so nothing falls between them).
    pub fn start(state: ReleaseState, events: broadcast::Receiver<Event>) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(CLIENT_QUEUE);
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner {
                seq: 0,
                state,
                counts: Default::default(),
                recent: VecDeque::with_capacity(1024),
                attached: BTreeMap::new(),
                next_id: 1,
                ended: false,
            }),
            tx,
        });
        let h = hub.clone();
        tokio::spawn(async move { h.pump(events).await });
        hub
    }

    async fn pump(self: Arc<Hub>, mut events: broadcast::Receiver<Event>) {
        loop {
            match events.recv().await {
                // Analysis windows are evidence for the journal and the release report;
                // a protocol 1.0 client does not know the kind, and a console needs none.
                Ok(e) if matches!(e.kind, crate::engine::EventKind::AnalysisSample { .. }) => {}
                Ok(e) => self.push_event(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Cannot happen while the hub keeps up with a 4096-deep channel; if
                    // it does, clients cannot be given a gap-free history any more.
                    tracing::error!(
                        "control hub fell {n} events behind the engine; clients must re-attach"
                    );
                    self.end(format!(
                        "the server fell {n} events behind the engine; re-attach"
                    ));
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, inner: &mut Inner, body: ItemBody) {
        if inner.ended {
            return;
        }
        inner.seq += 1;
        let item = Arc::new(Item {
            seq: inner.seq,
            body,
        });
        if inner.recent.len() == WINDOW {
            inner.recent.pop_front();
        }
        inner.recent.push_back(item.clone());
        let _ = self.tx.send(item);
    }

    /// Fold and fan out one engine event (the pump does this; public for tests).
    pub fn push_event(&self, event: Event) {
        let mut inner = self.lock();
        inner.state.apply(&event);
        inner.counts.observe(&event);
        self.publish(&mut inner, ItemBody::Event { event });
    }

    /// cutover's own metrics as of the latest item (Prometheus text).
    pub fn prometheus_text(&self) -> String {
        let inner = self.lock();
        super::metrics::render(&inner.state, &inner.counts)
    }

    /// The state as of the latest item.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            protocol: super::protocol_version(),
            seq: inner.seq,
            state: inner.state.clone(),
            attached: inner.attached.values().cloned().collect(),
        }
    }

    /// Everything after `from`, then live. `attach` adds the caller to the presence list
    /// (the presence item is the first thing they see after their backlog).
    pub fn subscribe(
        self: &Arc<Self>,
        from: u64,
        attach: Option<(String, Role, &str)>,
    ) -> Result<(Subscription, Option<PresenceGuard>), StreamError> {
        let mut inner = self.lock();
        if from > inner.seq {
            return Err(StreamError::Ahead {
                from,
                latest: inner.seq,
            });
        }
        let oldest = inner.recent.front().map_or(inner.seq + 1, |i| i.seq);
        if from + 1 < oldest {
            return Err(StreamError::Gone { from, oldest });
        }
        let backlog = inner
            .recent
            .iter()
            .filter(|i| i.seq > from)
            .cloned()
            .collect();
        let live = self.tx.subscribe();
        let guard = attach.map(|(operator, role, via)| {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.attached.insert(
                id,
                Attached {
                    id,
                    operator,
                    role,
                    since_ms: SystemClock.now_ms(),
                    via: via.to_string(),
                },
            );
            let attached = inner.attached.values().cloned().collect();
            self.publish(&mut inner, ItemBody::Presence { attached });
            PresenceGuard {
                hub: self.clone(),
                id,
            }
        });
        Ok((Subscription { backlog, live }, guard))
    }

    fn detach(&self, id: u64) {
        let mut inner = self.lock();
        if inner.attached.remove(&id).is_some() {
            let attached = inner.attached.values().cloned().collect();
            self.publish(&mut inner, ItemBody::Presence { attached });
        }
    }

    /// Who is attached.
    pub fn attached(&self) -> Vec<Attached> {
        self.lock().attached.values().cloned().collect()
    }

    /// Tell every stream the server stops; nothing is published after this.
    pub fn end(&self, reason: String) {
        let mut inner = self.lock();
        self.publish(&mut inner, ItemBody::End { reason });
        inner.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventKind;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            at_ms: seq,
            kind: EventKind::ReleaseStarted {
                operator: "alice".into(),
            },
        }
    }

    fn empty() -> ReleaseState {
        ReleaseState::replay(&[])
    }

    #[tokio::test]
    async fn snapshot_then_stream_has_no_gap_and_no_duplicate() {
        let (etx, erx) = broadcast::channel(16);
        let hub = Hub::start(empty(), erx);
        drop(etx);
        for i in 1..=5 {
            hub.push_event(ev(i));
        }
        let snap = hub.snapshot();
        assert_eq!(snap.seq, 5);
        hub.push_event(ev(6));
        let (mut sub, guard) = hub
            .subscribe(snap.seq, Some(("bob".into(), Role::Operator, "unix")))
            .unwrap();
        hub.push_event(ev(7));
        let mut seqs: Vec<u64> = sub.backlog.iter().map(|i| i.seq).collect();
        while let Ok(i) = sub.live.try_recv() {
            if !seqs.contains(&i.seq) {
                seqs.push(i.seq);
            }
        }
        // 6 (event), 7 (bob's presence), 8 (event 7): each once, in order.
        assert_eq!(seqs, vec![6, 7, 8]);
        assert_eq!(hub.attached().len(), 1);
        drop(guard);
        assert!(hub.attached().is_empty());
        assert_eq!(hub.snapshot().seq, 9);
        assert!(matches!(
            hub.subscribe(10, None),
            Err(StreamError::Ahead { .. })
        ));
    }

    #[tokio::test]
    async fn a_stream_older_than_the_window_is_told_to_resnapshot() {
        let (_etx, erx) = broadcast::channel(16);
        let hub = Hub::start(empty(), erx);
        for i in 1..=(WINDOW as u64 + 10) {
            hub.push_event(ev(i));
        }
        assert!(matches!(
            hub.subscribe(0, None),
            Err(StreamError::Gone { .. })
        ));
        assert!(hub.subscribe(11, None).is_ok());
        hub.end("bye".into());
        hub.push_event(ev(1));
        assert_eq!(hub.snapshot().seq, WINDOW as u64 + 11);
    }
}
