//! Fuzzes the configuration loader: any text must load or give a ConfigError whose line and
//! column lie inside the text; never a panic. File and fd-limit checks are off (no I/O).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::config::load::{load_str_with, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = load_str_with(text, "fuzz.toml", &LoadOptions::content_only()) {
        assert!(e.line <= text.lines().count() + 1, "line {} out of range", e.line);
        let _ = e.to_string();
    }
});
