//! The console as the front end of `deploy`, `resume` and `demo` when stdout is a
//! terminal: the same session as the headless path (platform, engine, journal), with the
//! console in place of the line printer.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use super::Output;
use super::deploy::{Session, print_summary};
use crate::console::app::{QuitChoice, Settings};
use crate::console::config::Choice;
use crate::console::{ConsoleOptions, EngineLink};
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

/// Run the console on a session until the user quits, then end the session: when the
/// release finished, print the summary (as the headless path does); when the user left
/// it paused, say how to resume.
pub(crate) async fn finish_with_console(
    session: Session,
    release: &Release,
    operator: &str,
    ui: &UiArgs,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> u8 {
    let Session {
        handle,
        platform,
        printer,
        notifier,
        run_id,
        output,
        hub: _,
    } = session;
    printer.abort();
    let EngineHandle {
        commands,
        events,
        state,
        join,
    } = handle;
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
        presence: None,
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
    };
    // SIGINT/SIGTERM from outside (Ctrl-C inside the console is a key): the console's
    // guard gives the terminal back, then the release is aborted as on the headless path.
    let choice = tokio::select! {
        r = crate::console::run(link, clock, options) => match r {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cutover: the console stopped: {e:?}");
                QuitChoice::Pause
            }
        },
        _ = super::deploy::signal() => {
            eprintln!("cutover: interrupted: aborting the release (services in flight roll back)");
            let (req, _rx) = crate::engine::CommandRequest::new(crate::engine::Command::Abort, operator);
            let _ = commands.send(req).await;
            QuitChoice::RollBack
        }
    };
    sampler.abort();
    let finished = || state.borrow().status == ReleaseStatus::Finished;
    let wait_for_engine = finished() || choice == QuitChoice::RollBack;
    let code = if wait_for_engine {
        if !finished() {
            eprintln!(
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
                eprintln!("cutover: the engine stopped: {e}");
                super::EXIT_INTERNAL
            }
            Err(e) => {
                eprintln!("cutover: the engine failed: {e}");
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
        eprintln!(
            "cutover: release {} left {} (run {run_id}); the journal holds its state: `cutover resume {run_id}` carries on",
            now.release,
            if now.status == ReleaseStatus::Paused {
                "paused"
            } else {
                "unfinished"
            }
        );
        super::EXIT_INTERNAL
    };
    if let Some(n) = notifier {
        n.abort();
    }
    platform.shutdown().await;
    code
}
