//! The local proxy's request duration as a Prometheus *histogram*
//! (`cutover_proxy_request_duration_seconds{service,revision,le}`): unlike the summary
//! beside it, buckets can be summed across proxies and counted at a threshold, which is
//! how a Prometheus-backed judge counts "slow". The buckets always include every
//! service's slow threshold ([`super::stats::ProxyStats::add_buckets`]); a bucket counts
//! exactly what [`super::stats::RevisionStats::counters`] would not call slow.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::stats::{RevisionStats, escape_label};

/// Default bucket boundaries, in seconds (the judge's default slow threshold, 500 ms,
/// is one).
pub const DEFAULT_BUCKETS: &[f64] = crate::metrics::prometheus_templates::PROXY_BUCKETS;

/// Append the histogram of every revision to `out`.
pub fn render(out: &mut String, all: &[Arc<RevisionStats>], buckets: &[f64]) {
    let _ = writeln!(
        out,
        "# HELP cutover_proxy_request_duration_seconds Time to response headers of the requests a revision answered.\n# TYPE cutover_proxy_request_duration_seconds histogram"
    );
    for r in all {
        let l = format!(
            "service=\"{}\",revision=\"{}\"",
            escape_label(r.service()),
            escape_label(r.revision())
        );
        let count: u64 = r.responses_by_class().iter().sum();
        for b in buckets {
            let n = r.responses_at_most(Duration::from_secs_f64(*b)).min(count);
            let _ = writeln!(
                out,
                "cutover_proxy_request_duration_seconds_bucket{{{l},le=\"{}\"}} {n}",
                crate::metrics::prometheus_templates::format_le(*b)
            );
        }
        let _ = writeln!(
            out,
            "cutover_proxy_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "cutover_proxy_request_duration_seconds_sum{{{l}}} {}",
            r.latency_sum_s()
        );
        let _ = writeln!(
            out,
            "cutover_proxy_request_duration_seconds_count{{{l}}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::ProxyStats;
    use crate::metrics::MetricSource;
    use std::time::Duration;

    #[tokio::test]
    async fn buckets_count_what_the_judge_does_not_call_slow() {
        let stats = ProxyStats::new();
        stats.add_buckets(&[0.3, 0.3, f64::NAN]);
        let r = stats.revision("api", "v2");
        for ms in [1u64, 20, 120, 280, 400, 700] {
            r.record_response(200, Duration::from_millis(ms));
        }
        let text = stats.prometheus_text();
        let line = |le: &str| {
            let key = format!(
                "cutover_proxy_request_duration_seconds_bucket{{service=\"api\",revision=\"v2\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or_else(|| panic!("no {le} bucket in\n{text}"))
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(line("0.005"), 1);
        assert_eq!(line("0.1"), 2);
        assert_eq!(line("0.3"), 4);
        assert_eq!(line("0.5"), 5);
        assert_eq!(line("+Inf"), 6);
        let slow = stats
            .counters("api", "v2", Duration::from_millis(300))
            .await
            .unwrap()
            .unwrap()
            .slow;
        assert_eq!(slow, 6 - line("0.3"));
        assert!(text.contains(
            "cutover_proxy_request_duration_seconds_count{service=\"api\",revision=\"v2\"} 6"
        ));
        assert_eq!(text.matches("le=\"0.3\"").count(), 1);
    }
}
