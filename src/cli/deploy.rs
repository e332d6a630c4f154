//! `cutover deploy FILE`: run a release headless (the console becomes the default front
//! end when it lands), printing one line per event (or one JSON object per line) and a
//! closing summary. Shared with `resume` and `demo`: starting the local platform, the
//! engine, the printer and the notifier, and ending them in order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{EXIT_INTERNAL, EXIT_INVALID, Output, StateDirArg};
use crate::engine::notify::{NotifyOptions, spawn_notifier};
use crate::engine::{
    Command, Engine, EngineHandle, EngineOptions, Event, JournalRecorder, RealSmoke, ReleaseState,
    SystemClock, describe, spawn,
};
use crate::journal::{Journal, NewEntry};
use crate::platform::Platform;
use crate::platform::local::LocalPlatform;
use crate::platform::local::from_release::local_config;
use crate::release::{PlatformKind, Release};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The release file.
    pub file: PathBuf,
    /// No console: print one line per event (also when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    #[command(flatten)]
    pub ui: super::console_front::UiArgs,
    /// `json`: one JSON object per line, ending with a `summary` object.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub state: StateDirArg,
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
}

/// How contract is confirmed: `--allow-contract`, else the console asks, else (headless)
/// the release ends with it pending.
pub(crate) fn contract_mode(allow: bool, console: bool) -> crate::engine::ContractMode {
    use crate::engine::ContractMode;
    match (allow, console) {
        (true, _) => ContractMode::Allow,
        (false, true) => ContractMode::Confirm,
        (false, false) => ContractMode::Defer,
    }
}

/// A failure with its exit code and message.
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_INTERNAL,
            message: message.into(),
        }
    }
}

/// The journal entry that stores the release itself, so `resume` needs no file.
pub(crate) const RELEASE_ENTRY: &str = "release";

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))
}

/// Everything a running release consists of.
pub(crate) struct Session {
    pub handle: EngineHandle,
    pub platform: Arc<dyn Platform>,
    pub printer: JoinHandle<()>,
    pub notifier: Option<JoinHandle<()>>,
    pub run_id: String,
    pub output: Output,
    /// Numbers and fans out the engine's events to control API clients.
    pub hub: Arc<crate::control::Hub>,
    /// Where the run is journaled (and a console shares it: `STATE_DIR/cutover.sock`).
    pub state_dir: PathBuf,
    /// How contracts are confirmed (a hand-over to `serve` keeps `--allow-contract`).
    pub contract: crate::engine::ContractMode,
}

/// How a session starts: a fresh run, or a journal to resume.
pub(crate) enum Begin {
    Fresh { file_label: String, sha256: String },
    Resume { run_id: String },
}

