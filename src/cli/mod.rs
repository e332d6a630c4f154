//! The command line: one subcommand per job, each in its own file. Exit codes are an
//! interface: 0 success, 2 invalid input, 3 something rolled back, 1 internal error.

mod aws_common;
mod diff;
mod plan;
mod schema;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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

/// Output format of commands that can print JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check release files; print every problem as FILE:LINE:COL with a hint (exit 2 if any).
    Validate {
        /// Release files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print what a release will do: waves, every service's steps, and timing.
    Plan {
        /// The release file.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the JSON Schema of the release format (for editors).
    Schema,
    /// Check that everything an ECS release names exists in the AWS account and matches,
    /// before any change (exit 2 if something is missing).
    Verify {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        aws: aws_common::AwsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show what an ECS release would change in each task definition (image, env, secrets,
    /// cpu/memory) against what runs now.
    Diff {
        /// The release file.
        file: PathBuf,
        #[command(flatten)]
        aws: aws_common::AwsArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate::run(&files),
        Command::Plan { file, output } => plan::run(&file, output),
        Command::Schema => schema::run(),
        Command::Verify { file, aws, output } => verify::run(&file, &aws, output),
        Command::Diff { file, aws, output } => diff::run(&file, &aws, output),
    }
}

/// Print load errors the way `validate` does and return the invalid-input exit code.
fn report_diagnostics(diags: &[crate::release::Diagnostic]) -> ExitCode {
    for d in diags {
        eprint!("{d}");
    }
    let files: std::collections::BTreeSet<_> = diags.iter().map(|d| d.file.clone()).collect();
    eprintln!("{} problem(s) in {} file(s)", diags.len(), files.len());
    ExitCode::from(EXIT_INVALID)
}
