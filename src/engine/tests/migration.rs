//! The engine's migration stages: lint, dry run, expand, contract, undo, resume.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::testing::{FakePlatform, ScriptedSmoke};
use crate::engine::tests::{H, START};
use crate::engine::{Clock, ContractMode};
use crate::engine::{
    Engine, EngineOptions, EventKind, FakeClock, MemoryRecorder, MigrationPhase, ReleaseStatus,
    ServiceStatus,
};
use crate::migrate::{RunOptions, Stage};
use crate::platform::InstanceState;
use crate::release::Release;

const EXPAND: &str = "ALTER TABLE customers ADD COLUMN first_name TEXT;\nALTER TABLE customers ADD COLUMN last_name TEXT;\nUPDATE customers SET first_name = full_name WHERE first_name IS NULL;\n";
const CONTRACT: &str = "ALTER TABLE customers DROP COLUMN full_name;\n";
const UNDO: &str =
    "ALTER TABLE customers DROP COLUMN first_name;\nALTER TABLE customers DROP COLUMN last_name;\n";
/// `web` (wave 1) is not listed; `customers` (wave 2) is.
const CUSTOMERS: &str = "depends_on = [\"web\"]\nstrategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";
const WEB: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"10s\" } ]\n";

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new(expand: &str, undo: Option<&str>) -> Db {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m")).unwrap();
        std::fs::write(dir.path().join("m/expand.sql"), expand).unwrap();
        std::fs::write(dir.path().join("m/contract.sql"), CONTRACT).unwrap();
        if let Some(u) = undo {
            std::fs::write(dir.path().join("m/undo.sql"), u).unwrap();
        }
        let c = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL DEFAULT '');
             INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Ada Lovelace');",
        )
        .unwrap();
        Db { dir }
    }

    fn columns(&self) -> Vec<String> {
        let c = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
        let mut st = c
            .prepare("SELECT name FROM pragma_table_info('customers') ORDER BY cid")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// `stage` of every history row, in order (empty when there is no history table).
    fn history(&self) -> Vec<String> {
        let c = rusqlite::Connection::open(self.dir.path().join("app.db")).unwrap();
        let Ok(mut st) = c.prepare("SELECT stage, status FROM cutover_migrations ORDER BY id")
        else {
            return Vec::new();
        };
        st.query_map([], |r| {
            Ok(format!(
                "{} {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    }

    fn release(&self, customers: &str, undo: bool) -> Release {
        self.release_listing(customers, undo, "[\"customers\"]")
    }

    /// The same release with `services = LISTED` in the migration.
    fn release_listing(&self, customers: &str, undo: bool, listed: &str) -> Release {
        self.release_of(WEB, customers, undo, listed)
    }

    /// `web` and `customers` as given, the migration listing `listed`.
    fn release_of(&self, web: &str, customers: &str, undo: bool, listed: &str) -> Release {
        let mut text = String::from("[release]\nname = \"t\"\nplatform = \"local\"\n");
        for (i, (name, body)) in [("web", web), ("customers", customers)].iter().enumerate() {
            text.push_str(&format!(
                "\n[[service]]\nname = \"{name}\"\n{body}\n[service.local]\nlisten = \"127.0.0.1:{}\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n",
                19100 + i
            ));
        }
        text.push_str("\n[[migration]]\nname = \"split-name\"\ndatabase = \"sqlite://app.db\"\nexpand = \"m/expand.sql\"\ncontract = \"m/contract.sql\"\nbake = \"2m\"\n");
        text.push_str(&format!("services = {listed}\n"));
        if undo {
            text.push_str("undo_expand = \"m/undo.sql\"\n");
        }
        match crate::release::load_str(Path::new("t.toml"), &text, self.dir.path()) {
            Ok(r) => r,
            Err(d) => panic!("{}", d.iter().map(|x| x.to_string()).collect::<String>()),
        }
    }

    fn options(&self, r: &Release, mode: ContractMode) -> EngineOptions {
        let migrations = r
            .migrations
            .iter()
            .map(|m| crate::migrate::PreparedMigration::new(m, self.dir.path()).unwrap())
            .collect();
        EngineOptions {
            operator: "tester".into(),
            migrations,
            contract: mode,
            migrate: RunOptions {
                actor: "tester".into(),
                ..RunOptions::default()
            },
            ..Default::default()
        }
    }

    fn harness(&self, r: Release, mode: ContractMode) -> H {
        let options = self.options(&r, mode);
        self.harness_with(r, options)
    }

    fn harness_with(&self, r: Release, options: EngineOptions) -> H {
        let clock = FakeClock::new(START);
        let platform = FakePlatform::new(Arc::new(clock.clone()));
        let smoke = ScriptedSmoke::new();
        let rec = MemoryRecorder::new();
        let plan = crate::plan::plan(&r);
        let engine = Engine::new(
            r,
            &plan,
            platform.clone(),
            Arc::new(clock.clone()),
            Box::new(rec.clone()),
            Arc::new(smoke.clone()),
            options,
        )
        .unwrap();
        H {
            engine,
            clock,
            platform,
            smoke,
            rec,
        }
    }
}

fn phases(h: &H) -> Vec<MigrationPhase> {
    h.events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Migration { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect()
}

fn position(h: &H, f: impl Fn(&EventKind) -> bool) -> usize {
    h.events()
        .iter()
        .position(|e| f(&e.kind))
        .expect("event not found")
}

fn phase(h: &H) -> MigrationPhase {
    h.engine.state().migration("split-name").unwrap().phase
}

#[tokio::test]
async fn expand_runs_before_the_listed_wave_and_contract_waits_for_confirmation() {
    let db = Db::new(EXPAND, Some(UNDO));
    let r = db.release(CUSTOMERS, true);
    let mut h = db.harness(r, ContractMode::Confirm);
    h.start().await;
    h.run_for(Duration::from_secs(120)).await;
    assert_eq!(h.status("customers"), ServiceStatus::Promoted);
    // Expand sat between the two waves: after web started, before customers started.
    let expanded = position(&h, |k| {
        matches!(
            k,
            EventKind::Migration {
                phase: MigrationPhase::Expanded,
                ..
            }
        )
    });
    let web = position(
        &h,
        |k| matches!(k, EventKind::ServiceStarted { service } if service == "web"),
    );
    let customers = position(
        &h,
        |k| matches!(k, EventKind::ServiceStarted { service } if service == "customers"),
    );
    assert!(web < expanded && expanded < customers, "{:#?}", h.events());
    assert_eq!(
        db.columns(),
        ["id", "full_name", "first_name", "last_name"],
        "expand applied"
    );
    // Bake not over yet: no contract offered, and confirming early is refused.
    assert_eq!(phase(&h), MigrationPhase::Expanded);
    let early = h.cmd("contract split-name").await.unwrap_err();
    assert!(early.reason.contains("bake"), "{}", early.reason);
    h.run_for(Duration::from_secs(121)).await;
    assert_eq!(phase(&h), MigrationPhase::ContractAwaiting);
    assert_ne!(
        h.engine.state().status,
        ReleaseStatus::Finished,
        "waits for the person"
    );
    let wrong = h.cmd("contract nope").await.unwrap_err();
    assert!(wrong.reason.contains("split-name"), "{}", wrong.reason);
    h.cmd("contract split-name").await.unwrap();
    for _ in 0..200 {
        h.settle().await;
        if h.engine.state().status == ReleaseStatus::Finished {
            break;
        }
        h.run_for(Duration::from_secs(1)).await;
    }
    assert_eq!(phase(&h), MigrationPhase::Contracted);
    assert_eq!(
        db.columns(),
        ["id", "first_name", "last_name"],
        "contract applied"
    );
    assert_eq!(
        phases(&h),
        [
            MigrationPhase::Linted,
            MigrationPhase::DryRunOk,
            MigrationPhase::Expanding,
            MigrationPhase::Expanded,
            MigrationPhase::ContractAwaiting,
            MigrationPhase::Contracting,
            MigrationPhase::Contracted,
        ]
    );
    assert_eq!(db.history(), ["expand applied", "contract applied"]);
    assert_eq!(h.engine.state().exit_code(), 0);
    // After contract a rollback to the old revision is refused, with the reason.
    let r = h.cmd("rollback customers").await.unwrap_err();
    assert!(
        r.reason.contains("split-name") && r.reason.contains("old schema"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn abort_while_contract_awaits_confirmation_leaves_it_pending() {
    let db = Db::new(EXPAND, Some(UNDO));
    let mut h = db.harness(db.release(CUSTOMERS, true), ContractMode::Confirm);
    h.start().await;
    h.run_for(Duration::from_secs(300)).await;
    assert_eq!(phase(&h), MigrationPhase::ContractAwaiting);
    h.cmd("abort").await.unwrap();
    h.settle().await;
    // The release finishes instead of waiting for a person nobody will be.
    assert_eq!(h.engine.state().status, ReleaseStatus::Finished);
    assert_eq!(phase(&h), MigrationPhase::ContractPending);
    let detail = &h.engine.state().migration("split-name").unwrap().detail;
    assert!(detail.contains("aborted by alice"), "{detail}");
    assert_eq!(db.history(), ["expand applied"]);
}

#[tokio::test]
async fn a_lint_finding_stops_the_release_before_the_database_is_touched() {
    let db = Db::new("ALTER TABLE customers DROP COLUMN full_name;\n", None);
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    h.finish(Duration::from_secs(60)).await;
    assert_eq!(h.status("web"), ServiceStatus::Skipped);
    assert_eq!(h.status("customers"), ServiceStatus::Skipped);
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::Failed);
    assert!(m.refused);
    assert!(
        m.detail.contains("lint refused") && m.detail.contains("m/expand.sql:1"),
        "{}",
        m.detail
    );
    assert!(
        m.lines
            .iter()
            .any(|l| l.contains("drop-column") && l.contains("fix:")),
        "{:?}",
        m.lines
    );
    let reason = h.svc("web").reason.unwrap();
    assert!(reason.contains("split-name"), "{reason}");
    assert_eq!(h.engine.state().exit_code(), 2);
    assert!(db.history().is_empty(), "no history table: nothing touched");
    assert_eq!(db.columns(), ["id", "full_name"]);
    assert!(
        !h.platform.calls().iter().any(|c| c.contains("v2")),
        "no candidate launched"
    );
}

#[tokio::test]
async fn a_failed_dry_run_stops_the_release_and_leaves_the_database_alone() {
    // Two rows share a name: the unique index fails on the copy.
    let db = Db::new(
        "CREATE UNIQUE INDEX customers_name ON customers (full_name);\n",
        None,
    );
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    h.finish(Duration::from_secs(120)).await;
    assert_eq!(h.status("customers"), ServiceStatus::Skipped);
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::Failed);
    assert!(
        m.detail.contains("dry run") && m.detail.to_lowercase().contains("unique"),
        "{}",
        m.detail
    );
    assert_eq!(h.engine.state().exit_code(), 2);
    assert!(db.history().is_empty());
    assert!(!phases(&h).contains(&MigrationPhase::Expanding));
}

/// Once the candidate takes traffic, its health checks start failing.
async fn fail_customers_mid_rollout(h: &mut H) {
    for _ in 0..120 {
        if h.svc("customers").candidate_weight == 50 {
            break;
        }
        h.run_for(Duration::from_secs(1)).await;
    }
    assert_eq!(h.svc("customers").candidate_weight, 50);
    h.platform.set_state(
        "customers",
        "v2",
        InstanceState::Unhealthy {
            reason: "GET /healthz answered 503".into(),
        },
    );
}

#[tokio::test]
async fn a_listed_service_rolling_back_before_contract_undoes_expand() {
    let db = Db::new(EXPAND, Some(UNDO));
    let r = db.release(CUSTOMERS, true);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    fail_customers_mid_rollout(&mut h).await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
    assert_eq!(phase(&h), MigrationPhase::Undone);
    assert_eq!(db.columns(), ["id", "full_name"], "undo_expand applied");
    assert_eq!(db.history(), ["expand applied", "undo_expand applied"]);
    // The undo ran after the candidate was stopped.
    let retired = position(
        &h,
        |k| matches!(k, EventKind::Retired { service, revision } if service == "customers" && revision == "v2"),
    );
    let undoing = position(&h, |k| {
        matches!(
            k,
            EventKind::Migration {
                phase: MigrationPhase::UndoingExpand,
                ..
            }
        )
    });
    assert!(retired < undoing);
}

#[tokio::test]
async fn undo_waits_while_another_listed_service_uses_the_expanded_schema() {
    // web (promoted, listed) runs its new revision on the expanded schema: when
    // customers rolls back, undo_expand must not drop what web uses.
    let db = Db::new(EXPAND, Some(UNDO));
    let r = db.release_listing(CUSTOMERS, true, "[\"web\", \"customers\"]");
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    fail_customers_mid_rollout(&mut h).await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("web"), ServiceStatus::Promoted);
    assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
    assert_eq!(phase(&h), MigrationPhase::KeptExpanded);
    assert_eq!(
        db.columns(),
        ["id", "full_name", "first_name", "last_name"],
        "the schema web uses stays"
    );
    assert_eq!(db.history(), ["expand applied"]);
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert!(m.detail.contains("web"), "{}", m.detail);
}

#[tokio::test]
async fn a_listed_service_that_never_starts_holds_nothing() {
    // web fails, so customers (the only listed service, next wave) is skipped: expand
    // never comes due, and the release must still finish.
    let db = Db::new(EXPAND, Some(UNDO));
    let r = db.release(CUSTOMERS, true);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    for _ in 0..60 {
        if h.svc("web").candidate_weight == 50 {
            break;
        }
        h.run_for(Duration::from_secs(1)).await;
    }
    h.platform.set_state(
        "web",
        "v2",
        InstanceState::Unhealthy {
            reason: "GET /healthz answered 503".into(),
        },
    );
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.engine.state().status, ReleaseStatus::Finished);
    assert_eq!(h.status("customers"), ServiceStatus::Skipped);
    assert!(db.history().is_empty(), "nothing applied");
    assert_eq!(db.columns(), ["id", "full_name"]);
}

#[tokio::test]
async fn a_retry_after_undo_expands_again_before_the_service_starts() {
    let db = Db::new(EXPAND, Some(UNDO));
    let r = db.release(CUSTOMERS, true);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    fail_customers_mid_rollout(&mut h).await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(phase(&h), MigrationPhase::Undone);
    h.cmd("retry customers").await.unwrap();
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(h.status("customers"), ServiceStatus::Promoted);
    assert_eq!(phase(&h), MigrationPhase::Contracted);
    let events = h.events();
    let retried = events
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::Retrying { .. }))
        .unwrap();
    let expanded = events
        .iter()
        .rposition(|e| {
            matches!(
                e.kind,
                EventKind::Migration {
                    phase: MigrationPhase::Expanded,
                    ..
                }
            )
        })
        .unwrap();
    let started = events
        .iter()
        .rposition(
            |e| matches!(&e.kind, EventKind::ServiceStarted { service } if service == "customers"),
        )
        .unwrap();
    assert!(retried < expanded && expanded < started, "{events:#?}");
    assert_eq!(
        db.history(),
        [
            "expand applied",
            "undo_expand applied",
            "expand applied",
            "contract applied"
        ]
    );
}

#[tokio::test]
async fn without_undo_expand_the_additive_schema_stays_and_the_journal_says_so() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    fail_customers_mid_rollout(&mut h).await;
    h.finish(Duration::from_secs(300)).await;
    assert_eq!(h.status("customers"), ServiceStatus::RolledBack);
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::KeptExpanded);
    assert!(m.detail.contains("no undo_expand"), "{}", m.detail);
    assert_eq!(db.columns(), ["id", "full_name", "first_name", "last_name"]);
    assert_eq!(db.history(), ["expand applied"]);
}

#[tokio::test]
async fn a_failed_contract_is_journaled_and_the_release_exits_3() {
    let db = Db::new(EXPAND, None);
    std::fs::write(
        db.dir.path().join("m/contract.sql"),
        "ALTER TABLE no_such_table DROP COLUMN full_name;\n",
    )
    .unwrap();
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    // The dry run proves contract too: it fails on the copy, before expand.
    h.finish(Duration::from_secs(600)).await;
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::Failed);
    assert!(
        m.detail.contains("contract failed on the copy"),
        "{}",
        m.detail
    );
    assert_eq!(h.engine.state().exit_code(), 2);
    assert!(db.history().is_empty());
}

