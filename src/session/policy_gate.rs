//! The change-control gate before a fresh deploy or serve: the policy file in force, its
//! freeze windows (and `--break-glass`), and its Rego policies against the plan. A refusal
//! changes nothing: no platform call, no process. It is journaled as a run of its own,
//! the release entry then one `policy` entry with every reason, finished `refused`, so
//! `history`, `audit` and the delivery figures see it (a refused release is not a
//! deployment). Then exit 2 with each reason printed.

use std::path::PathBuf;

use super::exit::Failure;
use crate::journal::{Journal, NewEntry};
use crate::policy::{self, ChangeControl, Refusal};
use crate::release::LoadedRelease;

/// The journal entry kind of a change-control refusal.
pub const POLICY_ENTRY: &str = "policy";
/// The outcome of a run refused before it started.
pub const REFUSED: &str = "refused";

/// The change-control flags of a fresh run.
#[derive(Debug, Clone, Default)]
pub struct PolicyAdmission {
    /// `--policy FILE` (else `CUTOVER_POLICY`, else `policy.toml` in the config dir).
    pub policy: Option<PathBuf>,
    /// `--change TICKET`.
    pub change: Option<String>,
    /// `--break-glass REASON`.
    pub break_glass: Option<String>,
    /// `--break-glass-approver NAME`, each.
    pub break_glass_approvers: Vec<String>,
}

/// The environment a policy sees: `--env`, else the release's `environment`.
pub fn environment(loaded: &LoadedRelease) -> Option<String> {
    loaded
        .environment
        .clone()
        .or_else(|| loaded.release.release.environment.clone())
}

/// Check a fresh run; `Ok(None)` when there is nothing to enforce or record.
pub fn admit(
    loaded: &LoadedRelease,
    file_label: &str,
    state_dir: &crate::journal::JournalStore,
    operator: &str,
    a: &PolicyAdmission,
) -> Result<Option<ChangeControl>, super::spec::SourceError> {
    use super::spec::SourceError;
    match evaluate(loaded, operator, a)? {
        Ok(cc) => {
            if let Some(b) = cc.break_glass.as_ref().filter(|b| b.pending) {
                eprintln!(
                    "cutover: BREAK-GLASS REQUESTED: {} asks to start inside the freeze window `{}`: {}; the release waits, before anything changes, for {} (cutover ctl approve-break-glass, or the console)",
                    b.operator,
                    b.window,
                    b.reason,
                    cc.break_glass_rule
                        .as_ref()
                        .map_or_else(|| "approvals".to_string(), |r| r.describe(&cc.roster)),
                );
            } else if let Some(b) = &cc.break_glass {
                eprintln!(
                    "cutover: BREAK-GLASS: {} starts inside the freeze window `{}`, approved by {}: {}; journaled with the release",
                    b.operator,
                    b.window,
                    b.approvers.join(", "),
                    b.reason
                );
            }
            Ok((!cc.is_empty()).then_some(cc))
        }
        Err(refusals) => {
            let run_id = journal_refusal(loaded, file_label, state_dir, operator, a, &refusals)
                .map_err(|e| SourceError::Failure(Failure::internal(e)))?;
            let lines: Vec<String> = refusals.iter().map(Refusal::message).collect();
            Err(SourceError::Failure(Failure::invalid(format!(
                "release {} refused before anything changed (journaled as run {run_id}):\n  - {}",
                loaded.release.release.name,
                lines.join("\n  - ")
            ))))
        }
    }
}

