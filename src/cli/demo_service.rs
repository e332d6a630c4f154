//! `cutover demo-service`: run the demo HTTP service until SIGTERM/SIGINT (graceful) or
//! `--crash-after` (exit code 1).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{EXIT_INTERNAL, Error, init_logging, parse_seconds};
use crate::demo_service::{DemoConfig, DemoError, DemoExit, DemoServer};

#[derive(Debug, clap::Args)]
pub struct DemoServiceArgs {
    /// Port to listen on (0 = any free port; the chosen address is logged).
    #[arg(long)]
    pub port: u16,
    /// Revision this instance reports (header `x-cutover-revision`, `/api/*` bodies).
    #[arg(long)]
    pub revision: String,
    /// Service name reported in `/api/*` bodies.
    #[arg(long, default_value = "demo")]
    pub service: String,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Fraction (0..1) of `/` and `/api/*` requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Latency added to `/` and `/api/*`, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform jitter (±) around --latency-ms, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Exit abruptly with code 1 after this long (seconds, or a duration like 1500ms).
    #[arg(long, value_parser = parse_seconds)]
    pub crash_after: Option<Duration>,
    /// `/healthz` always answers 503.
    #[arg(long)]
    pub unhealthy: bool,
    /// `/healthz` answers 503 for this long after start (seconds, or a duration).
    #[arg(long, value_parser = parse_seconds)]
    pub slow_start: Option<Duration>,
    /// URL fetched on each `/` or `/api/*` request; its failure turns the answer into 502.
    #[arg(long)]
    pub downstream: Option<String>,
    /// Print NAME=value of this environment variable at start and answer `/env` with it
    /// (repeatable; for rehearsing secret handling: cutover scrubs such output).
    #[arg(long, value_name = "NAME")]
    pub print_env: Vec<String>,
}

pub fn run(args: DemoServiceArgs) -> Result<ExitCode, Error> {
    init_logging();
    let downstream = match args.downstream.as_deref().map(str::parse) {
        None => None,
        Some(Ok(uri)) => Some(uri),
        Some(Err(e)) => {
            return Err(Error::ToolInvalid(format!(
                "--downstream `{}` is not a URL ({e}); write e.g. http://127.0.0.1:8081/api/x",
                args.downstream.as_deref().unwrap_or_default()
            )));
        }
    };
    let config = DemoConfig {
        service: args.service,
        revision: args.revision,
        error_rate: args.error_rate,
        latency: Duration::from_millis(args.latency_ms),
        latency_jitter: Duration::from_millis(args.latency_jitter_ms),
        crash_after: args.crash_after,
        unhealthy: args.unhealthy,
        slow_start: args.slow_start,
        downstream,
        print_env: args.print_env,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::ToolInternal(format!("cannot start the async runtime: {e}")))?;
    let addr = SocketAddr::new(args.host, args.port);
    runtime.block_on(async move {
        let server = match DemoServer::start(addr, config).await {
            Ok(s) => s,
            Err(e @ DemoError::Invalid(_)) => return Err(Error::ToolInvalid(e.to_string())),
            Err(e) => return Err(Error::ToolInternal(e.to_string())),
        };
        let signal = async {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM; stopping only on Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("signal received: finishing in-flight requests");
        };
        match server.run_until(signal).await {
            DemoExit::Stopped => Ok(ExitCode::SUCCESS),
            DemoExit::Crashed => Err(Error::Verbatim {
                text: "demo-service: crashed on purpose (--crash-after)".into(),
                code: EXIT_INTERNAL,
            }),
        }
    })
}
