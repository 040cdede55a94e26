//! Fuzz target: the decoder must never panic, never claim more bytes than it was given, and
//! give the same verdict for every prefix-then-whole replay of a header it accepts.
//! Also re-encodes accepted TCP headers and checks they decode to the same addresses.
//! The checks live in `proxy_header::fuzz_check`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| proxy_header::fuzz_check::decode(data));
