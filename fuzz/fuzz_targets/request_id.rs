//! Fuzzes the ids taken from untrusted bytes (`proxy_protocol::conn_id`: a PROXY v2
//! UNIQUE_ID value; `edge::request_id`: an `X-Request-Id` header): an id or a fallback, never
//! a panic, and every id fits a header value and a log line unescaped. Checks:
//! `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::request_id(data));
