//! Sharing a run on the control API: the socket of a state directory, who is attached,
//! and the in-process console's release served on `STATE_DIR/cutover.sock` like
//! `cutover serve` serves its own (the same hub and command channel).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::control::{
    Attached, ControlServer, Hub, ItemBody, Listeners, PresenceGuard, Role, SOCKET_NAME,
    ServerConfig,
};

/// The socket of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// `alice`, `bob (read-only)`.
pub fn presence_names(attached: &[Attached]) -> Vec<String> {
    attached
        .iter()
        .map(|a| match a.role {
            Role::Operator => a.operator.clone(),
            Role::ReadOnly => format!("{} (read-only)", a.operator),
        })
        .collect()
}

/// The in-process console's release, shared over the control API like `cutover serve`
/// shares its own: the same hub and command channel, a 0600 socket in the state dir.
pub struct Shared {
    pub server: ControlServer,
    /// This console on the presence list (dropping it detaches).
    pub guard: PresenceGuard,
    pub presence: watch::Receiver<Vec<String>>,
    pub feed: tokio::task::JoinHandle<()>,
    /// `cutover attach --state-dir D`
    pub attach: String,
}

/// A path as a shell word (quoted when it has anything but safe characters).
pub fn shell_word(path: &Path) -> String {
    let s = path.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command another terminal runs to attach to the release in `state_dir`.
pub fn attach_command(state_dir: &Path) -> String {
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    format!("cutover attach --state-dir {}", shell_word(&dir))
}

/// Serve the session's hub and command channel on `STATE_DIR/cutover.sock` and put this
/// console on the presence list. `None` (with a warning in the log) when the socket is
/// taken by another live server: the console still runs, unshared.
pub async fn share(
    state_dir: &Path,
    hub: &Arc<Hub>,
    commands: &tokio::sync::mpsc::Sender<crate::engine::CommandRequest>,
    operator: &str,
) -> Option<Shared> {
    let socket = socket_path(state_dir);
    let listeners = match Listeners::bind(ServerConfig {
        socket: socket.clone(),
        tcp: None,
    })
    .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(target: "console", "not shared (no `cutover attach` from other terminals): {e}");
            return None;
        }
    };
    let server = ControlServer::start(listeners, hub.clone(), commands.clone());
    let from = hub.snapshot().seq;
    let (sub, guard) = match hub.subscribe(
        from,
        Some((operator.to_string(), Role::Operator, "console")),
    ) {
        Ok((sub, Some(guard))) => (sub, guard),
        Ok((_, None)) => return None,
        Err(e) => {
            tracing::warn!(target: "console", "presence: {e}");
            return None;
        }
    };
    let (tx, presence) = watch::channel(presence_names(&hub.attached()));
    let mut live = sub.live;
    let h = hub.clone();
    let feed = tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(item) => match &item.body {
                    ItemBody::Presence { attached } => {
                        let _ = tx.send(presence_names(attached));
                    }
                    ItemBody::End { .. } => break,
                    ItemBody::Event { .. } => {}
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(presence_names(&h.attached()));
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    Some(Shared {
        server,
        guard,
        presence,
        feed,
        attach: attach_command(state_dir),
    })
}

impl Shared {
    /// Stop serving: every attached client gets `end` with `reason`; the socket goes.
    pub async fn stop(self, reason: &str) {
        drop(self.guard);
        self.feed.abort();
        self.server.shutdown(reason).await;
    }
}
