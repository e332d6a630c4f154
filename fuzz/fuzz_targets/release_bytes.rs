//! The release parser and validator on raw bytes: whatever a file holds, `load_str` answers
//! with a release or with located diagnostics, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        cutover_fuzz::check_release(text);
    }
});
