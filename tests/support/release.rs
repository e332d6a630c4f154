//! Release files kept in the repository: the shipped examples and the test fixtures.

use std::path::{Path, PathBuf};

use cutover::release::{self, Release};

/// `examples/NAME`, loaded and validated (panics with the name when it does not load).
pub fn example(name: &str) -> Release {
    example_in(name, None)
}

/// `examples/NAME` resolved for environment `env`.
pub fn example_in(name: &str, env: Option<&str>) -> Release {
    release::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        &release::LoadOptions {
            env: env.map(str::to_string),
            ..Default::default()
        },
    )
    .expect(name)
    .release
}

/// The `.toml` files in `dir` (relative to the crate root), sorted.
pub fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}
