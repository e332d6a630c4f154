//! `cutover verify FILE`: check, before any change, that everything an ECS release names
//! exists in the account and matches (clusters, services and their deployment controllers,
//! containers, target groups, listener rules, secrets, roles). Read-only.
//! Exit 0 when all is there, 2 when something is missing or mismatched.

use std::path::Path;
use std::process::ExitCode;

use super::Output;
use super::{AwsArgs, aws_runtime, ecs_platform};
use crate::platform::ecs::verify;

pub fn run(file: &Path, aws: &AwsArgs, output: Output) -> ExitCode {
    let rt = match aws_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let platform = match ecs_platform(file, aws, &rt) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let report = rt.block_on(verify::verify(&platform));
    match output {
        Output::Text => print!("{report}"),
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cutover: cannot encode the report as JSON: {e}");
                return ExitCode::from(super::EXIT_INTERNAL);
            }
        },
    }
    if report.problems() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_INVALID)
    }
}
