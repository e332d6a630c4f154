//! `cutover report [RUN] [--format md|html|json] [--state-dir D]`: the release report of a
//! run (the newest by default), printed on stdout.

use std::process::ExitCode;

use super::{Error, StateDirArg};
use crate::report::{self, Format};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run id [default: the newest run]
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// `md` for a ticket or chat, `html` a self-contained page (inline SVG charts), `json`
    /// with stable keys (docs/report.md)
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub journal: super::JournalArg,
}

pub fn run(args: ReportArgs) -> Result<ExitCode, Error> {
    let state_dir = args.journal.store(&args.state.resolve())?;
    let r = report::for_run(&state_dir, args.run.as_deref()).map_err(Error::from)?;
    let text = report::render(&r, args.format, &crate::secrets::Secrets::default())
        .map_err(Error::from)?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
