//! `cutover ctl ACTION [SERVICE]`: one command to a served release, for scripts and
//! chat-ops. Exit codes: 0 accepted (or status printed), 2 invalid input (flags, action,
//! token file, protocol version), 4 refused by the engine (its reason on stderr),
//! 5 not allowed (no/invalid/read-only token; the attempt is journaled by the server),
//! 1 internal (cannot reach the server, transport errors).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_INTERNAL, EXIT_INVALID, StateDirArg};
use crate::control::{Client, ClientError, CommandOutcome, Endpoint};
use crate::engine::Command;

/// The engine refused the command (its reason is on stderr).
pub const EXIT_REFUSED: u8 = 4;
/// The server did not let this caller act (token missing, wrong or read-only).
pub const EXIT_DENIED: u8 = 5;

/// How to reach a served release (shared with `attach`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// The server's Unix socket [default: STATE_DIR/cutover.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub socket: Option<PathBuf>,
    /// The server's TCP address, e.g. http://127.0.0.1:7070 (needs --token-file).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the token for --url (just the token, or a token file with the
    /// entry named by --operator); mode 0600.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Who acts, for the journal (default: $USER; over TCP the token names you).
    #[arg(long)]
    pub operator: Option<String>,
}

impl ConnectArgs {
    /// A client for these flags (errors are invalid input).
    pub fn client(&self) -> Result<Client, String> {
        let operator = crate::engine::operator_name(self.operator.as_deref());
        let endpoint = match (&self.url, &self.socket) {
            (Some(u), _) => Endpoint::from_url(u).map_err(|e| e.to_string())?,
            (None, Some(p)) => Endpoint::Unix(p.clone()),
            (None, None) => Endpoint::Unix(crate::session::socket_path(&self.state.resolve())),
        };
        let token = match (&self.token_file, &endpoint) {
            (Some(f), Endpoint::Tcp(_)) => Some(
                crate::control::tokens::client_token(f, self.operator.as_deref())
                    .map_err(|e| format!("--token-file: {e}"))?,
            ),
            (None, Endpoint::Tcp(_)) => {
                return Err(
                    "--url needs --token-file: the TCP listener only answers token holders".into(),
                );
            }
            (_, Endpoint::Unix(_)) => None,
        };
        Ok(Client::new(endpoint, &operator).with_token(token))
    }
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// pause, resume, promote, promote-all, rollback, approve, reject, abort, retry,
    /// start, contract, or status (prints the snapshot as JSON).
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

/// Map a client error to an exit code, printing it.
pub(crate) fn report(e: &ClientError) -> u8 {
    eprintln!("cutover: {e}");
    match e {
        ClientError::Usage(_) | ClientError::Protocol(_) => EXIT_INVALID,
        ClientError::Server { code, .. }
            if code == "protocol_mismatch" || code == "bad_request" =>
        {
            EXIT_INVALID
        }
        e if e.is_denied() => EXIT_DENIED,
        _ => EXIT_INTERNAL,
    }
}

pub fn run(args: CtlArgs) -> ExitCode {
    let client = match args.connect.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cutover: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let command = if args.action == "status" {
        if args.service.is_some() {
            eprintln!("cutover: `status` takes no service; it prints the whole release");
            return ExitCode::from(EXIT_INVALID);
        }
        None
    } else {
        let text = match &args.service {
            Some(s) => format!("{} {s}", args.action),
            None => args.action.clone(),
        };
        match Command::parse(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("cutover: {e} (or `status`)");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let code = rt.block_on(async {
        match command {
            None => match client.snapshot().await {
                Ok(snap) => match serde_json::to_string_pretty(&snap) {
                    Ok(s) => {
                        println!("{s}");
                        0
                    }
                    Err(e) => {
                        eprintln!("cutover: {e}");
                        EXIT_INTERNAL
                    }
                },
                Err(e) => report(&e),
            },
            Some(c) => match client.command(c, args.reason.clone()).await {
                Ok(CommandOutcome::Accepted { message, operator }) => {
                    println!("{message} (as {operator})");
                    0
                }
                Ok(CommandOutcome::Refused(r)) => {
                    eprintln!("cutover: {r}");
                    EXIT_REFUSED
                }
                Err(e) => report(&e),
            },
        }
    });
    ExitCode::from(code)
}
