//! Publishing the snapshot to front ends (the `watch` consoles and the control API read).
//!
//! A snapshot is a clone of the whole [`super::ReleaseState`]: for a release of a few
//! hundred services that is cheap and it goes out after every tick and command, as it
//! always did. For a fleet of thousands of tenant-services a clone per tick would be the
//! engine's largest cost, linear in the fleet, so a large state goes out at most every
//! [`PUBLISH_EVERY`] of wall time, and whenever the engine goes idle with a change not yet
//! published (`run` waits at most until [`Engine::publish_due_in`] and then calls
//! [`Engine::flush`]), and at the end of the run. A reader of the `watch` sees the latest
//! state a frame later at worst; events (the `broadcast`) still go out one by one.

use std::time::{Duration, Instant};

use super::reconciler::Engine;

/// States with at most this many services are published after every tick and command.
pub(super) const PUBLISH_ALWAYS_UP_TO: usize = 256;

/// A larger state is published at most this often (a console frame is 16-33 ms).
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(50);

impl Engine {
    /// Publish the snapshot if it changed (throttled for large states, see above).
    pub(super) fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        let small = self.state.services.len() <= PUBLISH_ALWAYS_UP_TO;
        let due = self
            .published_at
            .is_none_or(|at| at.elapsed() >= PUBLISH_EVERY);
        if small || due {
            self.flush();
        }
    }

    /// Publish the snapshot now if it changed.
    pub(crate) fn flush(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.published_at = Some(Instant::now());
            self.state_tx.send_replace(self.state.clone());
        }
    }

    /// A change is not published yet: how long until it may be (`None`: nothing waits).
    pub(crate) fn publish_due_in(&self) -> Option<Duration> {
        if !self.dirty {
            return None;
        }
        Some(self.published_at.map_or(Duration::ZERO, |at| {
            PUBLISH_EVERY.saturating_sub(at.elapsed())
        }))
    }
}
