//! Canary analysis: turn per-window counts of a baseline and a canary, measured at the
//! same time, into pass / fail / inconclusive with an explanation a person can read.
//!
//! * [`AnalysisWindow`] is the input record (and the engine's journal line).
//! * [`Judge`] is what the engine drives: feed windows with [`Judge::observe`], read the
//!   explained state with [`Judge::verdict`]. Judges are deterministic and clock-free:
//!   time arrives inside the windows.
//! * [`SequentialJudge`] (default) and [`ThresholdJudge`] are selectable per service via
//!   [`AnalysisConfig::judge`]; [`new_judge`] builds the configured one.
//! * [`ArmSampler`] turns polls of a [`crate::metrics::MetricSource`] into windows.
//! * [`sim`] is the seeded benchmark behind `cutover judge-bench`, with the Kayenta- and
//!   z-test-style comparators in [`comparators`].
//!
//! How the engine drives an analysis (the sampler part is async and needs a source):
//!
//! ```
//! use cutover::judge::{AnalysisConfig, AnalysisWindow, ArmCounts, Outcome, freeze_slow_threshold, new_judge};
//! use cutover::metrics::LatencyQuantiles;
//!
//! let config = AnalysisConfig::default(); // from the release's [service.analysis]
//! // Before the canary takes traffic: freeze "slow" from the baseline's latency.
//! let baseline = LatencyQuantiles { p50_ms: 50.0, p90_ms: 108.0, p99_ms: 201.4, samples: 12_000 };
//! let slow = freeze_slow_threshold(&config, Some(&baseline));
//! let mut judge = new_judge(&config)?;
//! // Every tick: a window from `ArmSampler::sample`, journaled, then judged.
//! let window = AnalysisWindow {
//!     at_ms: 1_000,
//!     duration_ms: 1_000,
//!     canary_weight: 0.1,
//!     slow_threshold_ms: Some(slow.threshold.as_millis() as u64),
//!     baseline: ArmCounts { requests: 90, errors: 0, slow: 1 },
//!     canary: ArmCounts { requests: 10, errors: 0, slow: 0 },
//! };
//! assert_eq!(judge.observe(&window)?, Outcome::Inconclusive);
//! let verdict = judge.verdict(); // serde for the journal, Display for people
//! assert!(verdict.to_string().starts_with("INCONCLUSIVE after 1s (sequential): not enough data yet"));
//! // A restarted engine rebuilds the judge by feeding it the journaled windows again:
//! // judges are deterministic and read time only from the windows.
//! # Ok::<(), cutover::judge::JudgeError>(())
//! ```

pub mod calibrate;
pub mod comparators;
pub mod config;
pub mod explain;
pub mod guard;
pub mod replay;
pub mod replay_prometheus;
pub mod sampler;
pub mod sequential;
pub mod sim;
pub mod stats;
pub mod threshold;
pub mod window;

pub use config::{AnalysisConfig, JudgeKind, NoDataPolicy};
pub use explain::{ArmRate, CheckCounts, Evidence, Metric, MetricExplanation, Outcome, Verdict};
pub use sampler::ArmSampler;
pub use sequential::SequentialJudge;
pub use threshold::ThresholdJudge;
pub use window::{
    AnalysisWindow, ArmCounts, SlowThreshold, ThresholdSource, freeze_slow_threshold,
};

/// Why a judge refused a window or a configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    #[error("invalid analysis setting: {0}")]
    InvalidConfig(String),
    #[error("invalid window: {0}")]
    InvalidWindow(String),
    #[error(
        "window ending at {at_ms} ms comes before the previous one ending at {previous_ms} ms; \
         windows must be in time order"
    )]
    OutOfOrder { at_ms: u64, previous_ms: u64 },
    #[error(
        "slow threshold changed from {before:?} ms to {after:?} ms during the analysis; it is \
         frozen before the analysis starts and must stay the same"
    )]
    ThresholdChanged {
        before: Option<u64>,
        after: Option<u64>,
    },
}

/// A canary judge: stateful per analysis, deterministic, clock-free.
pub trait Judge: Send {
    /// The judge's name as configured or benchmarked (`sequential`, `argo-fl3`).
    fn name(&self) -> &str;

    /// Take the next window (in time order) and return the outcome so far. `Fail` is
    /// final: once failed, a judge stays failed. `Pass` means "may promote now" and can
    /// still turn into `Fail` if the analysis continues. Cheap enough to call per second.
    fn observe(&mut self, window: &AnalysisWindow) -> Result<Outcome, JudgeError>;

    /// The current state, explained per metric (for the console and the journal).
    /// Heavier than `observe` (the sequential judge computes its confidence intervals
    /// here: about 10 ms after 30 minutes of 1-second windows at 100 rps in a release
    /// build), so call it when journaling or drawing, not in tight loops.
    fn verdict(&self) -> Verdict;
}

/// Build the judge a service's analysis settings ask for.
pub fn new_judge(config: &AnalysisConfig) -> Result<Box<dyn Judge>, JudgeError> {
    config.validate()?;
    Ok(match config.judge {
        JudgeKind::Sequential => Box::new(SequentialJudge::new(config.clone())?),
        JudgeKind::Threshold => Box::new(ThresholdJudge::new("threshold", config.clone())?),
    })
}

/// Shared checks on the stream of windows every judge needs: order, validity, the frozen
/// threshold, and the analysis clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowClock {
    pub start_ms: Option<u64>,
    pub last_ms: Option<u64>,
    pub threshold_ms: Option<Option<u64>>,
    pub windows: u64,
}

impl WindowClock {
    pub fn accept(&mut self, w: &AnalysisWindow) -> Result<(), JudgeError> {
        w.validate()?;
        if let Some(prev) = self.last_ms
            && w.at_ms < prev
        {
            return Err(JudgeError::OutOfOrder {
                at_ms: w.at_ms,
                previous_ms: prev,
            });
        }
        match self.threshold_ms {
            None => self.threshold_ms = Some(w.slow_threshold_ms),
            Some(t) if t != w.slow_threshold_ms => {
                return Err(JudgeError::ThresholdChanged {
                    before: t,
                    after: w.slow_threshold_ms,
                });
            }
            Some(_) => {}
        }
        if self.start_ms.is_none() {
            self.start_ms = Some(w.start_ms());
        }
        self.last_ms = Some(w.at_ms);
        self.windows += 1;
        Ok(())
    }

    /// Time since the first window started.
    pub fn elapsed_ms(&self) -> u64 {
        match (self.start_ms, self.last_ms) {
            (Some(s), Some(l)) => l.saturating_sub(s),
            _ => 0,
        }
    }

    pub fn slow_threshold_ms(&self) -> Option<u64> {
        self.threshold_ms.flatten()
    }
}
