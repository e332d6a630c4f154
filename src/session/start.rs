//! Starting a run: the migrations' files and databases checked, the journal created (a
//! fresh run records its release) or opened (resume), the platform (local, or ECS
//! through [`super::ecs`]), the engine (new or restored), the printer, the notifier and
//! the control hub.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::ecs;
use super::exit::Failure;
use super::spec::{Begin, Output};
use super::summary::spawn_printer;
use crate::engine::notify::{NotifyOptions, spawn_notifier};
use crate::engine::{
    Command, Engine, EngineHandle, EngineOptions, JournalRecorder, RealSmoke, SystemClock, spawn,
};
use crate::journal::{Journal, NewEntry};
use crate::platform::Platform;
use crate::platform::local::LocalPlatform;
use crate::platform::local::from_release::local_config;
use crate::release::{PlatformKind, Release};

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))
}

/// Everything a running release consists of.
pub struct Session {
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
    /// The AWS region and profile (a hand-over to `serve` keeps them).
    pub aws: super::Aws,
    /// What the release report is scrubbed of when the run ends.
    pub secrets: crate::secrets::Secrets,
}

/// Start the platform (local, or ECS through [`super::ecs`]), the engine (new or restored), the printer (unless the
/// console replaces it: `printer` false) and the notifier.
#[allow(clippy::too_many_arguments)]
pub async fn start_session_with(
    release: &Release,
    base_dir: &Path,
    state_dir: &Path,
    begin: Begin,
    operator: &str,
    output: Output,
    printer: bool,
    contract: crate::engine::ContractMode,
    aws: &super::Aws,
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
    let webhooks = match &release.notify {
        Some(n) => resolve_webhooks(&release.release.name, &n.webhooks)?,
        None => Vec::new(),
    };
    let pin_secret = (release.release.pin_secret.as_deref())
        .map(crate::platform::local::pin::PinSecret::from_spec)
        .transpose()
        .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
    let mut break_glass = None;
    let (mut journal, prior, prior_entries) = match begin {
        Begin::Fresh {
            file_label,
            sha256,
            origin,
            break_glass: skipped,
        } => {
            break_glass = skipped;
            let mut j = Journal::create(state_dir, &release.release.name, &sha256)
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            crate::journal::release_entry::record_release(
                &mut j,
                release,
                &file_label,
                base_dir,
                operator,
                crate::engine::Clock::now_ms(&SystemClock),
                &sha256,
                &origin,
            )
            .map_err(|e| Failure::internal(e.to_string()))?;
            log_resolution(&origin);
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
            if let Some(e) = entries
                .iter()
                .find(|e| e.kind == crate::journal::RELEASE_ENTRY)
            {
                log_resolution(&crate::journal::ReleaseOrigin::from_payload(&e.payload));
            }
            (j, Some(events), Some(entries))
        }
    };
    let run_id = journal.run_id().to_string();
    let mut platform_services = std::collections::HashMap::new();
    let platform: Arc<dyn Platform> = if release.release.platform == PlatformKind::Ecs {
        let prior_ecs = prior_entries.as_deref().zip(prior.as_deref());
        let ecs = ecs::start(release, &mut journal, prior_ecs, aws).await?;
        platform_services = ecs.services;
        ecs.platform
    } else {
        let self_exe = std::env::current_exe()
            .map_err(|e| Failure::internal(format!("cannot find this program's path: {e}")))?;
        let mut config = local_config(release, journal.dir(), &self_exe, base_dir, None)
            .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
        config.pin_secret = pin_secret;
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
    #[cfg(feature = "crash-hooks")]
    let platform = crate::faults::platform::hooked(platform);
    let plan = crate::plan::plan(release);
    let options = EngineOptions {
        operator: operator.to_string(),
        platform_services,
        migrations,
        contract,
        break_glass,
        ..Default::default()
    };
    let recorder = Box::new(JournalRecorder::new(journal));
    // A run journaled up to its release entry only (a crash before the engine's first
    // event) has no state to restore: it starts afresh on the same journal.
    let engine = match prior.as_deref() {
        None | Some([]) => Engine::new(
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
    let notifier = (!webhooks.is_empty()).then(|| {
        spawn_notifier(
            crate::engine::notify::label(&release.release),
            webhooks,
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
        aws: aws.clone(),
        secrets: crate::secrets::Secrets::from_release(release),
    })
}

/// Webhook URLs as the notifier needs them: `env:VAR` replaced by the variable's value
/// (a missing variable or a value that is not an http(s) URL stops the release before it
/// starts; the message names the variable, never the value).
fn resolve_webhooks(release: &str, hooks: &[String]) -> Result<Vec<String>, Failure> {
    hooks
        .iter()
        .map(|h| match h.strip_prefix("env:") {
            None => Ok(h.clone()),
            Some(var) => match std::env::var(var) {
                Ok(v) if v.starts_with("http://") || v.starts_with("https://") => Ok(v),
                Ok(_) => Err(Failure::invalid(format!(
                    "release {release}: webhook env:{var} does not hold an http(s) URL; export {var}=https://..."
                ))),
                Err(_) => Err(Failure::invalid(format!(
                    "release {release}: webhook env:{var}: the environment variable is not set; export {var} with the webhook URL"
                ))),
            },
        })
        .collect()
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

/// The environment and variables a run resolved its release with, in the log (the
/// console's log pane; headless output shows it with `RUST_LOG=info`).
fn log_resolution(origin: &crate::journal::ReleaseOrigin) {
    if origin.environment.is_none() && origin.variables.is_empty() {
        return;
    }
    let text =
        crate::release::render::resolution_text(origin.environment.as_deref(), &origin.variables);
    for line in text.lines().filter(|l| !l.is_empty()) {
        tracing::info!(target: "cutover", "{line}");
    }
}
