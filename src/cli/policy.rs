//! `cutover policy check FILE [--env E] [--policy P] [--change T]`: the change-control
//! checks of a fresh run (freeze windows now, every Rego policy against the plan) without
//! running anything. Exit 0 when the release may start, 2 with every refusal.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Error, PolicyArgs, ReleaseArgs};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Run the policy's checks on a release alone: freeze windows open now and every Rego
    /// policy against the plan (exit 2 on a deny).
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The release file.
    pub file: PathBuf,
    #[command(flatten)]
    pub release: ReleaseArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub change: super::ChangeArg,
    /// Who would run the release (input.operator; default: $USER).
    #[arg(long)]
    pub operator: Option<String>,
}

pub fn run(command: PolicyCommand) -> Result<ExitCode, Error> {
    let PolicyCommand::Check(args) = command;
    let loaded = crate::release::load(&args.file, &args.release.options())?;
    let operator = crate::engine::operator_name(args.operator.as_deref());
    let admission = args.policy.admission(&args.change);
    let result = crate::session::policy_gate::evaluate(&loaded, &operator, &admission)?;
    let source = crate::policy::locate(admission.policy.as_deref())
        .map_or_else(|| "no policy file".to_string(), |p| p.display().to_string());
    let scanned = crate::session::image_gate::offline(&loaded, &admission);
    let code = match result {
        Ok(cc) => {
            println!(
                "release {} may start ({source}: {} freeze window(s), {} Rego policy(ies) passed)",
                loaded.release.release.name,
                cc.freeze.len(),
                cc.rego.len()
            );
            if let Some(rule) = &cc.approval {
                println!("approval gates: {}", rule.describe(&cc.roster));
            }
            0
        }
        Err(refusals) => {
            println!(
                "release {} would be refused ({source}):",
                loaded.release.release.name
            );
            for r in &refusals {
                println!("  - {}", r.message());
            }
            2
        }
    };
    let code = if scan(scanned) { 2 } else { code };
    Ok(ExitCode::from(code))
}

/// Print the scan gate's outcome (Trivy reports, offline); true when it refuses.
fn scan(outcome: Option<Result<crate::policy::scan::ScanOutcome, String>>) -> bool {
    match outcome {
        None => false,
        Some(Err(why)) => {
            println!("scan: {why}");
            false
        }
        Some(Ok(o)) => {
            println!("{}", o.summary());
            for (_, line) in o.refusals() {
                println!("  - {line}");
            }
            if !o.passed() {
                println!("the scan gate would refuse the release (exit 2)");
            }
            !o.passed()
        }
    }
}
