//! The maths of the judges, free of I/O and clocks.
//!
//! **Rate-ratio e-process.** Given a bad event (an error, or a request slower than a
//! frozen threshold) in a window where the canary served share `w` of the requests, the
//! event came from the canary with probability `θ(r, w) = r·w / (r·w + 1 − w)`, where
//! `r = p_canary / p_baseline` is the rate ratio; at `r = 1` the base rate drops out.
//! To test H0: `r ≤ r0` we keep, for each alternative `r_k > r0` on a log-spaced grid,
//! the log likelihood ratio `L_k` of all bad events so far under `θ(r_k, w)` against
//! `θ(r0, w)`, and report the mixture `E = Σ_k π_k·exp(L_k)` (prior weights `π_k`, see
//! [`Prior`]). Under any `r ≤ r0` each
//! `exp(L_k)` is a non-negative supermartingale, hence so is `E`, and by Ville's
//! inequality `P(E ever reaches 1/α) ≤ α`: the judge may look after every window
//! without inflating false rollbacks. Raising a window's factor to a power `c ≤ 1`
//! fixed before the window (tempering) keeps this true by Jensen's inequality.

/// Number of alternatives in the mixture.
pub const GRID_SIZE: usize = 64;
/// The alternatives span `r0 × [GRID_LOW, GRID_HIGH]`, log-spaced (steps of 0.083 in
/// `ln(r / r0)`, far finer than what a minute of bad events can tell apart).
pub const GRID_LOW: f64 = 1.1;
/// Up to 200× the tolerance, so a crashing canary (50 % errors against a 0.5 % baseline
/// is 100×) is tested against an alternative near its own ratio.
pub const GRID_HIGH: f64 = 200.0;

/// Centre of the prior bump, in `ln(r / r0)` (1.05 ≈ a ratio of 2.9·r0).
pub const PRIOR_CENTER: f64 = 1.05;
/// Spread of the prior bump, in `ln(r / r0)`.
pub const PRIOR_SD: f64 = 0.35;
/// Share of the prior spread evenly over the alternatives at or beyond [`TAIL_FROM`].
pub const PRIOR_TAIL: f64 = 0.05;
/// Where the tail of the prior starts, as a factor over `r0`.
pub const TAIL_FROM: f64 = 20.0;

/// `ln(r_k / r0)` of each alternative.
fn grid_log_factors() -> [f64; GRID_SIZE] {
    let (lo, hi) = (GRID_LOW.ln(), GRID_HIGH.ln());
    let mut g = [0.0; GRID_SIZE];
    for (k, v) in g.iter_mut().enumerate() {
        *v = lo + (hi - lo) * k as f64 / (GRID_SIZE - 1) as f64;
    }
    g
}

/// `θ(r, w)`: the probability that a bad event came from the canary.
pub fn canary_share_of_bad(r: f64, w: f64) -> f64 {
    r * w / (r * w + 1.0 - w)
}

/// Log of `Σ exp(x_i)`, computed without overflow.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// Where the regression test's mixture puts its weight over the alternatives: a normal
/// bump on `ln(r/r0)` around `center` with spread `spread`, and `tail` of the weight
/// spread evenly over the alternatives from `tail_from`·r0 up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub center: f64,
    pub spread: f64,
    pub tail: f64,
    pub tail_from: f64,
}

impl Prior {
    /// The judge's prior (see [`Prior::log_weights`]).
    pub const DEFAULT: Prior = Prior {
        center: PRIOR_CENTER,
        spread: PRIOR_SD,
        tail: PRIOR_TAIL,
        tail_from: TAIL_FROM,
    };

    /// For `judge-bench` only: a bump centred between the two regressions the benchmark
    /// simulates (×4 errors: ln(4/1.25) = 1.16; p99 + 50 ms: ln(3.2/1.25) = 0.94) and
    /// narrow enough (0.15) to come within 1.05× of the oracle on both. It shows what
    /// that costs on every other regression; see docs/judge.md.
    pub const NARROW: Prior = Prior {
        center: 1.1,
        spread: 0.15,
        tail: PRIOR_TAIL,
        tail_from: TAIL_FROM,
    };

