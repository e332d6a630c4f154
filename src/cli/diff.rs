//! `cutover diff FILE`: what the release would change in each service's task definition
//! (image, environment, secrets references, cpu/memory) against what runs now. Read-only;
//! secrets are shown as their ARNs, never their values.

use std::path::Path;
use std::process::ExitCode;

use super::{AwsArgs, ReleaseArgs, aws_runtime, ecs_platform};
use super::{Error, Output};
use crate::platform::ecs::verify::{self, ServiceDiff};

pub fn run(
    file: &Path,
    release: &ReleaseArgs,
    aws: &AwsArgs,
    output: Output,
) -> Result<ExitCode, Error> {
    let rt = aws_runtime()?;
    let platform = ecs_platform(file, release, aws, &rt)?;
    let diffs = rt.block_on(verify::diff(&platform)).map_err(|e| {
        if e.retryable {
            Error::Internal(e.to_string())
        } else {
            Error::Invalid(e.to_string())
        }
    })?;
    match output {
        Output::Text => print!("{}", render(&diffs)),
        Output::Json => {
            let s = serde_json::to_string_pretty(&diffs)
                .map_err(|e| Error::Internal(format!("cannot encode the diff as JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
