//! `cutover validate FILE... [--env NAME] [--set NAME=VALUE]...`: a release that declares
//! environments is checked in every one of them (or only in `--env`), and each problem
//! names the environments it belongs to when not all. A variable read with `env:` that is
//! not set keeps its declared value here: validation needs no secrets.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Error, ReleaseArgs};
use crate::release;

pub fn run(files: &[PathBuf], args: &ReleaseArgs) -> Result<ExitCode, Error> {
    let mut problems = Vec::new();
    let opts = release::LoadOptions {
        lenient_env: true,
        ..args.options()
    };
    for f in files {
        match release::check_all(f, &opts) {
            Ok(envs) => {
                let r = release::load(
                    f,
                    &release::LoadOptions {
                        env: envs.first().cloned(),
                        ..opts.clone()
                    },
                )?;
                let checked = if envs.is_empty() {
                    String::new()
                } else {
                    format!(", environment(s) {}", envs.join(", "))
                };
                let fleet = if r.release.tenants.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} tenant(s) in {} ring(s)",
                        r.release.tenants.len(),
                        r.release.rings.len()
                    )
                };
                println!(
                    "{}: ok ({} service(s), {} migration(s){fleet}{checked})",
                    f.display(),
                    r.release.services.len(),
                    r.release.migrations.len()
                );
            }
            Err(diags) => problems.extend(diags),
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Diagnostics(problems))
    }
}
