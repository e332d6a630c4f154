//! The report as one self-contained HTML file: inline CSS and SVG, no script, no link to
//! anything outside the file.

use std::fmt::Write as _;

use super::model::{Report, ServiceReport};
use super::svg::{Marker, Series, chart, esc};

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1d232a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f5f6f8;font-weight:600}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff;background:#6b7280}
.promoted,.pass{background:#15803d}.rolled_back,.fail,.failed{background:#b91c1c}.refused,.inconclusive,.skipped{background:#a16207}
.meta{color:#4b5563}.charts{display:flex;flex-wrap:wrap;gap:8px}.chart{background:#fff;border:1px solid #e5e7eb;border-radius:6px}
.chart .ct{font-size:12px;font-weight:600;fill:#1d232a}.chart .ax{font-size:10px;fill:#4b5563}
.prod{background:#b91c1c}.svc{border:1px solid #e5e7eb;border-radius:8px;padding:6px 14px 10px;margin:10px 0}
.muted{color:#6b7280}
"#;

const BASE: &str = "#2563eb";
const CAND: &str = "#dc2626";

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Release report: {} ({})</title><style>{CSS}</style></head><body>",
        esc(&r.release),
        esc(&r.run_id)
    );
    header(&mut h, r);
    changes(&mut h, r);
    people(&mut h, r);
    policy(&mut h, r);
    rollbacks(&mut h, r);
    let _ = write!(h, "<h2>Services and verdicts</h2>");
    // What went wrong first, then the rest in plan order.
    let (bad, good): (Vec<_>, Vec<_>) = r
        .services
        .iter()
        .partition(|s| matches!(s.status.as_str(), "rolled_back" | "failed" | "rolling_back"));
    for s in bad.into_iter().chain(good) {
        service(&mut h, r, s);
    }
    timeline(&mut h, r);
    let _ = write!(
        h,
        "<h2>Journal</h2><p>{} entries, chain {}. Last hash: <code id=\"last-hash\">{}</code>{}</p><p class=\"muted\">Record the last hash off this machine (the change ticket) to make the journal tamper-evident; <code>cutover audit verify {}</code> checks it.</p>",
        r.journal.entries,
        if r.journal.verified {
            "verified"
        } else {
            "<b>DAMAGED</b>"
        },
        esc(&r.journal.last_hash),
        r.journal
            .problem
            .as_deref()
            .map(|p| format!(" ({})", esc(p)))
            .unwrap_or_default(),
        esc(&r.run_id)
    );
    h.push_str("</body></html>\n");
    h
}

fn badge(word: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        esc(word),
        esc(&word.replace('_', " "))
    )
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(esc).unwrap_or_else(|| "-".into())
}

fn header(h: &mut String, r: &Report) {
    let outcome = r.outcome.clone().unwrap_or_else(|| r.state.clone());
    let env = match &r.environment {
        Some(e) if e.to_lowercase().starts_with("prod") => {
            format!("<span class=\"badge prod\">{}</span>", esc(e))
        }
        Some(e) => format!("<span class=\"badge\">{}</span>", esc(e)),
        None => "<span class=\"muted\">no environment</span>".into(),
    };
    let _ = write!(
        h,
        "<h1>Release {} {}</h1><p class=\"meta\">run <code>{}</code> · platform {} · environment {env} · change <b id=\"change\">{}</b></p>\
         <table><tr><th>started</th><td>{}</td><th>finished</th><td>{}</td><th>duration</th><td>{}</td><th>started by</th><td>{}</td></tr></table>",
        esc(&r.release),
        badge(&outcome),
        esc(&r.run_id),
        esc(&r.platform),
        opt(&r.change),
        esc(&r.started_at),
        opt(&r.finished_at),
        r.duration_s
            .map(super::md::human_secs)
            .unwrap_or_else(|| "-".into()),
        opt(&r.started_by),
    );
    if let Some(b) = &r.break_glass {
        let _ = write!(
            h,
            "<p><span class=\"badge fail\">BREAK-GLASS</span> {} skipped the lifecycle gate (requires {}): {}</p>",
            esc(&b.operator),
            esc(&b.skipped.join(", ")),
            esc(&b.reason)
        );
    }
    if !r.changed_anything {
        let _ = write!(
            h,
            "<p><span class=\"badge refused\">nothing changed</span> the run ended before any candidate was launched or migration applied: not a deployment.</p>"
        );
    }
}

fn changes(h: &mut String, r: &Report) {
    let c = &r.changes;
    h.push_str("<h2>What changed</h2><table><tr><th>service</th><th>from</th><th>to</th><th>image</th><th>environment variables set</th></tr>");
    for v in &c.revisions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td class=\"mono\">{}</td></tr>",
            esc(&v.service),
            esc(&v.from),
            esc(&v.to),
            match &v.digest {
                Some(d) => format!("{}<br>{}", opt(&v.image), esc(d)),
                None => opt(&v.image),
            },
            esc(&v.env_names.join(", "))
        );
    }
    h.push_str("</table>");
    if !c.secret_versions.is_empty() {
        h.push_str("<h3>Secret versions</h3><table><tr><th>service</th><th>secret</th><th>version</th></tr>");
        for s in &c.secret_versions {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                esc(&s.service),
                esc(&s.name),
                esc(&s.version_id)
            );
        }
        h.push_str("</table>");
    }
    if !c.flags.is_empty() {
        h.push_str(
            "<h3>Flags and variables</h3><table><tr><th>name</th><th>value</th><th>from</th></tr>",
        );
        for f in &c.flags {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&f.name),
                esc(&f.value),
                esc(&f.source)
            );
        }
        h.push_str("</table>");
    }
    if !c.migrations.is_empty() {
        h.push_str("<h3>Migrations</h3><table><tr><th>migration</th><th>services</th><th>ended</th><th>detail</th></tr>");
        for m in &c.migrations {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.name),
                esc(&m.services.join(", ")),
                esc(&m.phase),
                esc(&m.detail)
            );
        }
        h.push_str("</table>");
    }
}

