//! The console as the front end of a run when stdout is a terminal: the same session as
//! the headless path (platform, engine, journal), with the console in place of the line
//! printer, shared on the socket, handed over to a background server on request or
//! hang-up.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::exit::{EXIT_INTERNAL, EXIT_UNFINISHED};
use super::finish::signal;
use super::handover::hand_over;
use super::remote_link::RemoteLink;
use super::share::{attach_command, share, shell_word};
use super::spec::Output;
use super::start::Session;
use super::summary::print_summary;
use crate::console::app::{QuitChoice, Settings};
use crate::console::config::Choice;
use crate::console::{ConsoleOptions, EngineLink};
use crate::engine::telemetry::{SamplerOptions, spawn_sampler};
use crate::engine::{EngineHandle, ReleaseState, ReleaseStatus, SystemClock};
use crate::release::Release;

/// The console's options (the command line's `UiArgs`).
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// Watch only: hide every action that changes the release.
    pub read_only: bool,
    pub theme: Option<String>,
    pub keymap: Option<String>,
    pub no_color: bool,
    pub mouse: bool,
    /// Read keymap.toml and themes/ from here instead of the config directory.
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
pub struct ConsoleEnd {
    /// The exit code (`deploy`'s; 0 after a hand-over to the background).
    pub code: u8,
    /// The release goes on in a background `cutover serve --resume`.
    pub handed_over: bool,
}

