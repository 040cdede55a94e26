//! Fuzzes the configuration loader: any text must load or give a ConfigError whose line and
//! column lie inside the text; never a panic. File and fd-limit checks are off (no I/O).
//! Checks: `sluice::fuzz_check`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::config(data));
