//! The human form of a fleet plan: per ring, tenants with the same waves, time and gates
//! shown once with their names, so that 500 tenants stay readable.

use std::fmt::Write;
use std::time::Duration;

use super::rings::{FleetPlan, TenantPlan};
use crate::duration::format_duration;

fn d(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

/// At most this many names are listed in a group; the rest are counted.
const NAMES_SHOWN: usize = 24;

/// What tenants must share to be listed together: their waves (by service), minimum time
/// and gates (without their name).
type Shape = (String, u64, Vec<String>);

fn shape(t: &TenantPlan) -> Shape {
    let waves = t
        .plan
        .waves
        .iter()
        .map(|w| w.join(" + "))
        .collect::<Vec<_>>()
        .join(" → ");
    let prefix = format!("{}/", t.name);
    let own = format!("{}: ", t.name);
    let gates = t
        .gates
        .iter()
        .map(|g| {
            g.strip_prefix(&prefix)
                .or_else(|| g.strip_prefix(&own))
                .unwrap_or(g)
                .to_string()
        })
        .collect();
    (waves, t.min_to_full_promotion_ms, gates)
}

fn names(tenants: &[&TenantPlan]) -> String {
    let shown: Vec<&str> = tenants
        .iter()
        .take(NAMES_SHOWN)
        .map(|t| t.name.as_str())
        .collect();
    let mut s = shown.join(", ");
    if tenants.len() > NAMES_SHOWN {
        let _ = write!(
            s,
            ", … and {} more (--output json lists them all)",
            tenants.len() - NAMES_SHOWN
        );
    }
    s
}

/// The rings section `cutover plan` prints after the services' steps.
pub fn render_fleet_text(f: &FleetPlan) -> String {
    let mut out = String::new();
    let total: usize = f.rings.iter().map(|r| r.tenants.len()).sum();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "rings: {total} tenant(s) in {} ring(s); failure budget: {} tenant(s) may fail in the whole release",
        f.rings.len(),
        f.failure_budget
    );
    let _ = writeln!(
        out,
        "  (each tenant runs the services above with its own variables; its services are TENANT/SERVICE)"
    );
    for (i, r) in f.rings.iter().enumerate() {
        let bake = if r.bake_s > 0 {
            format!(", then bake {}", d(r.bake_s * 1000))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:>3}  {} — {} tenant(s), {} at once{bake}; at least {}",
            i + 1,
            r.name,
            r.tenants.len(),
            r.max_parallel,
            d(r.min_duration_ms)
        );
        let mut groups: Vec<(Shape, Vec<&TenantPlan>)> = Vec::new();
        for t in &r.tenants {
            let key = shape(t);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(t),
                None => groups.push((key, vec![t])),
            }
        }
        for ((waves, ms, gates), members) in &groups {
            let each = if members.len() > 1 { " each" } else { "" };
            let _ = writeln!(out, "       {}", names(members));
            let _ = writeln!(out, "         waves {waves}; at least {}{each}", d(*ms));
            for g in gates {
                let _ = writeln!(out, "         gate: {g}");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "fleet timing");
    let _ = writeln!(
        out,
        "  minimum time to full promotion of every tenant: {}",
        d(f.timing.min_to_full_promotion_ms)
    );
    let _ = writeln!(out, "    = {}", f.timing.formula);
    let _ = writeln!(
        out,
        "  a ring starts its tenants in order, each as soon as fewer than max_parallel are deploying; it lasts the makespan of that schedule, then its bake"
    );
    out
}