#[tokio::test]
async fn a_schema_changed_outside_migrations_stops_contract_and_the_release_exits_3() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    h.run_for(Duration::from_secs(30)).await;
    assert_eq!(phase(&h), MigrationPhase::Expanded);
    rusqlite::Connection::open(db.dir.path().join("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE intruder (x INTEGER);")
        .unwrap();
    h.finish(Duration::from_secs(600)).await;
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::Failed);
    assert!(
        m.detail.contains("changed outside migrations"),
        "{}",
        m.detail
    );
    assert!(!m.refused);
    assert_eq!(h.engine.state().exit_code(), 3);
    assert_eq!(db.history(), ["expand applied"], "contract did not run");
    assert!(db.columns().contains(&"full_name".to_string()));
}

#[tokio::test]
async fn allow_contract_runs_it_after_the_bake_without_asking() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Allow);
    h.start().await;
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(phase(&h), MigrationPhase::Contracted);
    let promoted = h.svc("customers").finished_at_ms.unwrap();
    let contracting = h
        .events()
        .iter()
        .find(|e| {
            matches!(
                e.kind,
                EventKind::Migration {
                    phase: MigrationPhase::Contracting,
                    ..
                }
            )
        })
        .unwrap()
        .at_ms;
    assert!(contracting >= promoted + 120_000, "bake of 2m respected");
    assert!(!phases(&h).contains(&MigrationPhase::ContractAwaiting));
    assert_eq!(db.history(), ["expand applied", "contract applied"]);
}

