//! The command line: one subcommand per job, each in its own file. Exit codes are an
//! interface: 0 success, 2 invalid input, 3 something rolled back, 1 internal error.

mod audit;
mod check_config;
mod completions;
mod diff;
mod history;
mod journal;
pub mod metrics_listen;
mod migrate;
mod plan;
mod policy;
mod print;
mod render;
mod report;
mod schema;
mod stats;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod judge_bench;
pub mod judge_replay;

pub mod attach;
pub mod ctl;
pub mod demo;
pub mod demo_service;
pub mod deploy;
pub mod load;
pub mod resume;
pub mod serve;

use crate::session::Failure;
pub use crate::session::exit::{EXIT_INTERNAL, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_UNFINISHED};
pub use crate::session::spec::Output;

/// Exit code of `ctl` when the engine refused the command (its reason is on stderr).
pub const EXIT_REFUSED: u8 = 4;
/// Exit code when the server did not let this caller act (token missing, wrong or
/// read-only).
pub const EXIT_DENIED: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Run production releases as a process you can watch and steer",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check release files; print every problem as FILE:LINE:COL with a hint (exit 2 if any).
    ///
    /// A release with environments is checked in each one (or only in --env).
    Validate {
        /// Release files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        release: ReleaseArgs,
    },
    /// Print what a release will do: waves, every service's steps, and timing.
    Plan {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: ReleaseArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The policy file whose [images] pin the plan shows for ECS images; default:
        /// $CUTOVER_POLICY, else policy.toml in the config directory, if there is one.
        #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        policy: Option<PathBuf>,
    },
    /// Print the release resolved for an environment and variable values, as TOML: every
    /// value written out, no variables or environments left.
    Render {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: ReleaseArgs,
        /// The tenant whose release to print; required when the release has [[tenant]]s
        /// (each tenant's release is the release with the tenant's vars, smoke tests and
        /// analysis bounds).
        #[arg(long = "tenant", value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Print the JSON Schema of the release format (for editors).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    Man(completions::ManArgs),
    /// Benchmark canary judges on seeded, simulated baseline-versus-canary traffic.
    #[command(name = "judge-bench")]
    JudgeBench(judge_bench::JudgeBenchArgs),
    /// Canary judge tools.
    Judge {
        #[command(subcommand)]
        command: judge_replay::JudgeCommand,
    },
    /// Run a release: services in dependency order, each by its strategy, rolled back
    /// automatically on failure (exit 0 all promoted, 3 something rolled back).
    Deploy(deploy::DeployArgs),
    /// A five-service release on this machine under load, with one broken candidate the
    /// engine catches and rolls back while the rest promotes.
    Demo(demo::DemoArgs),
    /// Carry on with an interrupted run from its journal (after a crash or kill -9).
    Resume(resume::ResumeArgs),
    /// Run a release headless and share it: a control API on a Unix socket in the state
    /// directory (and optionally loopback TCP with tokens) for `attach` and `ctl`.
    Serve(serve::ServeArgs),
    /// Open the console on a served release: its state, live events, commands; the
    /// status bar lists who is attached. Quitting only detaches.
    Attach(attach::AttachArgs),
    /// Send one command to a served release (or `status` for its state as JSON).
    /// Exit 0 accepted, 2 invalid input, 4 refused by the engine, 5 not allowed, 1 internal.
    Ctl(ctl::CtlArgs),
    /// Check your console keymap.toml and themes/*.toml; print every problem as FILE:LINE
    /// (exit 2 if any).
    #[command(name = "check-config")]
    CheckConfig(check_config::CheckConfigArgs),
    /// Print the config directories, the keymap in force, or the theme slots.
    Print(print::PrintArgs),
    /// Run a small HTTP service with injectable faults (for demos, tests, rehearsals).
    DemoService(demo_service::DemoServiceArgs),
    /// Send HTTP load to URLs and report status counts, errors and latency.
    Load(load::LoadArgs),
    /// List the journaled runs, newest first: release, start, finish, outcome, entries.
    History {
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        journal: JournalArg,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The release report of a run (the newest by default): what changed, who did what,
    /// each verdict with its evidence, rollbacks, timeline, the journal's last hash.
    Report(report::ReportArgs),
    /// Delivery metrics over the journaled runs: deployments, success and change failure
    /// rates, duration and time to restore (median, p90), by service and environment.
    Stats(stats::StatsArgs),
    /// Print every command and decision of a run (or of every run of a release) with time,
    /// operator and reason; `audit verify` checks the hash chains.
    Audit(audit::AuditArgs),
    /// Move finished runs between the PostgreSQL journal and the file journal, the hash
    /// chain checked both ways.
    Journal {
        #[command(subcommand)]
        command: journal::JournalCommand,
    },
    /// Database migrations: lint, dry run on a copy, history and drift.
    Migrate {
        #[command(subcommand)]
        command: migrate::MigrateCommand,
    },
    /// Change control: check a release against the policy (freeze windows, Rego) alone.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Check that everything an ECS release names exists in the AWS account and matches,
    /// before any change (exit 2 if something is missing).
    Verify {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: ReleaseArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show what an ECS release would change in each task definition (image, env, secrets,
    /// cpu/memory) against what runs now.
    ///
    /// With `--between A B`: which differences between two environments the release
    /// declares and which are drift (exit 2 on drift).
    Diff {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        release: ReleaseArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Compare two environments of the release instead (parity): every difference is
        /// declared by the release or drift; exit 2 on drift.
        #[arg(long, num_args = 2, value_names = ["A", "B"], value_hint = clap::ValueHint::Other)]
        between: Option<Vec<String>>,
    },
}

/// Change control of a fresh run (`deploy`, `serve`): the policy file in force, the change
/// ticket, and a freeze's break-glass.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// The policy file (freeze windows, roster, approval rules, Rego policies); default:
    /// $CUTOVER_POLICY, else policy.toml in the config directory, if there is one.
    #[arg(long, value_name = "FILE", env = "CUTOVER_POLICY", value_hint = clap::ValueHint::FilePath)]
    pub policy: Option<std::path::PathBuf>,
    /// Start inside a freeze window: needs the approvals the policy's [break_glass] names,
    /// given with --break-glass-approver, or else by others while the release waits
    /// before any platform action (`cutover ctl approve-break-glass`, or the console);
    /// journaled with your name and the reason.
    #[arg(long, value_name = "REASON", value_hint = clap::ValueHint::Other)]
    pub break_glass: Option<String>,
    /// Who approved the break-glass (repeatable); checked against [break_glass].
    #[arg(long, value_name = "NAME", requires = "break_glass", value_hint = clap::ValueHint::Other)]
    pub break_glass_approver: Vec<String>,
}

impl PolicyArgs {
    /// What the policy gate is told; `change` is `--change` (Rego's `input.change`, else
    /// the release's `[release] change`).
    pub fn admission(&self, change: &ChangeArg) -> crate::session::policy_gate::PolicyAdmission {
        crate::session::policy_gate::PolicyAdmission {
            policy: self.policy.clone(),
            change: change.change.clone(),
            break_glass: self.break_glass.clone(),
            break_glass_approvers: self.break_glass_approver.clone(),
        }
    }
}

/// Which environment of a release and which variable values: every command that reads a
/// release file flattens these.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReleaseArgs {
    /// The environment to resolve the release for; required when the release declares
    /// environments ([environments.NAME]).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
    /// Override a variable of [vars]: NAME=VALUE, or NAME=env:VAR to read the value from
    /// the environment (journaled by the variable's name only). Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<crate::release::SetArg>,
}

impl ReleaseArgs {
    /// The options `release::load` takes.
    pub fn options(&self) -> crate::release::LoadOptions {
        crate::release::LoadOptions {
            env: self.env.clone(),
            sets: self.set.clone(),
            lenient_env: false,
        }
    }

    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        self.env.is_some() || !self.set.is_empty()
    }
}

