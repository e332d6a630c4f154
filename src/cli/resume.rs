//! `cutover resume`: after a crash (even `kill -9`), pick the newest unfinished run (or
//! `--run`), relaunch what its journal says ran (revisions, replicas, weights; the local
//! platform reaps the processes the crashed run left), and carry on: services mid-step
//! restart that step, rollbacks in progress complete.

use std::process::ExitCode;

use super::{EXIT_INVALID, Output, StateDirArg, UiArgs};
use crate::session::console::finish_with_console;
use crate::session::finish::finish_session;
use crate::session::resume::release_of_run;
use crate::session::{Begin, contract_mode, runtime, start_session_with};

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// The run to resume (default: the newest unfinished one).
    #[arg(long)]
    pub run: Option<String>,
    /// No console: print one line per event (also when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    #[command(flatten)]
    pub ui: UiArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Keep serving the final state after the summary until SIGINT/SIGTERM.
    #[arg(long)]
    pub keep_running: bool,
    /// Who resumes, for the journal (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
    /// Run each migration's contract, without asking, once every listed service is
    /// promoted and baked (contract is one-way).
    #[arg(long)]
    pub allow_contract: bool,
}

pub fn run(args: ResumeArgs) -> ExitCode {
    let console = crate::session::console::wanted(args.headless, args.output);
    if console {
        crate::session::console::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let state_dir = args.state.resolve();
    let run_id = match args.run.clone() {
        Some(r) => r,
        None => match crate::journal::latest_unfinished(&state_dir) {
            Ok(Some(r)) => r.run_id,
            Ok(None) => {
                eprintln!(
                    "cutover: no unfinished run under {}; nothing to resume (see `cutover history`)",
                    state_dir.display()
                );
                return ExitCode::from(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("cutover: {e}");
                return ExitCode::from(super::EXIT_INTERNAL);
            }
        },
    };
    let (release, base_dir) = match release_of_run(&state_dir, &run_id) {
        Ok(x) => x,
        Err(f) => {
            eprintln!("cutover: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => {
            eprintln!("cutover: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let code = rt.block_on(async {
        let begin = Begin::Resume {
            run_id: run_id.clone(),
        };
        match start_session_with(
            &release,
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
                    eprintln!("cutover: resuming run {run_id}");
                }
                let resumed = |_: &crate::engine::ReleaseState| {
                    (serde_json::json!({"resumed": true}), Vec::new())
                };
                if console {
                    finish_with_console(s, &release, &operator, &(&args.ui).into(), resumed).await
                } else {
                    finish_session(s, &operator, args.keep_running, resumed).await
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
