//! The command line: one subcommand per job, each in its own file. Exit codes are an
//! interface: 0 success, 2 invalid input, 3 something rolled back, 1 internal error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod demo_service;
pub mod load;

/// Exit code for invalid input (a release file, a flag).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for an internal error.
pub const EXIT_INTERNAL: u8 = 1;

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
    /// Run a small HTTP service with injectable faults (for demos, tests, rehearsals).
    DemoService(demo_service::DemoServiceArgs),
    /// Send HTTP load to URLs and report status counts, errors and latency.
    Load(load::LoadArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DemoService(args) => demo_service::run(args),
        Command::Load(args) => load::run(args),
    }
}

/// Log to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