/// Console flags shared by `deploy`, `resume`, `demo` and `attach`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UiArgs {
    /// Watch only: hide every action that changes the release.
    #[arg(long)]
    pub read_only: bool,
    /// Theme: dark, light, high-contrast, mono, or one of yours [default: dark].
    #[arg(long, env = "CUTOVER_THEME")]
    pub theme: Option<String>,
    /// Shipped keymap under your keymap.toml: default or vim.
    #[arg(long, env = "CUTOVER_KEYMAP")]
    pub keymap: Option<String>,
    /// No colours (the mono theme); also when NO_COLOR is set.
    #[arg(long)]
    pub no_color: bool,
    /// Click to focus panes and select services, wheel to scroll.
    #[arg(long)]
    pub mouse: bool,
    /// Read keymap.toml and themes/ from here instead of the config directory.
    #[arg(long, env = "CUTOVER_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

impl From<&UiArgs> for crate::session::UiOptions {
    fn from(a: &UiArgs) -> Self {
        crate::session::UiOptions {
            read_only: a.read_only,
            theme: a.theme.clone(),
            keymap: a.keymap.clone(),
            no_color: a.no_color,
            mouse: a.mouse,
            config_dir: a.config_dir.clone(),
        }
    }
}

/// How to reach a served release (shared with `attach`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// The server's Unix socket [default: STATE_DIR/cutover.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub socket: Option<PathBuf>,
    /// The server's TCP address, e.g. http://127.0.0.1:7070, or https://HOST:PORT for a
    /// server with --tls-cert (checked against the system store plus SSL_CERT_FILE); needs
    /// --token-file.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the token for --url (just the token, or a token file with the
    /// entry named by --operator); mode 0600.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Who acts, for the journal (default: $USER; over TCP the token names you).
    #[arg(long)]
    pub operator: Option<String>,
    /// Reach the engine serving this run now: after a standby took it over, the address
    /// it journaled (its --listen URL, else its socket); needs the run's --journal.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["socket", "url"])]
    pub run: Option<String>,
    #[command(flatten)]
    pub journal: JournalArg,
}

