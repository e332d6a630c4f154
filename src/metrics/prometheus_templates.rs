//! The PromQL each `[metrics] template` asks, and the histogram buckets it can count
//! "slow" at. `{{service}}`, `{{revision}}`, `{{le}}` (the slow threshold in the
//! histogram's unit), `{{quantile}}` and `{{window}}` are filled in by [`fill`].
//!
//! Every count query returns one cumulative number (a counter's value, never a rate):
//! the judge differences two readings like any other [`super::MetricSource`]. `errors`
//! ends in `or vector(0)` because a revision that never failed has no error series;
//! `requests` does not, so a revision Prometheus has never seen is *no data*.

use std::time::Duration;

use crate::release::{PrometheusQueries, PrometheusTemplate};

/// The unit of a template's latency histogram (and so of its `le` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
}

/// One template's queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    pub requests: String,
    pub errors: String,
    pub slow: String,
    /// `histogram_quantile` over `{{window}}` (the console's latency).
    pub latency: String,
    /// Requests over `{{window}}` (how many samples the latency is from).
    pub recent_requests: String,
}

/// What a template reads: its queries, the unit and buckets of its histogram and the
/// label that names a revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: &'static str,
    pub revision_label: &'static str,
    pub unit: Unit,
    /// The histogram's bucket boundaries (in `unit`); "slow" can only be counted at one.
    pub buckets: &'static [f64],
    pub queries: Queries,
}

/// The local proxy's `cutover_proxy_request_duration_seconds` buckets, in seconds; the
/// local platform adds every service's slow threshold (`max_p99`) to them.
pub const PROXY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// OpenTelemetry's advice for `http.server.request.duration`, in seconds.
const OTEL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Istio's default `istio_request_duration_milliseconds` buckets.
const ISTIO_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Linkerd's `response_latency_ms` buckets.
const LINKERD_BUCKETS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn histogram_queries(sel: &str, errors_sel: &str, hist: &str, requests_metric: &str) -> Queries {
    Queries {
        requests: format!("sum({requests_metric}{{{sel}}})"),
        errors: format!("sum({requests_metric}{{{sel},{errors_sel}}}) or vector(0)"),
        slow: format!("sum({hist}_count{{{sel}}}) - sum({hist}_bucket{{{sel},le=\"{{{{le}}}}\"}})"),
        latency: format!(
            "histogram_quantile({{{{quantile}}}}, sum by (le) (rate({hist}_bucket{{{sel}}}[{{{{window}}}}])))"
        ),
        recent_requests: format!("sum(increase({hist}_count{{{sel}}}[{{{{window}}}}]))"),
    }
}

/// The template's queries and histogram.
pub fn template(t: PrometheusTemplate) -> Template {
    match t {
        PrometheusTemplate::Cutover => {
            let sel = r#"service="{{service}}",revision="{{revision}}""#;
            let hist = "cutover_proxy_request_duration_seconds";
            let mut q = histogram_queries(sel, "", hist, "cutover_proxy_requests_total");
            q.errors = format!(
                "(sum(cutover_proxy_responses_total{{{sel},class=\"5xx\"}}) or vector(0)) + (sum(cutover_proxy_connection_errors_total{{{sel}}}) or vector(0))"
            );
            Template {
                name: "cutover",
                revision_label: "revision",
                unit: Unit::Seconds,
                buckets: PROXY_BUCKETS,
                queries: q,
            }
        }
        PrometheusTemplate::HttpServer => {
            let hist = "http_server_request_duration_seconds";
            Template {
                name: "http_server",
                revision_label: "service_version",
                unit: Unit::Seconds,
                buckets: OTEL_BUCKETS,
                queries: histogram_queries(
                    r#"job="{{service}}",service_version="{{revision}}""#,
                    r#"http_response_status_code=~"5..""#,
                    hist,
                    &format!("{hist}_count"),
                ),
            }
        }
        PrometheusTemplate::Istio => Template {
            name: "istio",
            revision_label: "destination_version",
            unit: Unit::Milliseconds,
            buckets: ISTIO_BUCKETS,
            queries: histogram_queries(
                r#"reporter="destination",destination_service_name="{{service}}",destination_version="{{revision}}""#,
                r#"response_code=~"5..""#,
                "istio_request_duration_milliseconds",
                "istio_requests_total",
            ),
        },
        PrometheusTemplate::Linkerd => Template {
            name: "linkerd",
            revision_label: "version",
            unit: Unit::Milliseconds,
            buckets: LINKERD_BUCKETS,
            queries: histogram_queries(
                r#"direction="inbound",deployment="{{service}}",version="{{revision}}""#,
                r#"classification="failure""#,
                "response_latency_ms",
                "response_total",
            ),
        },
    }
}

