//! `cutover ctl ACTION [SERVICE]`: one command to a served release, for scripts and
//! chat-ops. Exit codes: 0 accepted (or status printed), 2 invalid input (flags, action,
//! token file, protocol version), 4 refused by the engine (its reason on stderr),
//! 5 not allowed (no/invalid/read-only token; the attempt is journaled by the server),
//! 1 internal (cannot reach the server, transport errors).

use std::process::ExitCode;

use super::{ConnectArgs, EXIT_REFUSED, Error};
use crate::control::CommandOutcome;
use crate::engine::Command;

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// pause, resume, promote, promote-all, rollback, approve, reject, abort, retry,
    /// start, contract, approve-break-glass (a release started with --break-glass that
    /// waits for approvals), or status (prints the snapshot as JSON).
    pub action: String,
    /// The service (needed by promote, promote-all, approve, reject, retry; optional for
    /// pause, resume, rollback), or the migration for contract.
    pub service: Option<String>,
    /// Why (journaled with the command).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: CtlArgs) -> Result<ExitCode, Error> {
    let client = args.connect.client().map_err(Error::Invalid)?;
    let command = if args.action == "status" {
        if args.service.is_some() {
            return Err(Error::Invalid(
                "`status` takes no service; it prints the whole release".into(),
            ));
        }
        None
    } else {
        let text = match &args.service {
            Some(s) => format!("{} {s}", args.action),
            None => args.action.clone(),
        };
        Some(Command::parse(&text).map_err(|e| Error::Invalid(format!("{e} (or `status`)")))?)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        match command {
            None => {
                let snap = client.snapshot().await?;
                let s = serde_json::to_string_pretty(&snap)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                println!("{s}");
                Ok(ExitCode::SUCCESS)
            }
            Some(c) => match client.command(c, args.reason.clone()).await? {
                CommandOutcome::Accepted { message, operator } => {
                    println!("{message} (as {operator})");
                    Ok(ExitCode::SUCCESS)
                }
                CommandOutcome::Refused(r) => {
                    // The engine's answer, not an error of this command.
                    eprintln!("cutover: {r}");
                    Ok(ExitCode::from(EXIT_REFUSED))
                }
            },
        }
    })
}
