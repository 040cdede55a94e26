//! Fuzzes the edge's Host / :authority check (`edge::strict::valid_authority`): any bytes are
//! accepted or refused, never a panic; what is accepted has no userinfo, no whitespace or
//! control bytes, no path and is ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::edge::strict::valid_authority;

fuzz_target!(|data: &[u8]| {
    if valid_authority(data).is_ok() {
        assert!(!data.is_empty());
        assert!(data.iter().all(|&b| b.is_ascii_graphic()));
        assert!(!data.iter().any(|&b| matches!(b, b'@' | b'/' | b'\\' | b'?' | b'#')));
    }
});
