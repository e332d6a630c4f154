//! The console as the front end of `deploy`, `resume` and `demo` when stdout is a
//! terminal: the same session as the headless path (platform, engine, journal), with the
//! console in place of the line printer.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::Output;
use super::deploy::{Session, print_summary};
use crate::console::app::{QuitChoice, Settings};
use crate::console::config::Choice;
use crate::console::{ConsoleOptions, EngineLink};
use crate::control::{
    Client, ControlServer, Endpoint, Hub, ItemBody, Listeners, PresenceGuard, Role, ServerConfig,
};
use crate::engine::telemetry::{SamplerOptions, spawn_sampler};
use crate::engine::{EngineHandle, ReleaseState, ReleaseStatus, SystemClock};
use crate::release::Release;

/// Console flags shared by `deploy`, `resume` and `demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UiArgs {
    /// Watch only: hide every action that changes the release.
    #[arg(long)]
    pub read_only: bool,
    /// Theme: dark, light, high-contrast, mono, or one of yours [default: dark].
    #[arg(long, env = "CUTOVER_THEME")]
    pub theme: Option<String>,
    /// Shipped keymap under your keymap.toml: default or vim.
    #[arg(long, env = "CUTOVER_KEYMAP")]
    pub keymap: Option<String>,
    /// No colours (the mono theme); also when NO_COLOR is set.
    #[arg(long)]
    pub no_color: bool,
    /// Click to focus panes and select services, wheel to scroll.
    #[arg(long)]
    pub mouse: bool,
    /// Read keymap.toml and themes/ from here instead of the config directory.
    #[arg(long, env = "CUTOVER_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Whether to open the console: not `--headless`, text output, stdout a terminal.
pub fn wanted(headless: bool, output: Output) -> bool {
    !headless && output == Output::Text && std::io::stdout().is_terminal()
}

/// Log to the console's log pane instead of stderr (call first, instead of
/// `init_logging`).
pub fn init_logging() {
    crate::console::terminal::init_logging();
}

/// How a console session ended.
pub(crate) struct ConsoleEnd {
    /// The exit code (`deploy`'s; 0 after a hand-over to the background).
    pub code: u8,
    /// The release goes on in a background `cutover serve --resume`.
    pub handed_over: bool,
}

