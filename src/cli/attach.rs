//! `cutover attach`: the console against a served release. The client's snapshot and
//! event stream are adapted into the same channels the console uses in-process (a state
//! watch, an event broadcast, a command sender, plus who is attached), so the console
//! cannot tell the difference. Quitting (or losing the terminal) only detaches: the
//! release goes on in `cutover serve`.

use std::process::ExitCode;

use super::{ConnectArgs, Error, UiArgs};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub ui: UiArgs,
}

pub fn run(args: AttachArgs) -> Result<ExitCode, Error> {
    super::attach_console(&args.connect, &args.ui)
}
