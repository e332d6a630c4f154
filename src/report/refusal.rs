//! Why a finished run that changed nothing was refused, read from its journal: the
//! change-control entry (`policy`: a freeze window, a Rego deny or a policy that could
//! not be evaluated, the image scan gate), the platform's check before anything changed
//! (`ECS preflight`, `image pinning`), or a migration refused by lint or the dry run.
//! A run is counted once, under the first refusal its journal gives; a refused run whose
//! journal says none of these is `other`.

use crate::engine::MigrationPhase;
use crate::journal::Entry;

/// The reason a run that changed nothing was refused: `freeze`, `policy`, `image_gate`,
/// `preflight`, `migration` or `other`.
pub fn reason(entries: &[Entry]) -> &'static str {
    entries.iter().find_map(of_entry).unwrap_or("other")
}

fn of_entry(e: &Entry) -> Option<&'static str> {
    match e.kind.as_str() {
        crate::session::policy_gate::POLICY_ENTRY => {
            let rule = e.payload["refused"].as_array()?.first()?["rule"].as_str()?;
            Some(match rule {
                "freeze" => "freeze",
                "scan" => "image_gate",
                _ => "policy",
            })
        }
        "platform" => {
            let summary = e.payload["summary"].as_str()?;
            if summary.starts_with("image pinning failed") {
                Some("image_gate")
            } else if summary.starts_with("ECS preflight failed") {
                Some("preflight")
            } else {
                None
            }
        }
        "migration" => {
            let phase: MigrationPhase =
                serde_json::from_value(e.payload["event"]["phase"].clone()).ok()?;
            (phase == MigrationPhase::Failed).then_some("migration")
        }
        _ => None,
    }
}
