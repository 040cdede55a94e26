//! Fuzzes the DNS answer parser used for servers from DNS: any bytes must parse or give a
//! DnsError, never a panic; whatever parses matches the question's address family.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::discovery::dns::{parse_response, TYPE_A, TYPE_AAAA};

fuzz_target!(|data: &[u8]| {
    let id = data.first().map_or(0, |&b| (u16::from(b) << 8) | u16::from(b));
    for qtype in [TYPE_A, TYPE_AAAA] {
        if let Ok(ips) = parse_response(data, id, "app.test", qtype) {
            assert!(ips.iter().all(|ip| ip.is_ipv4() == (qtype == TYPE_A)));
        }
    }
});
