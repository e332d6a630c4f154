//! `cutover diff FILE`: what the release would change in each service's task definition
//! (image, environment, secrets references, cpu/memory) against what runs now. Read-only;
//! secrets are shown as their ARNs, never their values.

use std::path::Path;
use std::process::ExitCode;

use super::Output;
use super::{AwsArgs, aws_runtime, ecs_platform};
use crate::platform::ecs::verify::{self, ServiceDiff};

pub fn run(file: &Path, aws: &AwsArgs, output: Output) -> ExitCode {
    let rt = match aws_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let platform = match ecs_platform(file, aws, &rt) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let diffs = match rt.block_on(verify::diff(&platform)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cutover: {e}");
            return ExitCode::from(if e.retryable {
                super::EXIT_INTERNAL
            } else {
                super::EXIT_INVALID
            });
        }
    };
    match output {
        Output::Text => print!("{}", render(&diffs)),
        Output::Json => match serde_json::to_string_pretty(&diffs) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cutover: cannot encode the diff as JSON: {e}");
                return ExitCode::from(super::EXIT_INTERNAL);
            }
        },
    }
    ExitCode::SUCCESS
}

/// The diff as text: one block per service, `-` old and `+` new per field.
pub fn render(diffs: &[ServiceDiff]) -> String {
    let mut s = String::new();
    for d in diffs {
        s.push_str(&format!(
            "service {} (against {})\n",
            d.service, d.task_definition
        ));
        if d.changes.is_empty() {
            s.push_str("  no change\n");
        }
        for c in &d.changes {
            s.push_str(&format!("  {}\n", c.field));
            if let Some(from) = &c.from {
                s.push_str(&format!("    - {from}\n"));
            }
            if let Some(to) = &c.to {
                s.push_str(&format!("    + {to}\n"));
            }
        }
    }
    s
}
