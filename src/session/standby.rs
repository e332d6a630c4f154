//! `cutover serve --standby --journal URL`: watch the PostgreSQL journal's unfinished runs
//! and take over one whose lease expired (its engine died, or stopped past its lease).
//!
//! Every sixth of the lease the standby lists the runs (`journal::list_runs`): a run
//! that is not finished and whose lease row expired on the database's clock is
//! `Interrupted`. The standby resumes it with the code path of `cutover resume`
//! (`spec::from_journal`, `run::run`), served on the control API as `serve --resume`
//! serves: `Journal::open` takes the lease with the epoch raised by one in one
//! transaction that locks the run's rows (the compare-and-set), so of several standbys
//! exactly one wins; the others are refused (`Leased`) and go on watching.
//!
//! Before the engine restarts, the winner journals a `takeover` entry (`record_takeover`):
//! who took over at which epoch, what it relaunches (the local platform's replicas die
//! with their host; on ECS the task sets keep serving) and where it serves: its Unix
//! socket with its host, and its `--listen` URL. `cutover ctl`/`attach` with the same
//! `--journal` read it (`follow::leader_of`) to reach the new leader, and an attached
//! console that lost its server follows it there (`follow.rs`, `remote_link.rs`). After the run ends
//! (finished, or its lease lost) the standby keeps watching until SIGINT/SIGTERM. A run
//! it could not resume (the local platform's ports still held by a stopped leader, a
//! release file gone) is tried again four leases later.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::exit::Failure;
use super::spec::{Aws, Begin, Front, Output, RunSpec, Serving};
use crate::journal::{Journal, JournalStore, NewEntry, RunState};
use crate::release::PlatformKind;

/// The journal entry a standby writes when it takes a run over.
pub const TAKEOVER_ENTRY: &str = "takeover";

/// Where a standby serves a run it took over (journaled in the `takeover` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The Unix socket, reachable on `host` only.
    pub socket: PathBuf,
    /// `http(s)://ADDR` of `--listen`, when given.
    pub url: Option<String>,
}

/// What `serve --standby` was asked: the rest of a served run's spec, minus the run.
pub struct StandbySpec {
    pub journal: JournalStore,
    pub state_dir: PathBuf,
    pub operator: String,
    pub output: Output,
    pub allow_contract: bool,
    pub aws: Aws,
    /// `--metrics-listen`, applied to every run taken over.
    pub metrics_listen: Option<String>,
    /// The control API of each run taken over (token and TLS files read again each time).
    pub serving: Box<dyn Fn() -> Result<Serving, Failure>>,
}

/// Watch `spec.journal` until SIGINT/SIGTERM, taking over every run whose lease expired.
/// Returns the exit code of the standby itself (0 once stopped by a signal).
pub fn watch(spec: StandbySpec) -> Result<u8, Failure> {
    let JournalStore::Postgres(pg) = &spec.journal else {
        return Err(Failure::invalid(format!(
            "serve --standby watches a journal in PostgreSQL; {} is the file journal of this machine, which no other machine can take over: give --journal postgres://… (or env:VAR, or CUTOVER_JOURNAL)",
            spec.journal.label()
        )));
    };
    let poll = (pg.lease() / 6).max(Duration::from_millis(50));
    // A run that could not be resumed (its ports still held, a release file gone) is tried
    // again after four leases, not at every poll.
    let backoff = pg.lease() * 4;
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    let mut stop = idle
        .block_on(async { Stop::new() })
        .map_err(|e| Failure::internal(format!("cannot watch for SIGINT/SIGTERM: {e}")))?;
    eprintln!(
        "cutover: standby watching {} for runs whose lease expired (every {} ms; lease {} ms)",
        spec.journal.label(),
        poll.as_millis(),
        pg.lease().as_millis()
    );
    // Runs that could not be resumed for another reason than a lease, and when to try again.
    let mut failed: BTreeMap<String, Instant> = BTreeMap::new();
    let mut unreachable = false;
    loop {
        let runs = match crate::journal::list_runs(&spec.journal) {
            Ok(r) => {
                if unreachable {
                    eprintln!("cutover: standby: {} answers again", spec.journal.label());
                }
                unreachable = false;
                r
            }
            Err(e) => {
                if !unreachable {
                    eprintln!("cutover: standby: cannot list the runs ({e}); retrying");
                }
                unreachable = true;
                Vec::new()
            }
        };
        // Oldest first: the run interrupted longest ago is taken over first.
        let expired = runs.iter().rev().find(|r| {
            r.state == RunState::Interrupted
                && r.damage.is_none()
                && failed.get(&r.run_id).is_none_or(|at| Instant::now() >= *at)
        });
        if let Some(run) = expired {
            let run_id = run.run_id.clone();
            match take_over(&spec, &run_id) {
                Ok(code) => eprintln!(
                    "cutover: standby: run {run_id} ended here (exit {code}); watching {} again",
                    spec.journal.label()
                ),
                Err(_) if taken_by_another(&spec.journal, &run_id) => eprintln!(
                    "cutover: standby: run {run_id} was taken over by another engine first; watching"
                ),
                Err(f) => {
                    eprintln!(
                        "cutover: standby: cannot take run {run_id} over: {}; trying again in {} s",
                        f.message,
                        backoff.as_secs_f64()
                    );
                    failed.insert(run_id, Instant::now() + backoff);
                }
            }
            if idle.block_on(stop.within(Duration::ZERO)) {
                eprintln!("cutover: standby stopped");
                return Ok(0);
            }
            continue;
        }
        if idle.block_on(stop.within(poll)) {
            eprintln!("cutover: standby stopped");
            return Ok(0);
        }
    }
}

