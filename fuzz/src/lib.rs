//! What the fuzz targets share: the release check both release targets end in, and text
//! drawn either from a vocabulary of real values or free.

use std::path::Path;

use arbitrary::Arbitrary;

/// A release's text through what `cutover validate` and `cutover plan` run: the located
/// parse and validation, then the plan and its rendering for a valid release, or every
/// diagnostic rendered for an invalid one.
pub fn check_release(text: &str) {
    let name = Path::new("fuzz.toml");
    let opts = cutover::release::LoadOptions::default();
    match cutover::release::load_text(name, text, Path::new("/nonexistent-fuzz-base"), &opts) {
        Ok(loaded) => {
            let plan = cutover::plan::plan(&loaded.release);
            let _ = cutover::plan::render_text(&plan);
            // With tenants: the rings, each tenant's plan, the fleet's timing.
            if let Some(f) = cutover::plan::plan_fleet(&loaded.release, &loaded.tenants) {
                let _ = cutover::plan::render_fleet_text(&f);
            }
        }
        Err(diags) => {
            for d in &diags {
                let _ = d.to_string();
            }
        }
    }
    // A release with `[environments]` refuses to resolve without `--env`: resolve it for
    // each one it declares (variables, overlays, `${name}` everywhere) and render it back.
    for env in cutover::release::environments::declared_names(text).into_iter().take(4) {
        let opts = cutover::release::LoadOptions {
            env: Some(env),
            lenient_env: true,
            ..Default::default()
        };
        match cutover::release::load_text(name, text, Path::new("/nonexistent-fuzz-base"), &opts) {
            Ok(loaded) => {
                let _ = cutover::release::render::render(&loaded.release);
            }
            Err(diags) => {
                for d in &diags {
                    let _ = d.to_string();
                }
            }
        }
    }
}

/// The `i`-th entry of `list`, wrapping.
pub fn pick(list: &[&str], i: u8) -> String {
    list[i as usize % list.len()].to_string()
}

/// Text from a vocabulary (`Known`) or any text (`Free`).
#[derive(Arbitrary, Debug)]
pub enum Text {
    Known(u8),
    Free(String),
}

impl Text {
    pub fn s(&self, list: &[&str]) -> String {
        match self {
            Text::Known(i) => pick(list, *i),
            Text::Free(s) => s.clone(),
        }
    }
}
