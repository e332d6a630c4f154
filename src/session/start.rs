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
    /// Exports the run's trace (`OTEL_EXPORTER_OTLP_ENDPOINT` set): [`crate::trace`].
    pub tracer: Option<JoinHandle<()>>,
    pub run_id: String,
    pub output: Output,
    /// Numbers and fans out the engine's events to control API clients.
    pub hub: Arc<crate::control::Hub>,
    /// Where the run keeps its local files (a console shares it: `STATE_DIR/cutover.sock`).
    pub state_dir: PathBuf,
    /// Where the run is journaled: files under `state_dir`, or PostgreSQL.
    pub journal: crate::journal::JournalStore,
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
    store: &crate::journal::JournalStore,
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
    let grafana = (release.notify.as_ref().and_then(|n| n.grafana.as_ref()))
        .map(|g| {
            crate::engine::annotations::Grafana::resolve(
                g,
                &release.release.name,
                release.release.environment.as_deref(),
            )
        })
        .transpose()
        .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
    let pin_secret = (release.release.pin_secret.as_deref())
        .map(crate::platform::local::pin::PinSecret::from_spec)
        .transpose()
        .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
    // `[metrics] provider = "prometheus"`: its `env:` values are read before anything starts.
    let prometheus = crate::metrics::prometheus::PrometheusSource::from_release(release)
        .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
    let metrics_listen = (release.release.metrics_listen.as_deref())
        .map(|a| {
            a.parse::<std::net::SocketAddr>().map_err(|e| {
                Failure::invalid(format!(
                    "release {}: metrics_listen `{a}` is not an address ({e}); write e.g. \"127.0.0.1:9464\"",
                    release.release.name
                ))
            })
        })
        .transpose()?;
    let mut local_stats = None;
    let mut break_glass = None;
    let mut change_control = None;
    let (mut journal, prior, prior_entries) = match begin {
        Begin::Fresh {
            file_label,
            sha256,
            origin,
            break_glass: skipped,
            change_control: cc,
        } => {
            break_glass = skipped;
            change_control = cc.map(|c| *c);
            let mut j = Journal::create(store, &release.release.name, &sha256)
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
        Begin::Resume { run_id, takeover } => {
            let mut j = Journal::open(store, &run_id).map_err(|e| {
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
            if let Some(t) = &takeover {
                super::standby::record_takeover(&mut j, t, &events, release.release.platform)?;
            }
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
    let traced = trace_run(&mut journal, prior_entries.as_deref())?;
    let child_env = traced
        .as_ref()
        .map(|t| t.ids.child_env())
        .unwrap_or_default();
    let mut platform_services = std::collections::HashMap::new();
    let platform: Arc<dyn Platform> = if release.release.platform == PlatformKind::Ecs {
        let prior_ecs = prior_entries.as_deref().zip(prior.as_deref());
        let gate = (change_control.as_ref(), operator);
        let ecs = ecs::start(release, &mut journal, prior_ecs, aws, gate).await?;
        platform_services = ecs.services;
        ecs.platform
    } else {
        let self_exe = std::env::current_exe()
            .map_err(|e| Failure::internal(format!("cannot find this program's path: {e}")))?;
        let mut config = local_config(release, journal.dir(), &self_exe, base_dir, metrics_listen)
            .map_err(|e| Failure::invalid(format!("release {}: {e}", release.release.name)))?;
        config.pin_secret = pin_secret;
        crate::trace::add_to_local(&mut config, &child_env);
        match LocalPlatform::start(config).await {
            Ok(p) => {
                let stats = p.stats();
                stats.add_buckets(&crate::metrics::prometheus::slow_thresholds_s(release));
                local_stats = Some(stats);
                Arc::new(p)
            }
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
    let platform = match prometheus {
        Some(source) => crate::platform::metrics_override::with_metrics(platform, Arc::new(source)),
        None => platform,
    };
    #[cfg(feature = "crash-hooks")]
    let platform = crate::faults::platform::hooked(platform);
    // A journal in PostgreSQL: no acting platform call once the lease is lost.
    let platform = match journal.lease() {
        Some(lease) => crate::platform::fenced::fenced(platform, lease),
        None => platform,
    };
    let plan = crate::plan::engine_plan(release);
    let migrate = crate::migrate::RunOptions {
        child_env: child_env.clone(),
        ..Default::default()
    };
    let options = EngineOptions {
        migrate,
        operator: operator.to_string(),
        platform_services,
        migrations,
        contract,
        break_glass,
        change_control,
        flags_path: (release.flags.as_ref()).map(|f| base_dir.join(&f.file)),
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
            RealSmoke::with_env(child_env.clone()),
            options,
        ),
        Some(events) => Engine::restore(
            release.clone(),
            &plan,
            platform.clone(),
            Arc::new(SystemClock),
            recorder,
            RealSmoke::with_env(child_env.clone()),
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
    let grafana = grafana.map(|mut g| {
        g.started_ms = engine.state().started_at_ms;
        g
    });
    let notifier = (!webhooks.is_empty() || grafana.is_some()).then(|| {
        spawn_notifier(
            crate::engine::notify::label(&release.release),
            webhooks,
            grafana,
            engine.subscribe(),
            NotifyOptions::default(),
        )
    });
    let tracer = traced.map(|t| {
        crate::trace::spawn_tracer(
            t,
            engine.state(),
            prior.as_deref().unwrap_or_default(),
            engine.subscribe(),
        )
    });
    let was_ready = engine.state().status == crate::engine::ReleaseStatus::Ready;
    let hub = crate::control::Hub::start(engine.state().clone(), engine.subscribe());
    // The local platform's `/metrics` also carries cutover's own release metrics.
    if let Some(stats) = local_stats {
        let weak = Arc::downgrade(&hub);
        stats.set_extra_text(Arc::new(move || {
            weak.upgrade()
                .map(|h| h.prometheus_text())
                .unwrap_or_default()
        }));
    }
    let handle = spawn(engine);
    if was_ready && let Err(r) = handle.send(Command::Start, operator).await {
        return Err(Failure::internal(r.to_string()));
    }
    Ok(Session {
        handle,
        platform,
        printer,
        notifier,
        tracer,
        run_id,
        output,
        hub,
        state_dir: state_dir.to_path_buf(),
        journal: store.clone(),
        contract,
        aws: aws.clone(),
        secrets: crate::secrets::Secrets::from_release(release),
    })
}

/// The run's trace ids when `OTEL_*` asks for traces: a fresh run (or a resumed one
/// that was not traced) journals new ones before the engine starts; a resumed run reads
/// its own back, so its spans continue the same trace.
fn trace_run(
    journal: &mut Journal,
    prior: Option<&[crate::journal::Entry]>,
) -> Result<Option<crate::trace::RunTracing>, Failure> {
    let Some(config) = crate::trace::config_from_env() else {
        return Ok(None);
    };
    let ids = match prior.and_then(crate::trace::TraceIds::from_entries) {
        Some(ids) => ids,
        None => {
            let ids = crate::trace::TraceIds::random();
            journal
                .append(ids.entry(crate::engine::Clock::now_ms(&SystemClock)))
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            ids
        }
    };
    tracing::info!(target: "cutover", "trace id {}", crate::trace::hex(&ids.trace_id));
    Ok(Some(crate::trace::RunTracing { config, ids }))
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
