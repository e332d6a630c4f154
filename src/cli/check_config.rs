//! `cutover check-config`: validate the user's keymap.toml and themes/*.toml (for teams
//! sharing them in CI). Exit 0 when all is well, 2 with every problem as FILE:LINE.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Error;
use crate::console::config::{Dirs, check};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The directory holding keymap.toml and themes/ [default: the config directory].
    #[arg(long, env = "CUTOVER_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

pub fn run(args: CheckConfigArgs) -> Result<ExitCode, Error> {
    let dirs = Dirs::resolve(args.config_dir.as_deref());
    let errors = check(&dirs);
    if errors.is_empty() {
        println!("{}: keymap and themes are valid", dirs.config.display());
        Ok(ExitCode::SUCCESS)
    } else {
        let mut lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "{} problem(s) in {}",
            errors.len(),
            dirs.config.display()
        ));
        Err(Error::Verbatim {
            text: lines.join("\n"),
            code: super::EXIT_INVALID,
        })
    }
}
