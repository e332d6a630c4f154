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
