//! `cutover serve FILE` / `cutover serve --resume`: run a release headless, as `deploy` and
//! `resume` do, and share it over the control API: a Unix socket in the state directory
//! (mode 0600) and optionally loopback TCP with tokens. Any number of `cutover attach`
//! consoles and `cutover ctl` calls can watch and act; closing them changes nothing.
//!
//! `--detach` starts the server in its own session (no terminal: a closed terminal or
//! SSH session cannot hang it up), waits until its socket answers, and returns. This is
//! how a console hands a release over to the background: the release's one journal
//! writer, the local platform's proxy and its service processes all live in that one
//! server process from the start, so nothing moves when a console goes away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{ConnectArgs, Error, Output, StateDirArg, UiArgs};
use crate::control::Tokens;
use crate::session::handover::serve_in_background;
use crate::session::{Front, RunSpec, Serving, socket_path};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The release file (or `--resume`).
    #[arg(required_unless_present_any = ["resume", "standby"], conflicts_with_all = ["resume", "standby"])]
    pub file: Option<PathBuf>,
    /// Run no release: watch the journal (PostgreSQL, `--journal`) and take over each
    /// unfinished run whose lease expired, serving it here (see docs/postgres-journal.md).
    #[arg(long, conflicts_with_all = ["resume", "detach", "console", "keep_running"])]
    pub standby: bool,
    /// Carry on with an interrupted run (the newest unfinished one, or `--run`).
    #[arg(long)]
    pub resume: bool,
    /// With `--resume`: the run to resume.
    #[arg(long, requires = "resume")]
    pub run: Option<String>,
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub journal: super::JournalArg,
    /// Who runs the release, for the journal (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
    /// The Unix socket [default: STATE_DIR/cutover.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve on TCP, e.g. 127.0.0.1:7070 (requires --token-file). An address that is
    /// not loopback also requires --tls-cert and --tls-key (remote pairing over TLS).
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub listen: Option<SocketAddr>,
    /// The server's certificate chain (PEM) for TLS on --listen.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; keep it mode 0600.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The tokens TCP clients must present (TOML, mode 0600; see PROTOCOL.md).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Event lines on stdout: text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// After the release finished, keep serving its final state until SIGINT/SIGTERM.
    #[arg(long)]
    pub keep_running: bool,
    /// After the release finished, keep serving this long so consoles see the end.
    #[arg(long, default_value = "2s", value_parser = super::parse_seconds)]
    pub linger: Duration,
    /// Run in the background (own session, output to a log file in the state directory);
    /// return once the socket answers.
    #[arg(long)]
    pub detach: bool,
    /// Run in the background and open the console on it here: quitting the console
    /// leaves the release running (`cutover attach` to come back).
    #[arg(long, conflicts_with = "detach")]
    pub console: bool,
    /// Run each migration's contract, without asking, once every listed service is
    /// promoted and baked (contract is one-way). Otherwise it waits for `contract NAME`
    /// (an attached console's dialog, or `cutover ctl contract NAME`).
    #[arg(long)]
    pub allow_contract: bool,
    #[command(flatten)]
    pub aws: super::AwsArgs,
    #[command(flatten)]
    pub metrics: super::metrics_listen::MetricsListenArg,
    /// `--env`, `--set` (not with `--resume`: a resumed run keeps what its journal says).
    #[command(flatten)]
    pub release: super::ReleaseArgs,
    /// Start even though the environments this one `requires` have not promoted the same
    /// artifact (break-glass): journaled with your name and the reason, shown in the console.
    #[arg(long, value_name = "REASON", value_hint = clap::ValueHint::Other)]
    #[arg(conflicts_with = "resume")]
    pub skip_requires: Option<String>,
    #[command(flatten)]
    pub policy: super::PolicyArgs,
    /// Not with `--resume`: a resumed run keeps the ticket its journal recorded.
    #[command(flatten)]
    pub change: super::ChangeArg,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let state_dir = args.state.resolve();
    let journal = args.journal.store(&state_dir)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| socket_path(&state_dir));
    let tokens = match (&args.listen, &args.token_file) {
        (Some(_), Some(f)) => {
            Some(Tokens::load(f).map_err(|e| Error::Invalid(format!("--token-file: {e}")))?)
        }
        (None, Some(_)) => {
            return Err(Error::Invalid(
                "--token-file is for --listen (TCP); the Unix socket needs no token".into(),
            ));
        }
        _ => None,
    };
    let tls = load_tls(&args).map_err(Error::Invalid)?;
    if args.detach || args.console {
        // Start `cutover serve` again without --detach/--console in a new session, output
        // to a log file, and wait for its socket.
        // A journal in PostgreSQL goes to the child by the environment, never on its
        // command line (the URL may hold a password, and `ps` shows argv).
        let argv = background_argv(std::env::args_os().skip(1));
        let started = serve_in_background(&state_dir, &socket, &argv, &journal)?;
        if !args.console {
            println!(
                "cutover: serving in the background (pid {}) on {}; log {}",
                started.pid,
                socket.display(),
                started.log.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let connect = ConnectArgs {
            state: StateDirArg {
                state_dir: Some(state_dir.clone()),
            },
            socket: Some(socket.clone()),
            url: None,
            token_file: None,
            operator: args.operator.clone(),
            run: None,
            // A run in PostgreSQL: the console follows it to a standby that takes it over.
            journal: args.journal.clone(),
        };
        return super::attach_console(&connect, &UiArgs::default());
    }
    // Log to stderr only here: with --console this terminal belongs to the console.
    super::init_logging();
    // Resolve what to run before touching anything.
    if args.resume && args.change.change.is_some() {
        return Err(Error::Invalid(
            "--change is for a new run; --resume keeps the change ticket its journal recorded"
                .into(),
        ));
    }
    if args.resume && args.release.given() {
        return Err(Error::Invalid(
            "--env and --set are for a new run; --resume resolves the release as its journal recorded".into(),
        ));
    }
    let operator = crate::engine::operator_name(args.operator.as_deref());
    if args.standby {
        return standby(args, journal, state_dir, socket, operator);
    }
    let (mut release, base_dir, mut begin) = if args.resume {
        crate::session::spec::from_journal(&journal, args.run.as_deref())?
    } else {
        let Some(file) = args.file.clone() else {
            return Err(Error::Invalid(
                "serve needs a release file or --resume".into(),
            ));
        };
        crate::session::spec::from_file(
            &file,
            &args.release.options(),
            &crate::session::lifecycle::Admission {
                journal: &journal,
                operator: &operator,
                skip_requires: args.skip_requires.as_deref(),
                policy: &args.policy.admission(&args.change),
            },
        )?
    };
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
        front: Front::Served(Serving {
            socket,
            tcp: args.listen.zip(tokens),
            tls,
            keep_running: args.keep_running,
            linger: args.linger,
        }),
        summary_extra: serde_json::json!({"served": true}),
    })?;
    Ok(ExitCode::from(code))
}

