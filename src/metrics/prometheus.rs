//! Prometheus as a [`MetricSource`]: instant queries (`/api/v1/query`) of cumulative
//! counters per revision, differenced by the judge like any other source, and range
//! queries (`/api/v1/query_range`) for charts and `judge replay`.
//!
//! No data is *no data*: an empty result, `NaN`, more than one series, a response with
//! `warnings` (possibly partial), an error status, a timeout or an unreachable server
//! all read as `Ok(None)` or an error, and the source says [`MetricSource::absent_is_no_data`],
//! so the judge gets no window from such a poll and never passes on it.
//!
//! The client is the project's own HTTP/1 client ([`crate::engine::http`], TLS through
//! [`crate::tls`]). The URL may hold credentials (`env:VAR`): messages name the server by
//! scheme, host and port only; the auth header values are never shown.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::prometheus_templates::{Template, fill, template};
use super::{LatencyQuantiles, MetricSource, MetricsError, RevisionCounters};
use crate::release::{MetricsProvider, MetricsSection, Release};

/// The largest response body read (a range query's matrix).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One number from an instant query, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    NoData(String),
}

/// One series of a range query: its labels and `(unix seconds, value)` points (`NaN`
/// points are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: HashMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// A Prometheus HTTP API client.
#[derive(Clone)]
pub struct PrometheusClient {
    base: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    shown: String,
}

impl std::fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrometheusClient({})", self.shown)
    }
}

/// A value that may be `env:VAR`: the variable's value (an error naming the variable and
/// the key when it is unset).
fn resolve(key: &str, v: &str) -> Result<String, String> {
    match v.trim().strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| {
            format!("[metrics] {key} = \"env:{var}\": the environment variable {var} is not set; export it")
        }),
        None => Ok(v.to_string()),
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `scheme://user:pass@host/...` as the URL without user info, and the user info.
fn split_userinfo(url: &str) -> (String, Option<String>) {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some((user, host)) = rest[..end].rsplit_once('@') {
            return (
                format!("{scheme}://{host}{}", &rest[end..]),
                Some(user.to_string()),
            );
        }
    }
    (url.to_string(), None)
}

/// The server as messages name it: scheme, host and port, without user info, path or
/// query (which may hold credentials).
fn shown_url(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => {
            let host = u.host().unwrap_or("?");
            match u.port_u16() {
                Some(p) => format!("{}://{host}:{p}", u.scheme_str().unwrap_or("http")),
                None => format!("{}://{host}", u.scheme_str().unwrap_or("http")),
            }
        }
        Err(_) => "the configured Prometheus".to_string(),
    }
}

impl PrometheusClient {
    /// A client for `[metrics]` (its `env:` values read now).
    pub fn from_section(m: &MetricsSection) -> Result<PrometheusClient, String> {
        let url = m
            .url
            .as_deref()
            .ok_or("[metrics] provider = \"prometheus\" needs `url = \"http://HOST:9090\"`")?;
        let url = resolve("url", url)?;
        let mut headers = Vec::new();
        // `env:VAR` may hold `https://user:password@host`: sent as basic auth, not in the URL.
        let (url, userinfo) = split_userinfo(&url);
        if let Some(cred) = userinfo {
            headers.push((
                "authorization".to_string(),
                format!("Basic {}", base64(cred.as_bytes())),
            ));
        }
        if let Some(t) = &m.bearer_token {
            let token = resolve("bearer_token", t)?;
            headers.push(("authorization".to_string(), format!("Bearer {token}")));
        }
        if let (Some(u), Some(p)) = (&m.username, &m.password) {
            let user = resolve("username", u)?;
            let pass = resolve("password", p)?;
            let cred = base64(format!("{user}:{pass}").as_bytes());
            headers.push(("authorization".to_string(), format!("Basic {cred}")));
        }
        Ok(PrometheusClient::new(&url, headers, m.timeout.0))
    }

    pub fn new(url: &str, headers: Vec<(String, String)>, timeout: Duration) -> PrometheusClient {
        PrometheusClient {
            base: url.trim_end_matches('/').to_string(),
            headers,
            timeout,
            shown: shown_url(url),
        }
    }

