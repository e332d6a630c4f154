//! `cutover stats [--since 30d] [--env E] [--state-dir D] [--output json]`: delivery
//! metrics over the journals of a state directory (`report::stats`).

use std::process::ExitCode;

use super::{Error, Output, StateDirArg};
use crate::report::stats::{self, Filter};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only runs started within this long before now (`30d`, `12h`) [default: every run]
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<std::time::Duration>,
    /// Only runs deployed to this environment
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub journal: super::JournalArg,
    /// `json`: `deployments`, `refused`, `success_rate`, `change_failure_rate`,
    /// `duration_s` and `time_to_restore_s` (`{"median", "p90"}`), `by_service`,
    /// `by_environment`, `targets`
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse_duration(s).map_err(|e| format!("{e}; write e.g. `30d`, `12h`, `90m`"))
}

pub fn run(args: StatsArgs) -> Result<ExitCode, Error> {
    let state_dir = args.journal.store(&args.state.resolve())?;
    let filter = Filter {
        since_ms: args
            .since
            .map(|d| crate::journal::timefmt::now_ms().saturating_sub(d.as_millis() as u64)),
        environment: args.env,
    };
    let s = stats::for_state_dir(&state_dir, &filter).map_err(Error::from)?;
    match args.output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&s)
                .map_err(|e| Error::Internal(format!("cannot encode the stats as JSON: {e}")))?;
            println!("{text}");
        }
        Output::Text => print!("{}", stats::text(&s)),
    }
    Ok(ExitCode::SUCCESS)
}
