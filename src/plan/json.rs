//! The plan as `cutover plan --output json` prints it (also `input.plan` of a Rego policy):
//! the plan's fields plus the environment and the variables it was resolved with.

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
    }
    Ok(v)
}