    /// How messages name the server.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn error(&self, message: impl Into<String>) -> MetricsError {
        MetricsError {
            source_name: format!("prometheus at {}", self.shown),
            message: message.into(),
        }
    }

    /// POST a form to `path`; the `data` of a `success` answer and its warnings.
    async fn call(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<(Value, Vec<String>), MetricsError> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let url = format!("{}{path}", self.base);
        let answer = crate::engine::http::request_limited(
            "POST",
            &url,
            &self.headers,
            Some((
                "application/x-www-form-urlencoded".to_string(),
                body.join("&").into_bytes(),
            )),
            self.timeout,
            MAX_BODY,
        )
        .await
        // The client's messages quote the URL; name the server only.
        .map_err(|e| self.error(e.replace(&url, &format!("{}{path}", self.shown))))?;
        let doc: Value = serde_json::from_str(&answer.body).map_err(|_| {
            self.error(format!(
                "HTTP {} with a body that is not the API's JSON (is this Prometheus?)",
                answer.status
            ))
        })?;
        if doc["status"] != "success" {
            let kind = doc["errorType"].as_str().unwrap_or("error");
            let msg = doc["error"].as_str().unwrap_or("no message");
            return Err(self.error(format!("HTTP {}: {kind}: {msg}", answer.status)));
        }
        let warnings = doc["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok((doc["data"].clone(), warnings))
    }

    /// An instant query that must return one number.
    pub async fn instant(&self, query: &str) -> Result<Reading, MetricsError> {
        let (data, warnings) = self
            .call("/api/v1/query", &[("query", query.to_string())])
            .await?;
        if !warnings.is_empty() {
            return Ok(Reading::NoData(format!(
                "Prometheus warned the result may be partial: {}",
                warnings.join("; ")
            )));
        }
        Ok(reading_of(&data))
    }

    /// A range query: every series with its points.
    pub async fn range(
        &self,
        query: &str,
        start_s: f64,
        end_s: f64,
        step: Duration,
    ) -> Result<Vec<Series>, MetricsError> {
        let step_s = step.as_secs_f64().max(0.001);
        if (end_s - start_s) / step_s > 11_000.0 {
            return Err(self.error(format!(
                "a range of {:.0} s at a {step_s} s step exceeds Prometheus' 11,000 points per series; use a longer step",
                end_s - start_s
            )));
        }
        let (data, warnings) = self
            .call(
                "/api/v1/query_range",
                &[
                    ("query", query.to_string()),
                    ("start", format!("{start_s:.3}")),
                    ("end", format!("{end_s:.3}")),
                    ("step", format!("{step_s}")),
                ],
            )
            .await?;
        if !warnings.is_empty() {
            return Err(self.error(format!(
                "Prometheus warned the result may be partial: {}",
                warnings.join("; ")
            )));
        }
        Ok(series_of(&data))
    }
}

/// A sample value (`"1.5"`, `"NaN"`, `"+Inf"`): finite numbers only.
fn number(v: &Value) -> Option<f64> {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite())
}

/// The one number an instant query's `data` holds, or why not.
pub fn reading_of(data: &Value) -> Reading {
    let value = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => {
            let Some(result) = data["result"].as_array() else {
                return Reading::NoData("the answer has no result".into());
            };
            match result.as_slice() {
                [] => return Reading::NoData("the query returned no series".into()),
                [one] => &one["value"],
                many => {
                    return Reading::NoData(format!(
                        "the query returned {} series; it must return one number (wrap it in sum(...))",
                        many.len()
                    ));
                }
            }
        }
        other => {
            return Reading::NoData(format!(
                "the query returned a {}, not one number",
                other.unwrap_or("nothing")
            ));
        }
    };
    match value.get(1).and_then(number) {
        Some(x) if x >= 0.0 => Reading::Value(x),
        Some(x) => Reading::NoData(format!("the query returned a negative count ({x})")),
        None => Reading::NoData(format!(
            "the query returned {} (not a finite number)",
            value.get(1).and_then(Value::as_str).unwrap_or("nothing")
        )),
    }
}

