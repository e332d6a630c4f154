//! The plan as `cutover plan --output json` prints it (also `input.plan` of a Rego policy):
//! the plan's fields plus the environment and the variables it was resolved with, and for a
//! release with tenants its `rings`, `failure_budget` and `fleet_timing`; each ECS
//! service gets `image_pin` (`{image, mode, digest, at_start}`: `images.rs`).

use crate::policy::scan::PinMode;
use crate::release::LoadedRelease;

/// `cutover plan --output json`'s document for `loaded`, its ECS images under the
/// policy's `[images] pin` mode `pin`.
pub fn plan_json(loaded: &LoadedRelease, pin: PinMode) -> Result<serde_json::Value, String> {
    let p = super::plan(&loaded.release);
    let mut v =
        serde_json::to_value(&p).map_err(|e| format!("cannot encode the plan as JSON: {e}"))?;
    let images = super::planned_images(&loaded.release, pin);
    if let Some(services) = v.get_mut("services").and_then(|s| s.as_array_mut()) {
        for s in services {
            let name = s.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            if let (Some(i), Some(obj)) =
                (images.iter().find(|i| i.service == name), s.as_object_mut())
            {
                obj.insert(
                    "image_pin".into(),
                    serde_json::to_value(i).unwrap_or_default(),
                );
            }
        }
    }
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
