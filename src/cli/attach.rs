//! `cutover attach`: the console against a served release. The client's snapshot and
//! event stream are adapted into the same channels the console uses in-process (a state
//! watch, an event broadcast, a command sender, plus who is attached), so the console
//! cannot tell the difference. Quitting (or losing the terminal) only detaches: the
//! release goes on in `cutover serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::ctl::ConnectArgs;
use super::{EXIT_INTERNAL, EXIT_INVALID, UiArgs};
use crate::console::app::{App, Settings};
use crate::console::config::{Choice, Dirs, load, no_color_env};
use crate::console::run::{NoTerminalControl, run_loop};
use crate::engine::SystemClock;
use crate::session::remote_link;

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub ui: UiArgs,
}

pub fn run(args: AttachArgs) -> ExitCode {
    let client = match args.connect.client() {
        Ok(c) => c.read_only(args.ui.read_only),
        Err(e) => {
            eprintln!("cutover: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let rt = match crate::session::runtime() {
        Ok(rt) => rt,
        Err(f) => {
            eprintln!("cutover: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let operator = client.operator().to_string();
    let endpoint = client.endpoint().to_string();
    let code = rt.block_on(async move {
        let remote = match remote_link(client).await {
            Ok(r) => r,
            Err(e) => return super::ctl::report(&e),
        };
        let loaded = load(
            &Dirs::resolve(None),
            &Choice {
                keymap: args.ui.keymap.clone(),
                theme: args.ui.theme.clone(),
                no_color: args.ui.no_color || no_color_env(),
            },
        );
        let mut app = App::new(
            remote.state.clone(),
            loaded.keymap,
            loaded.theme,
            Settings {
                operator,
                environment: None,
                read_only: args.ui.read_only,
                mouse: false,
            },
        );
        app.config_errors = loaded.errors.iter().map(|e| e.to_string()).collect();
        app.remote = true;
        let mut terminal = match ratatui::try_init() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cutover: cannot open the terminal: {e}");
                return EXIT_INTERNAL;
            }
        };
        let input = crossterm::event::EventStream::new();
        let result = run_loop(
            &mut terminal,
            &mut app,
            remote.link,
            input,
            Arc::new(SystemClock),
            Duration::from_millis(250),
            &mut NoTerminalControl,
        )
        .await;
        ratatui::restore();
        let ended = if remote.feed.is_finished() {
            remote.feed.await.ok()
        } else {
            remote.feed.abort();
            None
        };
        match result {
            Ok(()) => {
                match ended {
                    Some(why) => eprintln!("cutover: detached from {endpoint}: {why}"),
                    None => eprintln!(
                        "cutover: detached from {endpoint}; the release goes on (`cutover attach` to come back)"
                    ),
                }
                0
            }
            Err(e) => {
                eprintln!("cutover: console: {e}");
                EXIT_INTERNAL
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}
