//! Verdicts and their explanations: serde types for the journal, `Display` for people.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::format_duration;

/// The three outcomes of an analysis. Too little data is `Inconclusive`, never `Pass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Metric {
    /// 5xx answers and connection errors.
    Errors,
    /// Requests slower than the frozen threshold.
    Latency { threshold_ms: Option<u64> },
    /// The catastrophic guard: canary error rate over its most recent requests.
    Guard,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Errors => f.write_str("errors"),
            Metric::Latency {
                threshold_ms: Some(t),
            } => write!(f, "latency >{t}ms"),
            Metric::Latency { threshold_ms: None } => f.write_str("latency"),
            Metric::Guard => f.write_str("guard"),
        }
    }
}

/// Requests and bad events of one arm, and their ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmRate {
    pub requests: u64,
    pub bad: u64,
    /// `bad / requests`; `None` without requests.
    pub rate: Option<f64>,
}

impl ArmRate {
    pub fn new(requests: u64, bad: u64) -> ArmRate {
        ArmRate {
            requests,
            bad,
            rate: (requests > 0).then(|| bad as f64 / requests as f64),
        }
    }
}

/// The sequential test's evidence against "the canary is at most `tolerance` times worse".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The e-value so far (1 = no evidence either way, below 1 = evidence for the canary).
    pub e_value: f64,
    /// The e-value that fails the canary (`1 / α` of this metric family; `(1 / α)^1.15`
    /// with `bursty = true` until the family's dispersion is measured).
    pub needed: f64,
}

/// An anytime-valid interval for the rate ratio (canary ÷ baseline).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioInterval {
    pub low: f64,
    /// `None`: no upper bound yet.
    pub high: Option<f64>,
    /// Coverage, e.g. 0.99.
    pub level: f64,
}

/// The threshold judge's per-interval checks of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckCounts {
    /// The bound on the canary's per-interval value (error rate, or share slower than
    /// `max_p99`, i.e. 1 % for "p99 ≤ max_p99").
    pub bound: f64,
    pub measured: u32,
    pub failed: u32,
    /// Intervals without canary requests.
    pub no_data: u32,
    /// Fail when `failed > failure_limit`.
    pub failure_limit: u32,
    /// The canary's value in the last measured interval.
    pub last: Option<f64>,
}

/// Overdispersion found in a metric's bad events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dispersion {
    /// `φ̂`: variance of the canary's per-minute share of bad events relative to chance.
    pub phi: f64,
    pub minutes: usize,
    /// The power (≤ 1) applied to new evidence because of it.
    pub temper: f64,
}

/// One metric's part of a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricExplanation {
    pub metric: Metric,
    pub status: Outcome,
    pub canary: ArmRate,
    pub baseline: ArmRate,
    /// Canary rate ÷ baseline rate; `None` when undefined (no bad events in the baseline).
    pub ratio: Option<f64>,
    pub interval: Option<RatioInterval>,
    pub tolerance: Option<f64>,
    pub evidence: Option<Evidence>,
    pub checks: Option<CheckCounts>,
    pub dispersion: Option<Dispersion>,
    /// The comparison in words ("over tolerance 1.25×").
    pub detail: String,
    /// What is missing before this metric can pass ("412 of 1,000 canary requests").
    pub waiting_for: Vec<String>,
}

/// A percentage the way a person reads it: `2.1 %`, `0.05 %`, `55 %`.
pub fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 {
        "0 %".into()
    } else if p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 0.1 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// A ratio: `4.2×`, `12×`, `∞×`.
pub fn ratio_text(r: f64) -> String {
    if !r.is_finite() {
        "∞×".into()
    } else if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

/// A configured factor exactly as written: `1.25×`, `1.5×`, `2×`.
pub fn factor_text(f: f64) -> String {
    let s = format!("{f:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}×")
}

fn bound_text(r: f64) -> String {
    if !r.is_finite() {
        "∞".into()
    } else if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A count with thousands separators: `1,000`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// An e-value for people: `0.31`, `14`, `2,400`.
pub fn evidence_text(e: f64) -> String {
    if e >= 1e6 {
        format!("{e:.1e}")
    } else if e >= 100.0 {
        count(e.round() as u64)
    } else if e >= 10.0 {
        format!("{e:.0}")
    } else {
        format!("{e:.2}")
    }
}

impl fmt::Display for MetricExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |a: &ArmRate| match a.rate {
            Some(r) => percent(r),
            None => "no requests".into(),
        };
        write!(
            f,
            "{}: canary {} vs baseline {}",
            self.metric,
            rate(&self.canary),
            rate(&self.baseline)
        )?;
        if let Some(r) = self.ratio {
            write!(f, ", {}", ratio_text(r))?;
            if let Some(iv) = &self.interval {
                let hi = iv.high.map(bound_text).unwrap_or_else(|| "∞".into());
                write!(f, " [{}–{}]", bound_text(iv.low), hi)?;
            }
        }
        if !self.detail.is_empty() {
            write!(f, ", {}", self.detail)?;
        }
        if !self.waiting_for.is_empty() {
            write!(f, "; waiting for {}", self.waiting_for.join(", "))?;
        }
        write!(f, ": {}", self.status)
    }
}

/// A judge's state, explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub judge: String,
    pub outcome: Outcome,
    /// The end of the last window seen.
    pub at_ms: Option<u64>,
    /// Analysis time covered so far.
    pub elapsed_ms: u64,
    pub windows: u64,
    /// One sentence: why this outcome.
    pub summary: String,
    pub metrics: Vec<MetricExplanation>,
    /// Diagnostics a person should know about (clustered errors, no canary traffic).
    pub notes: Vec<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elapsed = format_duration(std::time::Duration::from_millis(self.elapsed_ms));
        write!(
            f,
            "{} after {} ({}): {}",
            self.outcome, elapsed, self.judge, self.summary
        )?;
        for m in &self.metrics {
            write!(f, "\n  {m}")?;
        }
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_line_reads_like_the_spec() {
        let m = MetricExplanation {
            metric: Metric::Errors,
            status: Outcome::Fail,
            canary: ArmRate::new(1000, 21),
            baseline: ArmRate::new(9000, 45),
            ratio: Some(4.2),
            interval: Some(RatioInterval {
                low: 2.9,
                high: Some(6.0),
                level: 0.99,
            }),
            tolerance: Some(1.25),
            evidence: Some(Evidence {
                e_value: 420.0,
                needed: 200.0,
            }),
            checks: None,
            dispersion: None,
            detail: "over tolerance 1.25×".into(),
            waiting_for: vec![],
        };
        assert_eq!(
            m.to_string(),
            "errors: canary 2.1 % vs baseline 0.5 %, 4.2× [2.9–6.0], over tolerance 1.25×: FAIL"
        );
        let json = serde_json::to_string(&m).unwrap();
        let back: MetricExplanation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(percent(0.005), "0.5 %");
        assert_eq!(percent(0.0005), "0.05 %");
        assert_eq!(percent(0.55), "55 %");
        assert_eq!(percent(0.0), "0 %");
        assert_eq!(ratio_text(12.4), "12×");
        assert_eq!(factor_text(1.25), "1.25×");
        assert_eq!(factor_text(2.0), "2×");
        assert_eq!(ratio_text(f64::INFINITY), "∞×");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(evidence_text(0.314), "0.31");
        assert_eq!(evidence_text(2400.2), "2,400");
    }
}
