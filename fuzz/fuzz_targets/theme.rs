//! A user's theme file (`themes/NAME.toml`): parsed with `FILE:LINE` errors, then resolved
//! with the shipped themes (a user file shadows a shipped one by name, `inherits` chains
//! followed), as `cutover check-config` and the console do. Never a panic.
#![no_main]

use std::path::Path;

use cutover::console::theme::{Theme, ThemeFile, shipped_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ThemeFile::parse(Path::new("themes/fuzz.toml"), text) {
        Ok(file) => {
            let mut files = shipped_files().unwrap_or_default();
            let name = file.name.clone();
            files.insert(name.clone(), file);
            if let Ok(theme) = Theme::resolve(&name, &files) {
                let _ = theme.is_mono();
            }
            let _ = Theme::resolve("dark", &files);
        }
        Err(errors) => {
            for e in &errors {
                let _ = e.to_string();
            }
        }
    }
});
