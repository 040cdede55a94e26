//! Fuzzes the DNS answer parser used for servers from DNS: any bytes must parse or give a
//! DnsError, never a panic; whatever parses matches the question's address family.
//! Checks: `sluice::fuzz_check`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| { sluice::fuzz_check::dns_response(data); });
