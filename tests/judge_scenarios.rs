//! Each benchmark scenario behaves as designed, on seeded simulations small enough for a
//! debug build, plus hand-made windows for the guard, the dispersion diagnostic and the
//! threshold judge's failure-limit semantics.

use std::time::Duration;

use cutover::judge::sequential::BURSTY_MARGIN;
use cutover::judge::sim::{JudgeSpec, Scenario, SimParams, Summary, run_scenario};
use cutover::judge::{
    AnalysisConfig, AnalysisWindow, ArmCounts, Judge, JudgeKind, Metric, NoDataPolicy, Outcome,
    SequentialJudge, ThresholdJudge, new_judge,
};

fn run(s: Scenario, judges: &[JudgeSpec], trials: u32, horizon_s: u32) -> Vec<Summary> {
    let p = SimParams {
        trials,
        horizon_s,
        seed: 42,
        ..Default::default()
    };
    run_scenario(s, judges, &p, 2).unwrap()
}

fn window(sec: u64, base: (u64, u64, u64), canary: (u64, u64, u64)) -> AnalysisWindow {
    AnalysisWindow {
        at_ms: sec * 1000,
        duration_ms: 1000,
        canary_weight: 0.1,
        slow_threshold_ms: Some(202),
        baseline: ArmCounts {
            requests: base.0,
            errors: base.1,
            slow: base.2,
        },
        canary: ArmCounts {
            requests: canary.0,
            errors: canary.1,
            slow: canary.2,
        },
    }
}

#[test]
fn four_fold_error_regression_is_caught_in_about_a_minute() {
    let r = &run(Scenario::Errors, &[JudgeSpec::Sequential], 100, 600)[0];
    assert!(r.rollback_rate >= 0.97, "detected {}", r.rollback_rate);
    let median = r.median_detect_s.unwrap();
    assert!(median <= 120.0, "median {median} s");
}

#[test]
fn p99_plus_50ms_is_caught_within_two_minutes() {
    let r = &run(Scenario::Latency, &[JudgeSpec::Sequential], 100, 600)[0];
    assert!(r.rollback_rate >= 0.97, "detected {}", r.rollback_rate);
    let median = r.median_detect_s.unwrap();
    assert!(median <= 120.0, "median {median} s");
}

#[test]
fn a_crash_is_caught_in_seconds() {
    let r = &run(Scenario::Crash, &[JudgeSpec::Sequential], 200, 30)[0];
    assert_eq!(r.rollback_rate, 1.0);
    assert!(
        r.median_detect_s.unwrap() <= 2.0,
        "median {:?}",
        r.median_detect_s
    );
    assert!(r.p90_detect_s.unwrap() <= 3.0, "p90 {:?}", r.p90_detect_s);
}

#[test]
fn a_common_incident_does_not_roll_back_the_canary_but_fools_absolute_thresholds() {
    let rows = run(
        Scenario::Incident,
        &[JudgeSpec::Sequential, JudgeSpec::ArgoFl0],
        100,
        900,
    );
    assert!(
        rows[0].rollback_rate <= 0.02,
        "sequential {}",
        rows[0].rollback_rate
    );
    assert!(
        rows[1].rollback_rate >= 0.9,
        "argo {}",
        rows[1].rollback_rate
    );
}

#[test]
fn low_traffic_is_inconclusive_rather_than_a_guess() {
    let rows = run(Scenario::LowTrafficAa, &[JudgeSpec::Sequential], 100, 1800);
    let r = &rows[0];
    // 5 rps at 5 %: 450 canary requests in 30 minutes, short of min_requests.
    assert_eq!(r.pass_rate, 0.0);
    assert!(r.rollback_rate <= 0.02, "rollbacks {}", r.rollback_rate);
    assert!(r.inconclusive_rate >= 0.98);
}

#[test]
fn overdispersed_aa_keeps_false_rollbacks_low() {
    let r = &run(Scenario::Overdispersed, &[JudgeSpec::Sequential], 200, 1800)[0];
    assert!(
        r.rollback_rate <= 0.05,
        "false rollbacks {}",
        r.rollback_rate
    );
}