    /// The log weight of each alternative of grid `g` (the weights sum to 1): most mass
    /// (`1 − tail`) on the regressions a canary exists to catch quickly, the rest from
    /// `tail_from`·r0 up, so a crashing canary fails on its first few errors.
    ///
    /// The prior is fixed before any data, so the mixture stays a test supermartingale; it
    /// only decides where the test is fastest, and at what price elsewhere: the log
    /// evidence of a mixture trails the best single alternative's by about
    /// `½ ln(1 + s²·I)` plus the prior's log density at the truth (`I` the Fisher
    /// information in `ln r` gathered, `s` the spread), see docs/judge.md "The sequential
    /// judge against the oracle". Against the previous default (bump at 1.1 with spread
    /// 0.5, 15 % flat, grid up to 20·r0), 2,000 `judge-bench` trials each, the median time
    /// to catch ×2 errors went from 787 s to 776 s, ×3 from 152 s to 145 s, ×4 from 71 s
    /// to 70 s, p99 + 50 ms from 62 s to 60 s; ×6 errors and p99 + 100 ms took a second
    /// more (32 s, 8 s) and p99 + 30 ms 8 s more (465 s).
    pub fn log_weights(&self, g: &[f64; GRID_SIZE]) -> [f64; GRID_SIZE] {
        let bump = g.map(|x| -0.5 * ((x - self.center) / self.spread).powi(2));
        let norm = log_sum_exp(&bump);
        let tail_from = self.tail_from.ln() - 1e-9;
        let in_tail = g.iter().filter(|&&x| x >= tail_from).count().max(1) as f64;
        let mut prior = [0.0; GRID_SIZE];
        for (k, p) in prior.iter_mut().enumerate() {
            let tail = if g[k] >= tail_from {
                self.tail / in_tail
            } else {
                0.0
            };
            *p = ((1.0 - self.tail) * (bump[k] - norm).exp() + tail).ln();
        }
        prior
    }
}

/// Which way a test looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// H0: `r ≤ r0`, alternatives above (is the canary worse?).
    Above,
    /// H0: `r ≥ r0`, alternatives below (used for the upper end of the interval).
    Below,
}

/// The anytime-valid mixture e-process for H0: `r ≤ r0` (or `r ≥ r0`).
#[derive(Debug, Clone)]
pub struct RatioEProcess {
    r0: f64,
    /// `r_k` of each alternative.
    r_k: [f64; GRID_SIZE],
    /// `ln(r_k / r0)`.
    ln_ratio: [f64; GRID_SIZE],
    /// Log prior weight of each alternative (they sum to 1).
    ln_prior: [f64; GRID_SIZE],
    log_l: [f64; GRID_SIZE],
    ln_e: f64,
}

impl RatioEProcess {
    /// The test of H0 `r ≤ r0` against the single alternative `r` itself (a sequential
    /// probability ratio test; `r` at or below `r0` is replaced by `r0 · GRID_LOW`, the
    /// nearest alternative). It is only for benchmarks: knowing the true ratio, no
    /// anytime-valid test at the same level can be much faster, which makes it the
    /// yardstick for the mixture.
    pub fn oracle(r0: f64, r: f64) -> RatioEProcess {
        let mut e = RatioEProcess::new(r0, Side::Above);
        let r = if r.is_finite() && r > r0 * GRID_LOW {
            r
        } else {
            r0 * GRID_LOW
        };
        e.r_k[0] = r;
        e.ln_ratio[0] = (r / r0).ln();
        for (k, p) in e.ln_prior.iter_mut().enumerate() {
            *p = if k == 0 { 0.0 } else { f64::NEG_INFINITY };
        }
        e
    }

    pub fn new(r0: f64, side: Side) -> RatioEProcess {
        RatioEProcess::with_prior(r0, side, &Prior::DEFAULT)
    }

