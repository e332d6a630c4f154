//! `cutover demo --fleet`: eight tenants' instances of a two-service shop on this machine,
//! in three rings with a failure budget of one (`examples/fleet-demo/fleet-demo.toml`).
//! One tenant's configuration (`error_rate`) breaks its new api; the engine rolls that tenant
//! back, the budget absorbs it, the others promote, and the flags file ends with the new flag
//! on for exactly the promoted tenants. The last ring waits at approval gates that promote
//! by themselves after their timeout.
//!
//! Here: the release (resolved for its tenants, its flags file under the state directory,
//! fresh for each demo), and the closing summary read from the state and the flags file.

use std::path::{Path, PathBuf};

use crate::engine::{ReleaseState, TenantStatus};
use crate::release::Release;
use crate::release::tenants::FlagValue;

/// The fleet demo's release, also shipped as `examples/fleet-demo/fleet-demo.toml`.
pub const FLEET_DEMO_RELEASE: &str = include_str!("../../examples/fleet-demo/fleet-demo.toml");

/// Where the release is shipped (its name in messages and in the journal).
pub const FLEET_DEMO_FILE: &str = "examples/fleet-demo/fleet-demo.toml";

/// The tenant whose configuration breaks its candidate.
pub const BROKEN_TENANT: &str = "initech";

/// The flag every tenant turns on once promoted.
pub const FLAG: &str = "new_checkout";

/// The demo's release, ready for the engine (every tenant's services as `TENANT/SERVICE`),
/// and the directory its flags file is written in.
pub struct FleetDemo {
    pub release: Release,
    pub base_dir: PathBuf,
    pub flags_path: PathBuf,
}

/// Load the fleet demo's release with `STATE_DIR/fleet-demo` as its directory, removing
/// the flags file an earlier demo left there (so it ends with this run's tenants only).
pub fn prepare(state_dir: &Path) -> Result<FleetDemo, String> {
    let dir = state_dir.join("fleet-demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let base_dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let loaded = crate::release::load_text(
        Path::new(FLEET_DEMO_FILE),
        FLEET_DEMO_RELEASE,
        &base_dir,
        &crate::release::LoadOptions::default(),
    )
    .map_err(|d| format!("the built-in fleet demo release is invalid: {d:?}"))?;
    let release = crate::release::flatten::flatten(&loaded.release, &loaded.tenants);
    let file = release
        .flags
        .as_ref()
        .map_or("flags.json", |f| f.file.as_str());
    let flags_path = base_dir.join(file);
    match std::fs::remove_file(&flags_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", flags_path.display())),
    }
    Ok(FleetDemo {
        release,
        base_dir,
        flags_path,
    })
}

/// The tenants for which the flags file at `path` gives [`FLAG`] `true`, in the release's
/// tenant order (read by cutover's flagd reader; no file: none).
pub fn flag_on(release: &Release, path: &Path) -> Result<Vec<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file = crate::flagd::FlagFile::read(text.as_deref(), &crate::flagd::declared(release))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(release
        .tenants
        .iter()
        .filter(|t| file.value(&t.name, FLAG) == Some(&FlagValue::Bool(true)))
        .map(|t| t.name.clone())
        .collect())
}

/// The tenants with `status`, in the release's tenant order.
fn tenants_with(state: &ReleaseState, status: TenantStatus) -> Vec<String> {
    state.fleet.as_ref().map_or_else(Vec::new, |f| {
        f.tenants
            .iter()
            .filter(|t| t.status == status)
            .map(|t| t.name.clone())
            .collect()
    })
}

/// "1 of 1 used": the failure budget's count.
pub fn budget_used(state: &ReleaseState) -> String {
    state.fleet.as_ref().map_or_else(
        || "no failure budget".into(),
        |f| format!("{} of {} used", f.failures, f.budget),
    )
}

/// The engine did its job: the broken tenant failed (rolled back, or failed where it could
/// not go back) and counted once, every other tenant promoted, and the flag is on for
/// exactly the promoted tenants.
pub fn caught(state: &ReleaseState, flag_on: &[String]) -> bool {
    let Some(f) = state.fleet.as_ref() else {
        return false;
    };
    let tenants_ok = f.tenants.iter().all(|t| {
        if t.name == BROKEN_TENANT {
            matches!(t.status, TenantStatus::RolledBack | TenantStatus::Failed)
        } else {
            t.status == TenantStatus::Promoted
        }
    });
    tenants_ok && f.failures == 1 && tenants_with(state, TenantStatus::Promoted) == flag_on
}

/// Lines and JSON fields for the end of the fleet demo.
pub fn closing(
    state: &ReleaseState,
    flags_path: &Path,
    flag_on: &Result<Vec<String>, String>,
) -> (serde_json::Value, Vec<String>) {
    let promoted = tenants_with(state, TenantStatus::Promoted);
    let mut lines = vec![
        String::new(),
        format!("tenants promoted: {}", promoted.join(", ")),
    ];
    for t in state.fleet.iter().flat_map(|f| &f.tenants) {
        if t.status != TenantStatus::Promoted {
            lines.push(format!(
                "tenant {}: {} ({})",
                t.name,
                t.status.as_str().replace('_', " "),
                t.reason.clone().unwrap_or_default()
            ));
        }
    }
    lines.push(format!("failure budget: {}", budget_used(state)));
    match flag_on {
        Ok(on) => lines.push(format!(
            "{}: {FLAG} on for {}",
            flags_path.display(),
            if on.is_empty() {
                "no tenant".to_string()
            } else {
                on.join(", ")
            }
        )),
        Err(e) => lines.push(format!("flags file: {e}")),
    }
    let json = serde_json::json!({
        "broken_tenant": BROKEN_TENANT,
        "failure_budget_used": budget_used(state),
        "flags_file": flags_path.display().to_string(),
        "flag": FLAG,
        "flag_on": flag_on.as_ref().ok(),
        "flags_error": flag_on.as_ref().err(),
    });
    (json, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_release_has_eight_tenants_in_three_rings_and_one_broken() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("fleet-demo")).unwrap_or_else(|e| panic!("{e}"));
        let stale = dir.path().join("fleet-demo/flags.json");
        std::fs::write(&stale, "{}").unwrap_or_else(|e| panic!("{e}"));
        let demo = prepare(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!stale.exists(), "an earlier demo's flags file is removed");
        assert!(demo.flags_path.ends_with("fleet-demo/flags.json"));
        let r = &demo.release;
        assert_eq!(r.tenants.len(), 8);
        assert_eq!(r.rings.len(), 3);
        assert_eq!(r.release.failure_budget.map(|b| b.budget_of(8)), Some(1));
        assert_eq!(r.services.len(), 16);
        // Only the broken tenant's new api injects errors.
        let faulty: Vec<&str> = r
            .services
            .iter()
            .filter(|s| {
                s.local.as_ref().is_some_and(|l| {
                    l.target
                        .args
                        .windows(2)
                        .any(|w| w[0] == "--error-rate" && w[1] != "0")
                })
            })
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(faulty, vec!["initech/api"]);
        // The last ring's tenants have a gate that promotes itself.
        let gated: Vec<&str> = r
            .tenants
            .iter()
            .filter(|t| {
                t.approval
                    .as_ref()
                    .is_some_and(|a| a.on_timeout == crate::release::OnTimeout::Promote)
            })
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(gated, vec!["hooli", "soylent", "stark", "wayne"]);
        // No flags file yet: no tenant has the flag.
        assert_eq!(flag_on(r, &demo.flags_path), Ok(Vec::new()));
    }
}
