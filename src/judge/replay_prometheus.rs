//! `cutover judge replay --from-prometheus URL`: the analysis windows of a past interval
//! read back from Prometheus by range queries (`/api/v1/query_range`) of the template's
//! cumulative counts for both revisions, then judged like recorded windows.
//!
//! Windows are consecutive steps at which all six counts have a sample; the canary's
//! share of traffic is `cutover_traffic_weight` (cutover's own metric) at that step, or
//! `--canary-weight`. The slow threshold is `max_p99`, a bucket of the histogram.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::judge::AnalysisWindow;
use crate::metrics::RevisionCounters;
use crate::metrics::prometheus::{PrometheusClient, Series};
use crate::metrics::prometheus_templates::{Template, fill};

/// What to read back.
#[derive(Debug, Clone)]
pub struct PromReplay {
    pub template: Template,
    pub service: String,
    pub baseline: String,
    pub canary: String,
    /// Unix seconds.
    pub since_s: f64,
    pub until_s: f64,
    pub step: Duration,
    pub slow_threshold: Duration,
    /// Percent; `None`: read `cutover_traffic_weight`.
    pub canary_weight: Option<f64>,
}

/// Unix seconds of one point in time as a user writes it: unix seconds (`1764800000`),
/// or a duration meaning "that long before `now_s`" (`30m`, `0s`).
pub fn parse_time(flag: &str, v: &str, now_s: f64) -> Result<f64, String> {
    if let Ok(x) = v.trim().parse::<f64>()
        && x.is_finite()
        && x > 0.0
    {
        return Ok(x);
    }
    crate::duration::parse_duration(v)
        .map(|d| now_s - d.as_secs_f64())
        .map_err(|_| {
            format!(
                "--{flag} `{v}`: write unix seconds (e.g. 1764800000) or how long ago (e.g. 30m)"
            )
        })
}

/// The one series of a range answer keyed by its timestamps in milliseconds.
fn points(series: Vec<Series>, what: &str) -> Result<BTreeMap<u64, f64>, String> {
    match series.len() {
        0 => Ok(BTreeMap::new()),
        1 => Ok(series
            .into_iter()
            .flat_map(|s| s.points)
            .map(|(t, v)| ((t * 1000.0).round() as u64, v))
            .collect()),
        n => Err(format!(
            "the {what} query returned {n} series; it must return one (wrap it in sum(...))"
        )),
    }
}

/// Read the windows back.
pub async fn windows(
    client: &PrometheusClient,
    r: &PromReplay,
) -> Result<Vec<AnalysisWindow>, String> {
    if r.until_s <= r.since_s {
        return Err("--until must be later than --since".into());
    }
    let le = r.template.bucket_for(r.slow_threshold, &[]).ok_or_else(|| {
        format!(
            "the slow threshold {} is not a bucket of the `{}` histogram; pass --max-p99 with one of: {}",
            crate::duration::format_duration(r.slow_threshold),
            r.template.name,
            r.template.buckets_text()
        )
    })?;
    let q = &r.template.queries;
    let mut arms = Vec::new();
    for rev in [&r.baseline, &r.canary] {
        let mut three = Vec::new();
        for (what, query, le) in [
            ("requests", &q.requests, None),
            ("errors", &q.errors, None),
            ("slow", &q.slow, Some(le)),
        ] {
            let query = fill(query, &r.service, rev, le);
            let s = client
                .range(&query, r.since_s, r.until_s, r.step)
                .await
                .map_err(|e| e.to_string())?;
            three.push(points(s, what)?);
        }
        arms.push(three);
    }
    let weights = match r.canary_weight {
        Some(_) => BTreeMap::new(),
        None => {
            let query = format!(
                "max(cutover_traffic_weight{{service=\"{}\",revision=\"{}\"}})",
                r.service.replace('\\', "\\\\").replace('"', "\\\""),
                r.canary.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let s = client
                .range(&query, r.since_s, r.until_s, r.step)
                .await
                .map_err(|e| e.to_string())?;
            let w = points(s, "weight")?;
            if w.is_empty() {
                return Err(format!(
                    "Prometheus has no cutover_traffic_weight for `{}` `{}` in that interval; pass --canary-weight PERCENT",
                    r.service, r.canary
                ));
            }
            w
        }
    };
    let since_ms = (r.since_s * 1000.0).round() as u64;
    let reading = |arm: &Vec<BTreeMap<u64, f64>>, t: u64| -> Option<RevisionCounters> {
        Some(RevisionCounters {
            requests: arm[0].get(&t)?.round() as u64,
            errors_5xx: arm[1].get(&t)?.round() as u64,
            connection_errors: 0,
            slow: arm[2].get(&t)?.round() as u64,
        })
    };
    let mut out = Vec::new();
    let mut prev: Option<(u64, RevisionCounters, RevisionCounters)> = None;
    for t in arms[0][0].keys().copied() {
        let (Some(b), Some(c)) = (reading(&arms[0], t), reading(&arms[1], t)) else {
            continue;
        };
        let weight = match r.canary_weight {
            Some(w) => Some(w),
            None => weights.get(&t).copied(),
        };
        if let (Some((pt, pb, pc)), Some(w)) = (prev, weight) {
            out.push(AnalysisWindow::from_readings(
                t.saturating_sub(since_ms),
                t - pt,
                (w / 100.0).clamp(0.0, 1.0),
                Some(r.slow_threshold),
                &pb,
                &b,
                &pc,
                &c,
            ));
        }
        prev = Some((t, b, c));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("since", "1764800000", 5.0), Ok(1764800000.0));
        assert_eq!(parse_time("since", "30m", 4000.0), Ok(2200.0));
        assert!(
            parse_time("since", "yesterday", 1.0)
                .unwrap_err()
                .contains("--since")
        );
    }
}