/// Run the console on a session until the user quits, then end the session: when the
/// release finished, print the summary (as the headless path does); when the user left
/// it paused, say how to resume; when they chose "keep running in the background" (or
/// the terminal hung up), hand the release over to a background `cutover serve`.
pub async fn finish_with_console(
    session: Session,
    release: &Release,
    operator: &str,
    ui: &UiOptions,
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
pub async fn run_console(
    session: Session,
    release: &Release,
    operator: &str,
    ui: &UiOptions,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> ConsoleEnd {
    let Session {
        handle,
        platform,
        printer,
        notifier,
        tracer,
        run_id,
        output,
        hub,
        state_dir,
        journal,
        contract,
        aws,
        secrets,
    } = session;
    printer.abort();
    let EngineHandle {
        commands,
        events,
        state,
        join,
        stopped,
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
    // The console shows why its engine stopped, and what to do, the moment it happens.
    let (banner_tx, banner_rx) = tokio::sync::watch::channel(None::<String>);
    let banner = {
        let mut stopped = stopped.clone();
        let (run_id, journal) = (run_id.clone(), journal.clone());
        tokio::spawn(async move {
            if let Ok(s) = stopped.wait_for(|s| s.is_some()).await
                && let Some(s) = s.as_ref()
            {
                let text = super::journal_failure::console_banner(s, &run_id, &journal);
                let _ = banner_tx.send(Some(text));
            }
        })
    };
    let link = EngineLink {
        commands: commands.clone(),
        events: events.subscribe(),
        state: state.clone(),
        telemetry: Some(telemetry),
        presence: shared.as_ref().map(|s| s.presence.clone()),
        connection: None,
        engine_stopped: Some(banner_rx),
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
        plan: Some(Arc::new(crate::plan::engine_plan(release))),
        share: shared.as_ref().map(|s| s.attach.clone()),
        remote: false,
    };
    // SIGINT/SIGTERM from outside (Ctrl-C inside the console is a key): the console's
    // guard gives the terminal back, then the release is aborted as on the headless path.
    // SIGHUP (the terminal closed): hand over to the background.
    let choice = tokio::select! {
        r = crate::console::run(link, clock, options) => match r {
            Ok(c) => c,
            Err(e) => {
                // A terminal that hung up fails the console's input before the signal
                // is seen: give the signal a moment to tell the two apart. 500 ms was
                // too short on a loaded machine (a clean-clone CI run took it for a
                // console failure and left the release paused instead of handing it
                // over); a console failing for another reason only waits longer.
                match tokio::time::timeout(std::time::Duration::from_secs(3), hangup(&mut hup)).await {
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
        _ = signal() => {
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
    banner.abort();
    let engine_stopped = stopped.borrow().clone();
    if let Some(s) = engine_stopped {
        // Nothing can be paused, rolled back or handed over: the engine is gone. Say why
        // and what to do on the terminal the console gave back, then stop the proxies.
        note!("cutover: the engine stopped: {}", s.reason);
        if s.journal {
            note!(
                "{}",
                super::journal_failure::advice(&s.reason, &run_id, &journal, false)
            );
        }
        if let Some(sh) = shared {
            sh.stop("the engine stopped; the server stopped").await;
        }
        if let Some(n) = notifier {
            n.abort();
        }
        platform.shutdown().await;
        return ConsoleEnd {
            code: EXIT_INTERNAL,
            handed_over: false,
        };
    }
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
        // The background server continues the trace from the journal.
        if let Some(t) = tracer {
            t.abort();
        }
        let name = state.borrow().release.clone();
        let why = if hung_up {
            "the terminal hung up"
        } else {
            "asked from the console"
        };
        let (end, lines) = match hand_over(
            join, &platform, shared, &state_dir, &journal, &run_id, operator, contract, &aws,
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
                    code: EXIT_INTERNAL,
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
                let (mut more, mut lines) = extra(&out.state);
                super::report::write_and_name(&journal, &run_id, &secrets, &mut more, &mut lines);
                print_summary(&out.state, out.exit_code, output, more, &lines);
                out.exit_code
            }
            Ok(Err(e)) => {
                note!("cutover: the engine stopped: {e}");
                EXIT_INTERNAL
            }
            Err(e) => {
                note!("cutover: the engine failed: {e}");
                EXIT_INTERNAL
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
        // The tracer ends once every sender of the event stream is gone.
        drop(commands);
        drop(events);
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
        EXIT_UNFINISHED
    };
    if let Some(s) = shared {
        s.stop("the console that ran the release quit; the server stopped")
            .await;
    }
    if let Some(n) = notifier {
        n.abort();
    }
    // Left unfinished: what the tracer holds is sent quickly or left to the resume.
    let limit = if code == EXIT_UNFINISHED {
        std::time::Duration::from_secs(2)
    } else {
        crate::trace::FLUSH_LIMIT
    };
    crate::trace::finish(tracer, limit).await;
    platform.shutdown().await;
    ConsoleEnd {
        code,
        handed_over: false,
    }
}

/// Run the console on a served release (`cutover attach`): the same console as a run's
/// own (terminal control, Ctrl-Z, mouse, config directory), on the remote link. Quitting
/// only detaches: the release goes on in its server.
pub async fn run_attached(
    remote: RemoteLink,
    operator: &str,
    endpoint: &str,
    ui: &UiOptions,
) -> u8 {
    let options = ConsoleOptions {
        settings: Settings {
            operator: operator.to_string(),
            environment: None,
            read_only: ui.read_only,
            mouse: ui.mouse,
        },
        choice: Choice {
            keymap: ui.keymap.clone(),
            theme: ui.theme.clone(),
            no_color: ui.no_color,
        },
        config_dir: ui.config_dir.clone(),
        plan: None,
        share: None,
        remote: true,
    };
    // Where the release is served when the console quits (another engine, after a
    // takeover, than the one first attached to).
    let status = remote.link.connection.clone();
    let result = crate::console::run(remote.link, Arc::new(SystemClock), options).await;
    let moved = status.and_then(|s| s.borrow().served_by.clone());
    let endpoint = moved.as_deref().unwrap_or(endpoint);
    let ended = if remote.feed.is_finished() {
        remote.feed.await.ok()
    } else {
        remote.feed.abort();
        None
    };
    match result {
        Ok(_) => {
            match ended {
                Some(why) => note!("cutover: detached from {endpoint}: {why}"),
                None => note!(
                    "cutover: detached from {endpoint}; the release goes on (`cutover attach` to come back)"
                ),
            }
            0
        }
        Err(e) => {
            note!("cutover: console: {e}");
            EXIT_INTERNAL
        }
    }
}
