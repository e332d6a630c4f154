//! `cutover render FILE [--env NAME] [--set NAME=VALUE]...`: the release resolved for one
//! environment and variable values, as TOML (values from `env:` variables shown as `***`).

use std::path::Path;
use std::process::ExitCode;

use super::{Error, ReleaseArgs};
use crate::release;

pub fn run(file: &Path, args: &ReleaseArgs) -> Result<ExitCode, Error> {
    let loaded = release::load(file, &args.options())?;
    let text = release::render::render(&loaded.release).map_err(Error::Internal)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
