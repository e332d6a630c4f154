//! A console's link to a served release (`cutover attach`): the client's snapshot and
//! event stream adapted into the same channels the console uses in-process (a state
//! watch, an event broadcast, a command sender, plus who is attached and whether the
//! connection is up), so the console cannot tell the difference. A lost server is
//! followed (a hand-over) or waited for (`cutover serve --resume`).

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::share::presence_names;
use crate::console::run::EngineLink;
use crate::control::{Client, ClientError, CommandOutcome, EventStream, ItemBody};
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
    let (mut snapshot, stream) = client.attach().await?;
    let mut stream = stream.with_idle_limit(IDLE_LIMIT);
    let (ev_tx, ev_rx) = broadcast::channel(4096);
    let (state_tx, state_rx) = watch::channel(snapshot.state.clone());
    let (presence_tx, presence_rx) = watch::channel(presence_names(&snapshot.attached));
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(64);
    let state = snapshot.state.clone();
    let (conn_tx, conn_rx) = watch::channel::<Option<String>>(None);
    let feed_client = client.clone();
    let feed = tokio::spawn(async move {
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
            let (why, patience) = match lost {
                // The release moved to a new server on the same socket: follow it.
                Lost::Ended(reason) if reason.starts_with(crate::control::HANDED_OVER) => {
                    let _ = conn_tx.send(Some(format!("{reason}; following the release")));
                    (reason, HAND_OVER_PATIENCE)
                }
                Lost::Ended(reason) => return reason,
                // The server went away without a word (killed, crashed, the network):
                // keep the console, say its state may be stale, and come back when the
                // release is served again (`cutover serve --resume`).
                Lost::Dropped(why) => {
                    let _ = conn_tx.send(Some(format!(
                        "{why}; reconnecting (start `cutover serve --resume` if the server died)"
                    )));
                    (why, RECONNECT_PATIENCE)
                }
            };
            match reattach(&feed_client, &snapshot.state.run_id, patience).await {
                Some((snap, s)) => {
                    snapshot = snap;
                    stream = s.with_idle_limit(IDLE_LIMIT);
                    let _ = state_tx.send(snapshot.state.clone());
                    let _ = presence_tx.send(presence_names(&snapshot.attached));
                    let _ = conn_tx.send(None);
                }
                None => {
                    let _ = conn_tx.send(Some(format!(
                        "{why}; gave up reconnecting after {}",
                        crate::duration::format_duration(patience)
                    )));
                    return why;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(req) = cmd_rx.recv().await {
            let client = client.clone();
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

/// Attach again to a server for the same run on the same endpoint, trying for
/// `patience` (every 100 ms at first, backing off to every 2 s).
async fn reattach(
    client: &Client,
    run_id: &str,
    patience: Duration,
) -> Option<(crate::control::Snapshot, EventStream)> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(100);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
        // A server that accepts but does not answer (still starting, or stuck) must not
        // hold the loop past its patience.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(Ok((snap, stream))) = tokio::time::timeout(left, client.attach()).await
            && snap.state.run_id == run_id
        {
            return Some((snap, stream));
        }
    }
    None
}
