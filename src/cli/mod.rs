//! The command line: one subcommand per job, each in its own file. Exit codes are an
//! interface: 0 success, 2 invalid input, 3 something rolled back, 1 internal error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod judge_bench;
pub mod judge_replay;

/// Exit code for invalid input (a release file, a flag).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for an internal error.
pub const EXIT_INTERNAL: u8 = 1;
/// Exit code when something rolled back (or, in a replay, would have).
pub const EXIT_ROLLED_BACK: u8 = 3;

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
    /// Benchmark canary judges on seeded, simulated baseline-versus-canary traffic.
    #[command(name = "judge-bench")]
    JudgeBench(judge_bench::JudgeBenchArgs),
    /// Canary judge tools.
    Judge {
        #[command(subcommand)]
        command: judge_replay::JudgeCommand,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::JudgeBench(args) => judge_bench::run(args),
        Command::Judge { command } => judge_replay::run(command),
    }
}
