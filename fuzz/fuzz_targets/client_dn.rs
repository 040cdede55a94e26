//! Fuzzes the edge's rendering of client certificate names and serials (mTLS,
//! `edge::client_dn`): any bytes are rendered or refused, never a panic; a rendered DN is
//! printable ASCII, a serial upper-case hex. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzz_check::client_dn(data));
