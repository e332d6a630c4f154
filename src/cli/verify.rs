//! `cutover verify FILE`: check, before any change, that everything an ECS release names
//! exists in the account and matches (clusters, services and their deployment controllers,
//! containers, target groups, listener rules, secrets, roles). Read-only.
//! Exit 0 when all is there, 2 when something is missing or mismatched.

use std::path::Path;
use std::process::ExitCode;

use super::{AwsArgs, ReleaseArgs, aws_runtime, ecs_platform};
use super::{Error, Output};
use crate::platform::ecs::verify;

pub fn run(
    file: &Path,
    release: &ReleaseArgs,
    aws: &AwsArgs,
    output: Output,
) -> Result<ExitCode, Error> {
    let rt = aws_runtime()?;
    let platform = ecs_platform(file, release, aws, &rt)?;
    let report = rt.block_on(verify::verify(&platform));
    match output {
        Output::Text => print!("{report}"),
        Output::Json => {
            let s = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Internal(format!("cannot encode the report as JSON: {e}")))?;
            println!("{s}");
        }
    }
    if report.problems() == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(super::EXIT_INVALID))
    }
}