fn load_tls(args: &ServeArgs) -> Result<Option<crate::control::server::ServerTls>, String> {
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::control::server::ServerTls::load(cert, key).map_err(|e| e.to_string())?)
        }
        _ => None,
    })
}

/// `serve --standby`: the control API's files are read again for each run taken over.
fn standby(
    args: ServeArgs,
    journal: crate::journal::JournalStore,
    state_dir: PathBuf,
    socket: PathBuf,
    operator: String,
) -> Result<ExitCode, Error> {
    if args.release.given() || args.change.change.is_some() || args.skip_requires.is_some() {
        return Err(Error::Invalid(
            "--env, --set, --change and --skip-requires are for a new run; --standby resumes runs as their journal recorded them".into(),
        ));
    }
    let metrics_listen = args.metrics.metrics_listen.map(|a| a.to_string());
    let linger = args.linger;
    let (output, allow_contract, aws) = (args.output, args.allow_contract, args.aws.to_session());
    let serving = move || -> Result<Serving, crate::session::Failure> {
        let tokens = match (&args.listen, &args.token_file) {
            (Some(addr), Some(f)) => Some((
                *addr,
                Tokens::load(f)
                    .map_err(|e| crate::session::Failure::invalid(format!("--token-file: {e}")))?,
            )),
            _ => None,
        };
        let tls = load_tls(&args).map_err(crate::session::Failure::invalid)?;
        Ok(Serving {
            socket: socket.clone(),
            tcp: tokens,
            tls,
            keep_running: false,
            linger,
        })
    };
    let code = crate::session::standby::watch(crate::session::standby::StandbySpec {
        journal,
        state_dir,
        operator,
        output,
        allow_contract,
        aws,
        metrics_listen,
        serving: Box::new(serving),
    })?;
    Ok(ExitCode::from(code))
}

/// This command's arguments for the background `cutover serve`: without `--detach` and
/// `--console`, and without `--journal URL` (the journal goes by the environment).
fn background_argv(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if a == "--journal" {
            skip_value = true;
            continue;
        }
        if a == "--detach" || a == "--console" || a.to_string_lossy().starts_with("--journal=") {
            continue;
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::background_argv;

    #[test]
    fn the_background_server_gets_no_journal_url_on_its_command_line() {
        let argv = |s: &str| {
            background_argv(s.split(' ').map(std::ffi::OsString::from))
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            argv("serve r.toml --journal postgres://u:pw@h/db --detach --operator al"),
            "serve r.toml --operator al"
        );
        assert_eq!(
            argv("serve --journal=postgres://u:pw@h/db r.toml --console"),
            "serve r.toml"
        );
    }
}
