//! cutover's own metrics in Prometheus text (format 0.0.4), rendered from the hub's
//! [`ReleaseState`] fold plus a few counters folded from the same events ([`Counts`]).
//! Served on the local platform's `/metrics` (`[release] metrics_listen`,
//! `--metrics-listen`) and on the control API's `GET /metrics`. Pure: state in, text out.
//!
//! Labels are `environment` (the release's `environment`, or empty) and `service`, never
//! the run id (cardinality); the release's name appears once, in `cutover_release_info`.
//! Encodings (see `docs/observability.md`):
//! - `cutover_release_status`: 0 ready, 1 running, 2 paused, 3 finished.
//! - `cutover_service_status` (like Flagger's `canary_status`): 0 in progress (pending
//!   to rolling back), 1 promoted, 2 rolled back or failed, 3 skipped.
//! - `cutover_service_phase{phase}`: 1 for the service's phase, 0 for every other.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::state::{EventKind, GateKind, ReleaseStatus, ServiceStatus, Trigger};
use crate::engine::{Event, ReleaseState};
use crate::judge::Outcome;
use crate::platform::local::stats::escape_label;

/// Every phase a service can be in, as `cutover_service_phase` names them.
const PHASES: [ServiceStatus; 11] = [
    ServiceStatus::Pending,
    ServiceStatus::Starting,
    ServiceStatus::Progressing,
    ServiceStatus::Analysing,
    ServiceStatus::Paused,
    ServiceStatus::AwaitingApproval,
    ServiceStatus::Promoted,
    ServiceStatus::RollingBack,
    ServiceStatus::RolledBack,
    ServiceStatus::Failed,
    ServiceStatus::Skipped,
];

const RESULTS: [Outcome; 3] = [Outcome::Pass, Outcome::Fail, Outcome::Inconclusive];

