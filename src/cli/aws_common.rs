//! What `verify` and `diff` share: load an ECS release and build the platform for it.

use std::path::Path;
use std::process::ExitCode;

use crate::platform::ecs::{EcsPlatform, aws};
use crate::release::{self, PlatformKind};

/// Where to find the AWS account: the standard chain, narrowed by these flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// AWS region for services without `region` in [service.ecs] (default: AWS_REGION or the
    /// profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// A named profile from ~/.aws/config (default: AWS_PROFILE, then `default`).
    #[arg(long)]
    pub profile: Option<String>,
}

/// Load and validate the release, check it targets ECS, and build the platform. On
/// failure, the exit code to return (after printing why).
pub fn platform(
    file: &Path,
    args: &AwsArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<EcsPlatform, ExitCode> {
    let loaded = match release::load(file) {
        Ok(r) => r,
        Err(diags) => return Err(super::report_diagnostics(&diags)),
    };
    if loaded.release.release.platform != PlatformKind::Ecs {
        eprintln!(
            "{}: the release's platform is \"{}\"; this command checks ECS releases (set `platform = \"ecs\"` in [release])",
            file.display(),
            loaded.release.release.platform.as_str()
        );
        return Err(ExitCode::from(super::EXIT_INVALID));
    }
    let conf = rt.block_on(aws::load_config(
        args.region.as_deref(),
        args.profile.as_deref(),
    ));
    if conf.region().is_none()
        && loaded
            .release
            .services
            .iter()
            .any(|s| s.ecs.as_ref().is_some_and(|e| e.region.is_none()))
    {
        eprintln!(
            "cutover: no AWS region: pass --region, set AWS_REGION, or add `region` to each [service.ecs]"
        );
        return Err(ExitCode::from(super::EXIT_INVALID));
    }
    EcsPlatform::from_release(&loaded.release, &conf).map_err(|e| {
        eprintln!("cutover: {e}");
        ExitCode::from(super::EXIT_INVALID)
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cutover: cannot start the async runtime: {e}");
            ExitCode::from(super::EXIT_INTERNAL)
        })
}
