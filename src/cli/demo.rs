//! `cutover demo`: a five-service release on the local platform under steady load, in
//! which one candidate (orders v2) regresses. The engine catches it, puts its traffic back
//! on the stable revision, skips what depends on it and promotes the rest; the summary
//! says what happened and how long the regression lasted.
//!
//! `cutover demo --fleet`: eight tenants in three rings (`session/fleet_demo.rs`), one of
//! them broken by its configuration, under the same load.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::UiArgs;
use super::{EXIT_INTERNAL, Error, Output, StateDirArg};
use crate::engine::{Event, EventKind, ReleaseState, ServiceStatus};
use crate::session::finish::finish_session;
use crate::session::fleet_demo;
use crate::session::{Begin, runtime, start_session_with};

/// The demo's release, also shipped as `examples/demo.toml`.
pub const DEMO_RELEASE: &str = include_str!("../../examples/demo.toml");

/// The service whose candidate regresses.
pub const REGRESSING: &str = "orders";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// No console: print one line per event (also when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// The fleet demo: eight tenants in three rings with a failure budget of one; one
    /// tenant's configuration breaks its candidate, the others promote and get the new flag.
    #[arg(long)]
    pub fleet: bool,
    #[command(flatten)]
    pub ui: UiArgs,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub state: StateDirArg,
    /// Requests per second of the built-in load, over all services.
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// Who runs the demo, for the journal (default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
    #[command(flatten)]
    pub metrics: super::metrics_listen::MetricsListenArg,
    #[command(flatten)]
    pub change: super::ChangeArg,
}

/// When the regressing candidate first took traffic, and when it all went back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Regression {
    pub started_ms: Option<u64>,
    pub back_on_stable_ms: Option<u64>,
}

impl Regression {
    pub fn mttr_ms(&self) -> Option<u64> {
        Some(self.back_on_stable_ms?.saturating_sub(self.started_ms?))
    }
}

/// Watch events for the regressing service's first traffic and its rollback.
pub fn track(mut rx: broadcast::Receiver<Event>, service: &'static str) -> Arc<Mutex<Regression>> {
    let out = Arc::new(Mutex::new(Regression::default()));
    let o = out.clone();
    tokio::spawn(async move {
        loop {
            let e = match rx.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let Ok(mut r) = o.lock() else { break };
            match &e.kind {
                EventKind::WeightsSet {
                    service: s,
                    weights,
                } if s == service
                    && r.started_ms.is_none()
                    && weights.iter().any(|(rev, w)| rev != "v1" && *w > 0) =>
                {
                    r.started_ms = Some(e.at_ms);
                }
                EventKind::RolledBack { service: s, .. } if s == service => {
                    r.back_on_stable_ms.get_or_insert(e.at_ms);
                }
                _ => {}
            }
        }
    });
    out
}

/// Lines and JSON fields for the end of the demo.
pub fn closing(state: &ReleaseState, reg: Regression) -> (serde_json::Value, Vec<String>) {
    let names = |st: ServiceStatus| -> Vec<String> {
        state
            .services
            .iter()
            .filter(|s| s.status == st)
            .map(|s| s.name.clone())
            .collect()
    };
    let promoted = names(ServiceStatus::Promoted);
    let mut lines = vec![
        String::new(),
        format!("promoted:    {}", promoted.join(", ")),
    ];
    for s in &state.services {
        if matches!(
            s.status,
            ServiceStatus::RolledBack | ServiceStatus::Skipped | ServiceStatus::Failed
        ) {
            lines.push(format!(
                "{:<12} {} ({})",
                format!("{}:", s.status.as_str().replace('_', " ")),
                s.name,
                s.reason.clone().unwrap_or_default()
            ));
        }
    }
    match reg.mttr_ms() {
        Some(ms) => lines.push(format!(
            "regression in {REGRESSING}: {:.1} s from its first traffic to all traffic back on the stable revision",
            ms as f64 / 1000.0
        )),
        None => lines.push(format!("{REGRESSING}'s candidate never took traffic")),
    }
    let json = serde_json::json!({
        "regressing_service": REGRESSING,
        "regression_started_at_ms": reg.started_ms,
        "back_on_stable_at_ms": reg.back_on_stable_ms,
        "mttr_ms": reg.mttr_ms(),
    });
    (json, lines)
}

/// The engine caught the regression and promoted everything that does not depend on it.
pub fn caught(state: &ReleaseState) -> bool {
    state.services.iter().all(|s| match s.name.as_str() {
        REGRESSING => s.status == ServiceStatus::RolledBack,
        _ if s.depends_on.iter().any(|d| d == REGRESSING) => s.status == ServiceStatus::Skipped,
        _ => s.status == ServiceStatus::Promoted,
    })
}

/// The steady load: every service's stable address, round robin.
fn load_urls(release: &crate::release::Release) -> Vec<hyper::Uri> {
    release
        .services
        .iter()
        .filter_map(|s| s.local.as_ref())
        .filter_map(|l| format!("http://{}/api/demo", l.listen).parse().ok())
        .collect()
}