impl Template {
    /// The template with a service's `[service.analysis.prometheus]` overrides applied.
    pub fn with_overrides(mut self, o: Option<&PrometheusQueries>) -> Template {
        if let Some(o) = o {
            if let Some(q) = &o.requests {
                self.queries.requests = q.clone();
            }
            if let Some(q) = &o.errors {
                self.queries.errors = q.clone();
            }
            if let Some(q) = &o.slow {
                self.queries.slow = q.clone();
            }
        }
        self
    }

    /// The slow threshold as a bucket boundary in the histogram's unit, or `None` when the
    /// histogram has no bucket there (counting would then interpolate: refused).
    pub fn bucket_for(&self, threshold: Duration, extra: &[f64]) -> Option<f64> {
        let v = match self.unit {
            Unit::Seconds => threshold.as_secs_f64(),
            Unit::Milliseconds => threshold.as_secs_f64() * 1000.0,
        };
        self.buckets
            .iter()
            .chain(extra)
            .copied()
            .find(|b| (b - v).abs() <= 1e-9 * v.abs().max(1.0))
    }

    /// The buckets, formatted for a message.
    pub fn buckets_text(&self) -> String {
        let unit = match self.unit {
            Unit::Seconds => "s",
            Unit::Milliseconds => "ms",
        };
        let v: Vec<String> = self.buckets.iter().map(|b| format_le(*b)).collect();
        format!("{} ({unit})", v.join(", "))
    }
}

/// A bucket boundary as an exporter writes its `le` label (`0.5`, `1`, `2.5`, `500`).
pub fn format_le(v: f64) -> String {
    format!("{v}")
}

/// Escape a value for a PromQL double-quoted string.
fn promql_string(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A query with its placeholders filled in. Service and revision names are escaped for
/// a PromQL string.
pub fn fill(query: &str, service: &str, revision: &str, le: Option<f64>) -> String {
    let mut q = query
        .replace("{{service}}", &promql_string(service))
        .replace("{{revision}}", &promql_string(revision));
    if let Some(le) = le {
        q = q.replace("{{le}}", &format_le(le));
    }
    q
}

/// The placeholders a query may use.
pub const PLACEHOLDERS: &[&str] = &["{{service}}", "{{revision}}", "{{le}}"];

/// Placeholders written in `query` that cutover does not fill (`{{servce}}`).
pub fn unknown_placeholders(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start..];
        let Some(end) = after.find("}}") else { break };
        let p = &after[..end + 2];
        if !PLACEHOLDERS.contains(&p) && !["{{quantile}}", "{{window}}"].contains(&p) {
            out.push(p.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutover_queries_name_the_revision_and_bucket() {
        let t = template(PrometheusTemplate::Cutover);
        let le = t.bucket_for(Duration::from_millis(500), &[]);
        assert_eq!(le, Some(0.5));
        let q = fill(&t.queries.slow, "api", "v\"2", le);
        assert_eq!(
            q,
            r#"sum(cutover_proxy_request_duration_seconds_count{service="api",revision="v\"2"}) - sum(cutover_proxy_request_duration_seconds_bucket{service="api",revision="v\"2",le="0.5"})"#
        );
        assert!(t.bucket_for(Duration::from_millis(300), &[]).is_none());
        assert_eq!(t.bucket_for(Duration::from_millis(300), &[0.3]), Some(0.3));
    }

    #[test]
    fn millisecond_templates_use_millisecond_buckets() {
        let t = template(PrometheusTemplate::Istio);
        assert_eq!(t.bucket_for(Duration::from_millis(250), &[]), Some(250.0));
        assert_eq!(format_le(250.0), "250");
        let l = template(PrometheusTemplate::Linkerd);
        assert!(l.bucket_for(Duration::from_millis(250), &[]).is_none());
        assert!(l.buckets_text().contains("200, 300"));
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = PrometheusQueries {
            requests: Some("sum(x{app=\"{{service}}\"})".into()),
            ..Default::default()
        };
        let t = template(PrometheusTemplate::HttpServer).with_overrides(Some(&o));
        assert_eq!(t.queries.requests, "sum(x{app=\"{{service}}\"})");
        assert!(
            t.queries
                .errors
                .contains("http_response_status_code=~\"5..\"")
        );
    }

    #[test]
    fn unknown_placeholders_are_found() {
        assert_eq!(
            unknown_placeholders("sum(x{a=\"{{servce}}\",b=\"{{revision}}\"}) {{le"),
            vec!["{{servce}}".to_string()]
        );
        for t in PrometheusTemplate::ALL {
            let q = template(t).queries;
            for s in [q.requests, q.errors, q.slow, q.latency, q.recent_requests] {
                assert!(unknown_placeholders(&s).is_empty(), "{s}");
            }
        }
    }
}