impl ConnectArgs {
    /// A client for these flags (errors are invalid input).
    pub fn client(&self) -> Result<crate::control::Client, String> {
        let operator = crate::engine::operator_name(self.operator.as_deref());
        let taken_over = match &self.run {
            Some(run) => {
                let journal = self
                    .journal
                    .store(&self.state.resolve())
                    .map_err(|e| e.to_string())?;
                crate::session::follow::leader_of(&journal, run)?.map(|l| l.endpoint)
            }
            None => None,
        };
        let endpoint = match (&self.url, &self.socket, taken_over) {
            (_, _, Some(e)) => e,
            (Some(u), _, None) => {
                crate::control::Endpoint::from_url(u).map_err(|e| e.to_string())?
            }
            (None, Some(p), None) => crate::control::Endpoint::Unix(p.clone()),
            (None, None, None) => {
                crate::control::Endpoint::Unix(crate::session::socket_path(&self.state.resolve()))
            }
        };
        let token = match (&self.token_file, &endpoint) {
            (Some(f), crate::control::Endpoint::Tcp(_) | crate::control::Endpoint::Https(_)) => {
                Some(
                    crate::control::tokens::client_token(f, self.operator.as_deref())
                        .map_err(|e| format!("--token-file: {e}"))?,
                )
            }
            (None, crate::control::Endpoint::Tcp(_) | crate::control::Endpoint::Https(_)) => {
                return Err(
                    "--url needs --token-file: the TCP listener only answers token holders".into(),
                );
            }
            (_, crate::control::Endpoint::Unix(_)) => None,
        };
        Ok(crate::control::Client::new(endpoint, &operator).with_token(token))
    }

    /// What an attached console needs to follow its run to the engine that takes it over:
    /// the run's journal when it is in PostgreSQL (`--journal`, `CUTOVER_JOURNAL`) and the
    /// token file. `None` for the file journal.
    pub fn follow(&self) -> Result<Option<crate::session::follow::Follow>, String> {
        let journal = self
            .journal
            .store(&self.state.resolve())
            .map_err(|e| e.to_string())?;
        Ok(crate::session::follow::Follow::new(
            journal,
            self.token_file.clone(),
            self.operator.clone(),
        ))
    }
}

