//! The properties the cargo-fuzz targets check (fuzz/fuzz_targets/*.rs), one function per
//! target, shared with the corpus replay test (tests/it/fuzz_corpus.rs) so the two never drift
//! apart. Each panics when the parser breaks a property. Not part of the supported API.

use crate::config::load::{load_str_with, LoadOptions};
use crate::discovery::dns::{parse_response, TYPE_A, TYPE_AAAA};
use crate::edge::strict::valid_authority;
use crate::l4::client_hello::{inspect, Inspect, MAX_HELLO};
use crate::upstream::uwsgi::{framing, parse_response_head, HeadParse};

/// uwsgi response heads: Complete/Incomplete/Invalid, never a panic; a Complete head lies
/// within the input and the limit; framing never panics. The first byte picks the limit, so
/// small limits (the "too large" path) get exercised.
pub fn uwsgi_response(data: &[u8]) {
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
}

/// Configuration text: loads and converts into its runtime spec (validation proved every
/// string parses), or gives an error whose line lies inside the text. File and fd-limit
/// checks are off (no I/O).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str_with(text, "fuzz.toml", &LoadOptions::content_only()) {
        Ok(cfg) => {
            if let Err(e) = cfg.spec() {
                panic!("a loaded config does not convert: {e}");
            }
        }
        Err(e) => {
            assert!(
                e.line <= text.lines().count() + 1,
                "line {} out of range",
                e.line
            );
            let _ = e.to_string();
        }
    }
}

/// DNS answers: parse or error, never a panic; what parses matches the question's family.
/// Returns how many addresses parsed (the corpus test checks its seed parses).
pub fn dns_response(data: &[u8]) -> usize {
    let id = data
        .first()
        .map_or(0, |&b| (u16::from(b) << 8) | u16::from(b));
    let mut parsed = 0;
    for qtype in [TYPE_A, TYPE_AAAA] {
        if let Ok(ips) = parse_response(data, id, "app.test", qtype) {
            assert!(ips.iter().all(|ip| ip.is_ipv4() == (qtype == TYPE_A)));
            parsed += ips.len();
        }
    }
    parsed
}

/// Host / :authority values: accepted or refused, never a panic; what is accepted has no
/// userinfo, no whitespace or control bytes, no path, and is ASCII.
pub fn host_authority(data: &[u8]) {
    if valid_authority(data).is_ok() {
        assert!(!data.is_empty());
        assert!(data.iter().all(|&b| b.is_ascii_graphic()));
        assert!(!data
            .iter()
            .any(|&b| matches!(b, b'@' | b'/' | b'\\' | b'?' | b'#')));
    }
}

/// The balancer's ClientHello peek (`l4::client_hello::inspect`; rustls' `Acceptor` parses,
/// the feeding is ours): any bytes (at most what the balancer reads) give a Hello, More or
/// NotTls, never a panic; a Hello's SNI is a non-empty ASCII name, its ALPN list non-empty.
/// Returns whether a Hello came out (the corpus test checks its seed does).
pub fn client_hello(data: &[u8]) -> bool {
    let data = &data[..data.len().min(MAX_HELLO)];
    match inspect(data) {
        Inspect::Hello(h) => {
            if let Some(sni) = &h.sni {
                assert!(!sni.is_empty() && sni.is_ascii(), "SNI {sni:?}");
            }
            assert!(h.alpn.as_deref() != Some(""));
            true
        }
        Inspect::More | Inspect::NotTls(_) => false,
    }
}
