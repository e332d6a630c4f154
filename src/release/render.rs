//! `cutover render`: a resolved release as TOML. Every value is written out (defaults
//! included), no variables or environments are left, and a literal `${` is written `$${`,
//! so reading the output back gives the same release: rendering is a fixed point.

use super::Release;
use super::vars::escape;

/// The release as TOML. Values read from the environment (`env:` variables) are secret and
/// shown as `***` (so such a release does not render to a fixed point).
pub fn render(release: &Release) -> Result<String, String> {
    let mut value =
        toml::Value::try_from(release).map_err(|e| format!("cannot render the release: {e}"))?;
    let secrets = {
        let mut s = crate::secrets::Secrets::default();
        s.extend(release.env_values.iter().cloned());
        s
    };
    fix_strings(&mut value, &secrets);
    toml::to_string(&value).map_err(|e| format!("cannot render the release: {e}"))
}

fn fix_strings(v: &mut toml::Value, secrets: &crate::secrets::Secrets) {
    match v {
        toml::Value::String(s) => {
            let shown = if secrets.is_empty() {
                s.clone()
            } else {
                secrets.scrub(s)
            };
            *s = escape(&shown);
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|x| fix_strings(x, secrets)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| fix_strings(x, secrets)),
        _ => {}
    }
}

/// What a release was resolved with, as `plan` prints it before the plan: the environment
/// and each variable's value and source (`***` for values read from the environment).
pub fn resolution_text(environment: Option<&str>, vars: &[super::vars::ResolvedVar]) -> String {
    let mut out = String::new();
    if let Some(env) = environment {
        out.push_str(&format!("environment {env}\n"));
    }
    if !vars.is_empty() {
        out.push_str("variables\n");
        let width = vars
            .iter()
            .map(|v| v.name.chars().count())
            .max()
            .unwrap_or(0);
        let vwidth = vars
            .iter()
            .map(|v| v.value.chars().count())
            .max()
            .unwrap_or(0);
        for v in vars {
            out.push_str(&format!(
                "  {:<width$} = {:<vwidth$}  ({})\n",
                v.name, v.value, v.source
            ));
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
