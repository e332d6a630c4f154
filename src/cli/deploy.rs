//! `cutover deploy FILE`: run a release, in the console when stdout is a terminal,
//! otherwise headless, printing one line per event (or one JSON object per line) and a
//! closing summary.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_INVALID, Output, StateDirArg, UiArgs};
use crate::engine::ReleaseState;
use crate::session::console::finish_with_console;
use crate::session::finish::finish_session;
use crate::session::{Begin, contract_mode, runtime, start_session_with};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The release file.
    pub file: PathBuf,
    /// No console: print one line per event (also when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    #[command(flatten)]
    pub ui: UiArgs,
    /// `json`: one JSON object per line, ending with a `summary` object.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub state: StateDirArg,
    /// Keep serving the final state after the summary until SIGINT/SIGTERM (local platform).
    #[arg(long)]
    pub keep_running: bool,
    /// Who runs the release, for the journal (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
    /// Run each migration's contract, without asking, once every listed service is
    /// promoted and baked (contract is one-way). Headless without it, the release ends
    /// with the contract pending; the console asks.
    #[arg(long)]
    pub allow_contract: bool,
}

pub fn run(args: DeployArgs) -> ExitCode {
    let console = crate::session::console::wanted(args.headless, args.output);
    if console {
        crate::session::console::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let text = match std::fs::read(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cutover: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let loaded = match crate::release::load(&args.file) {
        Ok(l) => l,
        Err(diags) => return super::report_diagnostics(&diags),
    };
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let state_dir = args.state.resolve();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => {
            eprintln!("cutover: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let base_dir = std::fs::canonicalize(&loaded.base_dir).unwrap_or(loaded.base_dir.clone());
    let code = rt.block_on(async {
        let begin = Begin::Fresh {
            file_label: args.file.display().to_string(),
            sha256: crate::journal::sha256_hex(&text),
        };
        match start_session_with(
            &loaded.release,
            &base_dir,
            &state_dir,
            begin,
            &operator,
            args.output,
            !console,
            contract_mode(args.allow_contract, console),
        )
        .await
        {
            Ok(s) => {
                if args.output == Output::Text {
                    eprintln!(
                        "cutover: run {} journaled under {}",
                        s.run_id,
                        state_dir.display()
                    );
                }
                let none = |_: &ReleaseState| (serde_json::json!({}), Vec::new());
                if console {
                    finish_with_console(s, &loaded.release, &operator, &(&args.ui).into(), none)
                        .await
                } else {
                    finish_session(s, &operator, args.keep_running, none).await
                }
            }
            Err(f) => {
                eprintln!("cutover: {}", f.message);
                f.code
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}
