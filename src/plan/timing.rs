//! Timing: the minimum time to promotion of a service and to full promotion of the
//! release, stated as a formula people can check.

use std::collections::HashMap;
use std::time::Duration;

use super::{Action, MigrationPlan, PlanStep, ReleaseTiming, ServicePlan};
use crate::duration::format_duration;

pub(super) fn min_to_promotion(steps: &[PlanStep]) -> u64 {
    let end = steps
        .iter()
        .position(|st| st.action == Action::Promote)
        .map_or(steps.len(), |i| i + 1);
    steps[..end].iter().map(|st| st.min_duration_ms).sum()
}

pub(super) fn timing(
    services: &[ServicePlan],
    waves: &[Vec<String>],
    migrations: &[MigrationPlan],
) -> ReleaseTiming {
    let by_name: HashMap<&str, &ServicePlan> =
        services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut total = 0u64;
    let mut parts = Vec::new();
    for (w, names) in waves.iter().enumerate() {
        let longest = names
            .iter()
            .map(|n| by_name[n.as_str()].min_to_promotion_ms)
            .max()
            .unwrap_or(0);
        total += longest;
        let inner: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{} {}",
                    n,
                    format_duration(Duration::from_millis(
                        by_name[n.as_str()].min_to_promotion_ms
                    ))
                )
            })
            .collect();
        if names.len() == 1 {
            parts.push(format!("wave {} ({})", w + 1, inner[0]));
        } else {
            parts.push(format!("wave {} (max of {})", w + 1, inner.join(", ")));
        }
    }
    for m in migrations {
        if m.contract_after_wave.is_some() && m.bake_ms > 0 {
            total += m.bake_ms;
            parts.push(format!(
                "bake before contracting {} {}",
                m.name,
                format_duration(Duration::from_millis(m.bake_ms))
            ));
        }
    }
    let gates = services
        .iter()
        .flat_map(|s| &s.steps)
        .filter(|st| st.is_gate())
        .count();
    let mut formula = parts.join(" + ");
    formula.push_str(&format!(
        " = {}",
        format_duration(Duration::from_millis(total))
    ));
    if gates > 0 {
        formula.push_str(&format!(" + the time people take at {gates} gate(s)"));
    }
    ReleaseTiming {
        min_to_full_promotion_ms: total,
        formula,
        gates,
    }
}
