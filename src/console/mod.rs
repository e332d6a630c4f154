//! The console: a ratatui front end of the engine. It renders the engine's
//! [`ReleaseState`](crate::engine::ReleaseState) and [`Event`](crate::engine::Event)s
//! and sends [`Command`](crate::engine::Command)s through the engine's one command
//! channel, exactly like the headless front end; it holds no deployment rule.

pub mod action;
pub mod app;
pub mod config;
pub mod fixtures;
pub mod fixtures_fleet;
pub mod fleet_app;
pub mod fleet_tree;
pub mod keymap;
pub mod render;
pub mod render_fleet;
pub mod run;
pub mod terminal;
pub mod theme;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Clock;
use crate::plan::Plan;

pub use run::{EngineLink, LinkStatus};

/// How the console is started.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    pub settings: app::Settings,
    pub choice: config::Choice,
    /// `--config-dir`: instead of the default config directory.
    pub config_dir: Option<PathBuf>,
    pub plan: Option<Arc<Plan>>,
    /// The release is shared over the control API: the command others run to attach
    /// (shown at start, in the log and in the quit dialog).
    pub share: Option<String>,
    /// The release runs in another process (`cutover attach`): quitting only detaches.
    pub remote: bool,
}

/// Take the terminal and run the console on `link` until the user quits; the terminal
/// is given back on every path (return, error, panic).
pub async fn run(
    link: EngineLink,
    clock: Arc<dyn Clock>,
    mut options: ConsoleOptions,
) -> color_eyre::Result<app::QuitChoice> {
    terminal::install_hooks();
    if config::no_color_env() {
        options.choice.no_color = true;
    }
    let dirs = config::Dirs::resolve(options.config_dir.as_deref());
    let loaded = config::load(&dirs, &options.choice);
    for e in &loaded.errors {
        tracing::warn!(target: "console", "config: {e}");
    }
    let state = link.state.borrow().clone();
    let mut app = app::App::new(state, loaded.keymap, loaded.theme, options.settings.clone())
        .with_plan(options.plan.clone());
    app.config_errors = loaded.errors.iter().map(|e| e.to_string()).collect();
    app.remote = options.remote;
    if let Some(attach) = &options.share {
        app.share = Some(attach.clone());
        app.set_now(clock.now_ms());
        tracing::info!(target: "console", "shared: others attach with `{attach}`");
        app.toast(format!("shared: others attach with `{attach}`"), false);
    }
    let no_color = options.choice.no_color;
    let mouse = options.settings.mouse;
    let mut tui = terminal::Tui::enter(mouse, no_color)?;
    let input = crossterm::event::EventStream::new();
    let mut control = terminal::Control { mouse };
    let r = run::run_loop(
        &mut tui.terminal,
        &mut app,
        link,
        input,
        clock,
        Duration::from_millis(250),
        &mut control,
    )
    .await;
    drop(tui);
    r?;
    Ok(app.quit_choice)
}