/// The policy in force evaluated for a fresh run of `loaded` now (what `cutover policy
/// check` prints): what the engine would enforce, or every refusal.
pub fn evaluate(
    loaded: &LoadedRelease,
    operator: &str,
    a: &PolicyAdmission,
) -> Result<Result<ChangeControl, Vec<Refusal>>, super::spec::SourceError> {
    use super::spec::SourceError;
    let pol = policy::load(a.policy.as_deref()).map_err(SourceError::Invalid)?;
    let plan = crate::plan::plan_json(loaded, pol.images)
        .map_err(|e| SourceError::Failure(Failure::internal(e)))?;
    let env = environment(loaded);
    let ctx = policy::Context {
        environment: env.as_deref(),
        operator,
        change: a
            .change
            .as_deref()
            .or(loaded.release.release.change.as_deref()),
        now: chrono::Utc::now(),
        break_glass: a
            .break_glass
            .as_deref()
            .map(|r| (r, a.break_glass_approvers.as_slice())),
    };
    let windows: Vec<policy::FreezeWindow> =
        loaded.release.freeze.iter().map(|f| f.window()).collect();
    let mut result = policy::check(&pol, &windows, plan, &ctx);
    let tenants: Vec<(&str, &[String])> = loaded
        .release
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), t.tags.as_slice()))
        .collect();
    let mut gates = policy::check_tenants(&pol, &windows, env.as_deref(), &tenants, ctx.now);
    gates.extend(policy::gates::check_gates(&pol, &loaded.release));
    if !gates.is_empty() {
        result = Err(match result {
            Ok(_) => gates,
            Err(mut r) => {
                r.extend(gates);
                r
            }
        });
    }
    Ok(result)
}

/// A run of its own for a refusal: the release entry, one `policy` entry, `refused`.
fn journal_refusal(
    loaded: &LoadedRelease,
    file_label: &str,
    state_dir: &crate::journal::JournalStore,
    operator: &str,
    a: &PolicyAdmission,
    refusals: &[Refusal],
) -> Result<String, String> {
    let release = &loaded.release;
    let sha = &loaded.artifact.file_sha256;
    let mut j = Journal::create(state_dir, &release.release.name, sha)
        .map_err(|e| format!("journal: {e}"))?;
    let now = crate::engine::Clock::now_ms(&crate::engine::SystemClock);
    let origin = crate::journal::ReleaseOrigin {
        environment: loaded.environment.clone(),
        artifact: Some(loaded.artifact.clone()),
        variables: loaded.vars.clone(),
        change: a.change.clone(),
    };
    crate::journal::release_entry::record_release(
        &mut j,
        release,
        file_label,
        &loaded.base_dir,
        operator,
        now,
        sha,
        &origin,
    )
    .map_err(|e| e.to_string())?;
    append_refusal(&mut j, release, Some(operator), now, refusals)?;
    Ok(j.run_id().to_string())
}

/// End a run refused before anything changed: one `policy` entry with every reason
/// (scrubbed of the release's secrets), then finished `refused`. Also the scan gate's.
pub(super) fn append_refusal(
    j: &mut Journal,
    release: &crate::release::Release,
    operator: Option<&str>,
    now: u64,
    refusals: &[Refusal],
) -> Result<(), String> {
    let secrets = crate::secrets::Secrets::from_release(release);
    let messages: Vec<String> = refusals
        .iter()
        .map(|r| secrets.scrub(&r.message()))
        .collect();
    j.append(NewEntry {
        at_ms: now,
        operator: operator.map(str::to_string),
        kind: POLICY_ENTRY.into(),
        service: None,
        payload: serde_json::json!({
            "summary": format!("refused before anything changed: {}", messages.join("; ")),
            "refused": scrubbed(refusals, &secrets),
        }),
    })
    .map_err(|e| format!("journal: {e}"))?;
    j.finish(REFUSED).map_err(|e| format!("journal: {e}"))?;
    Ok(())
}

/// The refusals as JSON, every string scrubbed of the release's secrets.
fn scrubbed(refusals: &[Refusal], secrets: &crate::secrets::Secrets) -> serde_json::Value {
    let text = serde_json::to_string(refusals).unwrap_or_default();
    serde_json::from_str(&secrets.scrub(&text)).unwrap_or_default()
}
