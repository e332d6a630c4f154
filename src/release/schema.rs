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
    allow_references(&mut v);
    v["properties"]["vars"] = vars;
    v["properties"]["environments"] = environments;
    for (def, overlay) in [
        ("ReleaseSection", "ReleaseOverlay"),
        ("Service", "ServiceOverlay"),
    ] {
        partial(&mut v, def, overlay);
        if let Some(props) = v
            .pointer_mut(&format!("/$defs/{overlay}/properties"))
            .and_then(|p| p.as_object_mut())
        {
            props.remove("name");
        }
        v["$defs"][overlay]["description"] =
            format!("An environment's overlay of {def}: any of its keys but `name`.").into();
    }
    v
}

/// `$defs[overlay]`: `$defs[def]` with nothing required, and every table it refers to
/// (`local`, `health`, ...) made partial the same way, since an overlay may give one key.
fn partial(v: &mut serde_json::Value, def: &str, overlay: &str) {
    if v["$defs"].get(overlay).is_some() {
        return;
    }
    let mut o = v["$defs"][def].clone();
    if let Some(obj) = o.as_object_mut() {
        obj.remove("required");
    }
    // Reserved first, so a definition that refers back to itself stops here.
    v["$defs"][overlay] = serde_json::Value::Null;
    for (target, slot) in refs(&o) {
        let is_table = v
            .pointer(&format!("/$defs/{target}/properties"))
            .is_some_and(|p| p.is_object());
        if is_table {
            let sub = format!("{target}Overlay");
            partial(v, &target, &sub);
            if let Some(r) = o.pointer_mut(&slot) {
                *r = format!("#/$defs/{sub}").into();
            }
        }
    }
    v["$defs"][overlay] = o;
}

/// Every `$ref` to a definition in `v`: (the definition's name, the `$ref`'s JSON pointer).
fn refs(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    match x.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                        Some(name) if k == "$ref" => out.push((name.to_string(), p)),
                        // An overlay replaces an array whole: its items stay complete.
                        _ if k == "items" => {}
                        _ => walk(x, p, out),
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// A number or boolean may also be written as exactly `"${name}"` (it takes the variable's
/// value and type): every such property accepts that string too.
fn allow_references(v: &mut serde_json::Value) {
    let reference = serde_json::json!({ "type": "string", "pattern": "^\\$\\{[A-Za-z0-9_-]+\\}$" });
    let Some(defs) = v.get_mut("$defs").and_then(|d| d.as_object_mut()) else {
        return;
    };
    // A duration has a pattern of its own.
    if let Some(d) = defs.get_mut("Duration") {
        let mut typed = d.take();
        let description = typed
            .as_object_mut()
            .and_then(|o| o.remove("description"))
            .unwrap_or_default();
        *d = serde_json::json!({ "description": description, "anyOf": [typed, reference.clone()] });
    }
    for def in defs.values_mut() {
        let Some(props) = def.get_mut("properties").and_then(|p| p.as_object_mut()) else {
            continue;
        };
        for prop in props.values_mut() {
            let scalar = match &prop["type"] {
                serde_json::Value::String(t) => {
                    ["integer", "number", "boolean"].contains(&t.as_str())
                }
                serde_json::Value::Array(ts) => ts
                    .iter()
                    .any(|t| ["integer", "number", "boolean"].contains(&t.as_str().unwrap_or(""))),
                _ => false,
            };
            if !scalar {
                continue;
            }
            let mut typed = prop.take();
            let description = typed
                .as_object_mut()
                .and_then(|o| o.remove("description"))
                .unwrap_or_default();
            *prop = serde_json::json!({
                "description": description,
                "anyOf": [typed, reference.clone()],
            });
        }
    }
}
