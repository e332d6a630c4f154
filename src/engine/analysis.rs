//! The engine's side of canary analysis: build the judge a service asks for, freeze the
//! slow threshold, sample both arms at the same time and feed the windows in.

use std::sync::Arc;
use std::time::Duration;

use crate::judge::{
    AnalysisConfig, AnalysisWindow, ArmSampler, Judge, JudgeKind, Outcome, Verdict,
    freeze_slow_threshold, new_judge,
};
use crate::metrics::MetricSource;
use crate::release::{Analysis, JudgeKind as ReleaseJudge};

use super::state::VerdictInfo;

/// Map a release's `[service.analysis]` (or its absence) to judge settings. Without a
/// section the engine still guards with the release's defaults (`max_error_rate` 5 %).
pub fn judge_config(
    a: Option<&Analysis>,
    force_threshold: bool,
    duration: Duration,
) -> AnalysisConfig {
    let d = Analysis::default();
    let a = a.unwrap_or(&d);
    let mut c = AnalysisConfig {
        judge: match a.judge {
            ReleaseJudge::Sequential => JudgeKind::Sequential,
            ReleaseJudge::Threshold => JudgeKind::Threshold,
        },
        tolerance: a.tolerance,
        min_requests: a.min_requests,
        min_duration: a.min_duration.0,
        max_error_rate: a.max_error_rate,
        alpha: a.alpha,
        bursty: a.bursty,
        failure_limit: a.failure_limit,
        ..AnalysisConfig::default()
    };
    if let Some(p) = a.max_p99 {
        c.max_p99 = p.0;
    }
    if force_threshold {
        c.judge = JudgeKind::Threshold;
    }
    // The threshold judge measures per interval: a tenth of the analysis, 1 s to 1 m.
    let tenth = duration / 10;
    c.interval = tenth.clamp(Duration::from_secs(1), Duration::from_secs(60));
    c
}

