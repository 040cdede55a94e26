//! Fuzzes the CGI response head parser (the start of a FastCGI app's STDOUT: `Status:`,
//! `Location`, header fields): Complete/Incomplete/Invalid without panicking, a Complete head
//! within the input and the limit with a final status. No I/O. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::fastcgi_head(data));