/// The console on a served release, here (`attach`, `serve --console`): the same console
/// runner as a run's own, on the remote link.
fn attach_console(connect: &ConnectArgs, ui: &UiArgs) -> Result<ExitCode, Error> {
    let client = connect
        .client()
        .map_err(Error::Invalid)?
        .read_only(ui.read_only);
    crate::session::console::init_logging();
    let rt = crate::session::runtime()?;
    let operator = client.operator().to_string();
    let endpoint = client.endpoint().to_string();
    let follow = connect.follow().map_err(Error::Invalid)?;
    let ui = ui.into();
    let code = rt.block_on(async move {
        let remote =
            crate::session::remote_link_following(client, follow, connect.run.as_deref()).await?;
        Ok::<u8, crate::control::ClientError>(
            crate::session::console::run_attached(remote, &operator, &endpoint, &ui).await,
        )
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(ExitCode::from(code?))
}

// What `verify` and `diff` share: load an ECS release and build the platform for it.

/// Where to find the AWS account: the standard chain, narrowed by these flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// AWS region for services without `region` in [service.ecs] (default: AWS_REGION or the
    /// profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// A named profile from ~/.aws/config (default: AWS_PROFILE, then `default`).
    #[arg(long)]
    pub profile: Option<String>,
}

impl AwsArgs {
    pub fn to_session(&self) -> crate::session::Aws {
        crate::session::Aws {
            region: self.region.clone(),
            profile: self.profile.clone(),
        }
    }
}

/// Load and validate the release, check it targets ECS, and build the platform.
pub fn ecs_platform(
    file: &std::path::Path,
    release: &ReleaseArgs,
    args: &AwsArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<crate::platform::ecs::EcsPlatform, Error> {
    let loaded = crate::release::load(file, &release.options())?;
    ecs_platform_for(&loaded, args, rt)
}

/// [`ecs_platform`] for a release already loaded.
pub fn ecs_platform_for(
    loaded: &crate::release::LoadedRelease,
    args: &AwsArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<crate::platform::ecs::EcsPlatform, Error> {
    let file = &loaded.path;
    if loaded.release.release.platform != crate::release::PlatformKind::Ecs {
        return Err(Error::Verbatim {
            text: format!(
                "{}: the release's platform is \"{}\"; this command checks ECS releases (set `platform = \"ecs\"` in [release])",
                file.display(),
                loaded.release.release.platform.as_str()
            ),
            code: EXIT_INVALID,
        });
    }
    let conf = rt.block_on(crate::platform::ecs::aws::load_config(
        args.region.as_deref(),
        args.profile.as_deref(),
    ));
    if conf.region().is_none()
        && loaded
            .release
            .services
            .iter()
            .any(|s| s.ecs.as_ref().is_some_and(|e| e.region.is_none()))
    {
        return Err(Error::Invalid(
            "no AWS region: pass --region, set AWS_REGION, or add `region` to each [service.ecs]"
                .into(),
        ));
    }
    crate::platform::ecs::EcsPlatform::from_release(&loaded.release, &conf)
        .map_err(|e| Error::Invalid(e.to_string()))
}

pub fn aws_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

/// `--change TICKET`: the change ticket a run ships under.
#[derive(Debug, Clone, Args)]
pub struct ChangeArg {
    /// The change ticket this release ships under (e.g. CHG-1234), overriding `[release]
    /// change`: journaled, shown in the console's banner, webhooks, history, audit and the
    /// report
    #[arg(long = "change", value_name = "TICKET", value_parser = parse_change, value_hint = clap::ValueHint::Other)]
    pub change: Option<String>,
}

fn parse_change(s: &str) -> Result<String, String> {
    crate::release::change::check(s).map(|()| s.to_string())
}

/// `--state-dir DIR`: where runs are journaled.
#[derive(Debug, Clone, Args)]
pub struct StateDirArg {
    /// Where runs are journaled [default: cutover's data directory, e.g.
    /// ~/.local/share/cutover]
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        env = "CUTOVER_STATE_DIR",
        value_parser = parse_state_dir
    )]
    pub state_dir: Option<PathBuf>,
}

pub(crate) fn parse_state_dir(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        Err("the state directory is empty: pass a directory, or unset CUTOVER_STATE_DIR to use the default".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// `--journal`: where runs are journaled when not in files under the state directory.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JournalArg {
    /// Journal runs in PostgreSQL: postgres://USER@HOST:PORT/DB, or env:VAR naming a
    /// variable that holds the URL (keeps a password off the command line). The URL is
    /// never printed; messages name postgres://HOST:PORT/DB. See docs/postgres-journal.md
    /// [default: files under the state directory]
    #[arg(
        long = "journal",
        value_name = "URL",
        env = "CUTOVER_JOURNAL",
        hide_env_values = true
    )]
    pub journal: Option<String>,
}

impl JournalArg {
    /// The journal in force: PostgreSQL when given, else the file journal under `state_dir`.
    pub fn store(
        &self,
        state_dir: &std::path::Path,
    ) -> Result<crate::journal::JournalStore, crate::journal::JournalError> {
        crate::journal::JournalStore::resolve(self.journal.as_deref(), state_dir)
    }
}