    /// The test with another prior over the alternatives above `r0` (the test below
    /// `r0`, for the upper end of the interval, always weighs its alternatives evenly).
    pub fn with_prior(r0: f64, side: Side, prior: &Prior) -> RatioEProcess {
        let g = grid_log_factors();
        let mut r_k = [0.0; GRID_SIZE];
        let mut ln_ratio = [0.0; GRID_SIZE];
        for k in 0..GRID_SIZE {
            let lr = match side {
                Side::Above => g[k],
                Side::Below => -g[k],
            };
            ln_ratio[k] = lr;
            r_k[k] = r0 * lr.exp();
        }
        let ln_prior = match side {
            Side::Above => prior.log_weights(&g),
            Side::Below => [-(GRID_SIZE as f64).ln(); GRID_SIZE],
        };
        RatioEProcess {
            r0,
            r_k,
            ln_ratio,
            ln_prior,
            log_l: [0.0; GRID_SIZE],
            ln_e: 0.0,
        }
    }

    /// Add one window: `canary` and `baseline` bad events while the canary served share
    /// `w` of the requests; `temper` in (0, 1] scales the evidence (1 = none).
    pub fn update(&mut self, canary: u64, baseline: u64, w: f64, temper: f64) {
        self.update_weighted(temper * canary as f64, temper * baseline as f64, w);
    }

    /// Add bad events already multiplied by their tempering: the log factor of a window
    /// is linear in the counts, so tempered counts of many windows with the same share
    /// can be added up first.
    pub fn update_weighted(&mut self, canary: f64, baseline: f64, w: f64) {
        if canary + baseline <= 0.0 || !(w > 0.0 && w < 1.0) {
            return;
        }
        let x = canary + baseline;
        let c0 = (self.r0 * w + 1.0 - w).ln();
        for k in 0..GRID_SIZE {
            let ck = (self.r_k[k] * w + 1.0 - w).ln();
            self.log_l[k] += canary * self.ln_ratio[k] - x * (ck - c0);
        }
        let mut weighted = self.log_l;
        for (v, p) in weighted.iter_mut().zip(&self.ln_prior) {
            *v += p;
        }
        self.ln_e = log_sum_exp(&weighted);
    }

    /// `ln E`: the log of the evidence against H0 so far.
    pub fn ln_e(&self) -> f64 {
        self.ln_e
    }

    pub fn e_value(&self) -> f64 {
        self.ln_e.exp()
    }
}

/// Bad events of all windows with the same traffic share, each multiplied by the
/// tempering of its window, kept so the interval can be computed for any `r0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadEvents {
    pub canary: f64,
    pub baseline: f64,
    /// The canary's share of the requests in these windows.
    pub share: f64,
}

/// `ln E` of the mixture test of `r0` (on `side`) over a recorded history.
pub fn history_ln_e(history: &[BadEvents], r0: f64, side: Side, prior: &Prior) -> f64 {
    let mut e = RatioEProcess::with_prior(r0, side, prior);
    for b in history {
        e.update_weighted(b.canary, b.baseline, b.share);
    }
    e.ln_e()
}

/// The anytime-valid confidence sequence for the rate ratio: all `r0` that neither
/// one-sided test rejects at level `alpha`, so the interval has coverage `1 − 2·alpha`
/// at every moment at once. Its lower end is above the tolerance exactly when the
/// judge's own test fails the canary. `(0, ∞)` ends mean "no information yet".
pub fn ratio_interval(history: &[BadEvents], alpha: f64, prior: &Prior) -> (f64, f64) {
    let level = (1.0 / alpha).ln();
    let (lo_bound, hi_bound) = (1e-3f64.ln(), 1e3f64.ln());
    // Lower end: sup{r0 : test of r ≤ r0 rejects}; that e-value falls as r0 grows.
    let lower = if history_ln_e(history, lo_bound.exp(), Side::Above, prior) < level {
        0.0
    } else {
        let (mut a, mut b) = (lo_bound, hi_bound);
        if history_ln_e(history, b.exp(), Side::Above, prior) >= level {
            a = b;
        } else {
            for _ in 0..14 {
                let m = 0.5 * (a + b);
                if history_ln_e(history, m.exp(), Side::Above, prior) >= level {
                    a = m;
                } else {
                    b = m;
                }
            }
        }
        a.exp()
    };
    // Upper end: inf{r0 : test of r ≥ r0 rejects}; that e-value grows with r0.
    let upper = if history_ln_e(history, hi_bound.exp(), Side::Below, prior) < level {
        f64::INFINITY
    } else {
        let (mut a, mut b) = (lo_bound, hi_bound);
        if history_ln_e(history, a.exp(), Side::Below, prior) >= level {
            b = a;
        } else {
            for _ in 0..14 {
                let m = 0.5 * (a + b);
                if history_ln_e(history, m.exp(), Side::Below, prior) >= level {
                    b = m;
                } else {
                    a = m;
                }
            }
        }
        b.exp()
    };
    (lower, upper)
}

