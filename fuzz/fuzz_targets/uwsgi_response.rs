//! Fuzzes the uwsgi response head parser and the body-framing decision: any bytes must give
//! Complete/Incomplete/Invalid without panicking, a Complete head must lie within the input
//! and the limit, and framing must never panic. No I/O.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::upstream::uwsgi::{framing, parse_response_head, HeadParse};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a limit so small limits (the "too large" path) get exercised.
    let (limit, buf) = match data.split_first() {
        Some((&b, rest)) => ((b as usize + 1) * 256, rest),
        None => (65536, data),
    };
    match parse_response_head(buf, limit) {
        HeadParse::Complete(head) => {
            assert!(head.len <= buf.len() && head.len <= limit);
            let _ = framing(&head, false);
            let _ = framing(&head, true);
        }
        HeadParse::Incomplete => assert!(buf.len() <= limit),
        HeadParse::Invalid(_) => {}
    }
});
