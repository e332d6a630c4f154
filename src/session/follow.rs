//! Which engine serves a run now, for the clients that reach it (`cutover ctl`/`attach
//! --run RUN`) and for an attached console that lost its server (issue 19: "attached
//! consoles follow the new leader").
//!
//! The rule: the newest `takeover` entry in the run's journal names where the engine that
//! took the run over serves it (`standby::record_takeover`): its `--listen` URL, else its
//! Unix socket on its host. No such entry: the run's first engine serves it on its own
//! state directory's socket. A console that lost its server moves to the journaled
//! leader when that is not where it already is; until a takeover is journaled it keeps
//! trying where it was (`cutover serve --resume` on the same socket comes back there). A
//! TCP leader is reached with the token of the same `--token-file`, read again at the
//! move. The console only shows what was decided here (`LinkStatus::served_by`); nothing
//! of the journal's URL reaches it.

use std::path::PathBuf;
use std::time::Duration;

use super::standby::TAKEOVER_ENTRY;
use crate::control::{Client, Endpoint};
use crate::journal::JournalStore;

/// Where the engine holding a run serves it, read from the newest `takeover` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub endpoint: Endpoint,
    /// The lease's epoch the taking-over engine writes under.
    pub epoch: Option<i64>,
    /// The host of its Unix socket (`user@host`, as journaled).
    pub host: Option<String>,
}

impl std::fmt::Display for Leader {
    /// `http://10.0.0.7:7070 (epoch 2)`, or `/srv/state/cutover.sock on ops@host-b (epoch 2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.endpoint)?;
        if let (Endpoint::Unix(_), Some(host)) = (&self.endpoint, &self.host) {
            write!(f, " on {host}")?;
        }
        if let Some(e) = self.epoch {
            write!(f, " (epoch {e})")?;
        }
        Ok(())
    }
}

/// The engine serving run `run_id` now, when a standby took it over (`None`: none did,
/// so its first engine serves it on its own state directory's socket).
pub fn leader_of(journal: &JournalStore, run_id: &str) -> Result<Option<Leader>, String> {
    let Some(entry) =
        crate::journal::newest_entry(journal, run_id, TAKEOVER_ENTRY).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let p = &entry.payload;
    let endpoint = match (p["url"].as_str(), p["socket"].as_str()) {
        (Some(url), _) => Endpoint::from_url(url).map_err(|e| {
            format!(
                "run {run_id}'s takeover entry (seq {}) names an address that cannot be reached: {e}",
                entry.seq
            )
        })?,
        (None, Some(socket)) => Endpoint::Unix(PathBuf::from(socket)),
        (None, None) => {
            return Err(format!(
                "run {run_id}'s takeover entry (seq {}) names neither a URL nor a socket",
                entry.seq
            ));
        }
    };
    Ok(Some(Leader {
        endpoint,
        epoch: p["epoch"].as_i64(),
        host: p["host"].as_str().map(str::to_string),
    }))
}

/// How long one look in the journal may take before the console tries its server again.
const LOOKUP_LIMIT: Duration = Duration::from_secs(10);

/// What an attached console needs to follow its run to another engine: the run's journal
/// (PostgreSQL: a file journal is never taken over by another machine) and the token
/// file for a leader that serves on TCP.
#[derive(Clone)]
pub struct Follow {
    journal: JournalStore,
    token_file: Option<PathBuf>,
    /// `--operator`: which entry of a `[[token]]` file is this client's.
    token_name: Option<String>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("journal", &self.journal.label())
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl Follow {
    /// `None` for the file journal: a run journaled in files is served again only on its
    /// own machine's socket (`serve --resume`), which a console already retries.
    pub fn new(
        journal: JournalStore,
        token_file: Option<PathBuf>,
        token_name: Option<String>,
    ) -> Option<Follow> {
        matches!(journal, JournalStore::Postgres(_)).then_some(Follow {
            journal,
            token_file,
            token_name,
        })
    }

    /// [`leader_of`] off the async runtime, bounded by [`LOOKUP_LIMIT`].
    pub async fn leader(&self, run_id: &str) -> Result<Option<Leader>, String> {
        let journal = self.journal.clone();
        let run = run_id.to_string();
        let look = tokio::task::spawn_blocking(move || leader_of(&journal, &run));
        match tokio::time::timeout(LOOKUP_LIMIT, look).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => Err(format!("the journal lookup failed: {e}")),
            Err(_) => Err(format!(
                "the journal did not answer within {} s",
                LOOKUP_LIMIT.as_secs()
            )),
        }
    }

