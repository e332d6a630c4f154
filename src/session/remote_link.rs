//! A console's link to a served release (`cutover attach`): the client's snapshot and
//! event stream adapted into the same channels the console uses in-process (a state
//! watch, an event broadcast, a command sender, plus who is attached and whether the
//! connection is up), so the console cannot tell the difference. A lost server is
//! followed (a hand-over), waited for (`cutover serve --resume`), or, for a run in a
//! PostgreSQL journal, looked for in the journal: the engine that took the run over
//! (`follow.rs`), where the link moves by itself, commands included.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::follow::{Follow, Leader};
use super::share::presence_names;
use crate::console::LinkStatus;
use crate::console::run::EngineLink;
use crate::control::{Client, ClientError, CommandOutcome, EventStream, ItemBody, Snapshot};
use crate::engine::{CommandRequest, Refusal, ReleaseState};

/// What a remote console runs on: the link, the state it starts from, and the task that
/// feeds it (ends when the server's stream ends).
pub struct RemoteLink {
    pub link: EngineLink,
    pub state: ReleaseState,
    pub feed: tokio::task::JoinHandle<String>,
}

/// Attach `client` and adapt it into an [`EngineLink`]: stream items become events, state
/// updates and presence; commands sent on the link go to the server, and the server's
/// answer (or why it could not be had) comes back on the request's reply channel.
pub async fn remote_link(client: Client) -> Result<RemoteLink, ClientError> {
    remote_link_following(client, None, None).await
}

