//! The report as Markdown, short enough for a ticket or a chat: the outcome, what changed,
//! who did what, each verdict, the rollbacks with their times, and the journal's last hash.

use std::fmt::Write as _;

use super::model::Report;

/// `95 s` as `1 min 35 s`; under a minute with one decimal.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".into();
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {sec} s")
    }
}

/// A table cell: no line breaks, no pipes that would end the cell.
fn cell(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

pub fn render(r: &Report) -> String {
    let mut m = String::new();
    let outcome = r.outcome.clone().unwrap_or_else(|| r.state.clone());
    let _ = writeln!(m, "## Release {}: {}", cell(&r.release), cell(&outcome));
    let _ = writeln!(m);
    let _ = writeln!(
        m,
        "- run `{}` on {}, environment **{}**, change **{}**",
        cell(&r.run_id),
        cell(&r.platform),
        cell(r.environment.as_deref().unwrap_or("-")),
        cell(r.change.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(
        m,
        "- started {} by {}, finished {} ({})",
        r.started_at,
        cell(r.started_by.as_deref().unwrap_or("-")),
        r.finished_at.as_deref().unwrap_or("-"),
        r.duration_s.map(human_secs).unwrap_or_else(|| "-".into())
    );
    if let Some(b) = &r.break_glass {
        let _ = writeln!(
            m,
            "- **BREAK-GLASS**: {} skipped the lifecycle gate (requires {}): {}",
            cell(&b.operator),
            cell(&b.skipped.join(", ")),
            cell(&b.reason)
        );
    }
    if !r.changed_anything {
        let _ = writeln!(m, "- nothing changed: not a deployment");
    }
    let _ = writeln!(m, "\n### What changed\n");
    let _ = writeln!(m, "| service | from | to | image | status |");
    let _ = writeln!(m, "|---|---|---|---|---|");
    for v in &r.changes.revisions {
        let status = r
            .services
            .iter()
            .find(|s| s.name == v.service)
            .map_or("-", |s| s.status.as_str());
        let _ = writeln!(
            m,
            "| {} | `{}` | `{}` | {} | {} |",
            cell(&v.service),
            cell(&v.from),
            cell(&v.to),
            match (&v.image, &v.digest) {
                (Some(i), Some(d)) => format!("`{}` (`{}`)", cell(i), cell(d)),
                (Some(i), None) => format!("`{}`", cell(i)),
                _ => "-".into(),
            },
            status
        );
    }
    for s in &r.changes.secret_versions {
        let _ = writeln!(
            m,
            "- secret `{}` of {}: version `{}`",
            cell(&s.name),
            cell(&s.service),
            cell(&s.version_id)
        );
    }
    for f in &r.changes.flags {
        let _ = writeln!(
            m,
            "- `{}` = `{}` ({})",
            cell(&f.name),
            cell(&f.value),
            cell(&f.source)
        );
    }
    for g in &r.changes.migrations {
        let _ = writeln!(
            m,
            "- migration {} ({}): {}",
            cell(&g.name),
            cell(&g.services.join(", ")),
            cell(&g.phase)
        );
    }
    if !r.people.is_empty() {
        let _ = writeln!(m, "\n### Who\n");
        for p in &r.people {
            let _ = writeln!(
                m,
                "- {} {} {}{}{}{}",
                p.at,
                cell(&p.operator),
                cell(&p.action),
                p.service
                    .as_deref()
                    .map(|s| format!(" {}", cell(s)))
                    .unwrap_or_default(),
                p.note
                    .as_deref()
                    .map(|n| format!(": {}", cell(n)))
                    .unwrap_or_default(),
                p.refused
                    .as_deref()
                    .map(|n| format!(" (refused: {})", cell(n)))
                    .unwrap_or_default()
            );
        }
    }
    if !r.policy.is_empty() {
        let _ = writeln!(m, "\n### Policy results\n");
        for p in &r.policy {
            let _ = writeln!(m, "- {}: {}", cell(&p.kind), cell(&p.summary));
            for d in &p.deny {
                let _ = writeln!(m, "  - deny: {}", cell(d));
            }
        }
    }
    for w in &r.waivers {
        let _ = writeln!(
            m,
            "- scan finding waived: {} {} in `{}` ({}): {}",
            w.finding.severity.as_str(),
            cell(&w.finding.id),
            cell(&w.finding.image),
            cell(&w.finding.service),
            cell(&w.reason)
        );
    }
    let _ = writeln!(m, "\n### Verdicts\n");
    for s in &r.services {
        match s.verdicts.last() {
            Some(v) => {
                let _ = writeln!(
                    m,
                    "- **{}**: {} ({}, {} window(s)): {}",
                    cell(&s.name),
                    v.outcome,
                    cell(&v.judge),
                    s.windows.len(),
                    cell(&v.summary)
                );
            }
            None => {
                let _ = writeln!(m, "- **{}**: no analysis", cell(&s.name));
            }
        }
        for g in &s.approval_gates {
            let approved: Vec<&str> = s
                .approvals
                .iter()
                .filter(|a| a.refused.is_none())
                .map(|a| a.operator.as_str())
                .collect();
            let _ = writeln!(
                m,
                "  - approval gate: may approve {}; answered by {}",
                cell(g),
                cell(&if approved.is_empty() {
                    "nobody".to_string()
                } else {
                    approved.join(", ")
                })
            );
        }
    }
    if !r.rollbacks.is_empty() {
        let _ = writeln!(m, "\n### Rollbacks\n");
        let _ = writeln!(
            m,
            "| service | trigger | first failing signal | time to detect | time to restore |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|");
        for rb in &r.rollbacks {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                cell(&rb.service),
                cell(&rb.trigger),
                cell(&rb.first_signal),
                human_secs(rb.time_to_detect_s),
                rb.time_to_restore_s
                    .map(human_secs)
                    .unwrap_or_else(|| "not restored".into())
            );
        }
    }
    let _ = writeln!(
        m,
        "\nJournal: {} entries, chain {}, last hash `{}`.",
        r.journal.entries,
        if r.journal.verified {
            "verified"
        } else {
            "DAMAGED"
        },
        r.journal.last_hash
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_secs(4.25), "4.2 s");
        assert_eq!(human_secs(95.0), "1 min 35 s");
        assert_eq!(human_secs(7260.0), "2 h 1 min");
        assert_eq!(human_secs(f64::NAN), "-");
        assert_eq!(cell("a|b\nc"), "a/b c");
    }
}