    /// Where `current` should go now: `Some(leader)` when the journal names a leader
    /// somewhere else than `current`'s endpoint.
    pub fn moves(current: &Client, leader: Option<Leader>) -> Option<Leader> {
        leader.filter(|l| l.endpoint != *current.endpoint())
    }

    /// `from`, pointed at `leader`: a TCP leader takes the token of the same token file
    /// (read again now), a Unix socket none.
    pub fn client_for(&self, from: &Client, leader: &Leader) -> Result<Client, String> {
        let token = match (&leader.endpoint, &self.token_file) {
            (Endpoint::Unix(_), _) => None,
            (_, Some(file)) => Some(
                crate::control::tokens::client_token(file, self.token_name.as_deref())
                    .map_err(|e| format!("--token-file: {e}"))?,
            ),
            (_, None) => {
                return Err(format!(
                    "the run is served by {leader} now, which answers token holders only: attach again with --run and --token-file"
                ));
            }
        };
        Ok(from.moved_to(leader.endpoint.clone(), token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(endpoint: Endpoint, epoch: Option<i64>) -> Leader {
        Leader {
            endpoint,
            epoch,
            host: Some("ops@host-b".into()),
        }
    }

    #[test]
    fn a_leader_reads_as_where_it_serves_and_its_epoch() {
        let tcp = leader(Endpoint::Tcp("10.0.0.7:7070".into()), Some(2));
        assert_eq!(tcp.to_string(), "http://10.0.0.7:7070 (epoch 2)");
        let unix = leader(Endpoint::Unix("/srv/s/cutover.sock".into()), Some(3));
        assert_eq!(
            unix.to_string(),
            "/srv/s/cutover.sock on ops@host-b (epoch 3)"
        );
    }

    #[test]
    fn a_client_moves_only_to_a_leader_elsewhere() {
        let here = Client::new(Endpoint::Unix("/a/cutover.sock".into()), "alice");
        assert_eq!(Follow::moves(&here, None), None);
        let same = leader(Endpoint::Unix("/a/cutover.sock".into()), Some(2));
        assert_eq!(Follow::moves(&here, Some(same)), None);
        let there = leader(Endpoint::Tcp("127.0.0.1:7071".into()), Some(2));
        assert_eq!(Follow::moves(&here, Some(there.clone())), Some(there));
    }

    #[test]
    fn a_tcp_leader_needs_the_token_file_and_a_socket_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = JournalStore::resolve(
            Some("postgres://cutover@127.0.0.1:5432/deploys"),
            dir.path(),
        )
        .unwrap();
        let here = Client::new(Endpoint::Unix("/a/cutover.sock".into()), "alice");
        let tcp = leader(Endpoint::Tcp("127.0.0.1:7071".into()), Some(2));
        let bare = Follow::new(store.clone(), None, None).unwrap();
        let e = bare.client_for(&here, &tcp).unwrap_err();
        assert!(e.contains("--token-file") && e.contains("epoch 2"), "{e}");
        let unix = leader(Endpoint::Unix("/b/cutover.sock".into()), Some(2));
        let moved = bare.client_for(&here, &unix).unwrap();
        assert_eq!(moved.endpoint(), &unix.endpoint);
        assert_eq!(moved.operator(), "alice");

        let file = dir.path().join("token");
        std::fs::write(&file, "alice-token-0123456789\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let with = Follow::new(store, Some(file), None).unwrap();
        let moved = with.client_for(&here, &tcp).unwrap();
        assert_eq!(moved.endpoint(), &tcp.endpoint);
        assert!(
            format!("{moved:?}").contains("(set)"),
            "the token is carried"
        );
    }

    #[test]
    fn a_file_journal_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let files = JournalStore::resolve(None, dir.path()).unwrap();
        assert!(Follow::new(files, None, None).is_none());
    }
}
