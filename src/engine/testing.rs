//! A platform, metric source and smoke tester made of plain data, for the engine's tests
//! and benchmarks: scripted health and failures, traffic that follows the weights, and
//! the same refusals as a real platform (weights on revisions that do not run, retiring
//! a revision that still has traffic).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::metrics::{LatencyQuantiles, MetricSource, MetricsError, RevisionCounters};
use crate::platform::{
    InstanceHealth, InstanceState, Platform, PlatformError, RevisionHealth, RunningRevision,
    TEST_ROUTE_HEADER, TestRoute, Weights,
};
use crate::release::Smoke;

use super::clock::Clock;
use super::smoke::{SmokeOutcome, SmokeTester};

#[derive(Debug, Clone)]
struct FakeRevision {
    replicas: u32,
    state: InstanceState,
    /// Share of requests that fail (0-1) and that are slow (0-1).
    error_rate: f64,
    slow_rate: f64,
    counters: RevisionCounters,
    /// Fractional requests carried between readings.
    carry: f64,
}

#[derive(Debug, Default)]
struct Inner {
    revisions: BTreeMap<(String, String), FakeRevision>,
    weights: BTreeMap<String, Weights>,
    /// Scripted: weight changes of these services fail (retryably) until healed.
    fail_weights: std::collections::BTreeSet<String>,
    /// Scripted: the next launch of (service, revision) fails.
    fail_launch: BTreeMap<(String, String), bool>,
    /// Scripted per-revision behaviour applied at launch.
    script: BTreeMap<(String, String), (InstanceState, f64, f64)>,
    last_traffic_ms: BTreeMap<String, u64>,
    calls: Vec<String>,
}

/// The fake platform. Traffic: `rps` requests per second per service, split by weight.
pub struct FakePlatform {
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
    rps: f64,
    log_calls: bool,
}

impl FakePlatform {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<FakePlatform> {
        Arc::new(FakePlatform {
            clock,
            inner: Arc::new(Mutex::new(Inner::default())),
            rps: 200.0,
            log_calls: true,
        })
    }

