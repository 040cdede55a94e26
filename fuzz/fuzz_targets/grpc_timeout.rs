//! Fuzzes the edge's `grpc-timeout` parser (`upstream::grpc`): a deadline exactly for 1 to 8
//! digits and a unit, never a panic. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::grpc_timeout(data));