/// Start the platform (local, or ECS through [`super::deploy_ecs`]), the engine (new or restored), the printer (unless the
/// console replaces it: `printer` false) and the notifier.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_session_with(
    release: &Release,
    base_dir: &Path,
    state_dir: &Path,
    begin: Begin,
    operator: &str,
    output: Output,
    printer: bool,
    contract: crate::engine::ContractMode,
) -> Result<Session, Failure> {
    // Read and lint the migrations' files before anything starts (the engine refuses a
    // blocking finding with its own journaled message).
    let migrations = release
        .migrations
        .iter()
        .map(|m| crate::migrate::PreparedMigration::new(m, base_dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
    preflight_databases(&release.release.name, &migrations).await?;
    let (mut journal, prior, prior_entries) = match begin {
        Begin::Fresh { file_label, sha256 } => {
            let mut j = Journal::create(state_dir, &release.release.name, &sha256)
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            let release_json = serde_json::to_value(release)
                .map_err(|e| Failure::internal(format!("cannot record the release: {e}")))?;
            j.append(NewEntry {
                at_ms: crate::engine::Clock::now_ms(&SystemClock),
                operator: Some(operator.to_string()),
                kind: RELEASE_ENTRY.into(),
                service: None,
                payload: serde_json::json!({
                    "summary": format!("release {} from {file_label}", release.release.name),
                    "file": file_label,
                    "base_dir": base_dir.to_string_lossy(),
                    "release": release_json,
                }),
            })
            .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            (j, None, None)
        }
        Begin::Resume { run_id } => {
            let j = Journal::open(state_dir, &run_id).map_err(|e| {
                if e.is_invalid_input() {
                    Failure::invalid(format!("resume: {e}"))
                } else {
                    Failure::internal(format!("resume: {e}"))
                }
            })?;
            let entries = j
                .entries()
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            let events = crate::engine::events_from_entries(&entries);
            (j, Some(events), Some(entries))
        }
    };
    let run_id = journal.run_id().to_string();
    let mut platform_services = std::collections::HashMap::new();
    let platform: Arc<dyn Platform> = if release.release.platform == PlatformKind::Ecs {
        let prior_ecs = prior_entries.as_deref().zip(prior.as_deref());
        let ecs = super::deploy_ecs::start(release, &mut journal, prior_ecs).await?;
        platform_services = ecs.services;
        ecs.platform
    } else {
        let self_exe = std::env::current_exe()
            .map_err(|e| Failure::internal(format!("cannot find this program's path: {e}")))?;
        let config = local_config(release, journal.dir(), &self_exe, base_dir, None)
            .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
        match LocalPlatform::start(config).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = journal.append(NewEntry {
                at_ms: crate::engine::Clock::now_ms(&SystemClock),
                operator: None,
                kind: "platform".into(),
                service: None,
                payload: serde_json::json!({"summary": format!("local platform failed to start: {e}")}),
            });
                return Err(Failure::internal(format!("local platform: {e}")));
            }
        }
    };
    let plan = crate::plan::plan(release);
    let options = EngineOptions {
        operator: operator.to_string(),
        platform_services,
        migrations,
        contract,
        ..Default::default()
    };
    let recorder = Box::new(JournalRecorder::new(journal));
    let engine = match &prior {
        None => Engine::new(
            release.clone(),
            &plan,
            platform.clone(),
            Arc::new(SystemClock),
            recorder,
            RealSmoke::shared(),
            options,
        ),
        Some(events) => Engine::restore(
            release.clone(),
            &plan,
            platform.clone(),
            Arc::new(SystemClock),
            recorder,
            RealSmoke::shared(),
            options,
            events,
        ),
    };
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            platform.shutdown().await;
            return Err(Failure::internal(e.to_string()));
        }
    };
    let printer = if printer {
        spawn_printer(engine.subscribe(), output)
    } else {
        tokio::spawn(async {})
    };
    let notifier = release
        .notify
        .as_ref()
        .filter(|n| !n.webhooks.is_empty())
        .map(|n| {
            spawn_notifier(
                release.release.name.clone(),
                n.webhooks.clone(),
                engine.subscribe(),
                NotifyOptions::default(),
            )
        });
    let was_ready = engine.state().status == crate::engine::ReleaseStatus::Ready;
    let hub = crate::control::Hub::start(engine.state().clone(), engine.subscribe());
    let handle = spawn(engine);
    if was_ready && let Err(r) = handle.send(Command::Start, operator).await {
        return Err(Failure::internal(r.to_string()));
    }
    Ok(Session {
        handle,
        platform,
        printer,
        notifier,
        run_id,
        output,
        hub,
        state_dir: state_dir.to_path_buf(),
        contract,
    })
}

/// Every migration's database answers (a connection only: nothing is read or written),
/// so a wrong path or a database that is down stops the release before any service or
/// journal is started, not at the dry run minutes later.
async fn preflight_databases(
    release: &str,
    migrations: &[crate::migrate::PreparedMigration],
) -> Result<(), Failure> {
    if migrations.is_empty() {
        return Ok(());
    }
    let checks = migrations.to_vec();
    let problems = tokio::task::spawn_blocking(move || {
        checks
            .iter()
            .filter_map(|m| {
                m.connect()
                    .err()
                    .map(|e| format!("migration {}: {e}", m.name()))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Failure::internal(format!("database preflight: {e}")))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "release {release}: {}; nothing was started",
            problems.join("; ")
        )))
    }
}

