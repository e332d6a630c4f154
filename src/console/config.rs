//! Where the console's configuration lives and how it is layered: the shipped keymaps
//! and themes (embedded), then the user's `keymap.toml` and `themes/*.toml` from the
//! config directory. A broken user file never stops the console: its `file:line`
//! errors are shown and the defaults are used for that file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::keymap::{Keymap, KeymapLayer};
use super::theme::{Theme, ThemeFile, shipped_files};

/// A problem in a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The directories cutover reads and writes.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Dirs {
    /// `override_dir` (`--config-dir`) > `$CUTOVER_CONFIG_DIR` > `$XDG_CONFIG_HOME/cutover`
    /// > the platform's config dir (`directories`).
    pub fn resolve(override_dir: Option<&Path>) -> Dirs {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let project = directories::ProjectDirs::from("", "", "cutover");
        let config = override_dir
            .map(Path::to_path_buf)
            .or_else(|| env("CUTOVER_CONFIG_DIR"))
            .or_else(|| env("XDG_CONFIG_HOME").map(|p| p.join("cutover")))
            .or_else(|| project.as_ref().map(|p| p.config_dir().to_path_buf()))
            .unwrap_or_else(|| PathBuf::from(".cutover"));
        Dirs {
            config,
            state: crate::journal::default_state_dir(),
        }
    }
    pub fn keymap_file(&self) -> PathBuf {
        self.config.join("keymap.toml")
    }
    pub fn themes_dir(&self) -> PathBuf {
        self.config.join("themes")
    }
}

/// What the console runs with, and what went wrong loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub keymap: Keymap,
    pub theme: Theme,
    pub errors: Vec<ConfigError>,
}

/// Choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// `--keymap NAME`: a shipped keymap under the user's file.
    pub keymap: Option<String>,
    /// `--theme NAME`.
    pub theme: Option<String>,
    /// `--no-color` or `NO_COLOR`: the mono theme.
    pub no_color: bool,
}

/// `NO_COLOR` is set and not empty (no-color.org).
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Load the keymap and theme: shipped files, then the user's. Never fails: errors are
/// collected and the defaults stand in for a broken file.
pub fn load(dirs: &Dirs, choice: &Choice) -> Loaded {
    let mut errors = Vec::new();
    // Keymap.
    let user_path = dirs.keymap_file();
    let user_layer = match std::fs::read_to_string(&user_path) {
        Ok(text) => match KeymapLayer::parse(&user_path, &text) {
            Ok(l) => Some(l),
            Err(e) => {
                errors.extend(e);
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(ConfigError::new(
                &user_path,
                None,
                format!("cannot read: {e}"),
            ));
            None
        }
    };
    let base = choice
        .keymap
        .clone()
        .or_else(|| user_layer.as_ref().and_then(|l| l.base.clone()))
        .unwrap_or_else(|| "default".into());
    let mut keymap = match Keymap::shipped(&base) {
        Ok(k) if super::keymap::SHIPPED.iter().any(|(n, _)| *n == base) => k,
        _ => {
            errors.push(ConfigError::new(
                Path::new("--keymap"),
                None,
                format!(
                    "no shipped keymap named `{base}`; one of {}",
                    super::keymap::SHIPPED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            Keymap::shipped("default").unwrap_or_default()
        }
    };
    if let Some(l) = &user_layer {
        keymap.apply(l);
    }

    // Themes: shipped, then user files shadowing by name.
    let mut files: BTreeMap<String, ThemeFile> = shipped_files().unwrap_or_else(|e| {
        errors.extend(e);
        BTreeMap::new()
    });
    let shipped = files.clone();
    if let Ok(rd) = std::fs::read_dir(dirs.themes_dir()) {
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            match std::fs::read_to_string(&p) {
                Ok(text) => match ThemeFile::parse(&p, &text) {
                    Ok(f) => {
                        files.insert(f.name.clone(), f);
                    }
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.push(ConfigError::new(&p, None, format!("cannot read: {e}"))),
            }
        }
    }
    let wanted = if choice.no_color {
        "mono".to_string()
    } else {
        choice.theme.clone().unwrap_or_else(|| "dark".into())
    };
    let theme = match Theme::resolve(&wanted, &files) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(&dirs.themes_dir(), None, e));
            let fallback = if choice.no_color { "mono" } else { "dark" };
            Theme::resolve(fallback, &shipped).unwrap_or_else(|_| Theme {
                name: fallback.into(),
                styles: BTreeMap::new(),
            })
        }
    };
    Loaded {
        keymap,
        theme,
        errors,
    }
}

/// Every user file checked, every theme resolved (`cutover check-config`).
pub fn check(dirs: &Dirs) -> Vec<ConfigError> {
    let mut errors = load(dirs, &Choice::default()).errors;
    // Every user theme must also resolve (inherits chains).
    let mut files = shipped_files().unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(dirs.themes_dir()) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml")
                && let Ok(text) = std::fs::read_to_string(&p)
                && let Ok(f) = ThemeFile::parse(&p, &text)
            {
                files.insert(f.name.clone(), f);
            }
        }
    }
    for name in files.keys() {
        if let Err(e) = Theme::resolve(name, &files) {
            errors.push(ConfigError::new(&dirs.themes_dir(), None, e));
        }
    }
    errors
}
