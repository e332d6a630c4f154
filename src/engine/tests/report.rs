//! The release report of a real engine run with a rollback (fake clock and platform),
//! journaled through the same recorder a deploy uses.

use super::*;
use crate::engine::recorder::JournalRecorder;
use crate::journal::{Journal, ReleaseOrigin, release_entry::record_release};

const APPROVED: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 20 }, { pause = \"2s\" }, { approval = \"10m\" }, { set_weight = 100 } ]\n";

/// Journal `h`'s events as a deploy does (release entry first), finished at the last
/// event's time; returns the run id.
fn journal_of(h: &H, release: &Release, state_dir: &Path) -> String {
    let events = h.rec.snapshot();
    let mut j = Journal::create_at(state_dir, &release.release.name, "0", START).unwrap();
    record_release(
        &mut j,
        release,
        "test.toml",
        Path::new("."),
        "tester",
        START,
        "0",
        &ReleaseOrigin::default(),
    )
    .unwrap();
    let run_id = j.run_id().to_string();
    let mut rec = JournalRecorder::new(j);
    for e in &events {
        rec.record(e).unwrap();
    }
    drop(rec);
    let mut j = Journal::open(state_dir, &run_id).unwrap();
    j.finish_at("rolled_back", events.last().unwrap().at_ms)
        .unwrap();
    run_id
}

#[tokio::test]
async fn the_report_of_a_run_with_a_rollback_tells_what_why_who_and_how_long() {
    let r = release(
        "max_parallel = 2\nchange = \"CHG-77\"\nenvironment = \"production\"",
        &[("api", super::CANARY), ("web", APPROVED)],
    );
    let mut h = H::new(r.clone());
    h.platform
        .script("api", "v2", InstanceState::Healthy, 0.2, 0.0);
    h.start().await;
    h.run_for(Duration::from_secs(5)).await;
    assert!(h.cmd_as("approve web", "bob").await.is_ok());
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(h.status("api"), ServiceStatus::RolledBack);
    assert_eq!(h.status("web"), ServiceStatus::Promoted);

    let dir = tempfile::tempdir().unwrap();
    let run_id = journal_of(&h, &r, dir.path());
    let rep = crate::report::for_run(dir.path(), None).unwrap();
    assert_eq!(rep.run_id, run_id);
    assert_eq!(rep.change.as_deref(), Some("CHG-77"));
    assert_eq!(rep.environment.as_deref(), Some("production"));
    assert_eq!(rep.outcome.as_deref(), Some("rolled_back"));
    assert!(rep.changed_anything);
    // The audit trail names the ticket: the release entry and the engine's first event.
    assert!(
        rep.timeline[0]
            .text
            .contains("release t (change CHG-77) from test.toml"),
        "{:?}",
        rep.timeline[0]
    );
    assert!(
        rep.timeline[1]
            .text
            .contains("release t (change CHG-77) loaded"),
        "{:?}",
        rep.timeline[1]
    );
    assert_eq!(rep.started_by.as_deref(), Some("alice"));

    // What changed.
    let revs: Vec<(&str, &str, &str)> = rep
        .changes
        .revisions
        .iter()
        .map(|c| (c.service.as_str(), c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(revs, vec![("api", "v1", "v2"), ("web", "v1", "v2")]);

    // Who approved what.
    let web = rep.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.approvals.len(), 1);
    assert_eq!(web.approvals[0].operator, "bob");
    assert!(
        rep.people
            .iter()
            .any(|p| p.operator == "bob" && p.action == "approve")
    );

    // The verdict with its evidence: every window the engine journaled, with the
    // candidate's 20 % errors against the baseline's none.
    let events = h.rec.snapshot();
    let windows: Vec<&Event> = events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::AnalysisSample { service, .. } if service == "api"),
        )
        .collect();
    let api = rep.services.iter().find(|s| s.name == "api").unwrap();
    assert!(!windows.is_empty());
    assert_eq!(api.windows.len(), windows.len());
    assert_eq!(api.verdicts.last().unwrap().outcome, "fail");
    assert!(
        api.windows
            .iter()
            .any(|w| w.candidate.error_rate > Some(0.1) && w.baseline.error_rate == Some(0.0))
    );
    assert_eq!(
        api.splits
            .iter()
            .map(|s| s.candidate_percent)
            .collect::<Vec<_>>(),
        vec![0, 10, 0]
    );

    // Time to detect and restore, by hand: the first window in which the candidate erred
    // more than the baseline, the rollback decision, all traffic back on v1.
    let first_bad = windows
        .iter()
        .find(|e| match &e.kind {
            EventKind::AnalysisSample { window, .. } => {
                window.canary.errors > 0
                    && window.canary.error_rate()
                        > Some(window.baseline.error_rate().unwrap_or(0.0))
            }
            _ => false,
        })
        .unwrap()
        .at_ms;
    let at = |f: &dyn Fn(&EventKind) -> bool| events.iter().find(|e| f(&e.kind)).unwrap().at_ms;
    let decided =
        at(&|k| matches!(k, EventKind::RollbackStarted { service, .. } if service == "api"));
    let restored = at(&|k| matches!(k, EventKind::RolledBack { service, .. } if service == "api"));
    assert_eq!(rep.rollbacks.len(), 1);
    let rb = &rep.rollbacks[0];
    assert_eq!(rb.service, "api");
    assert_eq!(rb.trigger, "automatic");
    assert_eq!(rb.first_signal_ms, first_bad);
    assert_eq!(rb.time_to_detect_s, (decided - first_bad) as f64 / 1000.0);
    assert_eq!(
        rb.time_to_restore_s,
        Some((restored - first_bad) as f64 / 1000.0)
    );
    assert!(
        rb.time_to_detect_s > 0.0,
        "the judge needed more than one window"
    );

    // The chain under it.
    let verified = crate::journal::verify(dir.path(), Some(&run_id)).unwrap();
    assert_eq!(rep.journal.last_hash, verified.runs[0].last_hash);
    assert!(rep.journal.verified);

    // The three renderings.
    let none = crate::secrets::Secrets::default();
    let html = crate::report::render(&rep, crate::report::Format::Html, &none).unwrap();
    for id in [
        "chart-api-split",
        "chart-api-errors",
        "chart-api-latency",
        "chart-web-split",
    ] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id} missing");
    }
    assert!(!html.contains("chart-web-errors"), "web ran no analysis");
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("href="));
    assert!(html.contains("CHG-77") && html.contains(&rep.journal.last_hash));
    let md = crate::report::render(&rep, crate::report::Format::Md, &none).unwrap();
    assert!(md.contains("change **CHG-77**"), "{md}");
    assert!(md.contains("| api | automatic |"), "{md}");
    let json: serde_json::Value = serde_json::from_str(
        &crate::report::render(&rep, crate::report::Format::Json, &none).unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["rollbacks"][0]["time_to_restore_s"],
        serde_json::json!(rb.time_to_restore_s)
    );
    assert_eq!(json["change"], "CHG-77");
}