#[tokio::test]
async fn headless_without_confirmation_ends_with_the_contract_pending() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    let mut h = db.harness(r, ContractMode::Defer);
    h.start().await;
    h.finish(Duration::from_secs(120)).await;
    let m = h.engine.state().migration("split-name").unwrap().clone();
    assert_eq!(m.phase, MigrationPhase::ContractPending);
    assert!(
        m.detail.contains("cutover migrate contract"),
        "{}",
        m.detail
    );
    assert_eq!(h.engine.state().exit_code(), 0);
    assert_eq!(db.history(), ["expand applied"]);
    assert!(db.columns().contains(&"full_name".to_string()));
}

/// Restore an engine from `events` (the journal a killed process left).
fn resumed(db: &Db, r: Release, events: &[crate::engine::Event], mode: ContractMode) -> H {
    let clock = FakeClock::new(events.last().map_or(START, |e| e.at_ms) + 5_000);
    let platform = FakePlatform::new(Arc::new(clock.clone()));
    let smoke = ScriptedSmoke::new();
    let rec = MemoryRecorder::new();
    rec.events.lock().unwrap().extend(events.iter().cloned());
    let plan = crate::plan::plan(&r);
    let options = db.options(&r, mode);
    let engine = Engine::restore(
        r,
        &plan,
        platform.clone(),
        Arc::new(clock.clone()),
        Box::new(rec.clone()),
        Arc::new(smoke.clone()),
        options,
        events,
    )
    .unwrap();
    H {
        engine,
        clock,
        platform,
        smoke,
        rec,
    }
}

