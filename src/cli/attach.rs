//! `cutover attach`: the console against a served release. The client's snapshot and
//! event stream are adapted into the same channels the console uses in-process (a state
//! watch, an event broadcast, a command sender, plus who is attached), so the console
//! cannot tell the difference. Quitting (or losing the terminal) only detaches: the
//! release goes on in `cutover serve`.

use std::process::ExitCode;
use std::time::Duration;

use super::ctl::ConnectArgs;
use super::{EXIT_INVALID, UiArgs};
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
    crate::session::console::init_logging();
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
        crate::session::console::run_attached(remote, &operator, &endpoint, &(&args.ui).into())
            .await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}