fn stamp(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn spawn_printer(mut rx: broadcast::Receiver<Event>, output: Output) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let line = match output {
                        Output::Json => serde_json::to_string(&e).unwrap_or_default(),
                        Output::Text => format!("{}  {}", stamp(e.at_ms), describe(&e)),
                    };
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if output == Output::Text {
                        println!("({n} events not shown: the printer fell behind)");
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Wait for SIGINT or SIGTERM.
pub(crate) async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The closing summary of a run.
pub(crate) fn summary_json(
    state: &ReleaseState,
    exit_code: u8,
    extra: serde_json::Value,
) -> serde_json::Value {
    let services: BTreeMap<&str, &str> = state
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    let reasons: BTreeMap<&str, &str> = state
        .services
        .iter()
        .filter_map(|s| s.reason.as_deref().map(|r| (s.name.as_str(), r)))
        .collect();
    let mut v = serde_json::json!({
        "type": "summary",
        "release": state.release,
        "run_id": state.run_id,
        "services": services,
        "reasons": reasons,
        "exit_code": exit_code,
        "started_at_ms": state.started_at_ms,
        "finished_at_ms": state.finished_at_ms,
    });
    if !state.migrations.is_empty()
        && let Some(obj) = v.as_object_mut()
    {
        let migrations: BTreeMap<&str, &str> = state
            .migrations
            .iter()
            .map(|m| (m.name.as_str(), m.phase.as_str()))
            .collect();
        obj.insert("migrations".into(), serde_json::json!(migrations));
    }
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

pub(crate) fn print_summary(
    state: &ReleaseState,
    exit_code: u8,
    output: Output,
    extra: serde_json::Value,
    text_extra: &[String],
) {
    match output {
        Output::Json => println!("{}", summary_json(state, exit_code, extra)),
        Output::Text => {
            println!();
            println!("release {} (run {}):", state.release, state.run_id);
            for s in &state.services {
                match &s.reason {
                    Some(r) => println!("  {:<16} {:<12} {r}", s.name, s.status.as_str()),
                    None => println!("  {:<16} {}", s.name, s.status.as_str()),
                }
            }
            for m in &state.migrations {
                println!(
                    "  migration {:<16} {}: {}",
                    m.name,
                    m.phase.as_str(),
                    m.detail
                );
            }
            for l in text_extra {
                println!("{l}");
            }
            println!("exit {exit_code}");
        }
    }
}

/// Wait for the engine (a signal aborts the release; a second one stops at once), print
/// the summary, keep serving if asked, then stop the platform.
pub(crate) async fn finish_session(
    session: Session,
    operator: &str,
    keep_running: bool,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> u8 {
    let Session {
        handle,
        platform,
        printer,
        notifier,
        run_id,
        output,
        hub: _,
        state_dir: _,
        contract: _,
    } = session;
    let EngineHandle {
        commands,
        events,
        state: _,
        mut join,
    } = handle;
    let outcome = tokio::select! {
        r = &mut join => r,
        _ = signal() => {
            eprintln!("cutover: interrupted: aborting the release (services in flight roll back); interrupt again to stop at once");
            let (req, _rx) = crate::engine::CommandRequest::new(Command::Abort, operator);
            let _ = commands.send(req).await;
            tokio::select! {
                r = &mut join => r,
                _ = signal() => {
                    join.abort();
                    platform.shutdown().await;
                    eprintln!("cutover: stopped; `cutover resume` carries on from the journal (run {run_id})");
                    return super::EXIT_UNFINISHED;
                }
            }
        }
    };
    drop(commands);
    drop(events);
    let code = match outcome {
        Ok(Ok(out)) => {
            let _ = printer.await;
            let (more, lines) = extra(&out.state);
            print_summary(&out.state, out.exit_code, output, more, &lines);
            out.exit_code
        }
        Ok(Err(e)) => {
            eprintln!("cutover: the engine stopped: {e}");
            EXIT_INTERNAL
        }
        Err(e) => {
            eprintln!("cutover: the engine failed: {e}");
            EXIT_INTERNAL
        }
    };
    if let Some(n) = notifier {
        let _ = n.await;
    }
    if keep_running && code != EXIT_INTERNAL {
        eprintln!("cutover: serving the final state; SIGINT or SIGTERM to stop");
        signal().await;
    }
    platform.shutdown().await;
    code
}

pub fn run(args: DeployArgs) -> ExitCode {
    let console = super::console_front::wanted(args.headless, args.output);
    if console {
        super::console_front::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let text = match std::fs::read(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cutover: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let loaded = match crate::release::load(&args.file) {
        Ok(l) => l,
        Err(diags) => return super::report_diagnostics(&diags),
    };
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let state_dir = args.state.resolve();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => {
            eprintln!("cutover: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let base_dir = std::fs::canonicalize(&loaded.base_dir).unwrap_or(loaded.base_dir.clone());
    let code = rt.block_on(async {
        let begin = Begin::Fresh {
            file_label: args.file.display().to_string(),
            sha256: crate::journal::sha256_hex(&text),
        };
        match start_session_with(
            &loaded.release,
            &base_dir,
            &state_dir,
            begin,
            &operator,
            args.output,
            !console,
            contract_mode(args.allow_contract, console),
        )
        .await
        {
            Ok(s) => {
                if args.output == Output::Text {
                    eprintln!(
                        "cutover: run {} journaled under {}",
                        s.run_id,
                        state_dir.display()
                    );
                }
                let none = |_: &ReleaseState| (serde_json::json!({}), Vec::new());
                if console {
                    super::console_front::finish_with_console(
                        s,
                        &loaded.release,
                        &operator,
                        &args.ui,
                        none,
                    )
                    .await
                } else {
                    finish_session(s, &operator, args.keep_running, none).await
                }
            }
            Err(f) => {
                eprintln!("cutover: {}", f.message);
                f.code
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

/// Read the release stored in a run's journal (for `resume`).
pub(crate) fn release_of_run(
    state_dir: &Path,
    run_id: &str,
) -> Result<(Release, PathBuf), Failure> {
    let rec = crate::journal::read_run(state_dir, run_id).map_err(|e| {
        if e.is_invalid_input() {
            Failure::invalid(format!("resume: {e}"))
        } else {
            Failure::internal(format!("resume: {e}"))
        }
    })?;
    let entry = rec
        .entries
        .iter()
        .find(|e| e.kind == RELEASE_ENTRY)
        .ok_or_else(|| {
            Failure::invalid(format!(
                "run {run_id} has no recorded release; it was not started by `cutover deploy`"
            ))
        })?;
    let release: Release =
        serde_json::from_value(entry.payload["release"].clone()).map_err(|e| {
            Failure::internal(format!(
                "run {run_id}: the recorded release cannot be read: {e}"
            ))
        })?;
    let base_dir = entry.payload["base_dir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((release, base_dir))
}
