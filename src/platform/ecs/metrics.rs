//! CloudWatch as a [`MetricSource`]: per target group (so per revision, on EXTERNAL
//! services where each revision has its own target group) `RequestCount`,
//! `HTTPCode_Target_5XX_Count`, `TargetConnectionErrorCount` and `TargetResponseTime`,
//! read with one batched `GetMetricData` per question.
//!
//! Counters are cumulative since the revision's task set was created (when its target
//! group started serving it). Missing data points stay missing: no data at all is
//! `Ok(None)`, never zeros. Ratios and error rates are computed by the judge, not with
//! CloudWatch metric math.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use super::EcsPlatform;
use super::aws::{RetryPolicy, call};
use super::traffic::load_balancer_dimension;
use crate::metrics::{LatencyQuantiles, MetricSource, MetricsError, RevisionCounters};

const NAMESPACE: &str = "AWS/ApplicationELB";
const PERIOD: i32 = 60;

/// The CloudWatch metric source of an [`EcsPlatform`].
pub struct CloudWatchSource {
    platform: EcsPlatform,
}

/// Where a revision's metrics live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricTarget {
    /// `targetgroup/NAME/ID`.
    pub target_group: String,
    /// `app/NAME/ID`.
    pub load_balancer: String,
    /// Since when the revision's numbers count.
    pub since: SystemTime,
}

/// One metric asked for: (query id, metric name, statistic).
type Ask = (&'static str, &'static str, String);

impl CloudWatchSource {
    pub fn new(platform: EcsPlatform) -> Self {
        CloudWatchSource { platform }
    }

    fn err(&self, message: impl Into<String>) -> MetricsError {
        MetricsError {
            source_name: "cloudwatch".into(),
            message: message.into(),
        }
    }

    /// The target group and load balancer dimensions of a revision, and when it started.
    pub async fn target(
        &self,
        service: &str,
        revision: &str,
    ) -> Result<Option<MetricTarget>, MetricsError> {
        let svc = self
            .platform
            .svc(service)
            .map_err(|e| self.err(e.to_string()))?;
        let Some((tg_arn, created)) = self
            .platform
            .revision_target(service, revision)
            .await
            .map_err(|e| self.err(e.to_string()))?
        else {
            return Ok(None);
        };
        let rule = svc.cfg.listener_rule.as_deref().unwrap_or("");
        let load_balancer = load_balancer_dimension(rule)
            .ok_or_else(|| self.err(format!("cannot tell the load balancer from \"{rule}\"")))?;
        let target_group = tg_arn.rsplit(':').next().unwrap_or(&tg_arn).to_string();
        let since = SystemTime::try_from(created).unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Some(MetricTarget {
            target_group,
            load_balancer,
            since,
        }))
    }

    /// Sum of each query's values between `start` and `end`; a query with no data point
    /// is absent from the map.
    async fn fetch(
        &self,
        service: &str,
        t: &MetricTarget,
        asks: &[Ask],
        (start, end, period): (SystemTime, SystemTime, i32),
        retry: &RetryPolicy,
    ) -> Result<BTreeMap<String, Vec<f64>>, MetricsError> {
        let svc = self
            .platform
            .svc(service)
            .map_err(|e| self.err(e.to_string()))?;
        let dims = vec![
            Dimension::builder()
                .name("TargetGroup")
                .value(&t.target_group)
                .build(),
            Dimension::builder()
                .name("LoadBalancer")
                .value(&t.load_balancer)
                .build(),
        ];
        let queries: Vec<MetricDataQuery> = asks
            .iter()
            .map(|(id, name, stat)| {
                MetricDataQuery::builder()
                    .id(*id)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(NAMESPACE)
                                    .metric_name(*name)
                                    .set_dimensions(Some(dims.clone()))
                                    .build(),
                            )
                            .period(period)
                            .stat(stat)
                            .build(),
                    )
                    .return_data(true)
                    .build()
            })
            .collect();
        let cw = &svc.clients.cloudwatch;
        let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let resp = call(retry, "cloudwatch:GetMetricData", || {
                cw.get_metric_data()
                    .set_metric_data_queries(Some(queries.clone()))
                    .start_time(DateTime::from(start))
                    .end_time(DateTime::from(end))
                    .set_next_token(next.clone())
                    .send()
            })
            .await
            .map_err(|e| self.err(e.to_string()))?;
            for r in resp.metric_data_results() {
                let Some(id) = r.id() else { continue };
                if r.values().is_empty() {
                    continue;
                }
                out.entry(id.to_string())
                    .or_default()
                    .extend(r.values().iter().copied());
            }
            next = resp.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

/// Round down to a whole period, as CloudWatch aligns data points.
fn floor_to_period(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % PERIOD as u64)
}