/// The series of a range query's `data` (a matrix).
pub fn series_of(data: &Value) -> Vec<Series> {
    let Some(result) = data["result"].as_array() else {
        return Vec::new();
    };
    result
        .iter()
        .map(|s| Series {
            labels: s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            points: s["values"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter_map(|p| Some((p.get(0)?.as_f64()?, number(p.get(1)?)?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The judge's source for a release with `[metrics] provider = "prometheus"`.
pub struct PrometheusSource {
    client: PrometheusClient,
    default: Template,
    per_service: HashMap<String, Template>,
    /// Bucket boundaries the local proxy adds (each service's `max_p99`, in seconds).
    extra_buckets: Vec<f64>,
}

impl PrometheusSource {
    pub fn new(client: PrometheusClient, release: &Release) -> PrometheusSource {
        let t = release
            .metrics
            .as_ref()
            .map(|m| m.template)
            .unwrap_or_default();
        let default = template(t);
        let per_service = release
            .services
            .iter()
            .filter_map(|s| {
                let o = s.analysis.as_ref()?.prometheus.as_ref()?;
                Some((s.name.clone(), default.clone().with_overrides(Some(o))))
            })
            .collect();
        PrometheusSource {
            client,
            default,
            per_service,
            extra_buckets: slow_thresholds_s(release),
        }
    }

    /// The source a release asks for, or `None` for the platform's own.
    pub fn from_release(release: &Release) -> Result<Option<PrometheusSource>, String> {
        match &release.metrics {
            Some(m) if m.provider == MetricsProvider::Prometheus => {
                let client = PrometheusClient::from_section(m)?;
                Ok(Some(PrometheusSource::new(client, release)))
            }
            _ => Ok(None),
        }
    }

    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    pub(super) fn template(&self, service: &str) -> &Template {
        self.per_service.get(service).unwrap_or(&self.default)
    }

    /// One count, or `None` (no data, said in the log).
    async fn count(&self, what: &str, query: &str) -> Result<Option<u64>, MetricsError> {
        match self.client.instant(query).await? {
            Reading::Value(v) => Ok(Some(v.round() as u64)),
            Reading::NoData(why) => {
                tracing::debug!(%what, %why, "prometheus: no data");
                Ok(None)
            }
        }
    }
}

/// Every service's slow threshold (`max_p99`, or the judge's default), in seconds: the
/// local proxy's histogram has a bucket at each.
pub fn slow_thresholds_s(release: &Release) -> Vec<f64> {
    let default = crate::judge::AnalysisConfig::default().max_p99;
    let mut v: Vec<f64> = release
        .services
        .iter()
        .map(|s| {
            s.analysis
                .as_ref()
                .and_then(|a| a.max_p99)
                .map_or(default, |d| d.0)
                .as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn name(&self) -> &str {
        "prometheus"
    }

    async fn counters(
        &self,
        service: &str,
        revision: &str,
        slow_threshold: Duration,
    ) -> Result<Option<RevisionCounters>, MetricsError> {
        let t = self.template(service);
        let q = &t.queries;
        let Some(requests) = self
            .count("requests", &fill(&q.requests, service, revision, None))
            .await?
        else {
            return Ok(None);
        };
        let Some(errors) = self
            .count("errors", &fill(&q.errors, service, revision, None))
            .await?
        else {
            return Ok(None);
        };
        // Validation made the threshold a bucket; a threshold that is not one (a release
        // validated by an older cutover) is no data rather than an interpolated count.
        let Some(le) = t.bucket_for(slow_threshold, &self.extra_buckets) else {
            tracing::warn!(
                ?slow_threshold,
                "prometheus: the slow threshold is no bucket of the histogram"
            );
            return Ok(None);
        };
        let Some(slow) = self
            .count("slow", &fill(&q.slow, service, revision, Some(le)))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(RevisionCounters {
            requests,
            errors_5xx: errors,
            connection_errors: 0,
            slow,
        }))
    }

    async fn recent_latency(
        &self,
        service: &str,
        revision: &str,
        window: Duration,
    ) -> Result<Option<LatencyQuantiles>, MetricsError> {
        let t = self.template(service);
        let w = format!("{}s", window.as_secs().max(1));
        let with = |q: &str, quantile: &str| {
            fill(q, service, revision, None)
                .replace("{{window}}", &w)
                .replace("{{quantile}}", quantile)
        };
        let Some(samples) = self
            .count("samples", &with(&t.queries.recent_requests, ""))
            .await?
        else {
            return Ok(None);
        };
        if samples == 0 {
            return Ok(None);
        }
        let scale = match t.unit {
            super::prometheus_templates::Unit::Seconds => 1000.0,
            super::prometheus_templates::Unit::Milliseconds => 1.0,
        };
        let mut q = [0.0; 3];
        for (i, quantile) in ["0.5", "0.9", "0.99"].iter().enumerate() {
            match self
                .client
                .instant(&with(&t.queries.latency, quantile))
                .await?
            {
                Reading::Value(v) => q[i] = v * scale,
                Reading::NoData(_) => return Ok(None),
            }
        }
        Ok(Some(LatencyQuantiles {
            p50_ms: q[0],
            p90_ms: q[1],
            p99_ms: q[2],
            samples,
        }))
    }

    async fn history(
        &self,
        service: &str,
        revision: &str,
        since: Duration,
        step: Duration,
    ) -> Result<Vec<super::HistoryPoint>, MetricsError> {
        super::prometheus_history::history(self, service, revision, since, step).await
    }

    fn fixed_slow_thresholds(&self) -> bool {
        true
    }

    fn absent_is_no_data(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readings() {
        let one = json!({"resultType":"vector","result":[{"metric":{},"value":[1.0,"42"]}]});
        assert_eq!(reading_of(&one), Reading::Value(42.0));
        let scalar = json!({"resultType":"scalar","result":[1.0,"3.5"]});
        assert_eq!(reading_of(&scalar), Reading::Value(3.5));
        for (data, why) in [
            (json!({"resultType":"vector","result":[]}), "no series"),
            (
                json!({"resultType":"vector","result":[{"value":[1.0,"NaN"]}]}),
                "NaN",
            ),
            (
                json!({"resultType":"vector","result":[{"value":[1.0,"+Inf"]}]}),
                "+Inf",
            ),
            (
                json!({"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}),
                "2 series",
            ),
            (json!({"resultType":"matrix","result":[]}), "matrix"),
            (json!({}), "nothing"),
        ] {
            match reading_of(&data) {
                Reading::NoData(m) => assert!(m.contains(why), "{m}"),
                r => panic!("{data}: {r:?}"),
            }
        }
    }

    #[test]
    fn matrix_points_skip_nan() {
        let m = json!({"resultType":"matrix","result":[{"metric":{"revision":"v2"},"values":[[1.0,"1"],[2.0,"NaN"],[3.0,"4"]]}]});
        let s = series_of(&m);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["revision"], "v2");
        assert_eq!(s[0].points, vec![(1.0, 1.0), (3.0, 4.0)]);
    }

    #[test]
    fn encodings() {
        assert_eq!(base64(b"user:pa55"), "dXNlcjpwYTU1");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            form_encode("sum(x{a=\"b c\"})"),
            "sum%28x%7Ba%3D%22b+c%22%7D%29"
        );
        assert_eq!(
            shown_url("http://u:secret@prom:9090/x?t=1"),
            "http://prom:9090"
        );
        assert_eq!(
            split_userinfo("https://u:p@w@prom:9090/api?x=@"),
            (
                "https://prom:9090/api?x=@".to_string(),
                Some("u:p@w".to_string())
            )
        );
        assert_eq!(
            split_userinfo("http://prom:9090"),
            ("http://prom:9090".to_string(), None)
        );
    }
}

#[cfg(test)]
#[path = "prometheus_fake_server.rs"]
mod fake_server;