/// The Wilson score interval for a proportion `k / n` at normal quantile `z`
/// (1.96 for 95 %). `(0, 1)` for `n = 0`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Minutes with bad events (and both arms served) [`dispersion`] needs for an estimate.
pub const DISPERSION_MINUTES: usize = 3;

/// Bad events and requests of both arms in one minute, for the dispersion diagnostic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MinuteCounts {
    pub canary_bad: u64,
    pub baseline_bad: u64,
    pub canary_requests: u64,
    pub baseline_requests: u64,
}

impl MinuteCounts {
    /// Whether [`dispersion`] can use this minute: it had bad events, and both arms served.
    pub fn usable(&self) -> bool {
        self.canary_bad + self.baseline_bad > 0
            && self.canary_requests > 0
            && self.baseline_requests > 0
    }
}

/// The dispersion index `φ̂ = X² / (m − 1)` of the canary's share of bad events across
/// minutes, around what a common rate ratio predicts given each minute's traffic split.
/// About 1 when bad events arrive independently; well above 1 when they come in bursts
/// that hit one arm (one bad task, retries, stalls), which makes any count-based test
/// overconfident. `None` with fewer than 3 minutes that had bad events in both arms'
/// traffic. Returns `(φ̂, minutes used)`.
pub fn dispersion(minutes: &[MinuteCounts]) -> Option<(f64, usize)> {
    let used: Vec<&MinuteCounts> = minutes.iter().filter(|m| m.usable()).collect();
    if used.len() < DISPERSION_MINUTES {
        return None;
    }
    let (mut xc, mut xb, mut nc, mut nb) = (0.0, 0.0, 0.0, 0.0);
    for m in &used {
        xc += m.canary_bad as f64;
        xb += m.baseline_bad as f64;
        nc += m.canary_requests as f64;
        nb += m.baseline_requests as f64;
    }
    // A pooled rate ratio, shrunk away from 0 and ∞ by half an event each.
    let r = ((xc + 0.5) / nc) / ((xb + 0.5) / nb);
    let mut x2 = 0.0;
    for m in &used {
        let w = m.canary_requests as f64 / (m.canary_requests + m.baseline_requests) as f64;
        let theta = canary_share_of_bad(r, w);
        let total = (m.canary_bad + m.baseline_bad) as f64;
        let expected = total * theta;
        let var = total * theta * (1.0 - theta);
        if var > 0.0 {
            x2 += (m.canary_bad as f64 - expected).powi(2) / var;
        }
    }
    Some((x2 / (used.len() - 1) as f64, used.len()))
}

