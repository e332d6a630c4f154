//! Events in words, one line each, for people.

use super::*;

/// One line for people (the headless printer, notifications).
pub fn describe(e: &Event) -> String {
    use EventKind::*;
    match &e.kind {
        ReleaseLoaded {
            release,
            services,
            break_glass,
            change_control,
            change,
            ..
        } => {
            let change = change
                .as_ref()
                .map(|c| format!(" (change {c})"))
                .unwrap_or_default();
            let loaded = match break_glass {
                None => format!(
                    "release {release}{change} loaded: {} service(s)",
                    services.len()
                ),
                Some(b) => format!(
                    "release {release}{change} loaded: {} service(s); BREAK-GLASS: {} skipped the lifecycle gate ({} not promoted first): {}",
                    services.len(),
                    b.operator,
                    b.skipped.join(", "),
                    b.reason
                ),
            };
            match change_control {
                Some(cc) => format!("{loaded}; {}", change_control_text(cc)),
                None => loaded,
            }
        }
        CommandAccepted {
            operator,
            command,
            note,
        } => match note {
            Some(n) => format!("{operator}: {command} ({n})"),
            None => format!("{operator}: {command}"),
        },
        CommandRefused {
            operator,
            command,
            reason,
            note,
        } => match note {
            Some(n) => format!("{operator}: {command} ({n}) refused: {reason}"),
            None => format!("{operator}: {command} refused: {reason}"),
        },
        ReleaseStarted { operator } => format!("release started by {operator}"),
        FreezeHeld { window, until, .. } => format!(
            "freeze window {window} is open until {until}: no further service starts until it closes"
        ),
        BreakGlassGranted { approvers } => format!(
            "break-glass approved by {}: no freeze window holds this release",
            approvers.join(", ")
        ),
        FreezeLifted { window } => format!("freeze window {window} closed: services start again"),
        BaselineReady { service, revision } => {
            format!("{service}: baseline {revision} serving all traffic")
        }
        ServiceStarted { service } => format!("{service}: rollout started"),
        StepStarted {
            service,
            index,
            of,
            description,
            ..
        } => format!("{service}: step {index}/{of}: {description}"),
        Launched {
            service,
            revision,
            replicas,
        } => format!("{service}: launched {replicas} instance(s) of {revision}"),
        WeightsSet { service, weights } => {
            let w: Vec<String> = weights.iter().map(|(r, w)| format!("{r} {w}%")).collect();
            format!("{service}: traffic {}", w.join(", "))
        }
        Health { service, summary } => format!(
            "{service}: candidate {}/{} healthy, baseline {}/{}{}",
            summary.candidate_healthy,
            summary.candidate_desired,
            summary.baseline_healthy,
            summary.baseline_desired,
            summary
                .problem
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ),
        SmokeResult {
            service,
            test,
            revision,
            passed,
            detail,
        } => format!(
            "{service}: smoke test {test} on {revision} {}: {detail}",
            if *passed { "passed" } else { "FAILED" }
        ),
        Verdict { service, verdict } => format!(
            "{service}: analysis {} ({}): {}",
            verdict.outcome, verdict.judge, verdict.summary
        ),
        GateWaiting {
            service, reason, ..
        } => format!("{service}: waiting: {reason}"),
        GateAnswered {
            service,
            answer,
            by,
        } => format!("{service}: gate {answer} by {by}"),
        Paused {
            service: Some(s),
            reason,
        } => format!("{s}: paused: {reason}"),
        Paused {
            service: None,
            reason,
        } => format!("release paused: {reason}"),
        Resumed {
            service: Some(s),
            operator,
        } => format!("{s}: resumed by {operator}"),
        Resumed {
            service: None,
            operator,
        } => format!("release resumed by {operator}"),
        Promoted { service } => format!("{service}: PROMOTED"),
        RollbackStarted {
            service,
            reason,
            trigger,
        } => {
            let by = match trigger {
                Trigger::Operator { operator } => format!("by {operator}"),
                Trigger::Automatic => "automatically".into(),
                Trigger::Policy { failed } => format!("by policy after {failed} failed"),
            };
            format!("{service}: rolling back {by}: {reason}")
        }
        RolledBack { service, reason } => {
            format!("{service}: ROLLED BACK (all traffic on baseline): {reason}")
        }
        Failed { service, reason } => format!("{service}: FAILED: {reason}"),
        Skipped { service, reason } => format!("{service}: skipped: {reason}"),
        Retrying { service, operator } => format!("{service}: retry by {operator}"),
        Retired { service, revision } => format!("{service}: {revision} drained and stopped"),
        PlatformError {
            service,
            message,
            fatal,
        } => format!(
            "{service}: platform error{}: {message}",
            if *fatal { "" } else { " (will retry)" }
        ),
        ReleaseFinished {
            services,
            exit_code,
        } => {
            let parts: Vec<String> = services
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{n} {}",
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("release finished (exit {exit_code}): {}", parts.join(", "))
        }
        EngineRestarted { operator, note } => format!("engine resumed by {operator}: {note}"),
        AnalysisSample {
            service,
            window,
            baseline_p99_ms,
            candidate_p99_ms,
        } => {
            let arm = |c: &crate::judge::ArmCounts, p99: &Option<f64>| {
                let rate = c
                    .error_rate()
                    .map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0));
                let p99 = p99.map_or(String::new(), |p| format!(", p99 {p:.0} ms"));
                format!("{rate} errors of {} requests{p99}", c.requests)
            };
            format!(
                "{service} analysis window at {:.0} % canary: baseline {}; candidate {}",
                window.canary_weight * 100.0,
                arm(&window.baseline, baseline_p99_ms),
                arm(&window.canary, candidate_p99_ms)
            )
        }
        Migration {
            migration,
            phase,
            detail,
            lines,
        } => {
            let mut text = format!("migration {migration}: {phase}: {detail}");
            for l in lines {
                text.push_str("\n    ");
                text.push_str(l);
            }
            text
        }
        Fleet { event } => event.describe(),
    }
}

/// The policy a release started under, in words (the audit's first line shows it).
fn change_control_text(cc: &crate::policy::ChangeControl) -> String {
    let mut parts = vec![format!(
        "policy {}",
        cc.policy.as_deref().unwrap_or("(none)")
    )];
    if !cc.freeze.is_empty() {
        let names: Vec<&str> = cc.freeze.iter().map(|w| w.name.as_str()).collect();
        parts.push(format!("freeze windows {}", names.join(", ")));
    }
    if let Some(rule) = &cc.approval {
        parts.push(format!("approval gates need {}", rule.describe(&cc.roster)));
    }
    if !cc.rego.is_empty() {
        parts.push(format!("Rego passed: {}", cc.rego.join(", ")));
    }
    if let Some(b) = &cc.break_glass {
        if b.pending {
            parts.push(format!(
                "BREAK-GLASS REQUESTED: {} asks to start inside freeze window {}: {}; waiting, before any platform action, for {} (approved so far: {}; `cutover ctl approve-break-glass`)",
                b.operator,
                b.window,
                b.reason,
                cc.break_glass_rule
                    .as_ref()
                    .map_or_else(|| "approvals".to_string(), |r| r.describe(&cc.roster)),
                if b.approvers.is_empty() {
                    "nobody".to_string()
                } else {
                    b.approvers.join(", ")
                }
            ));
        } else {
            parts.push(format!(
                "BREAK-GLASS: {} started inside freeze window {}, approved by {}: {}",
                b.operator,
                b.window,
                b.approvers.join(", "),
                b.reason
            ));
        }
    }
    parts.join("; ")
}
