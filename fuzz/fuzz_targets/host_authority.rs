//! Fuzzes the edge's Host / :authority check (`edge::strict::valid_authority`): any bytes are
//! accepted or refused, never a panic; what is accepted has no userinfo, no whitespace or
//! control bytes, no path and is ASCII. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::host_authority(data));
