//! Fuzzes the uwsgi response head parser and the body-framing decision: any bytes must give
//! Complete/Incomplete/Invalid without panicking, a Complete head must lie within the input
//! and the limit, and framing must never panic. No I/O. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::uwsgi_response(data));
