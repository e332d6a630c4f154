//! Policy as code: Rego files (package `cutover`) evaluated with regorus against the plan
//! and the context of a release before it starts. Every string in the set
//! `data.cutover.deny` refuses the release.

use std::path::Path;

use serde::Serialize;

use super::RegoSource;

/// What a policy sees as `input`.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    /// Exactly what `cutover plan --output json` prints.
    pub plan: serde_json::Value,
    pub environment: Option<String>,
    pub operator: String,
    /// The release's change ticket, or null.
    pub change: Option<String>,
    /// RFC 3339, UTC.
    pub time: String,
    /// The release's tenants (none until tenants exist).
    pub tenants: Vec<serde_json::Value>,
}

/// One deny message and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deny {
    pub policy: String,
    pub message: String,
}

/// Whether `text` (read from `path`) is a Rego module regorus accepts.
pub fn compile(path: &Path, text: &str) -> Result<(), String> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(path.display().to_string(), text.to_string())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Evaluate each file on its own against `input`: its deny messages, sorted, or why it
/// could not be evaluated (which refuses too: a policy that cannot answer is not a pass).
pub fn evaluate(sources: &[RegoSource], input: &Input) -> Result<Vec<Deny>, String> {
    let input_json =
        serde_json::to_string(input).map_err(|e| format!("cannot encode the policy input: {e}"))?;
    let mut out = Vec::new();
    for s in sources {
        let name = s.path.display().to_string();
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.clone(), s.text.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        engine
            .set_input_json(&input_json)
            .map_err(|e| format!("{name}: the input: {e}"))?;
        let results = engine
            .eval_query("data.cutover.deny".to_string(), false)
            .map_err(|e| format!("{name}: {e}"))?;
        let mut messages = Vec::new();
        for r in &results.result {
            for expr in &r.expressions {
                match &expr.value {
                    regorus::Value::Undefined | regorus::Value::Null => {}
                    v => {
                        let set = v.as_set().map_err(|_| {
                            format!("{name}: data.cutover.deny is not a set (write `deny contains msg if {{ … }}`)")
                        })?;
                        for m in set.iter() {
                            messages.push(match m.as_string() {
                                Ok(s) => s.to_string(),
                                Err(_) => m.to_json_str().unwrap_or_else(|_| "?".into()),
                            });
                        }
                    }
                }
            }
        }
        messages.sort();
        messages.dedup();
        out.extend(messages.into_iter().map(|message| Deny {
            policy: name.clone(),
            message,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(env: &str, change: Option<&str>) -> Input {
        Input {
            plan: serde_json::json!({"services": [{"name": "api", "strategy": "rolling"}]}),
            environment: Some(env.into()),
            operator: "alice".into(),
            change: change.map(str::to_string),
            time: "2026-12-04T12:00:00Z".into(),
            tenants: vec![],
        }
    }

    fn source(text: &str) -> RegoSource {
        RegoSource {
            path: "p.rego".into(),
            text: text.into(),
        }
    }

    #[test]
    fn each_deny_string_is_returned_and_an_empty_set_passes() {
        let p = source(
            r#"package cutover
deny contains msg if {
  input.environment == "production"
  some s in input.plan.services
  s.strategy != "canary"
  msg := sprintf("%s is not a canary (operator %s)", [s.name, input.operator])
}
"#,
        );
        let d = evaluate(std::slice::from_ref(&p), &input("production", None)).unwrap();
        assert_eq!(
            d,
            [Deny {
                policy: "p.rego".into(),
                message: "api is not a canary (operator alice)".into()
            }]
        );
        assert_eq!(evaluate(&[p], &input("staging", None)).unwrap(), []);
    }

    #[test]
    fn a_module_without_deny_passes_and_a_broken_one_does_not_compile() {
        let p = source("package cutover\nallow := true\n");
        assert_eq!(evaluate(&[p], &input("production", None)).unwrap(), []);
        assert!(compile(Path::new("x.rego"), "package cutover\ndeny contains if {").is_err());
    }
}
