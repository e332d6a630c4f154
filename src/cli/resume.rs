//! `cutover resume`: after a crash (even `kill -9`), pick the newest unfinished run (or
//! `--run`), relaunch what its journal says ran (revisions, replicas, weights; the local
//! platform reaps the processes the crashed run left), and carry on: services mid-step
//! restart that step, rollbacks in progress complete.

use std::process::ExitCode;

use super::{Error, Output, StateDirArg, UiArgs};
use crate::session::{Front, RunSpec};

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub journal: super::JournalArg,
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
    #[command(flatten)]
    pub aws: super::AwsArgs,
    #[command(flatten)]
    pub metrics: super::metrics_listen::MetricsListenArg,
}

pub fn run(args: ResumeArgs) -> Result<ExitCode, Error> {
    let console = crate::session::console::wanted(args.headless, args.output);
    if console {
        crate::session::console::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let state_dir = args.state.resolve();
    let journal = args.journal.store(&state_dir)?;
    let (mut release, base_dir, begin) =
        crate::session::spec::from_journal(&journal, args.run.as_deref())?;
    args.metrics.apply(&mut release);
    let code = crate::session::run::run(RunSpec {
        aws: args.aws.to_session(),
        release,
        base_dir,
        begin,
        state_dir,
        journal,
        operator: crate::engine::operator_name(args.operator.as_deref()),
        output: args.output,
        allow_contract: args.allow_contract,
        front: if console {
            Front::Console((&args.ui).into())
        } else {
            Front::Headless {
                keep_running: args.keep_running,
            }
        },
        summary_extra: serde_json::json!({"resumed": true}),
    })?;
    Ok(ExitCode::from(code))
}
