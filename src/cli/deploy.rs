//! `cutover deploy FILE`: run a release, in the console when stdout is a terminal,
//! otherwise headless, printing one line per event (or one JSON object per line) and a
//! closing summary.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Error, Output, StateDirArg, UiArgs};
use crate::session::{Front, RunSpec};

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
    #[command(flatten)]
    pub journal: super::JournalArg,
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
    #[command(flatten)]
    pub aws: super::AwsArgs,
    #[command(flatten)]
    pub metrics: super::metrics_listen::MetricsListenArg,
    #[command(flatten)]
    pub release: super::ReleaseArgs,
    /// Start even though the environments this one `requires` have not promoted the same
    /// artifact (break-glass): journaled with your name and the reason, shown in the console.
    #[arg(long, value_name = "REASON", value_hint = clap::ValueHint::Other)]
    pub skip_requires: Option<String>,
    #[command(flatten)]
    pub policy: super::PolicyArgs,
    #[command(flatten)]
    pub change: super::ChangeArg,
}

pub fn run(args: DeployArgs) -> Result<ExitCode, Error> {
    let console = crate::session::console::wanted(args.headless, args.output);
    if console {
        crate::session::console::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let state_dir = args.state.resolve();
    let journal = args.journal.store(&state_dir)?;
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let (mut release, base_dir, mut begin) = crate::session::spec::from_file(
        &args.file,
        &args.release.options(),
        &crate::session::lifecycle::Admission {
            journal: &journal,
            operator: &operator,
            skip_requires: args.skip_requires.as_deref(),
            policy: &args.policy.admission(&args.change),
        },
    )?;
    args.metrics.apply(&mut release);
    crate::session::spec::with_change(&mut release, &mut begin, args.change.change.as_deref());
    let code = crate::session::run::run(RunSpec {
        aws: args.aws.to_session(),
        release,
        base_dir,
        begin,
        state_dir,
        journal,
        operator,
        output: args.output,
        allow_contract: args.allow_contract,
        front: if console {
            Front::Console((&args.ui).into())
        } else {
            Front::Headless {
                keep_running: args.keep_running,
            }
        },
        summary_extra: serde_json::json!({}),
    })?;
    Ok(ExitCode::from(code))
}
