//! Per-(service, revision) traffic measured at the local proxy.
//!
//! Counters are cumulative (the [`MetricSource`] contract); latency is kept twice: a
//! cumulative histogram (for `slow` counts over any threshold) and a ring of per-second
//! histograms covering the last [`WINDOW_SLOTS`] seconds (for `recent_latency`). Latency is
//! time to response headers, in microseconds, like an ALB's `TargetResponseTime`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::metrics::{LatencyQuantiles, MetricSource, RevisionCounters};

/// How many one-second slots the sliding window keeps (5 minutes).
pub const WINDOW_SLOTS: u64 = 300;
/// Highest latency tracked exactly (larger values are clamped): 10 minutes, in µs.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Window used for the quantiles in the Prometheus exposition.
const PROMETHEUS_WINDOW: Duration = Duration::from_secs(60);

fn cumulative_histogram() -> Histogram<u64> {
    // `new_with_bounds` only fails for low == 0, high < 2 * low or sigfig > 5.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

fn window_histogram() -> Histogram<u32> {
    // Two significant digits (1 % precision) keeps a full ring at a few MB per revision.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("constant histogram bounds are valid")
}

/// Latency state of one revision, behind one lock.
struct Latencies {
    cumulative: Histogram<u64>,
    /// Slot `s % WINDOW_SLOTS` holds the histogram of second `s` (since the stats began).
    ring: Vec<Option<(u64, Histogram<u32>)>>,
}

impl Latencies {
    fn new() -> Self {
        Latencies {
            cumulative: cumulative_histogram(),
            ring: (0..WINDOW_SLOTS).map(|_| None).collect(),
        }
    }

    fn record(&mut self, second: u64, micros: u64) {
        let micros = micros.max(1);
        self.cumulative.saturating_record(micros);
        let slot = &mut self.ring[(second % WINDOW_SLOTS) as usize];
        match slot {
            Some((s, h)) if *s == second => h.saturating_record(micros),
            Some((s, h)) => {
                h.reset();
                *s = second;
                h.saturating_record(micros);
            }
            None => {
                let mut h = window_histogram();
                h.saturating_record(micros);
                *slot = Some((second, h));
            }
        }
    }

    /// Merge the slots of the last `seconds` seconds ending at `now` (inclusive).
    fn window(&self, now: u64, seconds: u64) -> Histogram<u32> {
        let seconds = seconds.clamp(1, WINDOW_SLOTS);
        let oldest = now.saturating_sub(seconds - 1);
        let mut merged = window_histogram();
        for (s, h) in self.ring.iter().flatten() {
            if *s >= oldest && *s <= now {
                // Same bounds and precision, so `add` cannot fail; ignore defensively.
                let _ = merged.add(h);
            }
        }
        merged
    }
}

/// Live numbers for one revision of one service. Handed to the proxy once per revision so
/// the request path never looks anything up by name.
pub struct RevisionStats {
    service: String,
    revision: String,
    epoch: Instant,
    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    responses: [AtomicU64; 5],
    connection_errors: AtomicU64,
    latency_sum_us: AtomicU64,
    in_flight: InFlight,
    latencies: Mutex<Latencies>,
}

impl RevisionStats {
    fn new(service: &str, revision: &str, epoch: Instant) -> Self {
        RevisionStats {
            service: service.to_string(),
            revision: revision.to_string(),
            epoch,
            responses: Default::default(),
            connection_errors: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            in_flight: InFlight::default(),
            latencies: Mutex::new(Latencies::new()),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// A response arrived from the revision with `status` after `latency` (to headers).
    pub fn record_response(&self, status: u16, latency: Duration) {
        self.record_response_at(status, latency, Instant::now());
    }

    /// [`RevisionStats::record_response`] with the clock already read (`now`).
    pub fn record_response_at(&self, status: u16, latency: Duration, now: Instant) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let mut l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        l.record(second, micros);
    }

    /// The revision could not be reached (refused, reset, no backend, timed out).
    pub fn record_connection_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The in-flight gauge of this revision (released when a response body ends).
    pub fn in_flight_gauge(&self) -> &InFlight {
        &self.in_flight
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    /// Cumulative counters, `slow` = responses slower than `slow_threshold`.
    pub fn counters(&self, slow_threshold: Duration) -> RevisionCounters {
        let responses: u64 = self
            .responses
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        let connection_errors = self.connection_errors.load(Ordering::Relaxed);
        let threshold_us = slow_threshold.as_micros().min(u128::from(MAX_LATENCY_US)) as u64;
        let slow = {
            let l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
            let h = &l.cumulative;
            if h.is_empty() {
                0
            } else {
                // Values strictly above the threshold (3 significant digits of precision).
                h.len().saturating_sub(h.count_between(0, threshold_us))
            }
        };
        RevisionCounters {
            requests: responses + connection_errors,
            errors_5xx: self.responses[4].load(Ordering::Relaxed),
            connection_errors,
            slow,
        }
    }

    /// Quantiles over the last `window` (rounded up to whole seconds, at most
    /// [`WINDOW_SLOTS`] s). `None` when no response arrived in that window.
    pub fn recent_latency(&self, window: Duration) -> Option<LatencyQuantiles> {
        let seconds = window.as_secs() + u64::from(window.subsec_nanos() > 0);
        let now = self.epoch.elapsed().as_secs();
        let merged = {
            let l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
            l.window(now, seconds)
        };
        if merged.is_empty() {
            return None;
        }
        let ms = |q: f64| merged.value_at_quantile(q) as f64 / 1000.0;
        Some(LatencyQuantiles {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            samples: merged.len(),
        })
    }

    /// Responses at most `le` slow (the same rule as `counters`' `slow`: count at most
    /// `le` = all responses minus those slower than `le`).
    pub(super) fn responses_at_most(&self, le: Duration) -> u64 {
        let le_us = le.as_micros().min(u128::from(MAX_LATENCY_US)) as u64;
        let l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        let h = &l.cumulative;
        if h.is_empty() {
            0
        } else {
            h.count_between(0, le_us)
        }
    }

    /// Every response's latency added up, in seconds.
    pub(super) fn latency_sum_s(&self) -> f64 {
        self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub(super) fn responses_by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed))
    }
}

/// A gauge of requests in flight that can be awaited down to zero (for draining).
#[derive(Default)]
pub struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

impl InFlight {
    pub fn begin(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn end(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until nothing is in flight, or `timeout`; returns the count at the end.
    pub async fn wait_idle(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking so a release between check and wait is not lost.
            notified.as_mut().enable();
            if self.get() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get();
            }
        }
    }
}

/// Every revision's numbers, shared by all proxies of one local platform.
pub struct ProxyStats {
    epoch: Instant,
    revisions: RwLock<BTreeMap<(String, String), Arc<RevisionStats>>>,
    /// The request duration histogram's bucket boundaries, in seconds.
    buckets: RwLock<Vec<f64>>,
    /// More exposition text appended to `/metrics` (cutover's own release metrics).
    extra: RwLock<Option<ExtraText>>,
}

/// Text appended to the `/metrics` exposition, rendered at each scrape.
pub type ExtraText = Arc<dyn Fn() -> String + Send + Sync>;

impl ProxyStats {
    pub fn new() -> Arc<ProxyStats> {
        Arc::new(ProxyStats {
            epoch: Instant::now(),
            revisions: RwLock::new(BTreeMap::new()),
            buckets: RwLock::new(super::histogram::DEFAULT_BUCKETS.to_vec()),
            extra: RwLock::new(None),
        })
    }

    /// Add bucket boundaries (seconds) to the request duration histogram: each service's
    /// slow threshold, so that Prometheus counts "slow" exactly where the judge does.
    pub fn add_buckets(&self, seconds: &[f64]) {
        let mut b = self.buckets.write().unwrap_or_else(|p| p.into_inner());
        b.extend(seconds.iter().filter(|s| s.is_finite() && **s > 0.0));
        b.sort_by(f64::total_cmp);
        b.dedup();
    }

    /// Append `text` (rendered at every scrape) to the exposition.
    pub fn set_extra_text(&self, text: ExtraText) {
        *self.extra.write().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    /// The stats of a revision, created on first use.
    pub fn revision(&self, service: &str, revision: &str) -> Arc<RevisionStats> {
        if let Some(r) = self.get(service, revision) {
            return r;
        }
        let mut map = self.revisions.write().unwrap_or_else(|p| p.into_inner());
        map.entry((service.to_string(), revision.to_string()))
            .or_insert_with(|| Arc::new(RevisionStats::new(service, revision, self.epoch)))
            .clone()
    }

    /// The stats of a revision if it was ever seen.
    pub fn get(&self, service: &str, revision: &str) -> Option<Arc<RevisionStats>> {
        let map = self.revisions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(service.to_string(), revision.to_string()))
            .cloned()
    }

    fn all(&self) -> Vec<Arc<RevisionStats>> {
        let map = self.revisions.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Prometheus text exposition (format 0.0.4) of every revision.
    pub fn prometheus_text(&self) -> String {
        let all = self.all();
        let mut out = String::with_capacity(512 + all.len() * 1024);
        let labels = |r: &RevisionStats| {
            format!(
                "service=\"{}\",revision=\"{}\"",
                escape_label(&r.service),
                escape_label(&r.revision)
            )
        };
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP cutover_proxy_requests_total Requests routed to a revision (responses plus connection errors).\n# TYPE cutover_proxy_requests_total counter"
        );
        for r in &all {
            let c = r.counters(Duration::MAX);
            let _ = writeln!(
                out,
                "cutover_proxy_requests_total{{{}}} {}",
                labels(r),
                c.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP cutover_proxy_responses_total Responses from a revision by status class.\n# TYPE cutover_proxy_responses_total counter"
        );
        for r in &all {
            let l = labels(r);
            for (i, n) in r.responses_by_class().iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cutover_proxy_responses_total{{{l},class=\"{}xx\"}} {n}",
                    i + 1
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP cutover_proxy_connection_errors_total Requests that could not reach the revision (answered 502).\n# TYPE cutover_proxy_connection_errors_total counter"
        );
        for r in &all {
            let _ = writeln!(
                out,
                "cutover_proxy_connection_errors_total{{{}}} {}",
                labels(r),
                r.connection_errors.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cutover_proxy_in_flight Requests in flight to a revision.\n# TYPE cutover_proxy_in_flight gauge"
        );
        for r in &all {
            let _ = writeln!(
                out,
                "cutover_proxy_in_flight{{{}}} {}",
                labels(r),
                r.in_flight()
            );
        }
        let _ = writeln!(
            out,
            "# HELP cutover_proxy_latency_seconds Time to response headers; quantiles over the last 60 s.\n# TYPE cutover_proxy_latency_seconds summary"
        );
        for r in &all {
            let l = labels(r);
            if let Some(q) = r.recent_latency(PROMETHEUS_WINDOW) {
                for (name, v) in [("0.5", q.p50_ms), ("0.9", q.p90_ms), ("0.99", q.p99_ms)] {
                    let _ = writeln!(
                        out,
                        "cutover_proxy_latency_seconds{{{l},quantile=\"{name}\"}} {}",
                        v / 1000.0
                    );
                }
            }
            let count: u64 = r.responses_by_class().iter().sum();
            let sum = r.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "cutover_proxy_latency_seconds_sum{{{l}}} {sum}");
            let _ = writeln!(out, "cutover_proxy_latency_seconds_count{{{l}}} {count}");
        }
        let buckets = self
            .buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        super::histogram::render(&mut out, &all, &buckets);
        let extra = self.extra.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(extra) = extra {
            out.push_str(&extra());
        }
        out
    }
}

pub(crate) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[async_trait]
impl MetricSource for ProxyStats {
    fn name(&self) -> &str {
        "local-proxy"
    }

    async fn counters(
        &self,
        service: &str,
        revision: &str,
        slow_threshold: Duration,
    ) -> Result<Option<RevisionCounters>, crate::metrics::MetricsError> {
        Ok(self
            .get(service, revision)
            .map(|r| r.counters(slow_threshold)))
    }

    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        window: Duration,
    ) -> Result<Option<LatencyQuantiles>, crate::metrics::MetricsError> {
        Ok(self
            .get(service, revision)
            .and_then(|r| r.recent_latency(window)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_and_slow_threshold() {
        let stats = ProxyStats::new();
        let r = stats.revision("api", "v2");
        for ms in [1u64, 2, 3, 50, 120, 400] {
            r.record_response(200, Duration::from_millis(ms));
        }
        r.record_response(503, Duration::from_millis(5));
        r.record_connection_error();
        let c = stats
            .counters("api", "v2", Duration::from_millis(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            RevisionCounters {
                requests: 8,
                errors_5xx: 1,
                connection_errors: 1,
                slow: 2
            }
        );
        assert_eq!(c.errors(), 2);
        assert!(
            stats
                .counters("api", "v9", Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn recent_latency_quantiles() {
        let stats = ProxyStats::new();
        let r = stats.revision("api", "v1");
        for i in 1..=100u64 {
            r.record_response(200, Duration::from_millis(i));
        }
        let q = stats
            .recent_latency("api", "v1", Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.samples, 100);
        assert!((q.p50_ms - 50.0).abs() <= 1.0, "{q:?}");
        assert!((q.p90_ms - 90.0).abs() <= 1.0, "{q:?}");
        assert!((q.p99_ms - 99.0).abs() <= 1.0, "{q:?}");
        assert!(
            stats
                .recent_latency("api", "v0", Duration::from_secs(10))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn window_drops_old_seconds() {
        let mut l = Latencies::new();
        l.record(10, 1_000);
        l.record(11, 2_000);
        l.record(15, 3_000);
        assert_eq!(l.window(15, 1).len(), 1);
        assert_eq!(l.window(15, 5).len(), 2);
        assert_eq!(l.window(15, 6).len(), 3);
        // Slot reuse one full ring later forgets second 10 but keeps 11 and 15.
        l.record(10 + WINDOW_SLOTS, 4_000);
        assert_eq!(l.window(10 + WINDOW_SLOTS, WINDOW_SLOTS).len(), 3);
        assert_eq!(l.window(10 + WINDOW_SLOTS, 1).len(), 1);
        assert_eq!(l.cumulative.len(), 4);
    }

    #[tokio::test]
    async fn wait_idle_returns_when_released() {
        let stats = ProxyStats::new();
        let r = stats.revision("api", "v1");
        r.in_flight_gauge().begin();
        assert_eq!(
            r.in_flight_gauge()
                .wait_idle(Duration::from_millis(20))
                .await,
            1
        );
        let r2 = r.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            r2.in_flight_gauge().end();
        });
        assert_eq!(
            r.in_flight_gauge().wait_idle(Duration::from_secs(5)).await,
            0
        );
        assert_eq!(r.in_flight(), 0);
        t.await.unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
