//! One writer per run: a lease row (run, holder, epoch, `expires_at` on the database's
//! clock). Taking a run over raises the epoch; every append checks the epoch and the
//! expiry inside its own transaction (`writer.rs`), so a writer with an older epoch is
//! refused by the database whatever it believes.
//!
//! The holder also keeps its own, stricter bound: a renewal sent at local monotonic time
//! `t` makes the lease good until `t + lease` locally, and the database's `expires_at` is
//! its own clock at the renewal (later than `t`) plus `lease`. So the local bound ends
//! first whatever the two wall clocks say, assuming only that the two clocks' *rates*
//! agree (drift of a few parts per million over one lease). A process stopped (SIGSTOP,
//! a VM paused) past its bound finds it passed when it runs again (the monotonic clock
//! counts the stopped time) and stops before acting.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PgStore;

/// Words every lease-loss message contains (the front ends say what it means).
pub const LEASE_LOST: &str = "lost its lease";

#[derive(Debug)]
struct LeaseState {
    /// Why the lease is lost, once it is.
    lost: Option<String>,
    /// The local (monotonic) end of the lease.
    valid_until: Instant,
}

/// The lease as its holder sees it, shared by the journal writer, the renewal thread and
/// the fenced platform: [`LeaseGuard::check`] before every write and every acting call.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    run_id: String,
    epoch: i64,
    state: Arc<Mutex<LeaseState>>,
}

impl LeaseGuard {
    pub(super) fn new(run_id: &str, epoch: i64, valid_until: Instant) -> LeaseGuard {
        LeaseGuard {
            run_id: run_id.to_string(),
            epoch,
            state: Arc::new(Mutex::new(LeaseState {
                lost: None,
                valid_until,
            })),
        }
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// `Ok` while the lease holds; once it is lost, why (and it stays lost).
    pub fn check(&self) -> Result<(), String> {
        let Ok(mut s) = self.state.lock() else {
            return Err(self.lost_text("its lease state is unreadable"));
        };
        if let Some(why) = &s.lost {
            return Err(why.clone());
        }
        if Instant::now() >= s.valid_until {
            let why = self.lost_text("the lease expired before it could be renewed");
            s.lost = Some(why.clone());
            return Err(why);
        }
        Ok(())
    }

    /// Mark the lease lost (a refused append or renewal).
    pub(super) fn lose(&self, cause: &str) -> String {
        let why = self.lost_text(cause);
        if let Ok(mut s) = self.state.lock() {
            s.lost.get_or_insert_with(|| why.clone());
        }
        why
    }

    fn renewed(&self, until: Instant) {
        if let Ok(mut s) = self.state.lock()
            && s.lost.is_none()
        {
            s.valid_until = until;
        }
    }

    fn lost_text(&self, cause: &str) -> String {
        format!(
            "the engine {LEASE_LOST} on run {} (epoch {}): {cause}; another engine may hold the run now, so this one takes no further action",
            self.run_id, self.epoch
        )
    }
}

/// Renew the lease held by `guard` every third of the lease, on a session of its own,
/// until the returned sender is dropped. A renewal the database refuses (a newer epoch,
/// or the lease already expired) loses the lease at once; one that cannot reach the
/// database is retried until the local bound passes.
pub(super) fn keep(store: &PgStore, guard: LeaseGuard) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let store = store.clone();
    let period = store.lease() / 3;
    std::thread::Builder::new()
        .name("cutover-lease".into())
        .spawn(move || {
            let mut client: Option<super::PgClient> = None;
            loop {
                match rx.recv_timeout(period) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if guard.check().is_err() {
                    return;
                }
                if client.is_none() {
                    client = store.connect().ok();
                }
                let Some(c) = client.as_mut() else { continue };
                let sent = Instant::now();
                match renew(c, &guard.run_id, guard.epoch, store.lease()) {
                    Ok(None) => guard.renewed(sent + store.lease()),
                    Ok(Some(refusal)) => {
                        let why = guard.lose(&refusal);
                        tracing::error!("{why}");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            journal = store.label(),
                            "cannot renew the journal lease: {}",
                            store.error("renew the lease in", e)
                        );
                        client = None;
                    }
                }
            }
        })
        .ok();
    tx
}

/// Renew; `Ok(Some(why))` when the database refuses (the lease is lost).
pub(super) fn renew(
    client: &mut postgres::Client,
    run_id: &str,
    epoch: i64,
    lease: Duration,
) -> Result<Option<String>, postgres::Error> {
    let ms = lease.as_millis() as i64;
    let n = client.execute(
        "UPDATE cutover_journal_leases
            SET expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond'
          WHERE run_id = $1 AND epoch = $2 AND expires_at > clock_timestamp()",
        &[&run_id, &epoch, &ms],
    )?;
    if n == 1 {
        return Ok(None);
    }
    refusal(client, run_id, epoch).map(Some)
}

/// Why the lease row no longer belongs to `epoch`.
pub(super) fn refusal<C: postgres::GenericClient>(
    client: &mut C,
    run_id: &str,
    epoch: i64,
) -> Result<String, postgres::Error> {
    let row = client.query_opt(
        "SELECT holder, epoch FROM cutover_journal_leases WHERE run_id = $1",
        &[&run_id],
    )?;
    Ok(match row {
        Some(r) => {
            let (holder, now): (String, i64) = (r.get(0), r.get(1));
            if now != epoch {
                format!("the database holds a newer epoch {now} (held by {holder})")
            } else {
                "the lease expired on the database's clock before it was renewed".into()
            }
        }
        None => "the lease row is gone".into(),
    })
}
