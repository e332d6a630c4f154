//! The real terminal: color-eyre's hooks first, then raw mode and the alternate
//! screen (ratatui's init also chains a panic hook that restores the terminal before
//! the report prints), a guard that restores on every exit path, Ctrl-Z suspend and
//! mouse capture on demand; and the log pipeline (tracing → tui-logger), which must
//! replace any stderr logging while the console is up.

use std::io::{self, Stdout, Write};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::run::{LOG_GENERATION, TerminalControl};

pub type Backend = CrosstermBackend<Stdout>;

/// Counts log records so the loop knows the log pane changed.
struct Generation;

struct Visitor(String);

impl tracing::field::Visit for Visitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Generation {
    fn on_event(&self, e: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut v = Visitor(String::new());
        e.record(&mut v);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        super::run::remember(super::run::LogLine {
            at: format!(
                "{:02}:{:02}:{:02}",
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60
            ),
            level: *e.metadata().level(),
            target: e.metadata().target().to_string(),
            message: v.0,
        });
        LOG_GENERATION.fetch_add(1, Ordering::Relaxed);
    }
}

/// Route `tracing` to the log pane (filter: `CUTOVER_LOG`, else `RUST_LOG`, else
/// `info`). Call before anything logs; returns false when another subscriber was
/// installed first (then nothing reaches the pane).
pub fn init_logging() -> bool {
    static ONCE: OnceLock<bool> = OnceLock::new();
    *ONCE.get_or_init(|| {
        // Not `tui_logger::init_logger`: its mover thread wakes every 10 ms for the whole
        // run. The console moves new lines into the pane's buffer itself when it redraws
        // (`run_loop`), and the hot buffer is deep enough for a busy second.
        tui_logger::set_hot_buffer_depth(2_000);
        tui_logger::move_events(); // swaps in a hot buffer of the new depth
        tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
        let filter = std::env::var("CUTOVER_LOG")
            .ok()
            .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
            .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
            .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(filter)
            .with(tui_logger::TuiTracingSubscriberLayer)
            .with(Generation)
            .try_init()
            .is_ok()
    })
}

/// Install color-eyre's panic and error hooks (once). Must run before the terminal is
/// taken, so ratatui's restoring hook wraps them.
pub fn install_hooks() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = color_eyre::install();
    });
}

/// The terminal while the console owns it; dropping it gives the terminal back.
pub struct Tui {
    pub terminal: Terminal<Backend>,
    mouse: bool,
}

impl Tui {
    pub fn enter(mouse: bool, no_color: bool) -> io::Result<Tui> {
        install_hooks();
        if no_color {
            // crossterm turns suppressed colours into a bare `CSI m`, which also clears
            // bold and reverse: the mono theme has no colours, so force output on.
            crossterm::style::force_color_output(true);
        }
        let terminal = ratatui::try_init()?;
        let mut out = io::stdout();
        execute!(out, EnableBracketedPaste)?;
        if mouse {
            execute!(out, EnableMouseCapture)?;
        }
        Ok(Tui { terminal, mouse })
    }

    fn leave(&mut self) {
        let mut out = io::stdout();
        if self.mouse {
            let _ = execute!(out, DisableMouseCapture);
        }
        let _ = execute!(out, DisableBracketedPaste);
        ratatui::restore();
        let _ = out.flush();
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Suspend and mouse for the real terminal.
pub struct Control {
    pub mouse: bool,
}

impl TerminalControl<Backend> for Control {
    fn suspend(&mut self, terminal: &mut Terminal<Backend>) -> io::Result<()> {
        let mut out = io::stdout();
        if self.mouse {
            execute!(out, DisableMouseCapture)?;
        }
        execute!(out, DisableBracketedPaste)?;
        ratatui::restore();
        #[cfg(unix)]
        // SAFETY: raising a signal on our own process; SIGTSTP stops us until `fg`.
        unsafe {
            libc::raise(libc::SIGTSTP);
        }
        // Back from `fg`: take the terminal again.
        crossterm::terminal::enable_raw_mode()?;
        execute!(
            out,
            crossterm::terminal::EnterAlternateScreen,
            EnableBracketedPaste
        )?;
        if self.mouse {
            execute!(out, EnableMouseCapture)?;
        }
        terminal.clear()?;
        Ok(())
    }

    fn set_mouse(&mut self, on: bool) -> io::Result<()> {
        self.mouse = on;
        let mut out = io::stdout();
        if on {
            execute!(out, EnableMouseCapture)
        } else {
            execute!(out, DisableMouseCapture)
        }
    }
}
