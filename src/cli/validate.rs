//! `cutover validate FILE...`

use std::path::PathBuf;
use std::process::ExitCode;

use super::Error;
use crate::release;

pub fn run(files: &[PathBuf]) -> Result<ExitCode, Error> {
    let mut problems = Vec::new();
    for f in files {
        match release::load(f) {
            Ok(r) => println!(
                "{}: ok ({} service(s), {} migration(s))",
                f.display(),
                r.release.services.len(),
                r.release.migrations.len()
            ),
            Err(diags) => problems.extend(diags),
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Diagnostics(problems))
    }
}