impl StateDirArg {
    /// The flag, else `CUTOVER_STATE_DIR`, else the default data directory.
    pub fn resolve(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::journal::default_state_dir)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints() {
        default_sigpipe();
    }
    exit(match cli.command {
        Command::Validate { files, release } => validate::run(&files, &release),
        Command::Plan {
            file,
            release,
            output,
            policy,
        } => plan::run(&file, &release, output, policy.as_deref()),
        Command::Render {
            file,
            release,
            tenant,
        } => render::run(&file, &release, tenant.as_deref()),
        Command::Schema => schema::run(),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
        Command::JudgeBench(args) => judge_bench::run(args),
        Command::Judge { command } => judge_replay::run(command),
        Command::Deploy(args) => deploy::run(args),
        Command::Resume(args) => resume::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Attach(args) => attach::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Print(args) => print::run(args),
        Command::Demo(args) => demo::run(args),
        Command::DemoService(args) => demo_service::run(args),
        Command::Load(args) => load::run(args),
        Command::History {
            state,
            journal,
            output,
        } => journal
            .store(&state.resolve())
            .map_err(Error::from)
            .and_then(|store| history::run(&store, output)),
        Command::Audit(args) => audit::run(args),
        Command::Report(args) => report::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Journal { command } => journal::run(command),
        Command::Migrate { command } => migrate::run(command),
        Command::Policy { command } => policy::run(command),
        Command::Verify {
            file,
            release,
            aws,
            output,
        } => verify::run(&file, &release, &aws, output),
        Command::Diff {
            file,
            release,
            aws,
            output,
            between: Some(envs),
        } => diff::between(&file, &release, &envs, &aws, output),
        Command::Diff {
            file,
            release,
            aws,
            output,
            between: None,
        } => diff::run(&file, &release, &aws, output),
    })
}

impl Command {
    /// Commands that only read and print: a closed stdout (`| head`) ends them quietly,
    /// as it ends `ls` or `grep`. Commands that run or steer a release keep SIGPIPE
    /// ignored (Rust's default) and never die of a closed pipe.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Validate { .. }
                | Command::Plan { .. }
                | Command::Render { .. }
                | Command::Schema
                | Command::Completions(_)
                | Command::Man(_)
                | Command::History { .. }
                | Command::Audit(_)
                | Command::Report(_)
                | Command::Stats(_)
                | Command::Print(_)
                | Command::Verify { .. }
                | Command::Diff { .. }
                | Command::Migrate { .. }
                | Command::Journal { .. }
                | Command::Policy { .. }
                | Command::Judge { .. }
                | Command::JudgeBench(_)
                | Command::CheckConfig(_)
        )
    }
}

/// Restore the default action of SIGPIPE (terminate quietly).
fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler; called once, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Why a command failed. Every command that can fail returns one; [`Error::report`] is
/// the one place that prints it and maps it to its exit code.
pub enum Error {
    /// Invalid input (a flag, a file that is not there): exit 2.
    Invalid(String),
    /// An internal error: exit 1.
    Internal(String),
    /// A run's failure, with its own exit code.
    Failure(Failure),
    /// Problems in a release, printed the way `validate` prints them: exit 2.
    Diagnostics(Vec<crate::release::Diagnostic>),
    /// 2 when the caller named a run that is not there (or busy), 1 otherwise.
    Journal(crate::journal::JournalError),
    /// Talking to a served release: 2 invalid, 5 not allowed, 1 otherwise.
    Client(crate::control::ClientError),
    /// Invalid input to a standalone tool (`judge`, `judge-bench`, `load`,
    /// `demo-service`), which words its errors `error: …`: exit 2.
    ToolInvalid(String),
    /// An internal error of a standalone tool, `error: …`: exit 1.
    ToolInternal(String),
    /// A message already worded in full (`FILE: …`, a list of problems), printed as it
    /// is, with its exit code.
    Verbatim { text: String, code: u8 },
}

impl From<crate::migrate::MigrateError> for Error {
    fn from(e: crate::migrate::MigrateError) -> Self {
        let message = e.to_string();
        Error::migrate(&e, message)
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Failure(f)
    }
}

impl From<Vec<crate::release::Diagnostic>> for Error {
    fn from(d: Vec<crate::release::Diagnostic>) -> Self {
        Error::Diagnostics(d)
    }
}