/// Counters from summed query results. `None` when CloudWatch has no request count at
/// all: a revision without data is unknown, not a revision with zero errors.
pub fn counters_from(sums: &BTreeMap<String, Vec<f64>>) -> Option<RevisionCounters> {
    let total = |id: &str| -> Option<u64> {
        sums.get(id)
            .map(|v| v.iter().sum::<f64>().max(0.0).round() as u64)
    };
    let requests = total("requests")?;
    Some(RevisionCounters {
        requests,
        errors_5xx: total("errors").unwrap_or(0),
        connection_errors: total("connection_errors").unwrap_or(0),
        slow: total("slow").unwrap_or(0),
    })
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    fn name(&self) -> &str {
        "cloudwatch"
    }

    fn latency_per_window(&self) -> bool {
        false
    }

    async fn counters(
        &self,
        service: &str,
        revision: &str,
        slow_threshold: Duration,
    ) -> Result<Option<RevisionCounters>, MetricsError> {
        let Some(t) = self.target(service, revision).await? else {
            return Ok(None);
        };
        let start = floor_to_period(t.since);
        let end = floor_to_period(SystemTime::now()) + Duration::from_secs(PERIOD as u64);
        let asks: Vec<Ask> = vec![
            ("requests", "RequestCount", "Sum".into()),
            ("errors", "HTTPCode_Target_5XX_Count", "Sum".into()),
            (
                "connection_errors",
                "TargetConnectionErrorCount",
                "Sum".into(),
            ),
        ];
        let retry = *self.platform.retry_policy();
        let mut sums = self
            .fetch(service, &t, &asks, (start, end, PERIOD), &retry)
            .await?;
        // Requests slower than the threshold: the trimmed count of TargetResponseTime above
        // it. Asked separately, once and without retries, because not every CloudWatch
        // implementation knows trimmed statistics (moto does not); without it `slow` stays
        // 0 and the judge relies on the latency quantiles.
        let flag = &self.platform.inner().no_trimmed_count;
        if !flag.load(Ordering::Relaxed) {
            let slow_stat = format!("TC({:.3}:)", slow_threshold.as_secs_f64());
            let once = RetryPolicy {
                max_attempts: 1,
                ..retry
            };
            match self
                .fetch(
                    service,
                    &t,
                    &[("slow", "TargetResponseTime", slow_stat)],
                    (start, end, PERIOD),
                    &once,
                )
                .await
            {
                Ok(slow) => sums.extend(slow),
                Err(e) => {
                    flag.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        service,
                        revision,
                        "CloudWatch gives no trimmed count of TargetResponseTime, so slow requests are not counted: {e}"
                    );
                }
            }
        }
        Ok(counters_from(&sums))
    }

    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        window: Duration,
    ) -> Result<Option<LatencyQuantiles>, MetricsError> {
        let Some(t) = self.target(service, revision).await? else {
            return Ok(None);
        };
        let secs = window.as_secs().max(PERIOD as u64);
        let period = (secs.div_ceil(PERIOD as u64) * PERIOD as u64) as i32;
        let end = floor_to_period(SystemTime::now()) + Duration::from_secs(PERIOD as u64);
        let start = end - Duration::from_secs(period as u64);
        let asks: Vec<Ask> = vec![
            ("samples", "TargetResponseTime", "SampleCount".into()),
            ("p50", "TargetResponseTime", "p50".into()),
            ("p90", "TargetResponseTime", "p90".into()),
            ("p99", "TargetResponseTime", "p99".into()),
        ];
        let retry = *self.platform.retry_policy();
        let got = self
            .fetch(service, &t, &asks, (start, end, period), &retry)
            .await?;
        Ok(quantiles_from(&got))
    }
}

/// Quantiles from CloudWatch results (seconds → milliseconds). Over several periods the
/// highest value is taken, so a bad minute is not averaged away. `None` without samples or
/// without all three percentiles.
pub fn quantiles_from(got: &BTreeMap<String, Vec<f64>>) -> Option<LatencyQuantiles> {
    let samples = got
        .get("samples")
        .map(|v| v.iter().sum::<f64>().round() as u64)?;
    if samples == 0 {
        return None;
    }
    let max_ms = |id: &str| -> Option<f64> {
        got.get(id)?
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .map(|s| s * 1000.0)
    };
    Some(LatencyQuantiles {
        p50_ms: max_ms("p50")?,
        p90_ms: max_ms("p90")?,
        p99_ms: max_ms("p99")?,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &[f64])]) -> BTreeMap<String, Vec<f64>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn no_request_data_is_none_not_zero() {
        assert_eq!(counters_from(&m(&[])), None);
        assert_eq!(counters_from(&m(&[("errors", &[3.0])])), None);
        assert_eq!(
            counters_from(&m(&[("requests", &[100.0, 50.0]), ("errors", &[2.0])])),
            Some(RevisionCounters {
                requests: 150,
                errors_5xx: 2,
                connection_errors: 0,
                slow: 0
            })
        );
    }

    #[test]
    fn quantiles_take_the_worst_period_in_ms() {
        assert_eq!(quantiles_from(&m(&[("samples", &[0.0])])), None);
        assert_eq!(
            quantiles_from(&m(&[("samples", &[10.0]), ("p50", &[0.1])])),
            None
        );
        let q = quantiles_from(&m(&[
            ("samples", &[10.0, 5.0]),
            ("p50", &[0.010, 0.020]),
            ("p90", &[0.050]),
            ("p99", &[0.2, 0.1]),
        ]))
        .unwrap();
        assert_eq!(q.samples, 15);
        assert!((q.p50_ms - 20.0).abs() < 1e-9);
        assert!((q.p90_ms - 50.0).abs() < 1e-9);
        assert!((q.p99_ms - 200.0).abs() < 1e-9);
    }
}
