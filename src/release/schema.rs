//! The JSON Schema of the release file (`cutover schema`): the typed release, plus the
//! `[vars]` and `[environments.NAME]` tables that are resolved before it. The overlays'
//! schemas are the `[release]` and `[[service]]` schemas with nothing required and no
//! `name` (an environment cannot rename either).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::Release;

/// A variable's value: a TOML string, integer, float or boolean; `"env:NAME"` reads it from
/// the environment variable NAME (secret: never journaled or shown).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema, never built
enum VarValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

/// One `[environments.NAME]` table: the values of one environment (staging, production).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
struct EnvironmentTable {
    /// Variables of this environment, over `[vars]` (and under `--set`).
    #[serde(default)]
    vars: BTreeMap<String, VarValue>,
    /// Environments that must have promoted the same artifact (the same release file content
    /// and `--set` values) before this one deploys.
    #[serde(default)]
    requires: Vec<String>,
    /// Settings laid over `[release]`: any key but `name`. `environment` is this
    /// environment's name unless set here.
    #[serde(default)]
    #[schemars(schema_with = "release_overlay")]
    release: Option<()>,
    /// Settings laid over the `[[service]]` of each name: any key but `name`; tables merge
    /// key by key, other values (arrays included) replace.
    #[serde(default)]
    #[schemars(schema_with = "service_overlays")]
    service: Option<()>,
}

fn release_overlay(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "$ref": "#/$defs/ReleaseOverlay" })
}

fn service_overlays(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "$ref": "#/$defs/ServiceOverlay" }
    })
}

pub(super) fn json_schema() -> serde_json::Value {
    let mut generator = SchemaGenerator::default();
    let vars = generator.subschema_for::<BTreeMap<String, VarValue>>();
    let environments = generator.subschema_for::<BTreeMap<String, EnvironmentTable>>();
    let mut schema = generator.into_root_schema_for::<Release>();
    schema.insert("title".into(), "cutover release".into());
    schema.insert(
        "description".into(),
        "A cutover release file: services, their dependencies, rollout strategies, gates and migrations; variables and environments."
            .into(),
    );
    let mut v = schema.to_value();
    let mut vars = vars.to_value();
    vars["description"] = "Variables: `${name}` in any string is replaced by the value; a string that is exactly `${name}` takes the value and its type. `--set NAME=VALUE` overrides one; `$${` is a literal `${`.".into();
    let mut environments = environments.to_value();
    environments["description"] = "Environments of this release (`[environments.staging]`, ...): each command that reads the release then needs `--env NAME`.".into();
    v["properties"]["vars"] = vars;
    v["properties"]["environments"] = environments;
    for (def, overlay) in [
        ("ReleaseSection", "ReleaseOverlay"),
        ("Service", "ServiceOverlay"),
    ] {
        let mut o = v["$defs"][def].clone();
        if let Some(obj) = o.as_object_mut() {
            obj.remove("required");
            if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.remove("name");
            }
            obj.insert(
                "description".into(),
                format!("An environment's overlay of {def}: any of its keys but `name`.").into(),
            );
        }
        v["$defs"][overlay] = o;
    }
    v
}