fn people(h: &mut String, r: &Report) {
    h.push_str("<h2>Who did what</h2>");
    if r.people.is_empty() {
        h.push_str("<p class=\"muted\">No command by a person is journaled.</p>");
        return;
    }
    h.push_str("<table><tr><th>time</th><th>who</th><th>what</th><th>service</th><th>why</th><th>refused</th></tr>");
    for p in &r.people {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.at),
            esc(&p.operator),
            esc(&p.action),
            opt(&p.service),
            opt(&p.note),
            opt(&p.refused)
        );
    }
    h.push_str("</table>");
}

fn policy(h: &mut String, r: &Report) {
    h.push_str("<h2>Policy results</h2>");
    if r.policy.is_empty() {
        h.push_str("<p class=\"muted\">The journal holds no policy, freeze-window or approval-rule entries for this run.</p>");
        return;
    }
    h.push_str("<table><tr><th>time</th><th>check</th><th>result</th><th>deny</th></tr>");
    for p in &r.policy {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&crate::journal::timefmt::iso8601_s(p.at_ms)),
            esc(&p.kind),
            esc(&p.summary),
            esc(&p.deny.join("; "))
        );
    }
    h.push_str("</table>");
    if !r.waivers.is_empty() {
        h.push_str("<h3>Scan findings waived</h3><table><tr><th>service</th><th>image</th><th>finding</th><th>severity</th><th>reason</th><th>expires</th></tr>");
        for w in &r.waivers {
            let f = &w.finding;
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.service),
                esc(&f.image),
                esc(&f.id),
                f.severity.as_str(),
                esc(&w.reason),
                esc(w.expires.as_deref().unwrap_or("-"))
            );
        }
        h.push_str("</table>");
    }
}

