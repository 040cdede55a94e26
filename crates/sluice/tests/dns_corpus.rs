//! Replays fuzz/corpus/dns_response/ (seeds and kept crash inputs) through the checks of
//! fuzz/fuzz_targets/dns_response.rs on stable; the seed answer must parse to its address.

use std::path::Path;

use sluice::discovery::dns::{parse_response, TYPE_A, TYPE_AAAA};

#[test]
fn dns_response_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dns_response");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let id = data
            .first()
            .map_or(0, |&b| (u16::from(b) << 8) | u16::from(b));
        for qtype in [TYPE_A, TYPE_AAAA] {
            if let Ok(ips) = parse_response(&data, id, "app.test", qtype) {
                assert!(ips.iter().all(|ip| ip.is_ipv4() == (qtype == TYPE_A)));
                parsed += ips.len();
            }
        }
    }
    assert!(parsed >= 1, "the seed answer parses");
}