#[test]
fn the_guard_fails_a_late_crash_at_once_and_says_so() {
    let mut j = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    for s in 1..=300 {
        let e = u64::from(s % 40 == 0);
        assert_ne!(
            j.observe(&window(s, (90, e, 1), (10, 0, 0))).unwrap(),
            Outcome::Fail
        );
    }
    // The canary starts failing 60 % of requests (and so does the baseline, so the
    // comparison sees nothing: the guard needs no statistics).
    assert_ne!(
        j.observe(&window(301, (90, 54, 1), (10, 6, 0))).unwrap(),
        Outcome::Fail
    );
    assert_eq!(
        j.observe(&window(302, (90, 54, 1), (10, 6, 0))).unwrap(),
        Outcome::Fail
    );
    let v = j.verdict();
    assert_eq!(v.metrics[0].metric, Metric::Guard);
    assert!(
        v.metrics[0]
            .to_string()
            .contains("12 of the canary's last 20 requests failed"),
        "{}",
        v
    );
    assert!(v.summary.contains("catastrophic guard"));
    // Failing is final.
    assert_eq!(
        j.observe(&window(303, (90, 0, 1), (10, 0, 0))).unwrap(),
        Outcome::Fail
    );
}

#[test]
fn clustered_errors_are_noticed_tempered_and_reported() {
    // A/A-like counts, but the canary's errors arrive in bursts every third minute.
    let mut calm = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    let mut bursty = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    for s in 1..=900u64 {
        let minute = (s - 1) / 60;
        let base = (90, u64::from(s % 3 == 0), 1);
        let calm_c = (10, u64::from(s % 30 == 0), 0);
        let burst = minute % 3 == 0 && s % 60 < 6;
        let bursty_c = (10, if burst { 1 } else { 0 }, 0);
        calm.observe(&window(s, base, calm_c)).unwrap();
        bursty.observe(&window(s, base, bursty_c)).unwrap();
    }
    let v = bursty.verdict();
    let errors = v
        .metrics
        .iter()
        .find(|m| m.metric == Metric::Errors)
        .unwrap();
    let d = errors.dispersion.unwrap();
    assert!(d.phi > 2.0 && d.temper < 1.0, "{d:?}");
    assert!(
        v.notes.iter().any(|n| n.contains("errors come in bursts")),
        "{v}"
    );
    let calm_v = calm.verdict();
    let calm_d = calm_v
        .metrics
        .iter()
        .find(|m| m.metric == Metric::Errors)
        .unwrap()
        .dispersion
        .unwrap();
    assert!(calm_d.phi < 1.5 && calm_d.temper == 1.0, "{calm_d:?}");
    assert!(calm_v.notes.is_empty(), "{calm_v}");
}

/// The errors family's evidence (value, needed) in `j`'s verdict.
fn error_evidence(j: &SequentialJudge) -> (f64, f64) {
    let v = j.verdict();
    let e = v
        .metrics
        .iter()
        .find(|m| m.metric == Metric::Errors)
        .and_then(|m| m.evidence)
        .unwrap();
    (e.e_value, e.needed)
}

