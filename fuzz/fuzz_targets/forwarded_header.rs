//! Fuzzes the edge's parsers of `X-Forwarded-For` and `Forwarded` values and the forwarding
//! policy over them (`edge::forwarded`): a bounded list or an error, never a panic; the chosen
//! client is the hop or an address the value holds; the `Forwarded` the app gets parses.
//! Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::forwarded_header(data));
