//! A user's keymap file (`keymap.toml`): parsed with `FILE:LINE` errors, laid over the
//! shipped keymap it names, and written back out, as `cutover check-config` and the
//! console do. Never a panic.
#![no_main]

use std::path::Path;

use cutover::console::keymap::{Keymap, KeymapLayer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match KeymapLayer::parse(Path::new("keymap.toml"), text) {
        Ok(layer) => {
            let base = layer.base.clone().unwrap_or_else(|| "default".into());
            let mut keymap = Keymap::shipped(&base)
                .or_else(|_| Keymap::shipped("default"))
                .unwrap_or_default();
            keymap.apply(&layer);
            // The written-out keymap reads back.
            let out = keymap.to_toml();
            if let Err(e) = KeymapLayer::parse(Path::new("written.toml"), &out) {
                panic!("a keymap written by to_toml does not read back: {e:?}\n{out}");
            }
        }
        Err(errors) => {
            for e in &errors {
                let _ = e.to_string();
            }
        }
    }
});