#[test]
fn a_bursty_service_needs_more_evidence_only_until_the_dispersion_is_known() {
    let config = AnalysisConfig::default();
    let bar = 1.0 / config.alpha_per_family();
    let bursty = AnalysisConfig {
        bursty: true,
        ..config.clone()
    };
    let wary = || SequentialJudge::new(bursty.clone());
    // From the first second the canary fails 1 request in 20 (10 per second), the
    // baseline 1 in 180: a ratio of 9.
    let base = |s: u64| (90, u64::from(s.is_multiple_of(2)), 1);
    let canary = |s: u64| (10, u64::from(s.is_multiple_of(2)), 0);
    let mut plain = SequentialJudge::new(config.clone()).unwrap();
    let mut w = wary().unwrap();
    let mut plain_at = None;
    let mut wary_at = None;
    for s in 1..=600u64 {
        let win = window(s, base(s), canary(s));
        let p = plain.observe(&win).unwrap();
        let o = w.observe(&win).unwrap();
        if p == Outcome::Fail && plain_at.is_none() {
            plain_at = Some(s);
            // The same evidence, but under the wary judge's higher bar.
            let (e_plain, bar_plain) = error_evidence(&plain);
            let (e_wary, needed) = error_evidence(&w);
            assert!(e_plain >= bar_plain);
            assert_eq!(e_wary, e_plain);
            assert!(
                e_wary < needed && o != Outcome::Fail,
                "{e_wary} of {needed}"
            );
            // The interval agrees with each judge's own bar.
            let low = |j: &SequentialJudge| {
                j.verdict()
                    .metrics
                    .iter()
                    .find(|m| m.metric == Metric::Errors)
                    .and_then(|m| m.interval)
                    .unwrap()
                    .low
            };
            assert!(
                low(&plain) > 1.25 && low(&w) <= 1.25,
                "{} {}",
                low(&plain),
                low(&w)
            );
            // The operator is told why.
            let v = w.verdict();
            assert!(
                v.notes.iter().any(|n| n.starts_with(
                    "bursty = true: evidence 443 instead of 200 fails the canary until 3 minutes"
                ) && n
                    .ends_with("(errors 0 of 3, slow requests 0 of 3 so far)")),
                "{v}"
            );
            assert!(plain.verdict().notes.iter().all(|n| !n.contains("bursty")));
        }
        if o == Outcome::Fail && wary_at.is_none() {
            wary_at = Some(s);
        }
    }
    let (plain_at, wary_at) = (plain_at.unwrap(), wary_at.unwrap());
    assert!(plain_at < 60, "the plain judge failed at {plain_at} s");
    assert!(wary_at > plain_at, "{wary_at} s against {plain_at} s");
    // Its bar in the first minutes: ln(200) × 1.15.
    let mut fresh = wary().unwrap();
    fresh.observe(&window(1, base(2), canary(1))).unwrap();
    let (_, needed) = error_evidence(&fresh);
    assert!(
        (needed.ln() - bar.ln() * (1.0 + BURSTY_MARGIN)).abs() < 1e-9,
        "needed {needed}"
    );
    // Three calm minutes with errors in both arms: the dispersion is known, the bar is
    // the plain judge's, and a regression from then on fails both in the same second.
    let mut plain = SequentialJudge::new(config.clone()).unwrap();
    let mut w = wary().unwrap();
    let mut failed = (None, None);
    for s in 1..=900u64 {
        let (b, c) = if s <= 180 {
            (
                (90, u64::from(s % 3 == 0), 1),
                (10, u64::from(s % 30 == 0), 0),
            )
        } else {
            (base(s), canary(s))
        };
        let win = window(s, b, c);
        if plain.observe(&win).unwrap() == Outcome::Fail && failed.0.is_none() {
            failed.0 = Some(s);
        }
        if w.observe(&win).unwrap() == Outcome::Fail && failed.1.is_none() {
            failed.1 = Some(s);
        }
        if s == 180 {
            // Still the first three minutes: the higher bar.
            assert!(error_evidence(&w).1 > 2.0 * bar);
        }
        if s == 181 {
            // The fourth minute starts with the first three measured.
            assert_eq!(error_evidence(&w).1, error_evidence(&plain).1);
            assert!((error_evidence(&w).1 - bar).abs() < 1e-6 * bar);
            let v = w.verdict();
            assert!(v.notes.iter().all(|n| !n.contains("bursty")), "{v}");
        }
    }
    assert!(failed.0.is_some() && failed.0 == failed.1, "{failed:?}");
}

#[test]
fn a_failing_verdict_reads_like_the_console_line() {
    let mut j = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    let mut outcome = Outcome::Inconclusive;
    let mut s = 0;
    // 0.5 % vs 2 %, deterministic pattern.
    while outcome != Outcome::Fail && s < 600 {
        s += 1;
        let base_err = u64::from(s % 2 == 0);
        let canary_err = u64::from(s % 5 == 0);
        outcome = j
            .observe(&window(s, (90, base_err, 1), (10, canary_err, 0)))
            .unwrap();
    }
    assert_eq!(outcome, Outcome::Fail, "after {s} s");
    let v = j.verdict();
    let line = v.metrics[0].to_string();
    assert!(
        line.starts_with("errors: canary 2.0 % vs baseline 0.5 %, 3.6× ["),
        "{line}"
    );
    assert!(line.ends_with(", over tolerance 1.25×: FAIL"), "{line}");
    let iv = v.metrics[0].interval.unwrap();
    assert!(iv.low > 1.25, "{iv:?}");
    // The explanation survives the journal.
    let json = serde_json::to_string(&v).unwrap();
    let back: cutover::judge::Verdict = serde_json::from_str(&json).unwrap();
    assert_eq!(back.outcome, Outcome::Fail);
    assert_eq!(back.metrics[0].detail, v.metrics[0].detail);
}

