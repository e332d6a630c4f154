//! The console's event loop and its terminal. The loop is generic over the ratatui
//! backend and the input stream, so tests drive it with `TestBackend` and scripted keys
//! against a scripted engine; [`run`] wires it to the real terminal.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyEventKind};
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::{broadcast, mpsc, watch};

use crate::engine::telemetry::Telemetry;
use crate::engine::{Clock, Command, CommandRequest, Event, ReleaseState};

use super::app::{App, Effect};

/// Bumped by the log layer on every log record, so the loop redraws when the log moved.
pub static LOG_GENERATION: AtomicU64 = AtomicU64::new(0);

/// One log record as the filtered log view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: String,
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
}

/// The last log records, for the filtered view (tui-logger has no text filter).
pub static LOG_LINES: std::sync::Mutex<std::collections::VecDeque<LogLine>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Records kept for filtering.
pub const LOG_KEEP: usize = 5000;

/// Remember a record for the filtered view.
pub fn remember(line: LogLine) {
    let mut q = LOG_LINES.lock().unwrap_or_else(|p| p.into_inner());
    q.push_back(line);
    while q.len() > LOG_KEEP {
        q.pop_front();
    }
}

/// What the loop reads from and writes to the engine: the same channels every front
/// end uses.
pub struct EngineLink {
    pub commands: mpsc::Sender<CommandRequest>,
    pub events: broadcast::Receiver<Event>,
    pub state: watch::Receiver<ReleaseState>,
    pub telemetry: Option<watch::Receiver<Arc<Telemetry>>>,
    /// Who is attached, for a console attached to a served release (`cutover attach`).
    pub presence: Option<watch::Receiver<Vec<String>>>,
    /// For a remote console: whether the connection to the server is up, and who serves
    /// the release after it moved to another engine.
    pub connection: Option<watch::Receiver<LinkStatus>>,
    /// For the console that runs the engine in its own process: `Some(why and what to do)`
    /// once the engine stopped on an error (a journal that could not be written).
    pub engine_stopped: Option<watch::Receiver<Option<String>>>,
}

/// A remote console's link as the session decided it (`session/remote_link.rs`); the
/// console only shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// `Some(why)` while the connection to the server is lost (reconnecting), `None` while
    /// it is up.
    pub lost: Option<String>,
    /// Set once the run moved to another engine (a standby took it over): where it is
    /// served now and at which lease epoch, e.g. `http://10.0.0.7:7070 (epoch 2)`.
    pub served_by: Option<String>,
}

/// Things only a real terminal can do.
pub trait TerminalControl<B: Backend> {
    /// Ctrl-Z: give the terminal back, stop, and take it again on `fg`.
    fn suspend(&mut self, terminal: &mut Terminal<B>) -> io::Result<()>;
    fn set_mouse(&mut self, on: bool) -> io::Result<()>;
}

/// For tests and headless backends: nothing to do.
pub struct NoTerminalControl;

impl<B: Backend> TerminalControl<B> for NoTerminalControl {
    fn suspend(&mut self, _terminal: &mut Terminal<B>) -> io::Result<()> {
        Ok(())
    }
    fn set_mouse(&mut self, _on: bool) -> io::Result<()> {
        Ok(())
    }
}

