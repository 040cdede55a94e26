//! The properties the cargo-fuzz targets check (fuzz/fuzz_targets/*.rs), one function per
//! target, shared with the corpus replay test (tests/it/fuzz_corpus.rs) so the two never drift
//! apart. Each panics when the parser breaks a property. Not part of the supported API.

use crate::config::load::{load_str_with, LoadOptions};
use crate::discovery::dns::{parse_response, TYPE_A, TYPE_AAAA};
use crate::edge::forwarded::decide;
use crate::edge::forwarded_parse::{parse_forwarded, parse_xff, Node, MAX_HOPS};
use crate::edge::strict::valid_authority;
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

/// `X-Forwarded-For` / `Forwarded` values from a trusted hop: both parsers return a list of
/// at most `MAX_HOPS` or an error, never a panic; the policy (every address trusted, recursive,
/// every field emitted) picks the hop or an address the value holds, and the `Forwarded` it
/// writes for the app parses again, ending with the edge's own element.
pub fn forwarded_header(data: &[u8]) {
    let xff = parse_xff(data);
    if let Ok(nodes) = &xff {
        assert!(!nodes.is_empty() && nodes.len() <= MAX_HOPS);
    }
    let fwd = parse_forwarded(data);
    if let Ok(nodes) = &fwd {
        assert!(nodes.len() <= MAX_HOPS);
    }
    let Ok(value) = hyper::header::HeaderValue::from_bytes(data) else {
        return;
    };
    let hop = crate::addr::ClientAddr::direct(crate::addr::PeerAddr(([10, 0, 0, 1], 9).into()));
    for (header, name, nodes) in [
        (
            crate::spec::RealIpHeader::XForwardedFor,
            "x-forwarded-for",
            xff,
        ),
        (crate::spec::RealIpHeader::Forwarded, "forwarded", fwd),
    ] {
        let policy = crate::spec::Forwarded {
            trusted: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            real_ip_header: header,
            recursive: true,
            emit: crate::spec::DEFAULT_EMIT.to_vec(),
            forwarded_for: crate::spec::ForwardedFor::Ip,
        };
        let mut policy = policy;
        policy.emit.push(crate::spec::ForwardField::Forwarded);
        let mut headers = hyper::header::HeaderMap::new();
        headers.insert(name, value.clone());
        let d = decide(
            &policy,
            hop,
            crate::upstream::Scheme::Https,
            Some(b"a.test"),
            &headers,
        );
        let client = d.client.addr();
        if client != hop.addr() {
            let listed = nodes.unwrap_or_default().iter().any(|n| {
                matches!(*n, Node::Ip(ip, port) if ip.to_canonical() == client.ip() && port == client.port())
            });
            assert!(listed, "client {client} not in the value");
        }
        let (_, out) = d
            .forwarding
            .fields
            .iter()
            .find(|(n, _)| n == "forwarded")
            .expect("forwarded emitted");
        let parsed = parse_forwarded(out.as_bytes()).expect("the edge's Forwarded parses");
        assert_eq!(parsed.last(), Some(&Node::Ip(hop.addr().ip(), 0)));
    }
}
