//! The human form of a plan, as `cutover plan` prints it.

use std::fmt::Write;
use std::time::Duration;

use super::Plan;
use crate::duration::format_duration;

fn d(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

/// Render a plan as text for a terminal (no colour; stable for snapshots).
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let policy = match plan.on_failure {
        crate::release::FailurePolicy::RollbackDependents => {
            "roll back the service and its changed dependents"
        }
        crate::release::FailurePolicy::RollbackRelease => "roll back the whole release",
        crate::release::FailurePolicy::Pause => "pause and wait for a person",
    };
    let _ = writeln!(
        out,
        "release {} on {}",
        plan.release,
        plan.platform.as_str()
    );
    let _ = writeln!(
        out,
        "  {} service(s) in {} wave(s), at most {} at once; on failure: {policy}",
        plan.services.len(),
        plan.waves.len(),
        plan.max_parallel
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "waves");
    for (w, names) in plan.waves.iter().enumerate() {
        for m in plan.migrations.iter().filter(|m| m.expand_before_wave == w) {
            let _ = writeln!(
                out,
                "      expand migration {} (for {})",
                m.name,
                m.services.join(", ")
            );
        }
        let _ = writeln!(out, "  {:>3}  {}", w + 1, names.join(", "));
        for m in plan
            .migrations
            .iter()
            .filter(|m| m.contract_after_wave == Some(w))
        {
            let _ = writeln!(
                out,
                "      contract migration {} after {} of bake, with confirmation",
                m.name,
                d(m.bake_ms)
            );
        }
    }
    for s in &plan.services {
        let _ = writeln!(out);
        let deps = if s.depends_on.is_empty() {
            "nothing".to_string()
        } else {
            s.depends_on.join(", ")
        };
        let _ = writeln!(
            out,
            "{} — wave {}, {}, after {}; promoted after at least {}{}",
            s.name,
            s.wave + 1,
            s.strategy.as_str(),
            deps,
            d(s.min_to_promotion_ms),
            if s.waits_for_people {
                " plus gates"
            } else {
                ""
            }
        );
        if !s.dependents.is_empty() {
            let _ = writeln!(
                out,
                "  after promotion, re-runs the smoke tests of {}",
                s.dependents.join(", ")
            );
        }
        let desc_w = s
            .steps
            .iter()
            .map(|st| st.description.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "  {:>3}  {:<desc_w$}  {:>7}  {:>7}  {:>9}  {:>10}  rollback",
            "#", "step", "traffic", "min", "unhealthy", "regression"
        );
        for st in &s.steps {
            let regression = st.detect_regression_ms.map_or("-".to_string(), d);
            let _ = writeln!(
                out,
                "  {:>3}  {:<desc_w$}  {:>6}%  {:>7}  {:>9}  {:>10}  {}",
                st.index,
                st.description,
                st.candidate_weight,
                d(st.min_duration_ms),
                d(st.detect_unhealthy_ms),
                regression,
                st.rollback
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "timing");
    let _ = writeln!(
        out,
        "  minimum time to full promotion: {}",
        d(plan.timing.min_to_full_promotion_ms)
    );
    let _ = writeln!(out, "    = {}", plan.timing.formula);
    let _ = writeln!(
        out,
        "  unhealthy: worst case from an instance failing to the engine noticing (unhealthy_after x interval + timeout)"
    );
    let _ = writeln!(
        out,
        "  regression: worst case from a regression starting at that step to a verdict (end of the next analysis; - = only health checks catch it)"
    );
    let _ = writeln!(
        out,
        "  after either, traffic goes back to stable as the rollback column says"
    );
    out
}
