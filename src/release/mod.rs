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
    let (map, parsed) = parse::parse_file(path);
    let mut diags = parsed.diagnostics;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    if let Some(release) = &parsed.release {
        diags.extend(validate::validate(release, &parsed.spans, &map, &base_dir));
    }
    diags.sort_by_key(|d| (d.line, d.col));
    diags.dedup();
    match parsed.release {
        Some(release) if diags.is_empty() => Ok(LoadedRelease {
            release,
            path: path.to_path_buf(),
            base_dir,
        }),
        _ => Err(diags),
    }
}

/// Parse and validate release text that is not on disk (relative paths resolve against
/// `base_dir`). Used by tests and by tools that generate releases.
pub fn load_str(name: &Path, text: &str, base_dir: &Path) -> Result<Release, Vec<Diagnostic>> {
    let map = diagnostic::SourceMap::new(name, text);
    let parsed = parse::parse_str(&map, text);
    let mut diags = parsed.diagnostics;
    if let Some(release) = &parsed.release {
        diags.extend(validate::validate(release, &parsed.spans, &map, base_dir));
    }
    diags.sort_by_key(|d| (d.line, d.col));
    diags.dedup();
    match parsed.release {
        Some(release) if diags.is_empty() => Ok(release),
        _ => Err(diags),
    }
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