/// Run the console on a session until the user quits, then end the session: when the
/// release finished, print the summary (as the headless path does); when the user left
/// it paused, say how to resume; when they chose "keep running in the background" (or
/// the terminal hung up), hand the release over to a background `cutover serve`.
pub(crate) async fn finish_with_console(
    session: Session,
    release: &Release,
    operator: &str,
    ui: &UiArgs,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> u8 {
    run_console(session, release, operator, ui, extra)
        .await
        .code
}

/// Write to stderr without panicking (after a hang-up the terminal is gone).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The in-process console's release, shared over the control API like `cutover serve`
/// shares its own: the same hub and command channel, a 0600 socket in the state dir.
struct Shared {
    server: ControlServer,
    /// This console on the presence list (dropping it detaches).
    guard: PresenceGuard,
    presence: watch::Receiver<Vec<String>>,
    feed: tokio::task::JoinHandle<()>,
    /// `cutover attach --state-dir D`
    attach: String,
}

/// A path as a shell word (quoted when it has anything but safe characters).
fn shell_word(path: &Path) -> String {
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
async fn share(
    state_dir: &Path,
    hub: &Arc<Hub>,
    commands: &tokio::sync::mpsc::Sender<crate::engine::CommandRequest>,
    operator: &str,
) -> Option<Shared> {
    let socket = super::serve::socket_path(state_dir);
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
    let (tx, presence) = watch::channel(super::attach::presence_names(&hub.attached()));
    let mut live = sub.live;
    let h = hub.clone();
    let feed = tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(item) => match &item.body {
                    ItemBody::Presence { attached } => {
                        let _ = tx.send(super::attach::presence_names(attached));
                    }
                    ItemBody::End { .. } => break,
                    ItemBody::Event { .. } => {}
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(super::attach::presence_names(&h.attached()));
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
    async fn stop(self, reason: &str) {
        drop(self.guard);
        self.feed.abort();
        self.server.shutdown(reason).await;
    }
}

/// From the instant of a SIGHUP, stdout and stderr go to /dev/null: the terminal is
/// gone, and whatever still writes to it (the console giving the terminal back, ratatui's
/// cursor) would panic on the dead descriptor. Done in the signal handler itself (`dup2`
/// is async-signal-safe), so it happens before any task notices the hang-up; tokio's own
/// SIGHUP stream still fires (the registry chains handlers).
fn silence_output_on_hangup() {
    use std::os::fd::IntoRawFd;
    let Ok(devnull) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    // Kept open for the life of the process.
    let fd = devnull.into_raw_fd();
    // SAFETY: the action only calls dup2, which is async-signal-safe, on descriptors
    // that stay valid.
    let registered = unsafe {
        signal_hook_registry::register(libc::SIGHUP, move || {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        })
    };
    if let Err(e) = registered {
        tracing::warn!(target: "console", "cannot watch for a hang-up: {e}");
    }
}

/// After a hang-up, what would have gone to the terminal goes to the background server's
/// log (`STATE_DIR/serve-PID.log`, PID this process's).
fn log_after_hangup(state_dir: &Path, lines: &[String]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(format!("serve-{}.log", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        for l in lines {
            let _ = writeln!(f, "{l}");
        }
    }
}

/// SIGHUP: the terminal (or the SSH session, or tmux pane) went away.
async fn hangup(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Run the console on a session (see [`finish_with_console`]).
pub(crate) async fn run_console(
    session: Session,
    release: &Release,
    operator: &str,
    ui: &UiArgs,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> ConsoleEnd {
    let Session {
        handle,
        platform,
        printer,
        notifier,
        run_id,
        output,
        hub,
        state_dir,
        contract,
    } = session;
    printer.abort();
    let EngineHandle {
        commands,
        events,
        state,
        join,
    } = handle;
    let shared = share(&state_dir, &hub, &commands, operator).await;
    // Registered before the console takes the terminal: closing it hands the release
    // over to the background instead of killing it.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    silence_output_on_hangup();
    let mut hung_up = false;
    let clock = Arc::new(SystemClock);
    // CloudWatch has one data point a minute per metric and charges per metric read:
    // sampling it every 2 s, as the local proxy is, would buy nothing.
    let sampling = if platform.name() == "ecs" {
        SamplerOptions {
            every: std::time::Duration::from_secs(15),
            ..SamplerOptions::default()
        }
    } else {
        SamplerOptions::default()
    };
    let (telemetry, sampler) =
        spawn_sampler(platform.metrics(), state.clone(), clock.clone(), sampling);
    let link = EngineLink {
        commands: commands.clone(),
        events: events.subscribe(),
        state: state.clone(),
        telemetry: Some(telemetry),
        presence: shared.as_ref().map(|s| s.presence.clone()),
        connection: None,
    };
    let options = ConsoleOptions {
        settings: Settings {
            operator: operator.to_string(),
            environment: release.release.environment.clone(),
            read_only: ui.read_only,
            mouse: ui.mouse,
        },
        choice: Choice {
            keymap: ui.keymap.clone(),
            theme: ui.theme.clone(),
            no_color: ui.no_color,
        },
        config_dir: ui.config_dir.clone(),
        plan: Some(Arc::new(crate::plan::plan(release))),
        share: shared.as_ref().map(|s| s.attach.clone()),
    };
    // SIGINT/SIGTERM from outside (Ctrl-C inside the console is a key): the console's
    // guard gives the terminal back, then the release is aborted as on the headless path.
    // SIGHUP (the terminal closed): hand over to the background.
    let choice = tokio::select! {
        r = crate::console::run(link, clock, options) => match r {
            Ok(c) => c,
            Err(e) => {
                // A terminal that hung up fails the console's input before the signal
                // is seen: give the signal a moment to tell the two apart.
                match tokio::time::timeout(std::time::Duration::from_millis(500), hangup(&mut hup)).await {
                    Ok(()) => {
                        hung_up = true;
                        QuitChoice::Background
                    }
                    Err(_) => {
                        note!("cutover: the console stopped: {e:?}");
                        QuitChoice::Pause
                    }
                }
            }
        },
        _ = super::deploy::signal() => {
            note!("cutover: interrupted: aborting the release (services in flight roll back)");
            let (req, _rx) = crate::engine::CommandRequest::new(crate::engine::Command::Abort, operator);
            let _ = commands.send(req).await;
            QuitChoice::RollBack
        }
        _ = hangup(&mut hup) => {
            hung_up = true;
            QuitChoice::Background
        }
    };
    sampler.abort();
    let finished = || state.borrow().status == ReleaseStatus::Finished;
    // Without the socket (another live server holds it) a background server could not
    // serve either: a hang-up then leaves the release paused, resumable from the journal.
    let choice = if choice == QuitChoice::Background && shared.is_none() {
        let (req, _rx) = crate::engine::CommandRequest::new(
            crate::engine::Command::Pause { service: None },
            operator,
        );
        let _ = commands.send(req).await;
        QuitChoice::Pause
    } else {
        choice
    };
    if choice == QuitChoice::Background && !finished() {
        drop(commands);
        drop(events);
        if let Some(n) = notifier {
            n.abort();
        }
        let name = state.borrow().release.clone();
        let why = if hung_up {
            "the terminal hung up"
        } else {
            "asked from the console"
        };
        let (end, lines) = match hand_over(
            join, &platform, shared, &state_dir, &run_id, operator, contract,
        )
        .await
        {
            Ok(h) => (
                ConsoleEnd {
                    code: 0,
                    handed_over: true,
                },
                vec![
                    format!(
                        "cutover: release {name} (run {run_id}) goes on in the background ({why}): pid {}, log {}; handed over in {} ms",
                        h.pid,
                        h.log.display(),
                        h.took.as_millis()
                    ),
                    format!(
                        "cutover: attach with `{}`; stop it with `cutover ctl abort --state-dir {}`",
                        attach_command(&state_dir),
                        shell_word(&state_dir)
                    ),
                ],
            ),
            Err(e) => (
                ConsoleEnd {
                    code: super::EXIT_INTERNAL,
                    handed_over: false,
                },
                vec![
                    format!("cutover: the hand-over to the background ({why}) failed: {e}"),
                    format!(
                        "cutover: release {name} is unfinished (run {run_id}); the journal holds its state: `cutover serve --resume --run {run_id}` or `cutover resume --run {run_id}` carries on"
                    ),
                ],
            ),
        };
        for l in &lines {
            note!("{l}");
        }
        if hung_up {
            log_after_hangup(&state_dir, &lines);
        }
        return end;
    }
    let wait_for_engine = finished() || choice == QuitChoice::RollBack;
    let code = if wait_for_engine {
        if !finished() {
            note!(
                "cutover: rolling back release {}; waiting for the engine…",
                release.release.name
            );
        }
        drop(commands);
        drop(events);
        match join.await {
            Ok(Ok(out)) => {
                let (more, lines) = extra(&out.state);
                print_summary(&out.state, out.exit_code, output, more, &lines);
                out.exit_code
            }
            Ok(Err(e)) => {
                note!("cutover: the engine stopped: {e}");
                super::EXIT_INTERNAL
            }
            Err(e) => {
                note!("cutover: the engine failed: {e}");
                super::EXIT_INTERNAL
            }
        }
    } else {
        if choice == QuitChoice::Pause {
            // Let the engine journal the pause before it stops.
            let mut st = state.clone();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                st.wait_for(|s| s.status == ReleaseStatus::Paused),
            )
            .await;
        }
        join.abort();
        let now = state.borrow().clone();
        note!(
            "cutover: release {} left {} (run {run_id}); the journal holds its state: `cutover resume {run_id}` carries on",
            now.release,
            if now.status == ReleaseStatus::Paused {
                "paused"
            } else {
                "unfinished"
            }
        );
        super::EXIT_UNFINISHED
    };
    if let Some(s) = shared {
        s.stop("the console that ran the release quit; the server stopped")
            .await;
    }
    if let Some(n) = notifier {
        n.abort();
    }
    platform.shutdown().await;
    ConsoleEnd {
        code,
        handed_over: false,
    }
}

/// A release now running in a background `cutover serve --resume`.
struct HandedOver {
    pid: u32,
    log: PathBuf,
    /// From stopping this engine to the new server answering with the run's state.
    took: std::time::Duration,
}

/// The background server's arguments: the same run, state dir, operator, and contract
/// mode (`--allow-contract` carries over).
fn serve_argv(
    run_id: &str,
    state_dir: &Path,
    operator: &str,
    contract: crate::engine::ContractMode,
) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--resume".into(),
        "--run".into(),
        run_id.into(),
        "--state-dir".into(),
        state_dir.as_os_str().to_owned(),
        "--operator".into(),
        operator.into(),
    ];
    if contract == crate::engine::ContractMode::Allow {
        argv.push("--allow-contract".into());
    }
    argv
}

/// Move the release to a background `cutover serve --resume` process.
///
/// The local platform's replicas die with this process (they are tied to it) and a new
/// process cannot adopt running ones, so the release moves the way a crash recovery does,
/// without the crash: this engine stops (dropping it releases the journal's lock), the
/// control server tells attached clients where the release went and removes the socket,
/// the platform drains its proxies and stops the replicas, then `serve --resume` is
/// started in its own session: it takes the journal lock, relaunches every revision the
/// journal says runs at its journaled weights, and serves the socket again. This process
/// returns only once the new server answers with the same run. Traffic on the services'
/// ports pauses from the proxies' stop until the new process has healthy replicas behind
/// its proxies (measured by `tests/pairing.rs`); the release's state, gates, approvals
/// and the journal's chain carry over. On ECS nothing stops (the tasks run in AWS): the
/// new server re-reads the run's pins and checks the listener rules against the journal.
async fn hand_over(
    join: tokio::task::JoinHandle<Result<crate::engine::RunOutcome, crate::engine::EngineError>>,
    platform: &Arc<dyn crate::platform::Platform>,
    shared: Option<Shared>,
    state_dir: &Path,
    run_id: &str,
    operator: &str,
    contract: crate::engine::ContractMode,
) -> Result<HandedOver, String> {
    let t0 = std::time::Instant::now();
    join.abort();
    let _ = join.await;
    if let Some(s) = shared {
        let reason = format!(
            "{}: a background `cutover serve` carries the release on (the console, pid {}, quit); attach again: `{}`",
            crate::control::HANDED_OVER,
            std::process::id(),
            s.attach
        );
        s.stop(&reason).await;
    }
    platform.shutdown().await;
    let argv = serve_argv(run_id, state_dir, operator, contract);
    let super::serve::Background { mut child, log } =
        super::serve::spawn_background(state_dir, &argv)?;
    let pid = child.id();
    let client = Client::new(
        Endpoint::Unix(super::serve::socket_path(state_dir)),
        operator,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // The socket accepts before the server answers: a snapshot comes only once the
        // session started (journal locked, platform up, engine restored). Bounded, so a
        // server that dies meanwhile is noticed below.
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(2), client.snapshot()).await;
        if let Ok(Ok(snap)) = answer
            && snap.state.run_id == run_id
        {
            return Ok(HandedOver {
                pid,
                log,
                took: t0.elapsed(),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "`cutover serve --resume` exited ({status}) before serving; see {}",
                log.display()
            ));
        }
        if std::time::Instant::now() > deadline {
            // Stop it: left running, it could take the journal and the socket after the
            // user was told to resume by hand, and two servers would race for the run.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`cutover serve --resume` (pid {pid}) did not serve run {run_id} within 60 s and was stopped; see {}",
                log.display()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ContractMode;

    #[test]
    fn the_background_server_resumes_the_same_run_and_keeps_allow_contract() {
        let dir = Path::new("/tmp/state");
        let args = |c| {
            serve_argv("RUN1", dir, "alice", c)
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            args(ContractMode::Confirm),
            "serve --resume --run RUN1 --state-dir /tmp/state --operator alice"
        );
        assert!(args(ContractMode::Allow).ends_with(" --allow-contract"));
        assert!(!args(ContractMode::Defer).contains("allow-contract"));
    }
}