/// [`remote_link`] that, given `follow`, looks for the run's new leader in its journal
/// when the server is lost, and moves there. `expect_run`: the run the user asked for
/// (`--run`); a server serving another one is refused.
pub async fn remote_link_following(
    client: Client,
    follow: Option<Follow>,
    expect_run: Option<&str>,
) -> Result<RemoteLink, ClientError> {
    let (mut snapshot, stream) = client.attach().await?;
    if let Some(run) = expect_run
        && snapshot.state.run_id != run
    {
        return Err(ClientError::Usage(format!(
            "{} serves run {}, not run {run}: no standby journaled a takeover of {run}, so its first engine serves it on its own state directory's socket (give that --state-dir or --socket)",
            client.endpoint(),
            snapshot.state.run_id
        )));
    }
    let mut stream = stream.with_idle_limit(IDLE_LIMIT);
    let (ev_tx, ev_rx) = broadcast::channel(4096);
    let (state_tx, state_rx) = watch::channel(snapshot.state.clone());
    let (presence_tx, presence_rx) = watch::channel(presence_names(&snapshot.attached));
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(64);
    let state = snapshot.state.clone();
    let (conn_tx, conn_rx) = watch::channel(LinkStatus::default());
    // The server commands go to: the one the feed is attached to now.
    let (client_tx, client_rx) = watch::channel(client);
    let feed = tokio::spawn(async move {
        let mut served_by: Option<String> = None;
        loop {
            let lost = loop {
                let next = stream.next().await;
                match next {
                    Ok(Some(item)) => {
                        snapshot.apply(&item);
                        match item.body {
                            ItemBody::Event { event } => {
                                let _ = ev_tx.send(event);
                                let _ = state_tx.send(snapshot.state.clone());
                            }
                            ItemBody::Presence { attached } => {
                                let _ = presence_tx.send(presence_names(&attached));
                            }
                            ItemBody::End { reason } => break Lost::Ended(reason),
                        }
                    }
                    Ok(None) => break Lost::Dropped("the server closed the stream".to_string()),
                    Err(e) => break Lost::Dropped(e.to_string()),
                }
            };
            let say = |lost: String| {
                conn_tx.send_replace(LinkStatus {
                    lost: Some(lost),
                    served_by: served_by.clone(),
                });
            };
            let current = client_tx.borrow().clone();
            let (why, patience) = match lost {
                // The release moved to a new server on the same socket: follow it.
                Lost::Ended(reason) if reason.starts_with(crate::control::HANDED_OVER) => {
                    say(format!("{reason}; following the release"));
                    (reason, HAND_OVER_PATIENCE)
                }
                // The engine ended the stream: the release is over, unless the engine
                // stopped because another one took the run over (its lease lost).
                Lost::Ended(reason) => {
                    let Some(f) = &follow else { return reason };
                    let leader = f.leader(&snapshot.state.run_id).await.ok().flatten();
                    if Follow::moves(&current, leader).is_none() {
                        return reason;
                    }
                    say(format!("{reason}; following the run to its new leader"));
                    (reason, HAND_OVER_PATIENCE)
                }
                // The server went away without a word (killed, crashed, the network):
                // keep the console, say its state may be stale, and come back when the
                // release is served again: by `cutover serve --resume`, or, for a run in
                // PostgreSQL, by the standby that takes it over once its lease expires.
                Lost::Dropped(why) => {
                    say(match follow {
                        Some(_) => format!(
                            "{why}; reconnecting, and looking in the journal for the engine that takes the run over"
                        ),
                        None => format!(
                            "{why}; reconnecting (start `cutover serve --resume` if the server died)"
                        ),
                    });
                    (why, RECONNECT_PATIENCE)
                }
            };
            let run_id = snapshot.state.run_id.clone();
            match reattach(&current, &run_id, patience, follow.as_ref(), &say).await {
                Some(back) => {
                    snapshot = back.snapshot;
                    stream = back.stream.with_idle_limit(IDLE_LIMIT);
                    let _ = state_tx.send(snapshot.state.clone());
                    let _ = presence_tx.send(presence_names(&snapshot.attached));
                    if let Some(leader) = back.moved {
                        served_by = Some(leader.to_string());
                        tracing::info!(target: "console", "leader changed: now served by {leader}");
                    }
                    client_tx.send_replace(back.client);
                    conn_tx.send_replace(LinkStatus {
                        lost: None,
                        served_by: served_by.clone(),
                    });
                }
                None => {
                    say(format!(
                        "{why}; gave up reconnecting after {}",
                        crate::duration::format_duration(patience)
                    ));
                    return why;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(req) = cmd_rx.recv().await {
            let client = client_rx.borrow().clone();
            tokio::spawn(async move {
                let name = req.command.to_string();
                let reply = match client.command(req.command, req.note).await {
                    Ok(CommandOutcome::Accepted { message, .. }) => Ok(message),
                    Ok(CommandOutcome::Refused(r)) => Err(r),
                    Err(e) => Err(Refusal {
                        command: name,
                        reason: e.to_string(),
                    }),
                };
                if let Some(tx) = req.reply {
                    let _ = tx.send(reply);
                }
            });
        }
    });
    Ok(RemoteLink {
        link: EngineLink {
            commands: cmd_tx,
            events: ev_rx,
            state: state_rx,
            telemetry: None,
            presence: Some(presence_rx),
            connection: Some(conn_rx),
            engine_stopped: None,
        },
        state,
        feed,
    })
}

/// How the server's stream ended.
enum Lost {
    /// The server said why (release over, handed over to another server).
    Ended(String),
    /// The connection broke without a word.
    Dropped(String),
}

/// Silence on the stream (keep-alives come every 5 s) that counts as a lost connection.
const IDLE_LIMIT: Duration = Duration::from_secs(15);
/// How long to wait for the server that takes a handed-over release.
const HAND_OVER_PATIENCE: Duration = Duration::from_secs(60);
/// How long to keep trying after the server vanished (someone may have to start
/// `cutover serve --resume` first).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// A server attached again after the link lost its own.
struct Reattached {
    client: Client,
    snapshot: Snapshot,
    stream: EventStream,
    /// Set when it is another engine than before (a standby took the run over).
    moved: Option<Leader>,
}

/// Attach again to a server for the same run, trying for `patience` (every 100 ms at
/// first, backing off to every 2 s): on the same endpoint, or, with `follow`, where the
/// journal says the run is served now when that is somewhere else. Why a journaled
/// leader cannot be reached (no token file for its URL) goes to `say`, once.
async fn reattach(
    client: &Client,
    run_id: &str,
    patience: Duration,
    follow: Option<&Follow>,
    say: &(dyn Fn(String) + Sync),
) -> Option<Reattached> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(100);
    let mut told: Option<String> = None;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
        let mut target = client.clone();
        let mut moved = None;
        if let Some(f) = follow {
            let problem = match f.leader(run_id).await {
                Ok(leader) => match Follow::moves(client, leader) {
                    Some(leader) => match f.client_for(client, &leader) {
                        Ok(c) => {
                            target = c;
                            moved = Some(leader);
                            None
                        }
                        Err(e) => Some(e),
                    },
                    None => None,
                },
                Err(e) => Some(format!("cannot look for the run's leader: {e}")),
            };
            if let Some(p) = problem
                && told.as_ref() != Some(&p)
            {
                tracing::warn!(target: "console", "{p}");
                say(p.clone());
                told = Some(p);
            }
        }
        // A server that accepts but does not answer (still starting, or stuck) must not
        // hold the loop past its patience.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(Ok((snapshot, stream))) = tokio::time::timeout(left, target.attach()).await
            && snapshot.state.run_id == run_id
        {
            return Some(Reattached {
                client: target,
                snapshot,
                stream,
                moved,
            });
        }
    }
    None
}
