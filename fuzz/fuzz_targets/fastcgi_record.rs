//! Fuzzes the FastCGI record decoder (what an app sends: STDOUT, STDERR, END_REQUEST) and the
//! name-value pair decoder: any bytes give a record, "need more" or an error without
//! panicking, and decoded pairs re-encode to the same pairs. No I/O. Checks:
//! `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::fastcgi_record(data));
