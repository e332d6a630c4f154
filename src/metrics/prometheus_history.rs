//! Range queries for the console's charts: a console that starts (or restarts) mid-release
//! asks Prometheus for the last few minutes of each running revision, so its request rate,
//! error rate and latency charts start full instead of empty. The judge never reads these
//! (it differences instant readings of the counters itself).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::prometheus::{PrometheusSource, Series};
use super::prometheus_templates::{Unit, fill};
use super::{HistoryPoint, MetricsError};

/// The template's counters and latency quantiles over `[now - since, now]` every `step`.
pub async fn history(
    src: &PrometheusSource,
    service: &str,
    revision: &str,
    since: Duration,
    step: Duration,
) -> Result<Vec<HistoryPoint>, MetricsError> {
    let t = src.template(service);
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let start = end - since.as_secs_f64();
    let step = step.max(Duration::from_secs(1));
    let window = format!("{}s", step.as_secs().max(1));
    let client = src.client();
    let requests = client
        .range(
            &fill(&t.queries.requests, service, revision, None),
            start,
            end,
            step,
        )
        .await?;
    let errors = client
        .range(
            &fill(&t.queries.errors, service, revision, None),
            start,
            end,
            step,
        )
        .await?;
    let quantile = |q: &str| {
        fill(&t.queries.latency, service, revision, None)
            .replace("{{window}}", &window)
            .replace("{{quantile}}", q)
    };
    // Latency is best effort: a chart without it still shows traffic and errors.
    let p50 = client
        .range(&quantile("0.5"), start, end, step)
        .await
        .unwrap_or_default();
    let p99 = client
        .range(&quantile("0.99"), start, end, step)
        .await
        .unwrap_or_default();
    let scale = match t.unit {
        Unit::Seconds => 1000.0,
        Unit::Milliseconds => 1.0,
    };
    Ok(points(&requests, &errors, &p50, &p99, scale))
}

/// The first series' points (the template's queries sum to one series).
fn first(s: &[Series]) -> &[(f64, f64)] {
    s.first().map(|x| x.points.as_slice()).unwrap_or(&[])
}

/// The increase of a cumulative counter between two readings; a counter that went down
/// was reset (a restarted proxy), so its new value is the increase, as in PromQL.
fn increase(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

/// Rates between consecutive readings of the cumulative counters, with the latency
/// quantiles (scaled to ms) read at the later reading's time.
pub fn points(
    requests: &[Series],
    errors: &[Series],
    p50: &[Series],
    p99: &[Series],
    scale: f64,
) -> Vec<HistoryPoint> {
    let (req, err) = (first(requests), first(errors));
    let at = |s: &[(f64, f64)], t: f64| {
        s.iter()
            .find(|(x, _)| (x - t).abs() < 1e-3)
            .map(|(_, v)| *v)
    };
    req.windows(2)
        .filter_map(|w| {
            let ((t0, r0), (t1, r1)) = (w[0], w[1]);
            let dt = t1 - t0;
            if dt <= 0.0 {
                return None;
            }
            let dr = increase(r0, r1);
            let de = match (at(err, t0), at(err, t1)) {
                (Some(e0), Some(e1)) => Some(increase(e0, e1)),
                _ => None,
            };
            Some(HistoryPoint {
                at_ms: (t1 * 1000.0) as u64,
                requests_per_s: dr / dt,
                error_rate: de.filter(|_| dr > 0.0).map(|e| (e / dr).min(1.0)),
                p50_ms: at(first(p50), t1).map(|v| v * scale),
                p99_ms: at(first(p99), t1).map(|v| v * scale),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(f64, f64)]) -> Vec<Series> {
        vec![Series {
            labels: Default::default(),
            points: points.to_vec(),
        }]
    }

    #[test]
    fn rates_come_from_consecutive_readings_and_survive_a_reset() {
        let req = series(&[(100.0, 1000.0), (102.0, 1200.0), (104.0, 50.0)]);
        let err = series(&[(100.0, 10.0), (102.0, 30.0), (104.0, 1.0)]);
        let p99 = series(&[(102.0, 0.25), (104.0, 0.5)]);
        let pts = points(&req, &err, &[], &p99, 1000.0);
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].at_ms, 102_000);
        assert!((pts[0].requests_per_s - 100.0).abs() < 1e-9);
        assert_eq!(pts[0].error_rate, Some(0.1));
        assert_eq!(pts[0].p99_ms, Some(250.0));
        assert_eq!(pts[0].p50_ms, None);
        // The proxy restarted: the counter's new value is the increase.
        assert!((pts[1].requests_per_s - 25.0).abs() < 1e-9);
        assert_eq!(pts[1].error_rate, Some(1.0 / 50.0));
    }

    #[test]
    fn no_requests_means_no_error_rate_and_missing_errors_stay_missing() {
        let req = series(&[(0.0, 5.0), (1.0, 5.0), (2.0, 9.0)]);
        let pts = points(&req, &[], &[], &[], 1000.0);
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].requests_per_s, 0.0);
        assert_eq!(pts[0].error_rate, None);
        assert_eq!(pts[1].error_rate, None);
        assert!(points(&[], &[], &[], &[], 1.0).is_empty());
    }
}