#[test]
fn too_little_data_is_never_a_pass() {
    let mut j = new_judge(&AnalysisConfig::default()).unwrap();
    // Ten perfectly clean minutes, but only 1 canary request a second: 600 < 1,000.
    let mut last = Outcome::Pass;
    for s in 1..=600 {
        last = j.observe(&window(s, (99, 0, 0), (1, 0, 0))).unwrap();
    }
    assert_eq!(last, Outcome::Inconclusive);
    let v = j.verdict();
    assert!(v.summary.contains("600 of 1,000 canary requests"), "{v}");
    assert!(v.metrics[0].to_string().contains("no errors yet"), "{v}");
    // With enough traffic it passes.
    for s in 601..=1000 {
        last = j.observe(&window(s, (99, 0, 0), (2, 0, 0))).unwrap();
    }
    assert_eq!(last, Outcome::Pass);
}

#[test]
fn silent_canary_and_error_ceiling_block_a_pass() {
    let cfg = AnalysisConfig {
        min_duration: Duration::from_secs(10),
        min_requests: 50,
        ..Default::default()
    };
    let mut j = SequentialJudge::new(cfg.clone()).unwrap();
    for s in 1..=20 {
        j.observe(&window(s, (90, 0, 0), (10, 0, 0))).unwrap();
    }
    assert_eq!(j.verdict().outcome, Outcome::Pass);
    for s in 21..=24 {
        j.observe(&window(s, (90, 0, 0), (0, 0, 0))).unwrap();
    }
    let v = j.verdict();
    assert_eq!(v.outcome, Outcome::Inconclusive);
    assert!(v.notes.iter().any(|n| n.contains("routing broken")), "{v}");
    // Both arms at 8 % errors: not the canary's fault, but not a pass either.
    let mut k = SequentialJudge::new(cfg).unwrap();
    for s in 1..=60 {
        let e = u64::from(s % 3 != 0);
        k.observe(&window(s, (90, 7 + e, 0), (10, e, 0))).unwrap();
    }
    let v = k.verdict();
    assert_eq!(v.outcome, Outcome::Inconclusive, "{v}");
    assert!(
        v.notes.iter().any(|n| n.contains("above max_error_rate")),
        "{v}"
    );
}

#[test]
fn a_traffic_split_far_from_the_weight_is_pointed_out() {
    let mut j = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    for s in 1..=60 {
        // Configured 10 %, but the canary gets 30 %.
        j.observe(&window(s, (70, 0, 0), (30, 0, 0))).unwrap();
    }
    let v = j.verdict();
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("the canary got 30 % of the requests but its weight is 10 %")),
        "{v}"
    );
    let mut k = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    for s in 1..=60 {
        k.observe(&window(s, (89, 0, 0), (11, 0, 0))).unwrap();
    }
    assert!(k.verdict().notes.is_empty(), "{}", k.verdict());
}

#[test]
fn windows_out_of_order_or_with_a_new_threshold_are_refused() {
    let mut j = SequentialJudge::new(AnalysisConfig::default()).unwrap();
    j.observe(&window(5, (90, 0, 0), (10, 0, 0))).unwrap();
    let e = j.observe(&window(4, (90, 0, 0), (10, 0, 0))).unwrap_err();
    assert!(e.to_string().contains("time order"), "{e}");
    let mut w = window(6, (90, 0, 0), (10, 0, 0));
    w.slow_threshold_ms = Some(300);
    assert!(j.observe(&w).unwrap_err().to_string().contains("frozen"));
}

fn threshold_config(limit: u32, no_data: NoDataPolicy) -> AnalysisConfig {
    AnalysisConfig {
        judge: JudgeKind::Threshold,
        max_error_rate: 0.01,
        failure_limit: limit,
        no_data,
        min_duration: Duration::from_secs(600),
        min_requests: 100,
        ..Default::default()
    }
}

