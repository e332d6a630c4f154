//! The release parser and validator on raw bytes: whatever a file holds, `load_str` answers
//! with a release or with located diagnostics, and never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = Path::new("fuzz.toml");
    match cutover::release::load_str(name, text, Path::new("/nonexistent-fuzz-base")) {
        Ok(release) => {
            // What `plan` does next with a valid release.
            let plan = cutover::plan::plan(&release);
            let _ = cutover::plan::render_text(&plan);
        }
        Err(diags) => {
            for d in &diags {
                let _ = d.to_string();
            }
        }
    }
});