    /// No call log (benchmarks with many services).
    pub fn quiet(clock: Arc<dyn Clock>) -> Arc<FakePlatform> {
        Arc::new(FakePlatform {
            clock,
            inner: Arc::new(Mutex::new(Inner::default())),
            rps: 200.0,
            log_calls: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How a revision behaves once launched: its health state and error/slow rates.
    pub fn script(
        &self,
        service: &str,
        revision: &str,
        state: InstanceState,
        error_rate: f64,
        slow_rate: f64,
    ) {
        let mut i = self.lock();
        let key = (service.to_string(), revision.to_string());
        if let Some(r) = i.revisions.get_mut(&key) {
            r.state = state.clone();
            r.error_rate = error_rate;
            r.slow_rate = slow_rate;
        }
        i.script.insert(key, (state, error_rate, slow_rate));
    }

    /// Make a running revision's instances change state now (a crash, a failing check).
    pub fn set_state(&self, service: &str, revision: &str, state: InstanceState) {
        let mut i = self.lock();
        if let Some(r) = i
            .revisions
            .get_mut(&(service.to_string(), revision.to_string()))
        {
            r.state = state;
        }
    }

    /// Weight changes of `service` fail with a retryable error (an outage of the load
    /// balancer's API) until `fail` is called with false.
    pub fn fail_weights(&self, service: &str, fail: bool) {
        let mut i = self.lock();
        if fail {
            i.fail_weights.insert(service.to_string());
        } else {
            i.fail_weights.remove(service);
        }
    }

    pub fn fail_next_launch(&self, service: &str, revision: &str) {
        self.lock()
            .fail_launch
            .insert((service.to_string(), revision.to_string()), true);
    }

    /// The weights in force per service.
    pub fn all_weights(&self) -> BTreeMap<String, Weights> {
        self.lock().weights.clone()
    }

    /// Whether a revision runs (launched, not retired, not exited).
    pub fn running(&self, service: &str, revision: &str) -> bool {
        self.lock()
            .revisions
            .get(&(service.to_string(), revision.to_string()))
            .is_some_and(|r| r.replicas > 0 && !matches!(r.state, InstanceState::Exited { .. }))
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Every (service, revision) with weight > 0 that is not running: must stay empty.
    pub fn traffic_on_stopped(&self) -> Vec<(String, String, u8)> {
        let i = self.lock();
        let mut bad = Vec::new();
        for (svc, ws) in &i.weights {
            for (rev, w) in ws {
                let ok = i
                    .revisions
                    .get(&(svc.clone(), rev.clone()))
                    .is_some_and(|r| {
                        r.replicas > 0 && !matches!(r.state, InstanceState::Exited { .. })
                    });
                if *w > 0 && !ok {
                    bad.push((svc.clone(), rev.clone(), *w));
                }
            }
        }
        bad
    }

    fn log(&self, i: &mut Inner, what: String) {
        if self.log_calls {
            i.calls.push(what);
        }
    }

    /// Advance the synthetic traffic of a service to now.
    fn flow(&self, i: &mut Inner, service: &str) {
        let now = self.clock.now_ms();
        let last = i
            .last_traffic_ms
            .insert(service.to_string(), now)
            .unwrap_or(now);
        let dt = now.saturating_sub(last) as f64 / 1000.0;
        let weights = i.weights.get(service).cloned().unwrap_or_default();
        for (rev, w) in weights {
            if let Some(r) = i.revisions.get_mut(&(service.to_string(), rev)) {
                let exact = self.rps * dt * f64::from(w) / 100.0 + r.carry;
                let n = exact.floor();
                r.carry = exact - n;
                let n = n as u64;
                let before = r.counters;
                r.counters.requests += n;
                let target_err = (r.counters.requests as f64 * r.error_rate).floor() as u64;
                let target_slow = (r.counters.requests as f64 * r.slow_rate).floor() as u64;
                r.counters.errors_5xx = target_err.max(before.errors_5xx).min(r.counters.requests);
                r.counters.slow = target_slow.max(before.slow).min(r.counters.requests);
            }
        }
    }
}

#[async_trait]
impl Platform for FakePlatform {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn launch(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let mut i = self.lock();
        self.log(&mut i, format!("launch {service} {revision} {replicas}"));
        let key = (service.to_string(), revision.to_string());
        if i.fail_launch.remove(&key).unwrap_or(false) {
            return Err(PlatformError::fatal(
                service,
                format!("cannot start {revision}: scripted failure"),
            ));
        }
        let (state, error_rate, slow_rate) =
            i.script
                .get(&key)
                .cloned()
                .unwrap_or((InstanceState::Healthy, 0.0, 0.0));
        let r = i.revisions.entry(key).or_insert(FakeRevision {
            replicas,
            state: state.clone(),
            error_rate,
            slow_rate,
            counters: RevisionCounters::default(),
            carry: 0.0,
        });
        r.replicas = replicas;
        if matches!(r.state, InstanceState::Exited { .. }) {
            r.state = state;
        }
        Ok(())
    }

    async fn health(&self, service: &str, revision: &str) -> Result<RevisionHealth, PlatformError> {
        let i = self.lock();
        let r = i
            .revisions
            .get(&(service.to_string(), revision.to_string()))
            .ok_or_else(|| {
                PlatformError::fatal(service, format!("revision `{revision}` is not running"))
            })?;
        Ok(RevisionHealth {
            revision: revision.to_string(),
            desired: r.replicas,
            instances: (0..r.replicas)
                .map(|n| InstanceHealth {
                    id: format!("{service}-{revision}-{n}"),
                    address: format!("127.0.0.1:{}", 20000 + n),
                    state: r.state.clone(),
                })
                .collect(),
        })
    }

    async fn set_weights(&self, service: &str, weights: &Weights) -> Result<(), PlatformError> {
        let mut i = self.lock();
        self.flow(&mut i, service);
        self.log(&mut i, format!("weights {service} {weights:?}"));
        if i.fail_weights.contains(service) {
            return Err(PlatformError::retryable(
                service,
                "the load balancer's API is unavailable",
            ));
        }
        let sum: u32 = weights.iter().map(|(_, w)| u32::from(*w)).sum();
        if sum != 100 {
            return Err(PlatformError::fatal(
                service,
                format!("weights add up to {sum}"),
            ));
        }
        for (rev, w) in weights {
            let known = i
                .revisions
                .get(&(service.to_string(), rev.clone()))
                .is_some_and(|r| r.replicas > 0);
            if *w > 0 && !known {
                return Err(PlatformError::fatal(
                    service,
                    format!("revision `{rev}` is not launched"),
                ));
            }
        }
        i.weights.insert(service.to_string(), weights.clone());
        Ok(())
    }

    async fn weights(&self, service: &str) -> Result<Weights, PlatformError> {
        Ok(self
            .lock()
            .weights
            .get(service)
            .cloned()
            .unwrap_or_default())
    }

    async fn test_route(&self, service: &str, revision: &str) -> Result<TestRoute, PlatformError> {
        if !self
            .lock()
            .revisions
            .contains_key(&(service.to_string(), revision.to_string()))
        {
            return Err(PlatformError::fatal(
                service,
                format!("revision `{revision}` is not running"),
            ));
        }
        Ok(TestRoute {
            base_url: format!("http://fake/{service}"),
            header: (TEST_ROUTE_HEADER.to_string(), revision.to_string()),
        })
    }

    async fn scale(
        &self,
        service: &str,
        revision: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let mut i = self.lock();
        self.log(&mut i, format!("scale {service} {revision} {replicas}"));
        match i
            .revisions
            .get_mut(&(service.to_string(), revision.to_string()))
        {
            Some(r) => {
                r.replicas = replicas;
                Ok(())
            }
            None => Err(PlatformError::fatal(
                service,
                format!("revision `{revision}` is not running"),
            )),
        }
    }

    async fn retire(
        &self,
        service: &str,
        revision: &str,
        _drain: Duration,
    ) -> Result<(), PlatformError> {
        let mut i = self.lock();
        self.log(&mut i, format!("retire {service} {revision}"));
        let w = i
            .weights
            .get(service)
            .and_then(|ws| ws.iter().find(|(r, _)| r == revision).map(|(_, w)| *w))
            .unwrap_or(0);
        if w > 0 {
            return Err(PlatformError::fatal(
                service,
                format!("revision `{revision}` still has weight {w}%"),
            ));
        }
        i.revisions
            .remove(&(service.to_string(), revision.to_string()));
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<RunningRevision>, PlatformError> {
        let i = self.lock();
        Ok(i.revisions
            .iter()
            .map(|((s, r), rev)| RunningRevision {
                service: s.clone(),
                revision: r.clone(),
                replicas: rev.replicas,
                weight: i
                    .weights
                    .get(s)
                    .and_then(|ws| ws.iter().find(|(x, _)| x == r).map(|(_, w)| *w))
                    .unwrap_or(0),
            })
            .collect())
    }

    fn metrics(&self) -> Arc<dyn MetricSource> {
        Arc::new(FakeMetrics {
            platform: FakePlatform {
                clock: self.clock.clone(),
                inner: self.inner.clone(),
                rps: self.rps,
                log_calls: false,
            },
        })
    }

    async fn shutdown(&self) {
        let mut i = self.lock();
        i.revisions.clear();
        i.weights.clear();
    }
}

/// Metrics of the fake platform's synthetic traffic.
pub struct FakeMetrics {
    platform: FakePlatform,
}

#[async_trait]
impl MetricSource for FakeMetrics {
    fn name(&self) -> &str {
        "fake"
    }
    async fn counters(
        &self,
        service: &str,
        revision: &str,
        _slow: Duration,
    ) -> Result<Option<RevisionCounters>, MetricsError> {
        let mut i = self.platform.lock();
        self.platform.flow(&mut i, service);
        Ok(i.revisions
            .get(&(service.to_string(), revision.to_string()))
            .map(|r| r.counters))
    }
    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        _window: Duration,
    ) -> Result<Option<LatencyQuantiles>, MetricsError> {
        let i = self.platform.lock();
        Ok(i.revisions
            .get(&(service.to_string(), revision.to_string()))
            .filter(|r| r.counters.requests > 0)
            .map(|r| LatencyQuantiles {
                p50_ms: 10.0,
                p90_ms: 20.0,
                p99_ms: 40.0,
                samples: r.counters.requests,
            }))
    }
}

/// Smoke tests that pass unless scripted to fail (by service, or `service/test`).
#[derive(Debug, Clone, Default)]
pub struct ScriptedSmoke {
    failing: Arc<Mutex<Vec<String>>>,
    ran: Arc<Mutex<Vec<String>>>,
}

impl ScriptedSmoke {
    pub fn new() -> ScriptedSmoke {
        ScriptedSmoke::default()
    }
    /// Tests whose name matches fail; `revision` limits it to one revision.
    pub fn fail(&self, test: &str) {
        if let Ok(mut f) = self.failing.lock() {
            f.push(test.to_string());
        }
    }
    pub fn heal(&self) {
        if let Ok(mut f) = self.failing.lock() {
            f.clear();
        }
    }
    /// `test@revision` of every test run, in order.
    pub fn ran(&self) -> Vec<String> {
        self.ran.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl SmokeTester for ScriptedSmoke {
    async fn run(&self, test: &Smoke, route: &TestRoute, _direct: &str) -> SmokeOutcome {
        let label = format!("{}@{}", test.name, route.header.1);
        if let Ok(mut r) = self.ran.lock() {
            r.push(label.clone());
        }
        let fails = self
            .failing
            .lock()
            .map(|f| f.iter().any(|x| *x == test.name || *x == label))
            .unwrap_or(false);
        SmokeOutcome {
            passed: !fails,
            detail: if fails {
                "scripted failure: answered 500 (expected 200)".into()
            } else {
                "answered 200".into()
            },
        }
    }
}