/// One minute of windows; `bad_minute` puts the canary at 2 % errors in that minute.
fn minute(j: &mut dyn Judge, m: u64, bad_minute: bool, canary_requests: u64) -> Outcome {
    let mut last = Outcome::Inconclusive;
    for s in 1..=60u64 {
        let sec = m * 60 + s;
        // A bad minute: 12 of 600 canary requests fail (2 %, over the 1 % bound).
        let e = u64::from(bad_minute && s % 5 == 0);
        last = j
            .observe(&window(
                sec,
                (90, 0, 0),
                (canary_requests, e.min(canary_requests), 0),
            ))
            .unwrap();
    }
    last
}

#[test]
fn threshold_judge_counts_failed_checks_against_the_failure_limit() {
    // failure_limit 0: the first failed minute fails the canary.
    let mut j0 = ThresholdJudge::new("argo-fl0", threshold_config(0, NoDataPolicy::Error)).unwrap();
    assert_eq!(minute(&mut j0, 0, false, 10), Outcome::Inconclusive);
    assert_eq!(minute(&mut j0, 1, true, 10), Outcome::Fail);
    // failure_limit 3: failed checks count over the whole analysis, not in a row.
    let mut j3 = ThresholdJudge::new("argo-fl3", threshold_config(3, NoDataPolicy::Error)).unwrap();
    let pattern = [true, false, true, false, true, false, false];
    for (m, bad) in pattern.iter().enumerate() {
        assert_eq!(
            minute(&mut j3, m as u64, *bad, 10),
            Outcome::Inconclusive,
            "minute {m}"
        );
    }
    assert_eq!(minute(&mut j3, 7, true, 10), Outcome::Fail);
    let v = j3.verdict();
    let checks = v.metrics[0].checks.unwrap();
    assert_eq!((checks.failed, checks.failure_limit), (4, 3));
    assert!(
        v.metrics[0]
            .to_string()
            .contains("4 of 8 checks failed (fail above 3)"),
        "{v}"
    );
}

#[test]
fn threshold_judge_no_data_is_an_error_for_argo_and_a_failure_for_flagger() {
    // Argo: more than 4 empty intervals in a row fail.
    let mut argo = ThresholdJudge::new("argo", threshold_config(0, NoDataPolicy::Error)).unwrap();
    for m in 0..4 {
        assert_eq!(
            minute(&mut argo, m, false, 0),
            Outcome::Inconclusive,
            "minute {m}"
        );
    }
    assert_eq!(minute(&mut argo, 4, false, 0), Outcome::Fail);
    // Flagger (threshold 2 = failure_limit 1): two empty intervals fail.
    let mut flagger =
        ThresholdJudge::new("flagger", threshold_config(1, NoDataPolicy::Failed)).unwrap();
    assert_eq!(minute(&mut flagger, 0, false, 0), Outcome::Inconclusive);
    assert_eq!(minute(&mut flagger, 1, false, 0), Outcome::Fail);
}

#[test]
fn threshold_judge_checks_p99_as_a_slow_share_and_passes_after_enough_exposure() {
    let cfg = AnalysisConfig {
        min_duration: Duration::from_secs(120),
        ..threshold_config(0, NoDataPolicy::Error)
    };
    let mut j = ThresholdJudge::new("threshold", cfg.clone()).unwrap();
    let mut last = Outcome::Inconclusive;
    for s in 1..=120 {
        let mut w = window(s, (90, 0, 0), (10, 0, u64::from(s % 20 == 0)));
        w.slow_threshold_ms = Some(500);
        last = j.observe(&w).unwrap();
    }
    // 3 of 600 per minute (0.5 %) slower than 500 ms: p99 within the bound.
    assert_eq!(last, Outcome::Pass, "{}", j.verdict());
    let mut k = ThresholdJudge::new("threshold", cfg).unwrap();
    for s in 1..=60 {
        let mut w = window(s, (90, 0, 0), (10, 0, u64::from(s % 5 == 0)));
        w.slow_threshold_ms = Some(500);
        last = k.observe(&w).unwrap();
    }
    assert_eq!(last, Outcome::Fail);
    let v = k.verdict();
    assert!(v.metrics[1].to_string().contains("latency >500ms"), "{v}");
    assert!(v.summary.contains("p99 above 500ms"), "{v}");
}
