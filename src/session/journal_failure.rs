//! What a headless run says when the engine stopped because its journal could not be
//! written (a full or failing disk): the engine took no action after the failed write, so
//! traffic is on the last journaled split; the operator frees the disk, then resumes.
//! With the journal in PostgreSQL, a lost lease stops the engine the same way: another
//! engine may hold the run, so this one only says so.

use crate::engine::Stopped;
use crate::journal::JournalStore;

/// What is said when the engine lost its lease on a run in PostgreSQL.
fn lease_advice(cause: &str, run_id: &str, journal: &JournalStore) -> String {
    format!(
        "cutover: {cause}.\n\
         cutover: no platform call was made after the loss was noticed. `cutover history {flag}` \
         shows whether another engine is running run {run_id}; if none is, `cutover resume {flag} \
         --run {run_id}` takes it over once the lease has expired",
        flag = journal.flag(),
    )
}

/// The lines printed on stderr after `cutover: the engine stopped: …`; `cause` is the
/// failed write's error.
pub fn advice(cause: &str, run_id: &str, journal: &JournalStore, keep_running: bool) -> String {
    if cause.contains(crate::journal::pg::LEASE_LOST) {
        return lease_advice(cause, run_id, journal);
    }
    let traffic = if keep_running {
        "the proxies keep serving the last journaled split until SIGINT or SIGTERM"
    } else {
        "traffic stayed on the last journaled split until this process stopped its proxies"
    };
    let JournalStore::File(state_dir) = journal else {
        return format!(
            "cutover: the journal of run {run_id} could not be written ({cause}); the engine took no \
             action after the failed write and {traffic}.\n\
             cutover: check the database {label} (that it runs, accepts connections and has room: \
             its log says why it refused), then run `cutover resume {flag} --run {run_id}` to carry \
             on from the journal",
            label = journal.label(),
            flag = journal.flag(),
        );
    };
    let dir = state_dir.display();
    format!(
        "cutover: the journal of run {run_id} could not be written ({cause}); the engine took no \
         action after the failed write and {traffic}.\n\
         cutover: check the disk that holds {dir} (`df -h {dir}`: free space, or replace a \
         failing disk), then run `cutover resume --state-dir {dir}` to carry on from the journal",
    )
}

/// What the console shows once its engine stopped: for a journal that could not be
/// written, where traffic is and what to do (the console's process keeps the proxies
/// serving that split until it quits); otherwise the error and the way back.
pub fn console_banner(stopped: &Stopped, run_id: &str, journal: &JournalStore) -> String {
    let dir = journal.label();
    let flag = journal.flag();
    if stopped.journal && stopped.reason.contains(crate::journal::pg::LEASE_LOST) {
        return lease_advice(&stopped.reason, run_id, journal);
    }
    if stopped.journal && matches!(journal, JournalStore::Postgres(_)) {
        return format!(
            "The journal of run {run_id} could not be written ({cause}). The engine took no \
             action after the failed write: traffic stays on the last journaled split while \
             this console runs.\n\
             Check the database {dir} (that it runs, accepts connections and has room), then \
             quit (q) and run `cutover resume {flag} --run {run_id}` to carry on from the journal.",
            cause = stopped.reason,
        );
    }
    if stopped.journal {
        format!(
            "The journal of run {run_id} could not be written ({cause}). The engine took no \
             action after the failed write: traffic stays on the last journaled split while \
             this console runs.\n\
             Free space on the disk that holds {dir} (`df -h {dir}`) or replace a failing disk, \
             then quit (q) and run `cutover resume --state-dir {dir}` to carry on from the journal.",
            cause = stopped.reason,
        )
    } else {
        format!(
            "{cause}\nQuit (q); `cutover resume {flag}` carries on from the journal \
             (run {run_id}).",
            cause = stopped.reason,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_lost_lease_is_said_as_such_with_the_database_named_and_never_its_url() {
        let pg = crate::journal::pg::PgStore::parse(
            "postgres://ops:hunter2@db.example:5432/deploys",
            Path::new("/tmp"),
        )
        .unwrap();
        let journal = JournalStore::Postgres(pg);
        let cause = format!(
            "the engine {} on run R1 (epoch 1): the database holds a newer epoch 2",
            crate::journal::pg::LEASE_LOST
        );
        for t in [
            advice(&cause, "R1", &journal, false),
            console_banner(
                &Stopped {
                    journal: true,
                    reason: cause.clone(),
                },
                "R1",
                &journal,
            ),
        ] {
            assert!(t.contains("newer epoch 2"), "{t}");
            assert!(t.contains("no platform call"), "{t}");
            assert!(
                t.contains("--journal postgres://db.example:5432/deploys"),
                "{t}"
            );
            assert!(!t.contains("hunter2") && !t.contains("df -h"), "{t}");
        }
    }

    /// The PostgreSQL journal failing (not a lost lease): the advice names the database
    /// and `--journal`, says where traffic is, and never says `df -h` or `--state-dir`
    /// (it used to, in the console, with the database's label as a directory).
    #[test]
    fn a_failing_database_is_said_with_the_database_named_and_where_traffic_is() {
        let pg = crate::journal::pg::PgStore::parse(
            "postgres://ops:hunter2@db.example:5432/deploys",
            Path::new("/tmp"),
        )
        .unwrap();
        let journal = JournalStore::Postgres(pg);
        let cause = "cannot append to the journal postgres://db.example:5432/deploys: \
                     could not extend file: No space left on device";
        for t in [
            advice(cause, "R1", &journal, true),
            console_banner(
                &Stopped {
                    journal: true,
                    reason: cause.into(),
                },
                "R1",
                &journal,
            ),
        ] {
            assert!(t.contains("No space left on device"), "{t}");
            assert!(
                t.contains("heck the database postgres://db.example:5432/deploys"),
                "{t}"
            );
            assert!(t.contains("last journaled split"), "{t}");
            assert!(
                t.contains("cutover resume --journal postgres://db.example:5432/deploys --run R1"),
                "{t}"
            );
            assert!(!t.contains("df -h") && !t.contains("--state-dir"), "{t}");
            assert!(!t.contains("hunter2") && !t.contains("ops@"), "{t}");
            assert!(!t.contains(crate::journal::pg::LEASE_LOST), "{t}");
        }
        let other = console_banner(
            &Stopped {
                journal: false,
                reason: "the release has no service named `x`".into(),
            },
            "R1",
            &journal,
        );
        assert!(
            other.contains("cutover resume --journal postgres://db.example:5432/deploys"),
            "{other}"
        );
    }

    #[test]
    fn the_console_banner_says_where_traffic_is_and_what_to_do() {
        let s = Stopped {
            journal: true,
            reason: "write failed: No space left on device (os error 28)".into(),
        };
        let t = console_banner(&s, "R1", &JournalStore::File("/var/lib/cutover".into()));
        assert!(t.contains("No space left on device"), "{t}");
        assert!(t.contains("last journaled split"), "{t}");
        assert!(t.contains("df -h /var/lib/cutover"), "{t}");
        assert!(
            t.contains("cutover resume --state-dir /var/lib/cutover"),
            "{t}"
        );
        let o = Stopped {
            journal: false,
            reason: "the release has no service named `x`".into(),
        };
        let t = console_banner(&o, "R1", &JournalStore::File("/s".into()));
        assert!(t.starts_with("the release has no service named `x`"), "{t}");
        assert!(!t.contains("journal of run"), "{t}");
    }
}
