//! The CI gate of the default judge: on seeded A/A traffic (canary identical to the
//! baseline) at 100 rps and 10 % canary weight over 30 minutes, the sequential judge
//! rolls back fewer than 1 % of 500 trials. A property of the judge, not a timing.

use cutover::judge::sim::{JudgeSpec, Scenario, SimParams, run_scenario};

#[test]
fn sequential_false_rollbacks_stay_under_one_percent_over_500_aa_trials() {
    let params = SimParams {
        trials: 500,
        seed: 20_260_101,
        ..Default::default()
    };
    let rows = run_scenario(Scenario::Aa, &[JudgeSpec::Sequential], &params, 2).unwrap();
    let r = &rows[0];
    assert_eq!(r.trials, 500);
    assert!(
        r.rollback_rate < 0.01,
        "A/A false-rollback rate {:.2} % (Wilson 95 % {:.2}–{:.2} %) is not under 1 %",
        r.rollback_rate * 100.0,
        r.rollback_ci_low * 100.0,
        r.rollback_ci_high * 100.0
    );
    // And it does decide: healthy canaries pass at the end of the 30 minutes.
    assert!(r.pass_rate > 0.95, "pass rate {}", r.pass_rate);
}
