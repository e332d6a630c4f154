//! `cutover render FILE [--env NAME] [--set NAME=VALUE]... [--tenant NAME]`: the release
//! resolved for one environment and variable values, as TOML (values from `env:` variables
//! shown as `***`). A release with tenants is rendered for one tenant (`--tenant`): its own
//! release, without tenants, rings or flags.

use std::path::Path;
use std::process::ExitCode;

use super::{Error, ReleaseArgs};
use crate::release;

pub fn run(file: &Path, args: &ReleaseArgs, tenant: Option<&str>) -> Result<ExitCode, Error> {
    let loaded = release::load(file, &args.options())?;
    let names = || {
        let names: Vec<&str> = loaded.tenants.iter().map(|t| t.name.as_str()).collect();
        if names.len() > 12 {
            format!("{}, … ({} in all)", names[..12].join(", "), names.len())
        } else {
            names.join(", ")
        }
    };
    let one = match (tenant, loaded.tenants.is_empty()) {
        (None, true) => &loaded.release,
        (None, false) => {
            return Err(Error::Invalid(format!(
                "{}: this release has {} tenants, each with its own release: say which with --tenant NAME (tenants: {})",
                file.display(),
                loaded.tenants.len(),
                names()
            )));
        }
        (Some(t), true) => {
            return Err(Error::Invalid(format!(
                "--tenant {t}: {} has no [[tenant]]; drop --tenant",
                file.display()
            )));
        }
        (Some(t), false) => loaded.tenant(t).ok_or_else(|| {
            Error::Invalid(format!(
                "--tenant {t}: {} has no tenant `{t}` (tenants: {})",
                file.display(),
                names()
            ))
        })?,
    };
    let text = release::render::render(one).map_err(Error::Invalid)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