/// Counters the state does not keep (it holds only the latest verdict), folded from the
/// events this process saw. They start at zero when cutover (re)starts, as Prometheus
/// counters may.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// (service, result) -> verdicts.
    verdicts: BTreeMap<(String, &'static str), u64>,
    /// (service, trigger) -> rollbacks started.
    rollbacks: BTreeMap<(String, &'static str), u64>,
    /// (service, gate) -> gates opened.
    gate_waits: BTreeMap<(String, &'static str), u64>,
}

fn result_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn gate_label(g: &GateKind) -> &'static str {
    match g {
        GateKind::Approval { .. } => "approval",
        GateKind::Promote => "promote",
    }
}

impl Counts {
    pub fn observe(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Verdict { service, verdict } => {
                *self
                    .verdicts
                    .entry((service.clone(), result_label(verdict.outcome)))
                    .or_default() += 1;
            }
            EventKind::RollbackStarted {
                service, trigger, ..
            } => {
                let t = match trigger {
                    Trigger::Operator { .. } => "operator",
                    Trigger::Automatic => "automatic",
                    Trigger::Policy { .. } => "policy",
                };
                *self.rollbacks.entry((service.clone(), t)).or_default() += 1;
            }
            EventKind::GateWaiting { service, gate, .. } => {
                *self
                    .gate_waits
                    .entry((service.clone(), gate_label(&gate.kind)))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

fn release_status(s: ReleaseStatus) -> u8 {
    match s {
        ReleaseStatus::Ready => 0,
        ReleaseStatus::Running => 1,
        ReleaseStatus::Paused => 2,
        ReleaseStatus::Finished => 3,
    }
}

fn service_status(s: ServiceStatus) -> u8 {
    match s {
        ServiceStatus::Promoted => 1,
        ServiceStatus::RolledBack | ServiceStatus::Failed => 2,
        ServiceStatus::Skipped => 3,
        _ => 0,
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition of `state` and `counts`.
pub fn render(state: &ReleaseState, counts: &Counts) -> String {
    let mut out = String::with_capacity(2048 + state.services.len() * 2048);
    let env = escape_label(state.environment.as_deref().unwrap_or(""));
    header(
        &mut out,
        "cutover_release_info",
        "gauge",
        "The release this cutover runs (always 1).",
    );
    let _ = writeln!(
        out,
        "cutover_release_info{{environment=\"{env}\",release=\"{}\",platform=\"{}\",version=\"{}\"}} 1",
        escape_label(&state.release),
        escape_label(&state.platform),
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut out,
        "cutover_release_status",
        "gauge",
        "0 ready, 1 running, 2 paused, 3 finished.",
    );
    let _ = writeln!(
        out,
        "cutover_release_status{{environment=\"{env}\"}} {}",
        release_status(state.status)
    );
    let progress = if state.services.is_empty() {
        0.0
    } else {
        let done: f64 = state
            .services
            .iter()
            .map(|s| {
                if s.status.is_terminal() {
                    1.0
                } else if s.steps.is_empty() {
                    0.0
                } else {
                    (s.step.saturating_sub(1) as f64 / s.steps.len() as f64).min(1.0)
                }
            })
            .sum();
        done / state.services.len() as f64
    };
    header(
        &mut out,
        "cutover_release_progress_ratio",
        "gauge",
        "Share of the release done (0-1): finished services count 1, others their completed steps.",
    );
    let _ = writeln!(
        out,
        "cutover_release_progress_ratio{{environment=\"{env}\"}} {progress}"
    );
    header(
        &mut out,
        "cutover_release_services",
        "gauge",
        "Services of the release by Flagger-like status (see cutover_service_status).",
    );
    let mut by_status = [0u64; 4];
    for s in &state.services {
        by_status[service_status(s.status) as usize] += 1;
    }
    for (i, name) in ["in_progress", "promoted", "rolled_back", "skipped"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "cutover_release_services{{environment=\"{env}\",status=\"{name}\"}} {}",
            by_status[i]
        );
    }

    let svc = |s: &str| format!("environment=\"{env}\",service=\"{}\"", escape_label(s));
    header(
        &mut out,
        "cutover_service_phase",
        "gauge",
        "1 for the service's current phase, 0 for the others.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        for p in PHASES {
            let _ = writeln!(
                out,
                "cutover_service_phase{{{l},phase=\"{}\"}} {}",
                p.as_str(),
                u8::from(p == s.status)
            );
        }
    }
    header(
        &mut out,
        "cutover_service_status",
        "gauge",
        "0 in progress, 1 promoted, 2 rolled back or failed, 3 skipped (alert on == 2).",
    );
    for s in &state.services {
        let _ = writeln!(
            out,
            "cutover_service_status{{{}}} {}",
            svc(&s.name),
            service_status(s.status)
        );
    }
    header(
        &mut out,
        "cutover_service_step",
        "gauge",
        "The current step, 1-based (0 before the first).",
    );
    for s in &state.services {
        let _ = writeln!(out, "cutover_service_step{{{}}} {}", svc(&s.name), s.step);
    }
    header(
        &mut out,
        "cutover_service_steps",
        "gauge",
        "How many steps the service's plan has.",
    );
    for s in &state.services {
        let _ = writeln!(
            out,
            "cutover_service_steps{{{}}} {}",
            svc(&s.name),
            s.steps.len()
        );
    }
    header(
        &mut out,
        "cutover_traffic_weight",
        "gauge",
        "Percent of the service's traffic on a revision, as last set; role is baseline or candidate.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        let mut weights: BTreeMap<&str, u8> = BTreeMap::new();
        weights.insert(&s.baseline, 0);
        weights.insert(&s.candidate, 0);
        for (rev, w) in &s.weights {
            weights.insert(rev, *w);
        }
        for (rev, w) in weights {
            let role = if rev == s.candidate {
                "candidate"
            } else if rev == s.baseline {
                "baseline"
            } else {
                "other"
            };
            let _ = writeln!(
                out,
                "cutover_traffic_weight{{{l},revision=\"{}\",role=\"{role}\"}} {w}",
                escape_label(rev)
            );
        }
    }
    header(
        &mut out,
        "cutover_gate_waiting",
        "gauge",
        "1 while a gate waits for a person.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        for g in ["approval", "promote"] {
            let waiting = s.gate.as_ref().is_some_and(|x| gate_label(&x.kind) == g);
            let _ = writeln!(
                out,
                "cutover_gate_waiting{{{l},gate=\"{g}\"}} {}",
                u8::from(waiting)
            );
        }
    }
    header(
        &mut out,
        "cutover_analysis_verdicts_total",
        "counter",
        "Verdicts of the canary judge by result.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        for r in RESULTS {
            let r = result_label(r);
            let n = counts
                .verdicts
                .get(&(s.name.clone(), r))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "cutover_analysis_verdicts_total{{{l},result=\"{r}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "cutover_rollbacks_total",
        "counter",
        "Rollbacks started, by trigger: automatic (a check), operator or policy.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        for t in ["automatic", "operator", "policy"] {
            let n = counts
                .rollbacks
                .get(&(s.name.clone(), t))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(out, "cutover_rollbacks_total{{{l},trigger=\"{t}\"}} {n}");
        }
    }
    header(
        &mut out,
        "cutover_gate_waits_total",
        "counter",
        "Gates opened, by kind: approval or promote.",
    );
    for s in &state.services {
        let l = svc(&s.name);
        for g in ["approval", "promote"] {
            let n = counts
                .gate_waits
                .get(&(s.name.clone(), g))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(out, "cutover_gate_waits_total{{{l},gate=\"{g}\"}} {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixtures::{Script, checkout_release};
    use crate::engine::state::VerdictInfo;

    /// The value of the one sample whose name and labels start with `prefix`.
    fn value(text: &str, series: &str) -> f64 {
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .collect();
        assert_eq!(hits.len(), 1, "{series} in\n{text}");
        hits[0].parse().unwrap()
    }

    fn render_script(s: &Script) -> String {
        let mut counts = Counts::default();
        for e in &s.events {
            counts.observe(e);
        }
        render(&s.state(), &counts)
    }

    #[test]
    fn a_canary_in_analysis_then_rolled_back() {
        let mut s = Script::new(checkout_release());
        s.start();
        s.run_to_analysis("ledger", 5);
        let text = render_script(&s);
        let l = "environment=\"staging\",service=\"ledger\"";
        assert_eq!(
            value(
                &text,
                &format!("cutover_service_phase{{{l},phase=\"analysing\"}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_service_phase{{{l},phase=\"pending\"}}")
            ),
            0.0
        );
        assert_eq!(value(&text, &format!("cutover_service_status{{{l}}}")), 0.0);
        let step = s.state().service("ledger").unwrap().step;
        assert!(step > 0);
        assert_eq!(
            value(&text, &format!("cutover_service_step{{{l}}}")),
            step as f64
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_traffic_weight{{{l},revision=\"v42\",role=\"candidate\"}}")
            ),
            5.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_traffic_weight{{{l},revision=\"v41\",role=\"baseline\"}}")
            ),
            95.0
        );
        assert_eq!(
            value(&text, "cutover_release_status{environment=\"staging\"}"),
            1.0
        );
        assert!(text.contains("cutover_release_info{environment=\"staging\",release=\"checkout-2026-11-27\",platform=\"local\""));

        s.verdict(
            "ledger",
            VerdictInfo {
                outcome: Outcome::Fail,
                judge: "sequential".into(),
                summary: "errors".into(),
                explanation: vec![],
                at_ms: s.now,
            },
        );
        s.rollback("ledger", "analysis failed", Trigger::Automatic, true);
        let text = render_script(&s);
        assert_eq!(value(&text, &format!("cutover_service_status{{{l}}}")), 2.0);
        assert_eq!(
            value(
                &text,
                &format!("cutover_rollbacks_total{{{l},trigger=\"automatic\"}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_rollbacks_total{{{l},trigger=\"operator\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_analysis_verdicts_total{{{l},result=\"fail\"}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_analysis_verdicts_total{{{l},result=\"pass\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_traffic_weight{{{l},revision=\"v42\",role=\"candidate\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "cutover_release_services{environment=\"staging\",status=\"rolled_back\"}"
            ),
            1.0
        );
    }

    #[test]
    fn gates_and_progress() {
        let mut s = Script::new(checkout_release());
        s.start();
        s.run_to_approval("ledger");
        let text = render_script(&s);
        let l = "environment=\"staging\",service=\"ledger\"";
        assert_eq!(
            value(
                &text,
                &format!("cutover_gate_waiting{{{l},gate=\"approval\"}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                &format!("cutover_gate_waits_total{{{l},gate=\"approval\"}}")
            ),
            1.0
        );
        s.promote("ledger");
        let text = render_script(&s);
        assert_eq!(
            value(
                &text,
                &format!("cutover_gate_waiting{{{l},gate=\"approval\"}}")
            ),
            0.0
        );
        assert_eq!(value(&text, &format!("cutover_service_status{{{l}}}")), 1.0);
        // One of six services done, the others not started.
        let p = value(
            &text,
            "cutover_release_progress_ratio{environment=\"staging\"}",
        );
        assert!((p - 1.0 / 6.0).abs() < 1e-9, "{p}");
        // Every sample line is `name{labels} number`, each family has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(
            text.matches("# TYPE ").count(),
            text.matches("# HELP ").count()
        );
    }
}
