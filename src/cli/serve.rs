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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_INTERNAL, EXIT_INVALID, Output, StateDirArg};
use crate::control::{ControlServer, Listeners, ServerConfig, Tokens};
use crate::session::finish::finish_session;
use crate::session::handover::{Background, spawn_background};
use crate::session::resume::release_of_run;
use crate::session::{Begin, contract_mode, runtime, socket_path, start_session_with};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The release file (or `--resume`).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    pub file: Option<PathBuf>,
    /// Carry on with an interrupted run (the newest unfinished one, or `--run`).
    #[arg(long)]
    pub resume: bool,
    /// With `--resume`: the run to resume.
    #[arg(long, requires = "resume")]
    pub run: Option<String>,
    #[command(flatten)]
    pub state: StateDirArg,
    /// Who runs the release, for the journal (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
    /// The Unix socket [default: STATE_DIR/cutover.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve on loopback TCP, e.g. 127.0.0.1:7070 (requires --token-file).
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub listen: Option<SocketAddr>,
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
}

pub fn run(args: ServeArgs) -> ExitCode {
    let state_dir = args.state.resolve();
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| socket_path(&state_dir));
    let tokens = match (&args.listen, &args.token_file) {
        (Some(_), Some(f)) => match Tokens::load(f) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("cutover: --token-file: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        },
        (None, Some(_)) => {
            eprintln!(
                "cutover: --token-file is for --listen (TCP); the Unix socket needs no token"
            );
            return ExitCode::from(EXIT_INVALID);
        }
        _ => None,
    };
    if args.detach || args.console {
        let code = detach(&state_dir, &socket, args.console);
        if !args.console || code != ExitCode::SUCCESS {
            return code;
        }
        return super::attach::run(super::attach::AttachArgs {
            connect: super::ctl::ConnectArgs {
                state: StateDirArg {
                    state_dir: Some(state_dir.clone()),
                },
                socket: Some(socket.clone()),
                url: None,
                token_file: None,
                operator: args.operator.clone(),
            },
            ui: super::UiArgs::default(),
        });
    }
    // Log to stderr only here: with --console this terminal belongs to the console.
    super::init_logging();
    // Resolve what to run before touching anything.
    let (release, base_dir, begin, text_note) = if args.resume {
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
                    return ExitCode::from(EXIT_INTERNAL);
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
        (
            release,
            base_dir,
            Begin::Resume {
                run_id: run_id.clone(),
            },
            format!("resuming run {run_id}"),
        )
    } else {
        let Some(file) = args.file.clone() else {
            eprintln!("cutover: serve needs a release file or --resume");
            return ExitCode::from(EXIT_INVALID);
        };
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cutover: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_INVALID);
            }
        };
        let loaded = match crate::release::load(&file) {
            Ok(l) => l,
            Err(diags) => return super::report_diagnostics(&diags),
        };
        let base_dir = std::fs::canonicalize(&loaded.base_dir).unwrap_or(loaded.base_dir.clone());
        (
            loaded.release,
            base_dir,
            Begin::Fresh {
                file_label: file.display().to_string(),
                sha256: crate::journal::sha256_hex(&text),
            },
            String::new(),
        )
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
        let config = ServerConfig {
            socket: socket.clone(),
            tcp: args.listen.zip(tokens),
        };
        let listeners = match Listeners::bind(config).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cutover: {e}");
                return EXIT_INVALID;
            }
        };
        let session = match start_session_with(
            &release,
            &base_dir,
            &state_dir,
            begin,
            &operator,
            args.output,
            true,
            contract_mode(args.allow_contract, true),
        )
        .await
        {
            Ok(s) => s,
            Err(f) => {
                let _ = std::fs::remove_file(&socket);
                eprintln!("cutover: {}", f.message);
                return f.code;
            }
        };
        let server = ControlServer::start(
            listeners,
            session.hub.clone(),
            session.handle.commands.clone(),
        );
        if !text_note.is_empty() {
            eprintln!("cutover: {text_note}");
        }
        eprintln!(
            "cutover: run {} serving on {}{}",
            session.run_id,
            socket.display(),
            server
                .tcp_addr()
                .map(|a| format!(" and http://{a}"))
                .unwrap_or_default()
        );
        let code = finish_session(session, &operator, args.keep_running, |_| {
            (serde_json::json!({"served": true}), Vec::new())
        })
        .await;
        if !args.keep_running {
            tokio::time::sleep(args.linger).await;
        }
        server
            .shutdown(&format!(
                "the release finished (exit {code}); the server stopped"
            ))
            .await;
        code
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(code)
}

/// Start `cutover serve` again without `--detach` in a new session, output to a log file,
/// and wait for its socket.
fn detach(state_dir: &Path, socket: &Path, quiet: bool) -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--detach" && a != "--console")
        .collect();
    let Background {
        mut child,
        log: log_path,
    } = match spawn_background(state_dir, &argv) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cutover: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            if quiet {
                return ExitCode::SUCCESS;
            }
            println!(
                "cutover: serving in the background (pid {}) on {}; log {}",
                child.id(),
                socket.display(),
                log_path.display()
            );
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "cutover: the background server exited ({status}) before serving; see {}",
                log_path.display()
            );
            return ExitCode::from(
                status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(EXIT_INTERNAL),
            );
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "cutover: the background server (pid {}) did not open {} within 60 s; see {}",
                child.id(),
                socket.display(),
                log_path.display()
            );
            return ExitCode::from(EXIT_INTERNAL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