/// After a failed takeover: whether another engine holds the run now (or finished it).
fn taken_by_another(journal: &JournalStore, run_id: &str) -> bool {
    crate::journal::list_runs(journal).is_ok_and(|runs| {
        runs.iter()
            .any(|r| r.run_id == run_id && r.state != RunState::Interrupted)
    })
}

/// Resume `run_id` as `serve --resume --run RUN` does, saying it is a takeover.
fn take_over(spec: &StandbySpec, run_id: &str) -> Result<u8, Failure> {
    let serving = (spec.serving)()?;
    let (mut release, base_dir, begin) = super::spec::from_journal(&spec.journal, Some(run_id))?;
    if let Some(addr) = &spec.metrics_listen {
        release.release.metrics_listen = Some(addr.clone());
    }
    let url = serving.tcp.as_ref().map(|(addr, _)| {
        let scheme = if serving.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}")
    });
    let Begin::Resume { run_id, .. } = begin else {
        return Err(Failure::internal("a resumed run began afresh"));
    };
    eprintln!("cutover: standby: run {run_id}'s lease expired; taking it over");
    super::run::run(RunSpec {
        aws: spec.aws.clone(),
        release,
        base_dir,
        begin: Begin::Resume {
            run_id,
            takeover: Some(Takeover {
                socket: serving.socket.clone(),
                url,
            }),
        },
        state_dir: spec.state_dir.clone(),
        journal: spec.journal.clone(),
        operator: spec.operator.clone(),
        output: spec.output,
        allow_contract: spec.allow_contract,
        front: Front::Served(serving),
        summary_extra: serde_json::json!({"served": true, "standby": true}),
    })
}

/// Journal and say the takeover of the run `journal` was just opened for: the epoch, the
/// revisions relaunched (local platform) and where the run is served now.
pub(super) fn record_takeover(
    journal: &mut Journal,
    takeover: &Takeover,
    events: &[crate::engine::Event],
    platform: PlatformKind,
) -> Result<(), Failure> {
    let epoch = journal.lease().map(|l| l.epoch());
    let holder = crate::journal::pg::holder_name();
    let state = crate::engine::ReleaseState::replay(events);
    let relaunched: Vec<(String, String)> = match platform {
        PlatformKind::Local => crate::engine::relaunched_on_resume(&state),
        // The task sets and the listener's weights stay in the account: nothing relaunched.
        _ => Vec::new(),
    };
    let said = if relaunched.is_empty() {
        match platform {
            PlatformKind::Local => "nothing to relaunch".to_string(),
            _ => "nothing relaunched: the platform kept serving the journaled split".to_string(),
        }
    } else {
        let list: Vec<String> = relaunched.iter().map(|(s, r)| format!("{s} {r}")).collect();
        format!(
            "relaunches on this host (the replicas died with the previous one): {}",
            list.join(", ")
        )
    };
    let epoch_text = epoch.map(|e| format!(" at epoch {e}")).unwrap_or_default();
    let summary = format!(
        "standby {holder} took run {} over{epoch_text}; {said}",
        journal.run_id()
    );
    journal
        .append(NewEntry {
            at_ms: crate::engine::Clock::now_ms(&crate::engine::SystemClock),
            operator: None,
            kind: TAKEOVER_ENTRY.into(),
            service: None,
            payload: serde_json::json!({
                "summary": summary,
                "holder": holder,
                "epoch": epoch,
                "relaunched": relaunched
                    .iter()
                    .map(|(s, r)| serde_json::json!({"service": s, "revision": r}))
                    .collect::<Vec<_>>(),
                "host": crate::migrate::db::default_actor(),
                "socket": takeover.socket.display().to_string(),
                "url": takeover.url,
            }),
        })
        .map_err(|e| Failure::internal(format!("journal: {e}")))?;
    eprintln!("cutover: {summary}");
    Ok(())
}

/// SIGINT/SIGTERM, registered once for the standby's whole life: a signal that arrives
/// while a run is served also ends the watch after that run.
struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    seen: bool,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            seen: false,
        })
    }

    /// Wait `d` (zero: only look); `true` when a signal came, now or before.
    async fn within(&mut self, d: Duration) -> bool {
        if self.seen {
            return true;
        }
        tokio::select! {
            biased;
            _ = self.int.recv() => self.seen = true,
            _ = self.term.recv() => self.seen = true,
            _ = tokio::time::sleep(d) => {}
        }
        self.seen
    }
}