/// A service's charts: split, error rate and latency, over the span of its evidence.
fn service(h: &mut String, r: &Report, s: &ServiceReport) {
    let _ = write!(
        h,
        "<div class=\"svc\" id=\"svc-{}\"><h3>{} {} <span class=\"muted\">{} · wave {} · <code>{}</code> → <code>{}</code></span></h3>",
        esc(&s.name),
        esc(&s.name),
        badge(&s.status),
        esc(&s.strategy),
        s.wave + 1,
        esc(&s.baseline),
        esc(&s.candidate)
    );
    if let Some(reason) = &s.reason {
        let _ = write!(h, "<p>{}</p>", esc(reason));
    }
    for g in &s.approval_gates {
        let _ = write!(
            h,
            "<p class=\"gate\">Approval gate: may approve {}.</p>",
            esc(g)
        );
    }
    let times = s
        .splits
        .iter()
        .map(|p| p.at_ms)
        .chain(s.windows.iter().map(|w| w.at_ms))
        .chain(
            s.windows
                .iter()
                .map(|w| w.at_ms.saturating_sub(w.duration_ms)),
        );
    // From the service's start (the baseline's 0 % split is journaled when the run starts).
    let t0 = times
        .clone()
        .min()
        .map(|t| t.max(s.started_ms.unwrap_or(t)));
    let t1 = times.max().map(|t| t.max(s.finished_ms.unwrap_or(t)));
    if let (Some(t0), Some(t1)) = (t0, t1) {
        let markers: Vec<Marker<'_>> = r
            .rollbacks
            .iter()
            .filter(|rb| rb.service == s.name)
            .map(|rb| Marker {
                at_ms: rb.started_ms,
                label: "rollback",
                color: CAND,
            })
            .collect();
        let pct = |v: f64| format!("{v:.0} %");
        h.push_str("<div class=\"charts\">");
        if !s.splits.is_empty() {
            h.push_str(&chart(
                &format!("chart-{}-split", s.name),
                &format!("{}: candidate's share of traffic", s.name),
                &[Series {
                    name: "candidate %",
                    color: CAND,
                    points: s
                        .splits
                        .iter()
                        .map(|p| (p.at_ms, Some(f64::from(p.candidate_percent))))
                        .collect(),
                    steps: true,
                }],
                &markers,
                (t0, t1),
                &pct,
            ));
        }
        if !s.windows.is_empty() {
            let arm =
                |f: &dyn Fn(&super::model::WindowPoint) -> Option<f64>| -> Vec<(u64, Option<f64>)> {
                    s.windows.iter().map(|w| (w.at_ms, f(w))).collect()
                };
            h.push_str(&chart(
                &format!("chart-{}-errors", s.name),
                &format!("{}: error rate per analysis window", s.name),
                &[
                    Series {
                        name: "baseline",
                        color: BASE,
                        points: arm(&|w| w.baseline.error_rate.map(|v| v * 100.0)),
                        steps: false,
                    },
                    Series {
                        name: "candidate",
                        color: CAND,
                        points: arm(&|w| w.candidate.error_rate.map(|v| v * 100.0)),
                        steps: false,
                    },
                ],
                &markers,
                (t0, t1),
                &|v| format!("{v:.1} %"),
            ));
            let has_p99 = s
                .windows
                .iter()
                .any(|w| w.baseline.p99_ms.is_some() || w.candidate.p99_ms.is_some());
            let (title, base, cand, fmt): (_, _, _, &dyn Fn(f64) -> String) = if has_p99 {
                (
                    format!("{}: p99 latency per analysis window", s.name),
                    arm(&|w| w.baseline.p99_ms),
                    arm(&|w| w.candidate.p99_ms),
                    &|v| format!("{v:.0} ms"),
                )
            } else {
                (
                    format!("{}: share of slow requests per window", s.name),
                    arm(&|w| w.baseline.slow_rate.map(|v| v * 100.0)),
                    arm(&|w| w.candidate.slow_rate.map(|v| v * 100.0)),
                    &|v| format!("{v:.1} %"),
                )
            };
            h.push_str(&chart(
                &format!("chart-{}-latency", s.name),
                &title,
                &[
                    Series {
                        name: "baseline",
                        color: BASE,
                        points: base,
                        steps: false,
                    },
                    Series {
                        name: "candidate",
                        color: CAND,
                        points: cand,
                        steps: false,
                    },
                ],
                &markers,
                (t0, t1),
                fmt,
            ));
        }
        h.push_str("</div>");
    }
    if !s.verdicts.is_empty() {
        h.push_str("<table><tr><th>time</th><th>verdict</th><th>judge</th><th>why</th></tr>");
        for v in &s.verdicts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}<br><span class=\"mono muted\">{}</span></td></tr>",
                esc(&v.at),
                badge(&v.outcome),
                esc(&v.judge),
                esc(&v.summary),
                v.explanation
                    .iter()
                    .map(|l| esc(l))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        h.push_str("</table>");
    } else {
        h.push_str("<p class=\"muted\">No verdict journaled (no analysis ran).</p>");
    }
    h.push_str("</div>");
}

fn rollbacks(h: &mut String, r: &Report) {
    h.push_str("<h2>Rollbacks</h2>");
    if r.rollbacks.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>");
        return;
    }
    h.push_str("<table id=\"rollbacks\"><tr><th>service</th><th>trigger</th><th>first failing signal</th><th>time to detect</th><th>time to restore</th><th>reason</th></tr>");
    for rb in &r.rollbacks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rb.service),
            esc(&rb.trigger),
            esc(&crate::journal::timefmt::iso8601_ms(rb.first_signal_ms)),
            esc(&rb.first_signal),
            super::md::human_secs(rb.time_to_detect_s),
            rb.time_to_restore_s
                .map(super::md::human_secs)
                .unwrap_or_else(|| "not restored".into()),
            esc(&rb.reason)
        );
    }
    h.push_str("</table>");
}

fn timeline(h: &mut String, r: &Report) {
    h.push_str("<h2>Timeline</h2><table><tr><th>#</th><th>time</th><th>kind</th><th>service</th><th>who</th><th>what</th></tr>");
    for t in &r.timeline {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.seq,
            esc(&t.at),
            esc(&t.kind),
            opt(&t.service),
            opt(&t.operator),
            esc(&t.text)
        );
    }
    h.push_str("</table>");
}
