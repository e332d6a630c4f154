//! `cutover plan FILE [--env NAME] [--set NAME=VALUE]... [--output json] [--policy FILE]`

use std::path::Path;
use std::process::ExitCode;

use super::{Error, Output, ReleaseArgs};
use crate::{plan, release};

pub fn run(
    file: &Path,
    args: &ReleaseArgs,
    output: Output,
    policy: Option<&Path>,
) -> Result<ExitCode, Error> {
    let loaded = release::load(file, &args.options())?;
    let pin = crate::policy::load(policy)?.images;
    let fleet = plan::plan_fleet(&loaded.release, &loaded.tenants);
    match output {
        Output::Text => print!(
            "{}{}{}{}",
            release::render::resolution_text(loaded.environment.as_deref(), &loaded.vars),
            plan::render_text(&plan::plan(&loaded.release)),
            plan::render_images_text(&plan::planned_images(&loaded.release, pin)),
            fleet
                .as_ref()
                .map(plan::render_fleet_text)
                .unwrap_or_default()
        ),
        Output::Json => {
            let v = plan::plan_json(&loaded, pin).map_err(Error::Internal)?;
            let s = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::Internal(format!("cannot encode the plan as JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