/// The journal up to and including the first `Expanding`: the process died while
/// expand ran.
fn cut_at_expanding(h: &H) -> Vec<crate::engine::Event> {
    let events = h.events();
    let at = events
        .iter()
        .position(|e| {
            matches!(
                e.kind,
                EventKind::Migration {
                    phase: MigrationPhase::Expanding,
                    ..
                }
            )
        })
        .unwrap();
    events[..=at].to_vec()
}

#[tokio::test]
async fn a_kill_after_expand_committed_resumes_without_applying_it_again() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    let mut first = db.harness(r.clone(), ContractMode::Allow);
    first.start().await;
    first.run_for(Duration::from_secs(30)).await;
    assert_eq!(db.history(), ["expand applied"]);
    // The process died after the commit, before `Expanded` reached the journal.
    let events = cut_at_expanding(&first);
    drop(first);
    let mut h = resumed(&db, r, &events, ContractMode::Allow);
    h.finish(Duration::from_secs(600)).await;
    let expanded = h
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Migration {
                phase: MigrationPhase::Expanded,
                detail,
                ..
            } => Some(detail),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(expanded.len(), 1, "{expanded:?}");
    assert!(expanded[0].contains("already applied"), "{}", expanded[0]);
    assert_eq!(
        db.history(),
        ["expand applied", "contract applied"],
        "each stage once"
    );
    assert_eq!(h.status("customers"), ServiceStatus::Promoted);
    assert_eq!(db.columns(), ["id", "first_name", "last_name"]);
}