impl From<crate::report::ReportError> for Error {
    fn from(e: crate::report::ReportError) -> Error {
        if e.is_invalid_input() {
            Error::Invalid(e.to_string())
        } else {
            Error::Internal(e.to_string())
        }
    }
}

impl From<crate::journal::JournalError> for Error {
    fn from(e: crate::journal::JournalError) -> Self {
        Error::Journal(e)
    }
}

impl From<crate::control::ClientError> for Error {
    fn from(e: crate::control::ClientError) -> Self {
        Error::Client(e)
    }
}

impl From<crate::session::spec::SourceError> for Error {
    fn from(e: crate::session::spec::SourceError) -> Self {
        match e {
            crate::session::spec::SourceError::Failure(f) => Error::Failure(f),
            crate::session::spec::SourceError::Invalid(d) => Error::Diagnostics(d),
        }
    }
}

impl Error {
    /// A migration error worded as `message`: internal when the database (or its copy)
    /// failed, invalid input otherwise.
    pub fn migrate(e: &crate::migrate::MigrateError, message: String) -> Self {
        use crate::migrate::MigrateError;
        match e {
            MigrateError::Connect { .. }
            | MigrateError::Db { .. }
            | MigrateError::DryRun { .. }
            | MigrateError::LockTimeout { .. } => Error::Internal(message),
            _ => Error::Invalid(message),
        }
    }

    /// Print the error on stderr and return its exit code.
    pub fn report(self) -> u8 {
        use crate::control::ClientError;
        match self {
            Error::Invalid(m) => {
                eprintln!("cutover: {m}");
                EXIT_INVALID
            }
            Error::Internal(m) => {
                eprintln!("cutover: {m}");
                EXIT_INTERNAL
            }
            Error::Failure(f) => {
                eprintln!("cutover: {}", f.message);
                f.code
            }
            Error::Diagnostics(diags) => {
                for d in &diags {
                    eprint!("{d}");
                }
                let files: std::collections::BTreeSet<_> =
                    diags.iter().map(|d| d.file.clone()).collect();
                eprintln!("{} problem(s) in {} file(s)", diags.len(), files.len());
                EXIT_INVALID
            }
            Error::Journal(e) => {
                eprintln!("cutover: {e}");
                if e.is_invalid_input() {
                    EXIT_INVALID
                } else {
                    EXIT_INTERNAL
                }
            }
            Error::Client(e) => {
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
            Error::ToolInvalid(m) => {
                eprintln!("error: {m}");
                EXIT_INVALID
            }
            Error::ToolInternal(m) => {
                eprintln!("error: {m}");
                EXIT_INTERNAL
            }
            Error::Verbatim { text, code } => {
                eprintln!("{text}");
                code
            }
        }
    }
}

/// A command's result as the process's exit code (errors printed).
fn exit(r: Result<ExitCode, Error>) -> ExitCode {
    r.unwrap_or_else(|e| ExitCode::from(e.report()))
}

/// Log to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_logging() {
    init_logging_at("info");
}

/// Log to stderr, filtered by `RUST_LOG`, else at `default` (`"warn"` for the headless
/// front ends, whose own event lines are the output; `RUST_LOG=info` adds platform and
/// service logs). Safe to call twice.
pub fn init_logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A flag duration: a bare number means seconds (`5`, `0.5`), otherwise a duration
/// with a unit (`1500ms`, `30s`, `2m`).
pub fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return t
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s <= 365.0 * 86_400.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("`{text}` is not a number of seconds; write e.g. 30 or 30s"));
    }
    crate::duration::parse_duration(t).map_err(|e| e.to_string())
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), so text from files (journal
/// payloads, release names) cannot move the cursor or recolour the terminal.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn attach_offers_the_console_options_of_deploy() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let longs = |name: &str| -> std::collections::BTreeSet<String> {
            cli.find_subcommand(name)
                .map(|c| {
                    c.get_arguments()
                        .filter_map(|a| a.get_long().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (deploy, attach) = (longs("deploy"), longs("attach"));
        for ui in [
            "config-dir",
            "theme",
            "keymap",
            "no-color",
            "mouse",
            "read-only",
        ] {
            assert!(deploy.contains(ui), "deploy lacks --{ui}");
            assert!(attach.contains(ui), "attach lacks --{ui}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain ü"), "plain ü");
        assert_eq!(printable("a\nb\u{1b}[2J\t"), "a\\nb\\u{1b}[2J\\t");
    }
}
