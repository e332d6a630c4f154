//! `cutover plan FILE [--env NAME] [--set NAME=VALUE]... [--output json]`

use std::path::Path;
use std::process::ExitCode;

use super::{Error, Output, ReleaseArgs};
use crate::{plan, release};

pub fn run(file: &Path, args: &ReleaseArgs, output: Output) -> Result<ExitCode, Error> {
    let loaded = release::load(file, &args.options())?;
    let p = plan::plan(&loaded.release);
    match output {
        Output::Text => print!("{}", plan::render_text(&p)),
        Output::Json => {
            let s = serde_json::to_string_pretty(&p)
                .map_err(|e| Error::Internal(format!("cannot encode the plan as JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
