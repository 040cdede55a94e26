//! Fuzzes which protocol an HTTP/1.1 upgrade request asks for (`edge::upgrade::offered`):
//! never a panic; a protocol chosen is a clean name, listed when a list is given, and only
//! with `Connection: upgrade`. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::upgrade_request(data));