/// How often an analysis samples both arms.
pub fn sample_every(duration: Duration) -> Duration {
    (duration / 20).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// What one sample gave: the window (journaled as evidence) and, when the outcome
/// changed, the verdict.
#[derive(Debug, Default)]
pub struct Sampled {
    /// The window, with each arm's p99 over it (baseline, candidate) when known.
    pub window: Option<(AnalysisWindow, Option<f64>, Option<f64>)>,
    pub verdict: Option<VerdictInfo>,
}

/// One running analysis of a service.
pub struct AnalysisRun {
    judge: Box<dyn Judge>,
    sampler: ArmSampler,
    /// For each window's latency: the source, the service and both revisions.
    metrics: Arc<dyn MetricSource>,
    arms: (String, String, String),
    pub started_ms: u64,
    pub every: Duration,
    pub next_sample_ms: u64,
    last_outcome: Option<Outcome>,
    /// The outcome last reported as a verdict event.
    last_reported: Option<Outcome>,
    pub config: AnalysisConfig,
}

impl AnalysisRun {
    /// Start judging `candidate` against `baseline`. Freezes the slow threshold from the
    /// baseline's recent latency first.
    pub async fn start(
        metrics: Arc<dyn MetricSource>,
        service: &str,
        baseline: &str,
        candidate: &str,
        config: AnalysisConfig,
        every: Duration,
        now_ms: u64,
    ) -> Result<AnalysisRun, String> {
        let judge = new_judge(&config).map_err(|e| e.to_string())?;
        // A source that counts "slow" only at bucket boundaries counts at `max_p99`.
        let base_latency = if metrics.fixed_slow_thresholds() {
            None
        } else {
            metrics
                .recent_latency(service, baseline, Duration::from_secs(60))
                .await
                .map_err(|e| e.to_string())?
        };
        let slow = freeze_slow_threshold(&config, base_latency.as_ref());
        let mut sampler = ArmSampler::new(metrics.clone(), service, baseline, candidate, slow);
        sampler.sample(0, 0.0).await.map_err(|e| e.to_string())?;
        Ok(AnalysisRun {
            judge,
            sampler,
            metrics,
            arms: (service.into(), baseline.into(), candidate.into()),
            started_ms: now_ms,
            every,
            next_sample_ms: now_ms + every.as_millis() as u64,
            last_outcome: None,
            last_reported: None,
            config,
        })
    }

    /// Take one sample at `now_ms`: the window, and the verdict when its outcome changed.
    pub async fn sample(&mut self, now_ms: u64, canary_weight: u8) -> Result<Sampled, String> {
        self.next_sample_ms = now_ms + self.every.as_millis() as u64;
        let at = now_ms.saturating_sub(self.started_ms);
        let w = self
            .sampler
            .sample(at, f64::from(canary_weight) / 100.0)
            .await
            .map_err(|e| e.to_string())?;
        let mut window = None;
        if let Some(w) = w {
            let outcome = self.judge.observe(&w).map_err(|e| e.to_string())?;
            self.last_outcome = Some(outcome);
            let (service, baseline, candidate) = &self.arms;
            let (base_p99, cand_p99) = tokio::join!(
                p99(self.metrics.clone(), service, baseline, w.duration_ms),
                p99(self.metrics.clone(), service, candidate, w.duration_ms)
            );
            window = Some((w, base_p99, cand_p99));
        }
        let shown = self.outcome();
        let mut verdict = None;
        if self.last_reported != Some(shown)
            && (window.is_some() || self.sampler.no_data().is_some())
        {
            self.last_reported = Some(shown);
            verdict = Some(self.verdict(now_ms));
        }
        Ok(Sampled { window, verdict })
    }

    /// The judge's outcome, except that a pass needs data now: while the source has
    /// nothing (Prometheus empty or gone) a pass reads as inconclusive.
    pub fn outcome(&self) -> Outcome {
        match (self.last_outcome, self.sampler.no_data()) {
            (Some(Outcome::Fail), _) => Outcome::Fail,
            (_, Some(_)) => Outcome::Inconclusive,
            (o, None) => o.unwrap_or(Outcome::Inconclusive),
        }
    }

    pub fn verdict(&self, now_ms: u64) -> VerdictInfo {
        let mut v = info(&self.judge.verdict(), now_ms);
        let outcome = self.outcome();
        if let Some(why) = self.sampler.no_data()
            && outcome != Outcome::Fail
        {
            v.summary = format!("no data: {why}; {}", v.summary);
            v.explanation.push(format!(
                "note: no data is never a pass (the judge on the data it had: {})",
                v.outcome.as_str()
            ));
            v.outcome = outcome;
        }
        v
    }
}

/// A revision's p99 over the last `window_ms` (at least a second), for the report's
/// latency chart. Best effort: a source that cannot say leaves it out, and the judge does
/// not depend on it (it counts slow requests in the window itself).
async fn p99(
    metrics: Arc<dyn MetricSource>,
    service: &str,
    revision: &str,
    window_ms: u64,
) -> Option<f64> {
    if !metrics.latency_per_window() {
        return None;
    }
    let window = Duration::from_millis(window_ms.max(1000));
    metrics
        .recent_latency(service, revision, window)
        .await
        .ok()
        .flatten()
        .map(|q| q.p99_ms)
}

fn info(v: &Verdict, now_ms: u64) -> VerdictInfo {
    let mut explanation: Vec<String> = v.metrics.iter().map(|m| m.to_string()).collect();
    explanation.extend(v.notes.iter().map(|n| format!("note: {n}")));
    VerdictInfo {
        outcome: v.outcome,
        judge: v.judge.clone(),
        summary: v.summary.clone(),
        explanation,
        at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::judge::ArmCounts;

    fn config_of(analysis: &str) -> AnalysisConfig {
        let text = format!(
            "[release]\nname = \"r\"\n\n[[service]]\nname = \"a\"\nstrategy = \"canary\"\n\
             steps = [{{ set_weight = 10 }}, {{ analysis = \"10m\" }}]\n\
             [service.analysis]\n{analysis}\n[service.local]\nlisten = \"127.0.0.1:19001\"\n\
             command = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\"]\n\
             current = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n"
        );
        let r = crate::release::load_str(Path::new("r.toml"), &text, Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"));
        judge_config(
            r.services[0].analysis.as_ref(),
            false,
            Duration::from_secs(600),
        )
    }

    #[test]
    fn bursty_in_the_release_raises_the_judges_bar_until_the_dispersion_is_known() {
        let window = AnalysisWindow {
            at_ms: 1000,
            duration_ms: 1000,
            canary_weight: 0.1,
            slow_threshold_ms: None,
            baseline: ArmCounts {
                requests: 90,
                errors: 1,
                slow: 0,
            },
            canary: ArmCounts {
                requests: 10,
                errors: 1,
                slow: 0,
            },
        };
        let needed = |c: &AnalysisConfig| {
            let mut j = new_judge(c).unwrap();
            j.observe(&window).unwrap();
            let v = j.verdict();
            let e = v.metrics.iter().find_map(|m| m.evidence).unwrap();
            (
                e.needed,
                v.notes.iter().any(|n| n.starts_with("bursty = true:")),
            )
        };
        let plain = config_of("tolerance = 1.25");
        assert!(!plain.bursty);
        let bursty = config_of("bursty = true");
        assert!(bursty.bursty);
        let (bar, noted) = needed(&plain);
        assert!((bar - 200.0).abs() < 1e-6 && !noted);
        let (raised, noted) = needed(&bursty);
        assert!(
            (raised - 200f64.powf(1.15)).abs() < 1e-6 && noted,
            "{raised}"
        );
    }
}