#[tokio::test]
async fn a_kill_mid_expand_resumes_and_applies_it_exactly_once() {
    let db = Db::new(EXPAND, None);
    let r = db.release(CUSTOMERS, false);
    // A first run that recorded `Expanding`; then the process dies inside the
    // expand transaction (after one statement, before the commit).
    let mut first = db.harness(r.clone(), ContractMode::Allow);
    first.start().await;
    first.run_for(Duration::from_secs(30)).await;
    let events = cut_at_expanding(&first);
    drop(first);
    let fresh = Db::new(EXPAND, None);
    std::fs::copy(
        fresh.dir.path().join("app.db"),
        db.dir.path().join("app.db"),
    )
    .unwrap();
    let prep = crate::migrate::PreparedMigration::new(&r.migrations[0], db.dir.path()).unwrap();
    let crash = RunOptions {
        failpoint_after_statements: Some(1),
        ..RunOptions::default()
    };
    assert!(prep.apply(Stage::Expand, &crash).is_err());
    assert!(
        db.history().is_empty(),
        "the interrupted transaction left nothing"
    );
    assert_eq!(db.columns(), ["id", "full_name"]);
    let mut h = resumed(&db, r, &events, ContractMode::Allow);
    h.finish(Duration::from_secs(600)).await;
    assert_eq!(db.history(), ["expand applied", "contract applied"]);
    assert_eq!(db.columns(), ["id", "first_name", "last_name"]);
    assert_eq!(h.status("customers"), ServiceStatus::Promoted);
}

