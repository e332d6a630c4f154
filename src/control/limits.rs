//! What keeps the control API standing under abuse: a cap on open connections per
//! transport, a per-client request rate, and a bounded, sampled record of refused commands
//! (a client that may not act cannot grow the journal one fdatasync at a time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections per transport (the Unix socket, TCP); more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Open TCP connections from one address.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Requests per second a client may sustain, and the burst it may send at once.
pub const RATE_PER_SECOND: f64 = 50.0;
pub const RATE_BURST: f64 = 200.0;
/// Clients remembered by the rate limiter; beyond it idle ones are forgotten first.
const MAX_CLIENTS: usize = 4096;
/// Refused commands journaled: a burst, then one every `DENIAL_INTERVAL`, and never more
/// than `DENIALS_JOURNALED_MAX` over the server's life. The rest are counted.
const DENIAL_BURST: f64 = 20.0;
const DENIAL_INTERVAL: Duration = Duration::from_secs(3);
pub const DENIALS_JOURNALED_MAX: u64 = 1000;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            at: now,
        }
    }

    fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, rate: f64, capacity: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate >= capacity
    }
}

/// Per-client request rate.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    clients: Mutex<HashMap<String, Bucket>>,
    refused: AtomicU64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(RATE_PER_SECOND, RATE_BURST)
    }
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            clients: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `client` may make one more request now.
    pub fn allow(&self, client: &str) -> bool {
        self.allow_at(client, Instant::now())
    }

    fn allow_at(&self, client: &str, now: Instant) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(client) && clients.len() >= MAX_CLIENTS {
            // Forget the clients whose buckets refilled: they are idle, and a full bucket
            // is what they would get anyway.
            let (rate, burst) = (self.rate, self.burst);
            clients.retain(|_, b| !b.is_full(rate, burst, now));
            if clients.len() >= MAX_CLIENTS {
                // Every remembered client is busy: a new one shares the refusal.
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let bucket = clients
            .entry(client.to_string())
            .or_insert_with(|| Bucket::full(self.burst, now));
        let ok = bucket.take(self.rate, self.burst, now);
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Whether a refused command is journaled, and how many were passed over since the last
/// one that was.
pub struct DenialSampler {
    state: Mutex<DenialState>,
}

struct DenialState {
    bucket: Bucket,
    journaled: u64,
    suppressed_since_last: u64,
    suppressed_total: u64,
}

/// The sampler's answer for one refused command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Journal it; `passed_over` refusals were counted but not journaled since the last.
    Journal { passed_over: u64 },
    /// Count it only.
    Count,
}

impl Default for DenialSampler {
    fn default() -> Self {
        DenialSampler {
            state: Mutex::new(DenialState {
                bucket: Bucket::full(DENIAL_BURST, Instant::now()),
                journaled: 0,
                suppressed_since_last: 0,
                suppressed_total: 0,
            }),
        }
    }
}

impl DenialSampler {
    pub fn admit(&self) -> Denial {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Denial {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rate = 1.0 / DENIAL_INTERVAL.as_secs_f64();
        if s.journaled < DENIALS_JOURNALED_MAX && s.bucket.take(rate, DENIAL_BURST, now) {
            s.journaled += 1;
            let passed_over = std::mem::take(&mut s.suppressed_since_last);
            Denial::Journal { passed_over }
        } else {
            s.suppressed_since_last += 1;
            s.suppressed_total += 1;
            if s.suppressed_total.is_power_of_two() {
                tracing::warn!(
                    refused = s.suppressed_total,
                    "control API: refused commands are arriving faster than they are journaled; counting them"
                );
            }
            Denial::Count
        }
    }

    /// Refused commands counted but not journaled.
    pub fn suppressed(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.suppressed_total)
            .unwrap_or_default()
    }
}

/// Open connections of one transport and per address.
pub struct ConnectionCap {
    total: Mutex<(usize, HashMap<String, usize>)>,
    max: usize,
    per_address: usize,
}

/// Held while a connection is open.
pub struct ConnectionSlot {
    cap: Arc<ConnectionCap>,
    address: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut g = self.cap.total.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.1.remove(&self.address);
            }
        }
    }
}

impl ConnectionCap {
    pub fn new(max: usize, per_address: usize) -> ConnectionCap {
        ConnectionCap {
            total: Mutex::new((0, HashMap::new())),
            max,
            per_address,
        }
    }

    /// A slot for a connection from `address`, or `None` when a cap is reached.
    pub fn open(self: &Arc<Self>, address: &str) -> Option<ConnectionSlot> {
        let mut g = self.total.lock().unwrap_or_else(|p| p.into_inner());
        let from_here = g.1.get(address).copied().unwrap_or(0);
        if g.0 >= self.max || from_here >= self.per_address {
            return None;
        }
        g.0 += 1;
        *g.1.entry(address.to_string()).or_insert(0) += 1;
        Some(ConnectionSlot {
            cap: self.clone(),
            address: address.to_string(),
        })
    }

    pub fn open_now(&self) -> usize {
        self.total.lock().map(|g| g.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_the_sustained_rate() {
        let r = RateLimiter::new(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(r.allow_at("a", t0));
        }
        assert!(!r.allow_at("a", t0));
        // Another client is not affected.
        assert!(r.allow_at("b", t0));
        // 100 ms later one more token.
        assert!(r.allow_at("a", t0 + Duration::from_millis(100)));
        assert!(!r.allow_at("a", t0 + Duration::from_millis(100)));
        assert_eq!(r.refused(), 2);
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_clients() {
        let r = RateLimiter::new(1.0, 2.0);
        let t0 = Instant::now();
        for i in 0..MAX_CLIENTS {
            assert!(r.allow_at(&format!("c{i}"), t0));
        }
        // All busy (bucket not full): a new client is refused, nothing grows.
        assert!(!r.allow_at("new", t0));
        assert_eq!(r.remembered(), MAX_CLIENTS);
        // Once they are idle again, they are forgotten to make room.
        assert!(r.allow_at("new", t0 + Duration::from_secs(5)));
        assert_eq!(r.remembered(), 1);
    }

    #[test]
    fn refused_commands_are_journaled_in_a_bounded_sample() {
        let d = DenialSampler::default();
        let t0 = Instant::now();
        let mut journaled = 0;
        for _ in 0..10_000 {
            if let Denial::Journal { .. } = d.admit_at(t0) {
                journaled += 1;
            }
        }
        assert_eq!(journaled, DENIAL_BURST as u64);
        // The next journaled one says how many were passed over.
        assert_eq!(
            d.admit_at(t0 + DENIAL_INTERVAL),
            Denial::Journal {
                passed_over: 10_000 - DENIAL_BURST as u64
            }
        );
        // Over a long flood the total stays under the cap.
        let mut t = t0;
        let mut total = journaled + 1;
        for _ in 0..100_000 {
            t += Duration::from_millis(100);
            if let Denial::Journal { .. } = d.admit_at(t) {
                total += 1;
            }
        }
        assert!(total <= DENIALS_JOURNALED_MAX, "{total}");
        assert!(d.suppressed() > 90_000);
    }

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let cap = Arc::new(ConnectionCap::new(3, 2));
        let a1 = cap.open("a").unwrap();
        let _a2 = cap.open("a").unwrap();
        assert!(cap.open("a").is_none(), "per address");
        let _b = cap.open("b").unwrap();
        assert!(cap.open("c").is_none(), "total");
        drop(a1);
        let _c = cap.open("c").unwrap();
        assert_eq!(cap.open_now(), 3);
    }
}
