//! `cutover diff FILE`: what the release would change in each service's task definition
//! (image, environment, secrets references, cpu/memory) against what runs now. Read-only;
//! secrets are shown as their ARNs, never their values.

use std::path::Path;
use std::process::ExitCode;

use super::{AwsArgs, ReleaseArgs, aws_runtime, ecs_platform, ecs_platform_for};
use super::{Error, Output};
use crate::platform::ecs::parity::live as parity_live;
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

/// `cutover diff FILE --between A B`: the parity of two environments of the release
/// (`crate::parity`). Exit 0 when every difference is declared, 2 on drift.
pub fn between(
    file: &Path,
    release: &ReleaseArgs,
    envs: &[String],
    aws: &AwsArgs,
    output: Output,
) -> Result<ExitCode, Error> {
    let [a, b] = envs else {
        return Err(Error::Invalid(
            "--between takes two environments: --between staging production".into(),
        ));
    };
    if release.env.is_some() {
        return Err(Error::Invalid(
            "--between names both environments: drop --env".into(),
        ));
    }
    let load = |env: &str| {
        crate::release::load(
            file,
            &crate::release::LoadOptions {
                env: Some(env.to_string()),
                ..release.options()
            },
        )
    };
    let (la, lb) = (load(a)?, load(b)?);
    let names = [a.clone(), b.clone()];
    let parity = if la.release.release.platform == crate::release::PlatformKind::Ecs {
        let rt = aws_runtime()?;
        let (pa, pb) = (
            ecs_platform_for(&la, aws, &rt)?,
            ecs_platform_for(&lb, aws, &rt)?,
        );
        let read = |e: crate::platform::PlatformError| {
            if e.retryable {
                Error::Internal(e.to_string())
            } else {
                Error::Invalid(e.to_string())
            }
        };
        let live_a = rt.block_on(parity_live(&pa)).map_err(read)?;
        let live_b = rt.block_on(parity_live(&pb)).map_err(read)?;
        crate::parity::of_ecs(names, &la.release, &lb.release, &live_a, &live_b)
    } else {
        crate::parity::of_releases(names, &la.release, &lb.release)
    };
    match output {
        Output::Text => print!("{}", crate::parity::render(&parity)),
        Output::Json => {
            let s = serde_json::to_string_pretty(&parity)
                .map_err(|e| Error::Internal(format!("cannot encode the parity as JSON: {e}")))?;
            println!("{s}");
        }
    }
    Ok(if parity.drift() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_INVALID)
    })
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
