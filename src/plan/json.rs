//! The plan as `cutover plan --output json` prints it (also `input.plan` of a Rego policy):
//! the plan's fields plus the environment and the variables it was resolved with, and for a
//! release with tenants its `rings`, `failure_budget` and `fleet_timing`.

use crate::release::LoadedRelease;

/// `cutover plan --output json`'s document for `loaded`.
pub fn plan_json(loaded: &LoadedRelease) -> Result<serde_json::Value, String> {
    let p = super::plan(&loaded.release);
    let mut v =
        serde_json::to_value(&p).map_err(|e| format!("cannot encode the plan as JSON: {e}"))?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("environment".into(), loaded.environment.clone().into());
        obj.insert(
            "variables".into(),
            serde_json::to_value(&loaded.vars).unwrap_or_default(),
        );
        if let Some(f) = super::plan_fleet(&loaded.release, &loaded.tenants) {
            obj.insert(
                "rings".into(),
                serde_json::to_value(&f.rings).unwrap_or_default(),
            );
            obj.insert("failure_budget".into(), f.failure_budget.into());
            obj.insert(
                "fleet_timing".into(),
                serde_json::to_value(&f.timing).unwrap_or_default(),
            );
        }
    }
    Ok(v)
}
