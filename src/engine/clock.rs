//! Time, injected: the engine reads `now` and sleeps through a [`Clock`], so tests drive
//! it with a [`FakeClock`] that jumps forward instead of waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the engine gets the time from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Resolve once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: u64) -> Sleep;
}

/// The wall clock (with tokio timers).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn sleep_until(&self, at_ms: u64) -> Sleep {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock for tests: it stands still until [`FakeClock::advance`] is called, and
/// `sleep_until` jumps straight to the wake-up time (after yielding once so that other
/// tasks, such as command senders, get to run first).
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock at `start_ms` (any value; 1_700_000_000_000 reads like a real date).
    pub fn new(start_ms: u64) -> FakeClock {
        FakeClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn set(&self, at_ms: u64) {
        self.now.fetch_max(at_ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, at_ms: u64) -> Sleep {
        let now = self.now.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            now.fetch_max(at_ms, Ordering::SeqCst);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_clock_jumps_to_the_wake_up_time_and_never_goes_back() {
        let c = FakeClock::new(1_000);
        c.sleep_until(5_000).await;
        assert_eq!(c.now_ms(), 5_000);
        c.sleep_until(2_000).await;
        assert_eq!(c.now_ms(), 5_000);
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now_ms(), 5_250);
    }
}