/// Which demo runs: its release (ready for the engine), where it came from, and where
/// its relative paths (the fleet's flags file) resolve.
struct Demo {
    release: crate::release::Release,
    file: &'static str,
    text: &'static str,
    base_dir: std::path::PathBuf,
    /// The fleet demo's flags file.
    flags_path: Option<std::path::PathBuf>,
}

impl Demo {
    fn checkout() -> Result<Demo, Error> {
        let release = crate::release::load_str(
            Path::new("examples/demo.toml"),
            DEMO_RELEASE,
            Path::new("."),
        )
        .map_err(|d| Error::Internal(format!("the built-in demo release is invalid: {d:?}")))?;
        Ok(Demo {
            release,
            file: "examples/demo.toml",
            text: DEMO_RELEASE,
            base_dir: ".".into(),
            flags_path: None,
        })
    }

    fn fleet(state_dir: &Path) -> Result<Demo, Error> {
        let d = fleet_demo::prepare(state_dir).map_err(Error::Internal)?;
        Ok(Demo {
            release: d.release,
            file: fleet_demo::FLEET_DEMO_FILE,
            text: fleet_demo::FLEET_DEMO_RELEASE,
            base_dir: d.base_dir,
            flags_path: Some(d.flags_path),
        })
    }

    /// The line that says what is about to happen.
    fn banner(&self, rate: f64) -> String {
        match &self.flags_path {
            None => format!(
                "cutover demo: {} services on 127.0.0.1:18301-18305 under {rate} req/s; {REGRESSING} v2 is broken (30 % 500s, +80 ms)",
                self.release.services.len(),
            ),
            Some(flags) => format!(
                "cutover demo --fleet: {} tenants in {} rings ({} services on 127.0.0.1:18331-18348) under {rate} req/s, failure budget 1; {}'s configuration breaks its new api (40 % 500s); the last ring waits 20 s for approval; flags: {}",
                self.release.tenants.len(),
                self.release.rings.len(),
                self.release.services.len(),
                fleet_demo::BROKEN_TENANT,
                flags.display(),
            ),
        }
    }
}

pub fn run(args: DemoArgs) -> Result<ExitCode, Error> {
    let console = crate::session::console::wanted(args.headless, args.output);
    if console {
        crate::session::console::init_logging();
    } else {
        super::init_logging_at("warn");
    }
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let state_dir = args.state.resolve();
    let demo = if args.fleet {
        Demo::fleet(&state_dir)?
    } else {
        Demo::checkout()?
    };
    let mut release = demo.release.clone();
    args.metrics.apply(&mut release);
    if let Some(c) = &args.change.change {
        release.release.change = Some(c.clone());
    }
    let rt = runtime()?;
    let code = rt.block_on(async {
        let begin = Begin::Fresh {
            file_label: format!("built-in demo ({})", demo.file),
            sha256: crate::journal::sha256_hex(demo.text.as_bytes()),
            origin: Box::new(crate::journal::ReleaseOrigin {
                environment: None,
                artifact: Some(crate::release::Artifact::new(demo.text.as_bytes(), &[])),
                variables: Vec::new(),
                change: args.change.change.clone(),
            }),
            break_glass: None,
            change_control: None,
        };
        let session = match start_session_with(&release, &demo.base_dir, &state_dir, &crate::journal::JournalStore::File(state_dir.clone()), begin, &operator, args.output, !console, crate::session::contract_mode(false, console), &crate::session::Aws::default()).await {
            Ok(s) => s,
            Err(f) => return Err(Error::from(f)),
        };
        let reg = track(session.handle.events.subscribe(), REGRESSING);
        let mut config = crate::loadgen::LoadConfig::new(load_urls(&release), args.rate, Duration::from_secs(150));
        config.connections = 8;
        config.timeout = Duration::from_secs(2);
        let load = tokio::spawn(crate::loadgen::run(config));
        if args.output == Output::Text {
            eprintln!("{}", demo.banner(args.rate));
        }
        let mut as_expected = false;
        let close = |state: &ReleaseState| match &demo.flags_path {
            Some(path) => {
                let on = fleet_demo::flag_on(&demo.release, path);
                as_expected = on.as_ref().is_ok_and(|on| fleet_demo::caught(state, on));
                fleet_demo::closing(state, path, &on)
            }
            None => {
                as_expected = caught(state);
                let r = reg.lock().map(|r| *r).unwrap_or_default();
                closing(state, r)
            }
        };
        let (code, handed_over) = if console {
            let end = crate::session::console::run_console(session, &release, &operator, &(&args.ui).into(), close).await;
            (end.code, end.handed_over)
        } else {
            (finish_session(session, &operator, false, close).await, false)
        };
        load.abort();
        if handed_over {
            // After a hang-up stderr is gone: do not panic on it.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "cutover demo: the demo's load generator stopped with this process; the release goes on without it"
            );
            return Ok(0);
        }
        // The demo succeeds when the engine did its job: the regression rolled back, the
        // rest promoted (or skipped because it depends on the regressing service); in the
        // fleet demo, the broken tenant rolled back and the others promoted with their flag.
        Ok(if code == 3 && as_expected { 0 } else if code == 0 { EXIT_INTERNAL } else { code })
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::from(code?))
}