/// Run until the user quits (or the input ends). Never blocks on the engine: commands
/// go out with `try_send` and their answers come back on a channel of their own.
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut link: EngineLink,
    mut input: S,
    clock: Arc<dyn Clock>,
    tick: Duration,
    control: &mut dyn TerminalControl<B>,
) -> io::Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<(Command, Result<String, String>)>();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    let mut state_open = true;
    let mut telemetry_open = link.telemetry.is_some();
    let mut presence_open = link.presence.is_some();
    let mut connection_open = link.connection.is_some();
    let mut stopped_open = link.engine_stopped.is_some();
    if let Some(p) = link.presence.as_mut() {
        app.set_attached(p.borrow_and_update().clone());
    }
    let mut input_open = true;
    let mut log_seen = LOG_GENERATION.load(Ordering::Relaxed);
    tui_logger::move_events();
    app.set_state(link.state.borrow_and_update().clone());
    app.set_now(clock.now_ms());
    loop {
        if app.dirty {
            terminal.draw(|f| app.render(f)).map_err(io::Error::other)?;
            app.dirty = false;
        }
        let mut effects = Vec::new();
        tokio::select! {
            ev = input.next(), if input_open => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => effects = app.on_key(k),
                Some(Ok(TermEvent::Mouse(m))) => effects = app.on_mouse(m),
                Some(Ok(TermEvent::Resize(..))) => {
                    terminal.autoresize().map_err(io::Error::other)?;
                    app.dirty = true;
                }
                Some(Ok(TermEvent::Paste(text))) => {
                    for c in text.chars().filter(|c| !c.is_control()) {
                        let k = crossterm::event::KeyEvent::new(
                            crossterm::event::KeyCode::Char(c),
                            crossterm::event::KeyModifiers::NONE,
                        );
                        if matches!(app.overlay, super::app::Overlay::Palette { .. } | super::app::Overlay::Filter { .. } | super::app::Overlay::TenantFilter | super::app::Overlay::Reason { .. }) {
                            effects.extend(app.on_key(k));
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => input_open = false,
            },
            r = link.state.changed(), if state_open => match r {
                Ok(()) => {
                    let s = link.state.borrow_and_update().clone();
                    app.set_state(s);
                }
                Err(_) => state_open = false,
            },
            r = link.events.recv(), if events_open => match r {
                Ok(e) => app.on_event(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(target: "console", "skipped {n} events; state resynchronised");
                    let s = link.state.borrow().clone();
                    app.set_state(s);
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            r = async {
                match link.telemetry.as_mut() {
                    Some(t) => t.changed().await,
                    None => std::future::pending().await,
                }
            }, if telemetry_open => match r {
                Ok(()) => {
                    if let Some(t) = link.telemetry.as_mut() {
                        let v = t.borrow_and_update().clone();
                        app.set_telemetry(v);
                    }
                }
                Err(_) => telemetry_open = false,
            },
            r = async {
                match link.presence.as_mut() {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            }, if presence_open => match r {
                Ok(()) => {
                    if let Some(p) = link.presence.as_mut() {
                        let v = p.borrow_and_update().clone();
                        app.set_attached(v);
                    }
                }
                Err(_) => presence_open = false,
            },
            r = async {
                match link.connection.as_mut() {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            }, if connection_open => match r {
                Ok(()) => {
                    if let Some(c) = link.connection.as_mut() {
                        let v = c.borrow_and_update().clone();
                        app.set_link(v);
                    }
                }
                Err(_) => connection_open = false,
            },
            r = async {
                match link.engine_stopped.as_mut() {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            }, if stopped_open => match r {
                Ok(()) => {
                    if let Some(c) = link.engine_stopped.as_mut() {
                        let v = c.borrow_and_update().clone();
                        app.set_engine_stopped(v);
                    }
                }
                Err(_) => stopped_open = false,
            },
            Some((command, reply)) = reply_rx.recv() => app.on_reply(&command, reply),
            _ = ticker.tick() => {
                app.set_now(clock.now_ms());
                let g = LOG_GENERATION.load(Ordering::Relaxed);
                if g != log_seen {
                    log_seen = g;
                    tui_logger::move_events();
                    app.dirty = true;
                }
            }
        }
        let mut quit = false;
        for fx in effects {
            match fx {
                Effect::Send(command) => send(app, &link, &reply_tx, command, None),
                Effect::SendWithNote { command, note } => {
                    send(app, &link, &reply_tx, command, Some(note))
                }
                Effect::Quit => quit = true,
                Effect::Suspend => {
                    control.suspend(terminal)?;
                    app.dirty = true;
                }
                Effect::SetMouse(on) => control.set_mouse(on)?,
            }
        }
        if quit {
            if app.dirty {
                terminal.draw(|f| app.render(f)).map_err(io::Error::other)?;
            }
            return Ok(());
        }
        if !input_open && !events_open && !state_open {
            return Ok(());
        }
    }
}

/// Hand a command to the engine without waiting: its answer comes back on `reply_tx`.
fn send(
    app: &mut App,
    link: &EngineLink,
    reply_tx: &mpsc::UnboundedSender<(Command, Result<String, String>)>,
    command: Command,
    note: Option<String>,
) {
    let (req, rx) = CommandRequest::new(command.clone(), &app.settings.operator);
    match link.commands.try_send(req.with_note(note)) {
        Ok(()) => {
            let tx = reply_tx.clone();
            tokio::spawn(async move {
                let r = match rx.await {
                    Ok(Ok(done)) => Ok(done),
                    Ok(Err(refusal)) => Err(refusal.reason),
                    Err(_) => Err("the engine stopped before answering".to_string()),
                };
                let _ = tx.send((command, r));
            });
        }
        Err(mpsc::error::TrySendError::Full(_)) => app.on_reply(
            &command,
            Err("the engine is busy (command queue full); try again".into()),
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            app.on_reply(&command, Err("the engine has stopped".into()))
        }
    }
}
