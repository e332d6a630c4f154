//! The release file: its types ([`model`]), the located parser ([`parse`]), variables
//! ([`vars`]) and environments ([`environments`]) resolved before it, whole-release checks
//! ([`validate`]), the resolved release as TOML ([`render`]) and the JSON Schema published
//! by `cutover schema`.

pub mod artifact;
pub mod change;
pub mod diagnostic;
pub mod environments;
pub mod flatten;
pub mod fleet;
pub mod model;
pub mod parse;
pub mod render;
mod schema;
pub mod tenants;
pub mod validate;
pub mod vars;

use std::path::{Path, PathBuf};

pub use artifact::Artifact;
pub use diagnostic::Diagnostic;
pub use environments::Environment;
pub use model::*;
pub use vars::SetArg;

/// How to read a release file: which environment (`--env`) and which variable values
/// (`--set`). The default reads a release that declares no environments as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--env NAME`: required when the release declares environments, refused otherwise.
    pub env: Option<String>,
    /// `--set NAME=VALUE` in command-line order (the last of a name wins); a value
    /// `env:VAR` is read from the environment.
    pub sets: Vec<SetArg>,
    /// A variable whose `env:VAR` is not set keeps its declared value instead of being an
    /// error: for `validate`, which checks a release without its secrets at hand.
    pub lenient_env: bool,
}

/// A release read from a file, resolved for one environment and checked: ready for
/// planning and deploying.
#[derive(Debug, Clone)]
pub struct LoadedRelease {
    pub release: Release,
    /// The file it came from.
    pub path: PathBuf,
    /// The directory relative paths in the release are resolved against.
    pub base_dir: PathBuf,
    /// The environment it was resolved for (`--env`); `None` when the release declares none.
    pub environment: Option<String>,
    /// Every environment the file declares, with what each `requires`.
    pub environments: Vec<Environment>,
    /// What a lifecycle gate compares across runs: the file's content and the `--set` values.
    pub artifact: Artifact,
    /// The variables in force and where each came from (`plan`, the console).
    pub vars: Vec<vars::ResolvedVar>,
    /// With `[[tenant]]`s: each tenant's own release (its variables laid over the
    /// release's, its smoke tests and analysis bounds folded in), in file order; the
    /// rings are `release.rings` ([`tenants::members`]). Empty without tenants.
    pub tenants: Vec<fleet::TenantRelease>,
}

impl LoadedRelease {
    /// A path written in the release, resolved against the release file's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }

    /// The release one tenant runs.
    pub fn tenant(&self, name: &str) -> Option<&Release> {
        self.tenants
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.release)
    }
}

/// Read, resolve (environment, variables) and validate a release file. On failure, every
/// problem found, in file order.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<LoadedRelease, Vec<Diagnostic>> {
    let (text, base_dir) = read(path)?;
    load_text(path, &text, &base_dir, opts)
}

/// A test's release text, loaded as `release.toml` in a throwaway directory (with the
/// default options).
#[cfg(test)]
pub(crate) fn load_test_text(text: &str) -> Result<LoadedRelease, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    load_text(
        &dir.path().join("release.toml"),
        text,
        dir.path(),
        &LoadOptions::default(),
    )
}

/// [`load`] of text already read (`path` names it in messages and in the artifact).
pub fn load_text(
    path: &Path,
    text: &str,
    base_dir: &Path,
    opts: &LoadOptions,
) -> Result<LoadedRelease, Vec<Diagnostic>> {
    let map = diagnostic::SourceMap::new(path, text);
    let sel = parse::Selection {
        env: opts.env.as_deref(),
        sets: &opts.sets,
        lenient_env: opts.lenient_env,
    };
    let r = parse::resolve_and_validate(&map, text, base_dir, &sel)?;
    Ok(LoadedRelease {
        release: r.release,
        path: path.to_path_buf(),
        base_dir: base_dir.to_path_buf(),
        environment: r.environment,
        environments: r.environments,
        artifact: Artifact::new(text.as_bytes(), &opts.sets),
        vars: r.vars,
        tenants: r.tenants,
    })
}

/// A release file's text and the directory its relative paths resolve against.
pub fn read(path: &Path) -> Result<(String, PathBuf), Vec<Diagnostic>> {
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
    Ok((text, base_dir))
}

/// Check a release file in every environment it declares (or as it is, when it declares
/// none); `opts.env` narrows it to one. Returns the environments checked; on failure,
/// every problem, each naming the environments it belongs to when not all of them.
pub fn check_all(path: &Path, opts: &LoadOptions) -> Result<Vec<String>, Vec<Diagnostic>> {
    let (text, base_dir) = read(path)?;
    let envs = match &opts.env {
        Some(e) => vec![e.clone()],
        None => environments::declared_names(&text),
    };
    if envs.is_empty() {
        return load_text(path, &text, &base_dir, opts).map(|_| Vec::new());
    }
    let mut found: Vec<(Diagnostic, Vec<String>)> = Vec::new();
    for env in &envs {
        let one = LoadOptions {
            env: Some(env.clone()),
            ..opts.clone()
        };
        if let Err(diags) = load_text(path, &text, &base_dir, &one) {
            for d in diags {
                match found.iter_mut().find(|(f, _)| *f == d) {
                    Some((_, in_envs)) => in_envs.push(env.clone()),
                    None => found.push((d, vec![env.clone()])),
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(envs);
    }
    found.sort_by_key(|(d, _)| (d.line, d.col));
    Err(found
        .into_iter()
        .map(|(mut d, in_envs)| {
            if in_envs.len() < envs.len() || opts.env.is_some() {
                let which = if in_envs.len() == 1 {
                    format!("environment `{}`", in_envs[0])
                } else {
                    format!("environments {}", in_envs.join(", "))
                };
                d.message = format!("in {which}: {}", d.message);
            }
            d
        })
        .collect())
}

/// Parse and validate release text (`name` is used in messages; relative paths resolve
/// against `base_dir`). Used by `load`, by tests and by tools that generate releases.
pub fn load_str(name: &Path, text: &str, base_dir: &Path) -> Result<Release, Vec<Diagnostic>> {
    let map = diagnostic::SourceMap::new(name, text);
    parse::parse_and_validate(&map, text, base_dir)
}

/// The JSON Schema of the release format, for editors (taplo, VS Code Even Better TOML).
pub fn json_schema() -> serde_json::Value {
    schema::json_schema()
}
