//! Writing one run in PostgreSQL under its lease. An append is one transaction that
//! locks the run's lease row, refuses when the row's epoch is not this writer's or the
//! lease expired (on the database's clock), and inserts the batch's lines; the engine
//! acts only after the commit returned (`synchronous_commit = on` for the session). A
//! connection lost during an append is reconnected once: what the database holds then
//! decides (the batch committed: done; nothing of it: appended again under the same
//! checks; anything else: the journal stops).

use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Instant;

use super::lease::{self, LeaseGuard};
use super::{PgClient, PgStore, holder_name, off_runtime};
use crate::journal::{JournalError, RunMeta};

pub(crate) struct PgWriter {
    store: PgStore,
    /// In a mutex only so that a `Journal` stays `Sync`; taken with `get_mut`.
    client: Mutex<PgClient>,
    run_id: String,
    guard: LeaseGuard,
    _keeper: mpsc::Sender<()>,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgWriter({} {} epoch {})",
            self.store.label(),
            self.run_id,
            self.guard.epoch()
        )
    }
}

fn lease_ms(store: &PgStore) -> i64 {
    store.lease().as_millis() as i64
}

impl PgWriter {
    /// Insert a new run (record and lease at epoch 1) in one transaction; `None` when
    /// the run id is taken (the caller picks another).
    pub(crate) fn create(
        store: &PgStore,
        meta: &RunMeta,
    ) -> Result<Option<PgWriter>, JournalError> {
        let mut client = store.connect()?;
        let text = serde_json::to_string(meta)?;
        let started = meta.started_ms as i64;
        let holder = holder_name();
        let ms = lease_ms(store);
        let sent = Instant::now();
        let created = off_runtime(|| -> Result<bool, postgres::Error> {
            let mut tx = client.transaction()?;
            let n = tx.execute(
                "INSERT INTO cutover_journal_runs (run_id, started_ms, meta) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id) DO NOTHING",
                &[&meta.run_id, &started, &text],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO cutover_journal_leases (run_id, holder, epoch, expires_at)
                 VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond')",
                &[&meta.run_id, &holder, &ms],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .map_err(|e| store.error("create a run in", e))?;
        if !created {
            return Ok(None);
        }
        Ok(Some(PgWriter::holding(
            store,
            client,
            &meta.run_id,
            1,
            sent,
        )))
    }

    fn holding(
        store: &PgStore,
        client: PgClient,
        run_id: &str,
        epoch: i64,
        sent: Instant,
    ) -> PgWriter {
        let guard = LeaseGuard::new(run_id, epoch, sent + store.lease());
        let keeper = lease::keep(store, guard.clone());
        PgWriter {
            store: store.clone(),
            client: Mutex::new(client),
            run_id: run_id.to_string(),
            guard,
            _keeper: keeper,
        }
    }

    /// Take run `run_id` over: refused while another holder's lease is unexpired;
    /// otherwise the epoch goes up by one. Returns the writer, the run's record and its
    /// stored lines (each followed by a newline, as the file journal holds them).
    pub(crate) fn open(
        store: &PgStore,
        run_id: &str,
    ) -> Result<(PgWriter, String, Vec<u8>), JournalError> {
        let mut client = store.connect()?;
        let holder = holder_name();
        let ms = lease_ms(store);
        let sent = Instant::now();
        enum Taken {
            Unknown,
            Held(String, i64, i64),
            Mine(i64, String),
        }
        let taken = off_runtime(|| -> Result<Taken, postgres::Error> {
            let mut tx = client.transaction()?;
            let Some(row) = tx.query_opt(
                "SELECT meta FROM cutover_journal_runs WHERE run_id = $1 FOR UPDATE",
                &[&run_id],
            )?
            else {
                return Ok(Taken::Unknown);
            };
            let meta: String = row.get(0);
            let lease = tx.query_opt(
                "SELECT holder, epoch, expires_at > clock_timestamp(),
                        (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint
                   FROM cutover_journal_leases WHERE run_id = $1 FOR UPDATE",
                &[&run_id],
            )?;
            let epoch = match lease {
                Some(r) if r.get::<_, bool>(2) => {
                    return Ok(Taken::Held(r.get(0), r.get(1), r.get(3)));
                }
                Some(r) => {
                    let next: i64 = r.get::<_, i64>(1) + 1;
                    tx.execute(
                        "UPDATE cutover_journal_leases
                            SET holder = $2, epoch = $3,
                                expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond'
                          WHERE run_id = $1",
                        &[&run_id, &holder, &next, &ms],
                    )?;
                    next
                }
                None => {
                    tx.execute(
                        "INSERT INTO cutover_journal_leases (run_id, holder, epoch, expires_at)
                         VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond')",
                        &[&run_id, &holder, &ms],
                    )?;
                    1
                }
            };
            tx.commit()?;
            Ok(Taken::Mine(epoch, meta))
        })
        .map_err(|e| store.error("take the lease of a run in", e))?;
        let (epoch, meta) = match taken {
            Taken::Unknown => {
                return Err(JournalError::UnknownPgRun {
                    journal: store.label().to_string(),
                    run_id: run_id.to_string(),
                });
            }
            Taken::Held(holder, epoch, left_ms) => {
                return Err(JournalError::Leased {
                    run_id: run_id.to_string(),
                    holder,
                    epoch,
                    left_ms: left_ms.max(0) as u64,
                });
            }
            Taken::Mine(epoch, meta) => (epoch, meta),
        };
        let bytes = super::reader::lines_of(&mut client, run_id)
            .map_err(|e| store.error("read a run from", e))?;
        tracing::info!(
            run_id,
            epoch,
            journal = store.label(),
            "journal lease taken"
        );
        Ok((
            PgWriter::holding(store, client, run_id, epoch, sent),
            meta,
            bytes,
        ))
    }

    pub(crate) fn guard(&self) -> &LeaseGuard {
        &self.guard
    }

    /// Append `lines` (each without its newline) as seqs `first_seq..`, committed before
    /// this returns.
    pub(crate) fn append(&mut self, first_seq: u64, lines: &[&[u8]]) -> Result<(), JournalError> {
        self.guard.check().map_err(JournalError::LeaseLost)?;
        // The injected failing append (`CUTOVER_FAIL_APPEND_AT`) fails before anything is
        // sent, once per append (not again on the reconnect below), as a failing database
        // does: a database error, not a lost lease.
        #[cfg(feature = "crash-hooks")]
        if let Some(err) = crate::faults::before_append() {
            return Err(self
                .store
                .error("append to", format!("injected failure: {err}")));
        }
        let texts: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        match self.try_append(first_seq, &texts) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refusal)) => Err(JournalError::LeaseLost(self.guard.lose(&refusal))),
            Err(e) => {
                tracing::warn!(
                    run_id = %self.run_id,
                    "journal append failed ({}); reconnecting to see what committed",
                    self.store.error("append to", &e)
                );
                self.client = Mutex::new(self.store.connect()?);
                let held = self.stored_from(first_seq)?;
                if held == texts {
                    return Ok(());
                }
                // Stopped inside the transaction past the lease (its session ended by the
                // server), this writer may find a newer epoch's entries at its seq: that is
                // the lease lost, not a damaged journal.
                self.guard.check().map_err(JournalError::LeaseLost)?;
                if let Some(refusal) = self.newer_epoch()? {
                    return Err(JournalError::LeaseLost(self.guard.lose(&refusal)));
                }
                if !held.is_empty() {
                    return Err(self.store.error(
                        "append to",
                        format!(
                            "after a lost connection the database holds other entries from seq {first_seq} on"
                        ),
                    ));
                }
                match self.try_append(first_seq, &texts) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(refusal)) => Err(JournalError::LeaseLost(self.guard.lose(&refusal))),
                    Err(e) => Err(self.store.error("append to", e)),
                }
            }
        }
    }

    /// One append transaction: `Ok(Err(why))` when the lease check refuses it.
    fn try_append(
        &mut self,
        first_seq: u64,
        texts: &[String],
    ) -> Result<Result<(), String>, postgres::Error> {
        let (run_id, epoch) = (self.run_id.as_str(), self.guard.epoch());
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        off_runtime(|| {
            let mut tx = client.transaction()?;
            let ok = tx
                .query_opt(
                    "SELECT 1 FROM cutover_journal_leases
                      WHERE run_id = $1 AND epoch = $2 AND expires_at > clock_timestamp()
                      FOR UPDATE",
                    &[&run_id, &epoch],
                )?
                .is_some();
            if !ok {
                let why = lease::refusal(&mut tx, run_id, epoch)?;
                return Ok(Err(format!("an append was refused: {why}")));
            }
            for (i, line) in texts.iter().enumerate() {
                let seq = (first_seq + i as u64) as i64;
                tx.execute(
                    "INSERT INTO cutover_journal_entries (run_id, seq, epoch, line)
                     VALUES ($1, $2, $3, $4)",
                    &[&run_id, &seq, &epoch, line],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    /// Why the lease row no longer carries this writer's epoch, if it does not.
    fn newer_epoch(&mut self) -> Result<Option<String>, JournalError> {
        let (run_id, epoch) = (self.run_id.as_str(), self.guard.epoch());
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let now: Option<i64> = off_runtime(|| {
            client
                .query_opt(
                    "SELECT epoch FROM cutover_journal_leases WHERE run_id = $1",
                    &[&run_id],
                )
                .map(|r| r.map(|r| r.get(0)))
        })
        .map_err(|e| self.store.error("read the lease from", e))?;
        if now == Some(epoch) {
            return Ok(None);
        }
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        off_runtime(|| lease::refusal(&mut **client, run_id, epoch))
            .map(|why| Some(format!("an append was refused: {why}")))
            .map_err(|e| self.store.error("read the lease from", e))
    }

    fn stored_from(&mut self, first_seq: u64) -> Result<Vec<String>, JournalError> {
        let (run_id, from) = (self.run_id.as_str(), first_seq as i64);
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        off_runtime(|| {
            client.query(
                "SELECT line FROM cutover_journal_entries WHERE run_id = $1 AND seq >= $2 ORDER BY seq",
                &[&run_id, &from],
            )
        })
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .map_err(|e| self.store.error("read a run from", e))
    }

    /// Store the finished run's record under the same lease check, then let the lease go.
    pub(crate) fn finish(&mut self, meta: &RunMeta) -> Result<(), JournalError> {
        self.guard.check().map_err(JournalError::LeaseLost)?;
        let text = serde_json::to_string(meta)?;
        let (run_id, epoch) = (self.run_id.as_str(), self.guard.epoch());
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let r = off_runtime(|| -> Result<Result<(), String>, postgres::Error> {
            let mut tx = client.transaction()?;
            let ok = tx
                .query_opt(
                    "SELECT 1 FROM cutover_journal_leases
                      WHERE run_id = $1 AND epoch = $2 AND expires_at > clock_timestamp()
                      FOR UPDATE",
                    &[&run_id, &epoch],
                )?
                .is_some();
            if !ok {
                let why = lease::refusal(&mut tx, run_id, epoch)?;
                return Ok(Err(format!("finishing the run was refused: {why}")));
            }
            tx.execute(
                "UPDATE cutover_journal_runs SET meta = $2 WHERE run_id = $1",
                &[&run_id, &text],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .map_err(|e| self.store.error("finish a run in", e))?;
        r.map_err(|refusal| JournalError::LeaseLost(self.guard.lose(&refusal)))
    }
}

impl Drop for PgWriter {
    /// Let the lease go at once (a stopped engine, a hand-over, a finished run), so a
    /// resume need not wait for it to expire. Only this epoch's row is touched.
    fn drop(&mut self) {
        let (run_id, epoch) = (self.run_id.as_str(), self.guard.epoch());
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = off_runtime(|| {
            client.execute(
                "UPDATE cutover_journal_leases SET expires_at = clock_timestamp()
                  WHERE run_id = $1 AND epoch = $2 AND expires_at > clock_timestamp()",
                &[&run_id, &epoch],
            )
        });
    }
}

/// An imported, finished run (`cutover journal import`): its record and its stored lines
/// in one transaction, at epoch 0 and without a lease (nothing writes it again).
pub(crate) fn insert_finished(
    store: &PgStore,
    meta: &RunMeta,
    lines: &[String],
) -> Result<(), JournalError> {
    let mut client = store.connect()?;
    let text = serde_json::to_string(meta)?;
    let started = meta.started_ms as i64;
    off_runtime(|| -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        tx.execute(
            "INSERT INTO cutover_journal_runs (run_id, started_ms, meta) VALUES ($1, $2, $3)",
            &[&meta.run_id, &started, &text],
        )?;
        let insert = tx.prepare(
            "INSERT INTO cutover_journal_entries (run_id, seq, epoch, line) VALUES ($1, $2, 0, $3)",
        )?;
        for (i, line) in lines.iter().enumerate() {
            let seq = i as i64 + 1;
            tx.execute(&insert, &[&meta.run_id, &seq, line])?;
        }
        tx.commit()
    })
    .map_err(|e| store.error("import a run into", e))
}
