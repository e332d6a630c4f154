//! `cutover plan FILE [--env NAME] [--set NAME=VALUE]... [--output json]`

use std::path::Path;
use std::process::ExitCode;

use super::{Error, Output, ReleaseArgs};
use crate::{plan, release};

pub fn run(file: &Path, args: &ReleaseArgs, output: Output) -> Result<ExitCode, Error> {
    let loaded = release::load(file, &args.options())?;
    let p = plan::plan(&loaded.release);
    let fleet = plan::plan_fleet(&loaded.release, &loaded.tenants);
    match output {
        Output::Text => print!(
            "{}{}{}",
            release::render::resolution_text(loaded.environment.as_deref(), &loaded.vars),
            plan::render_text(&p),
            fleet
                .as_ref()
                .map(plan::render_fleet_text)
                .unwrap_or_default()
        ),
        Output::Json => {
            let mut v = serde_json::to_value(&p)
                .map_err(|e| Error::Internal(format!("cannot encode the plan as JSON: {e}")))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("environment".into(), loaded.environment.clone().into());
                obj.insert(
                    "variables".into(),
                    serde_json::to_value(&loaded.vars).unwrap_or_default(),
                );
                if let Some(f) = &fleet {
                    obj.insert(
                        "rings".into(),
                        serde_json::to_value(&f.rings).unwrap_or_default(),
                    );
                    obj.insert("failure_budget".into(), f.failure_budget.into());
                    obj.insert(
                        "fleet_timing".into(),
                        serde_json::to_value(&f.timing).unwrap_or_default(),
                    );
                }
            }
            let s = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::Internal(format!("cannot encode the plan as JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
