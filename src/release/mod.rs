//! The release file: its types ([`model`]), the located parser ([`parse`]), whole-release
//! checks ([`validate`]) and the JSON Schema published by `cutover schema`.

pub mod diagnostic;
pub mod model;
pub mod parse;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::Diagnostic;
pub use model::*;

/// A release read from a file and checked: ready for planning and deploying.
#[derive(Debug, Clone)]
pub struct LoadedRelease {
    pub release: Release,
    /// The file it came from.
    pub path: PathBuf,
    /// The directory relative paths in the release are resolved against.
    pub base_dir: PathBuf,
}

impl LoadedRelease {
    /// A path written in the release, resolved against the release file's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }
}

/// Read, parse and validate a release file. On failure, every problem found, in file order.
pub fn load(path: &Path) -> Result<LoadedRelease, Vec<Diagnostic>> {
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the release file: {e}"),
            hint: Some("check the path and its permissions".into()),
            excerpt: None,
        }]
    })?;
    let release = load_str(path, &text, &base_dir)?;
    Ok(LoadedRelease {
        release,
        path: path.to_path_buf(),
        base_dir,
    })
}

/// Parse and validate release text (`name` is used in messages; relative paths resolve
/// against `base_dir`). Used by `load`, by tests and by tools that generate releases.
pub fn load_str(name: &Path, text: &str, base_dir: &Path) -> Result<Release, Vec<Diagnostic>> {
    let map = diagnostic::SourceMap::new(name, text);
    parse::parse_and_validate(&map, text, base_dir)
}

/// The JSON Schema of the release format, for editors (taplo, VS Code Even Better TOML).
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Release);
    schema.insert("title".into(), "cutover release".into());
    schema.insert(
        "description".into(),
        "A cutover release file: services, their dependencies, rollout strategies, gates and migrations."
            .into(),
    );
    schema.to_value()
}