/// A freeze window that opens while `web` (wave 1) rolls out holds the expand before
/// `customers` (wave 2) until it closes: no database change inside the window.
#[tokio::test]
async fn a_freeze_window_opening_mid_release_holds_the_expand_until_it_closes() {
    let db = Db::new(EXPAND, Some(UNDO));
    let web_pauses = "strategy = \"canary\"\nsteps = [ { set_weight = 50 }, { pause = \"3m\" } ]\n";
    let r = db.release_of(web_pauses, CUSTOMERS, true, "[\"customers\"]");
    let mut options = db.options(&r, ContractMode::Confirm);
    // START is 2023-11-14T22:13:20Z: the window opens 100 s later, for an hour.
    options.change_control = Some(crate::policy::ChangeControl {
        freeze: vec![crate::policy::FreezeWindow {
            name: "nightly".into(),
            cron: "15 22 * * *".into(),
            duration_ms: 3_600_000,
            timezone: "UTC".into(),
            environments: vec![],
            tenant_tags: vec![],
        }],
        ..Default::default()
    });
    let mut h = db.harness_with(r, options);
    h.start().await;
    h.run_for(Duration::from_secs(300)).await;
    assert_eq!(
        h.status("web"),
        ServiceStatus::Promoted,
        "web started before the window"
    );
    assert_eq!(h.status("customers"), ServiceStatus::Pending);
    assert!(
        !phases(&h).contains(&MigrationPhase::Expanding),
        "no expand inside the window: {:?}",
        phases(&h)
    );
    assert_eq!(
        db.columns(),
        ["id", "full_name"],
        "the database is untouched"
    );
    let until = h.engine.state().frozen.clone().expect("held").until_ms;
    h.run_for(Duration::from_millis(until - h.clock.now_ms() - 60_000))
        .await;
    assert_eq!(
        db.columns(),
        ["id", "full_name"],
        "still held a minute before the end"
    );
    h.run_for(Duration::from_secs(180)).await;
    assert_eq!(
        db.columns(),
        ["id", "full_name", "first_name", "last_name"],
        "expanded once the window closed"
    );
    let expanding = h
        .events()
        .into_iter()
        .find(|e| {
            matches!(
                e.kind,
                EventKind::Migration {
                    phase: MigrationPhase::Expanding,
                    ..
                }
            )
        })
        .expect("expand ran");
    assert!(
        expanding.at_ms >= until,
        "expand started after the window's end"
    );
}
