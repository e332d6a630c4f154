//! Captured text leaves the engine scrubbed: before an event is journaled, folded or
//! broadcast, the fields that can carry text cutover did not write (a smoke response's
//! body, a smoke command's stderr, a replica's last output line, a platform's error, a
//! database driver's message, an operator's note, and the reasons built from them) have
//! every secret value of the release replaced by `***`.
//! Names, revisions and numbers are cutover's own and are left alone.

use crate::secrets::Secrets;

use super::state::EventKind;

/// Scrub the free-text fields of `kind` in place.
pub(super) fn scrub(kind: &mut EventKind, secrets: &Secrets) {
    if secrets.is_empty() {
        return;
    }
    let fix = |s: &mut String| {
        let clean = secrets.scrub(s);
        if clean != *s {
            *s = clean;
        }
    };
    match kind {
        EventKind::SmokeResult { detail, .. } => fix(detail),
        EventKind::Health { summary, .. } => {
            if let Some(p) = summary.problem.as_mut() {
                fix(p);
            }
        }
        EventKind::GateWaiting { reason, .. }
        | EventKind::Paused { reason, .. }
        | EventKind::RollbackStarted { reason, .. }
        | EventKind::RolledBack { reason, .. }
        | EventKind::Failed { reason, .. }
        | EventKind::Skipped { reason, .. } => fix(reason),
        EventKind::CommandRefused { reason, note, .. } => {
            fix(reason);
            note.iter_mut().for_each(fix);
        }
        // An operator's note (`ctl --reason`) is text someone pasted.
        EventKind::CommandAccepted { note, .. } => note.iter_mut().for_each(fix),
        EventKind::PlatformError { message, .. } => fix(message),
        // A database driver's message, lint findings, dry-run output.
        EventKind::Migration { detail, lines, .. } => {
            fix(detail);
            lines.iter_mut().for_each(fix);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_text_is_scrubbed_and_names_are_left_alone() {
        let mut secrets = Secrets::default();
        secrets.extend(["hunter2-token".to_string()]);
        let mut smoke = EventKind::SmokeResult {
            service: "api".into(),
            test: "login".into(),
            revision: "v2".into(),
            passed: false,
            detail: "POST /login answered 500: bad token hunter2-token".into(),
        };
        scrub(&mut smoke, &secrets);
        let EventKind::SmokeResult {
            detail, service, ..
        } = &smoke
        else {
            unreachable!()
        };
        assert_eq!(detail, "POST /login answered 500: bad token ***");
        assert_eq!(service, "api");

        let mut failed = EventKind::PlatformError {
            service: "api".into(),
            message: "replica exited: panic: key=hunter2-token".into(),
            fatal: false,
        };
        scrub(&mut failed, &secrets);
        assert!(!format!("{failed:?}").contains("hunter2"));

        let mut migration = EventKind::Migration {
            migration: "m".into(),
            phase: crate::engine::state::MigrationPhase::Failed,
            detail: "connect failed: hunter2-token rejected".into(),
            lines: vec!["driver said hunter2-token".into()],
        };
        scrub(&mut migration, &secrets);
        assert!(
            !format!("{migration:?}").contains("hunter2"),
            "{migration:?}"
        );

        let mut note = EventKind::CommandAccepted {
            operator: "alice".into(),
            command: crate::engine::Command::Pause { service: None },
            note: Some("token hunter2-token looked wrong".into()),
        };
        scrub(&mut note, &secrets);
        assert!(!format!("{note:?}").contains("hunter2"), "{note:?}");
    }
}