/// The `q`-quantile (0–1) of already sorted values, nearest rank; `None` if empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    #[test]
    fn share_of_bad_events_matches_the_split_at_equal_rates() {
        assert!((canary_share_of_bad(1.0, 0.1) - 0.1).abs() < 1e-12);
        // 4× worse canary at 10 %: 0.4 / 1.3.
        assert!((canary_share_of_bad(4.0, 0.1) - 0.4 / 1.3).abs() < 1e-12);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[0.0, 0.0]) - 2f64.ln()).abs() < 1e-12);
        let v = log_sum_exp(&[1000.0, 1000.0 + 2f64.ln()]);
        assert!((v - (1000.0 + 3f64.ln())).abs() < 1e-9);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
    }

    #[test]
    fn one_event_update_matches_the_formula() {
        // One canary bad event at w = 0.1, r0 = 1.25: E = Σ_k π_k θ(r_k)/θ(r0).
        let mut e = RatioEProcess::new(1.25, Side::Above);
        e.update(1, 0, 0.1, 1.0);
        let g = grid_log_factors();
        let prior = Prior::DEFAULT.log_weights(&g);
        let theta0 = canary_share_of_bad(1.25, 0.1);
        assert!((prior.iter().map(|p| p.exp()).sum::<f64>() - 1.0).abs() < 1e-12);
        let want: f64 = g
            .iter()
            .zip(prior)
            .map(|(lg, lp)| lp.exp() * canary_share_of_bad(1.25 * lg.exp(), 0.1) / theta0)
            .sum::<f64>();
        assert!((e.e_value() - want).abs() < 1e-9 * want);
        // A baseline event is evidence for H0: the e-value falls below 1.
        let mut f = RatioEProcess::new(1.25, Side::Above);
        f.update(0, 1, 0.1, 1.0);
        assert!(f.e_value() < 1.0);
        // Tempering by 1/2 halves every log factor.
        let mut h = RatioEProcess::new(1.25, Side::Above);
        h.update(3, 2, 0.1, 0.5);
        let mut full = RatioEProcess::new(1.25, Side::Above);
        full.update(3, 2, 0.1, 1.0);
        assert!(h.ln_e() < full.ln_e());
    }

    #[test]
    fn the_mixture_is_a_supermartingale_at_the_null() {
        // Monte Carlo: at r = r0 the mean of E after many windows stays about 1 (never
        // clearly above), and at r = 1 < r0 it falls.
        let mut rng = SmallRng::seed_from_u64(7);
        let w = 0.1;
        for (r, max_mean) in [(1.25, 1.15), (1.0, 0.6)] {
            let theta = canary_share_of_bad(r, w);
            let trials = 4000;
            let mut sum = 0.0;
            for _ in 0..trials {
                let mut e = RatioEProcess::new(1.25, Side::Above);
                for _ in 0..30 {
                    let canary = u64::from(rng.random::<f64>() < theta);
                    e.update(canary, 1 - canary, w, 1.0);
                }
                sum += e.e_value();
            }
            let mean = sum / trials as f64;
            assert!(mean < max_mean, "r = {r}: mean E {mean}");
        }
    }

    #[test]
    fn the_prior_favours_moderate_regressions_and_the_oracle_stays_valid() {
        let g = grid_log_factors();
        // Known grid: 64 points from ln 1.1 to ln 200.
        assert!((g[0] - 1.1f64.ln()).abs() < 1e-12);
        assert!((g[GRID_SIZE - 1] - 200f64.ln()).abs() < 1e-12);
        let prior = Prior::DEFAULT.log_weights(&g);
        assert!((prior.iter().map(|p| p.exp()).sum::<f64>() - 1.0).abs() < 1e-12);
        let top = (0..GRID_SIZE)
            .max_by(|&a, &b| prior[a].total_cmp(&prior[b]))
            .unwrap();
        assert!((g[top] - PRIOR_CENTER).abs() < 0.05, "peak at {}", g[top]);
        // The tail: the 28 alternatives from 20·r0 up share 5 % evenly (the bump adds
        // next to nothing that far out, 5.6 spreads away).
        let tail: Vec<usize> = (0..GRID_SIZE).filter(|&k| g[k] >= 20f64.ln()).collect();
        assert_eq!(tail.len(), 28);
        assert_eq!(tail[0], 36);
        for &k in &tail {
            assert!((prior[k].exp() - 0.05 / 28.0).abs() < 1e-8, "{k}");
        }
        // Every alternative keeps some weight: a 1.1·r0 regression still can fail.
        assert!(prior.iter().all(|p| p.is_finite()));
        // The single-alternative test is a supermartingale at the null too.
        let mut rng = SmallRng::seed_from_u64(11);
        let theta = canary_share_of_bad(1.25, 0.1);
        let trials = 4000;
        let mut sum = 0.0;
        for _ in 0..trials {
            let mut e = RatioEProcess::oracle(1.25, 4.0);
            for _ in 0..30 {
                let canary = u64::from(rng.random::<f64>() < theta);
                e.update(canary, 1 - canary, 0.1, 1.0);
            }
            sum += e.e_value();
        }
        assert!(
            sum / (trials as f64) < 1.2,
            "mean E {}",
            sum / trials as f64
        );
    }

    #[test]
    fn the_narrow_prior_sits_between_the_benchmarks_two_regressions() {
        let g = grid_log_factors();
        let narrow = Prior::NARROW.log_weights(&g);
        assert!((narrow.iter().map(|p| p.exp()).sum::<f64>() - 1.0).abs() < 1e-12);
        let top = (0..GRID_SIZE)
            .max_by(|&a, &b| narrow[a].total_cmp(&narrow[b]))
            .unwrap();
        assert!((g[top] - 1.1).abs() < 0.05, "peak at {}", g[top]);
        // At ×4 errors (ln 3.2 = 1.16) and p99 + 50 ms (ln 2.56 = 0.94) it weighs more
        // than the default (1.2× and more); at ×2 errors (ln 1.6 = 0.47) far less.
        let at = |x: f64| {
            (0..GRID_SIZE)
                .min_by(|&a, &b| (g[a] - x).abs().total_cmp(&(g[b] - x).abs()))
                .unwrap()
        };
        let default = Prior::DEFAULT.log_weights(&g);
        for x in [0.94, 1.16] {
            assert!(narrow[at(x)] > default[at(x)] + 0.1, "at {x}");
        }
        assert!(narrow[at(0.47)] < default[at(0.47)] - 3.0);
        // The same tail: a crash fails as fast.
        assert!((narrow[GRID_SIZE - 1] - default[GRID_SIZE - 1]).abs() < 1e-9);
        // The process uses it: one canary event gives Σ_k π_k θ_k / θ_0.
        let mut e = RatioEProcess::with_prior(1.25, Side::Above, &Prior::NARROW);
        e.update(1, 0, 0.1, 1.0);
        let theta0 = canary_share_of_bad(1.25, 0.1);
        let want: f64 = g
            .iter()
            .zip(narrow)
            .map(|(lg, lp)| lp.exp() * canary_share_of_bad(1.25 * lg.exp(), 0.1) / theta0)
            .sum();
        assert!((e.e_value() - want).abs() < 1e-9 * want);
    }

    #[test]
    fn strong_evidence_accumulates_under_a_real_regression() {
        // 4× at 10 %: a third of bad events are canary; 60 bad events are plenty.
        let mut e = RatioEProcess::new(1.25, Side::Above);
        for i in 0..60 {
            let canary = u64::from(i % 3 == 0);
            e.update(canary, 1 - canary, 0.1, 1.0);
        }
        assert!(e.ln_e() > 200f64.ln(), "ln E = {}", e.ln_e());
    }

    #[test]
    fn the_oracle_tests_the_true_ratio_itself() {
        // One canary bad event at w = 0.1, r0 = 1.25, true r = 4:
        // θ(4) / θ(1.25) = (0.4 / 1.3) / (0.125 / 1.025) = 2.523 08.
        let mut e = RatioEProcess::oracle(1.25, 4.0);
        e.update(1, 0, 0.1, 1.0);
        assert!(
            (e.e_value() - 2.523_076_923).abs() < 1e-8,
            "{}",
            e.e_value()
        );
        // One baseline bad event: (1 − θ(4)) / (1 − θ(1.25)) = 1.025 / 1.3.
        let mut f = RatioEProcess::oracle(1.25, 4.0);
        f.update(0, 1, 0.1, 1.0);
        assert!((f.e_value() - 1.025 / 1.3).abs() < 1e-12);
        // A ratio at or under the tolerance is tested against the grid's first point.
        let mut n = RatioEProcess::oracle(1.25, 1.0);
        n.update(1, 0, 0.1, 1.0);
        let want = canary_share_of_bad(1.375, 0.1) / canary_share_of_bad(1.25, 0.1);
        assert!((n.e_value() - want).abs() < 1e-12);
    }

    #[test]
    fn a_crashing_canary_fails_on_its_first_errors() {
        // First second of a crash at 10 % weight: a handful of canary errors and no
        // baseline error. At α/2 = 0.005 (evidence 200) five canary errors are enough,
        // two are not.
        let level = 200f64.ln();
        let mut five = RatioEProcess::new(1.25, Side::Above);
        five.update(5, 0, 0.1, 1.0);
        assert!(five.ln_e() >= level, "ln E = {}", five.ln_e());
        // Known value: Σ_k π_k (θ_k / θ0)^5 from the grid and the prior.
        let g = grid_log_factors();
        let prior = Prior::DEFAULT.log_weights(&g);
        let theta0 = canary_share_of_bad(1.25, 0.1);
        let want: f64 = g
            .iter()
            .zip(prior)
            .map(|(lg, lp)| lp.exp() * (canary_share_of_bad(1.25 * lg.exp(), 0.1) / theta0).powi(5))
            .sum();
        assert!((five.e_value() - want).abs() < 1e-9 * want);
        let mut two = RatioEProcess::new(1.25, Side::Above);
        two.update(2, 0, 0.1, 1.0);
        assert!(two.ln_e() < level, "ln E = {}", two.ln_e());
    }

    #[test]
    fn interval_brackets_the_truth_and_narrows() {
        // 20 canary and 45 baseline bad events at w = 0.1: ratio (20/0.1)/(45/0.9) = 4.
        let history: Vec<BadEvents> = (0..65)
            .map(|i| BadEvents {
                canary: f64::from(u8::from(i < 20)),
                baseline: f64::from(u8::from(i >= 20)),
                share: 0.1,
            })
            .collect();
        let (lo, hi) = ratio_interval(&history, 0.005, &Prior::DEFAULT);
        assert!(
            lo > 1.25 && lo < 4.0 && hi > 4.0 && hi < 12.0,
            "[{lo}, {hi}]"
        );
        // The lower end is above the tolerance exactly when the test rejects r ≤ 1.25.
        assert!(history_ln_e(&history, 1.25, Side::Above, &Prior::DEFAULT) >= 200f64.ln());
        // Fewer events: wider.
        let (lo2, hi2) = ratio_interval(&history[15..30], 0.005, &Prior::DEFAULT);
        assert!(lo2 < lo && hi2 > hi, "[{lo2}, {hi2}]");
        // Nothing seen: nothing known.
        assert_eq!(
            ratio_interval(&[], 0.005, &Prior::DEFAULT),
            (0.0, f64::INFINITY)
        );
    }

    #[test]
    fn wilson_interval_known_values() {
        let (lo, hi) = wilson(10, 100, 1.96);
        assert!(
            (lo - 0.0552).abs() < 5e-4 && (hi - 0.1744).abs() < 5e-4,
            "[{lo}, {hi}]"
        );
        let (lo, hi) = wilson(0, 2000, 1.96);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.00192).abs() < 5e-5, "{hi}");
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
    }

    #[test]
    fn dispersion_is_near_one_for_poisson_and_large_for_bursts() {
        let mut rng = SmallRng::seed_from_u64(3);
        let calm: Vec<MinuteCounts> = (0..30)
            .map(|_| {
                let mut m = MinuteCounts {
                    canary_requests: 600,
                    baseline_requests: 5400,
                    ..Default::default()
                };
                for _ in 0..30 {
                    if rng.random::<f64>() < 0.1 {
                        m.canary_bad += 1;
                    } else {
                        m.baseline_bad += 1;
                    }
                }
                m
            })
            .collect();
        let (phi, used) = dispersion(&calm).unwrap();
        assert_eq!(used, 30);
        assert!(phi > 0.5 && phi < 1.6, "calm φ = {phi}");
        // Bursty: every third minute the canary alone has a burst of 12 errors.
        let bursty: Vec<MinuteCounts> = calm
            .iter()
            .enumerate()
            .map(|(i, m)| MinuteCounts {
                canary_bad: m.canary_bad + if i % 3 == 0 { 12 } else { 0 },
                ..*m
            })
            .collect();
        let (phi, _) = dispersion(&bursty).unwrap();
        assert!(phi > 2.5, "bursty φ = {phi}");
        assert!(dispersion(&calm[..2]).is_none());
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(quantile_sorted(&v, 0.5), Some(5.0));
        assert_eq!(quantile_sorted(&v, 0.9), Some(9.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }
}
