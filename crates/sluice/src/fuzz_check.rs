//! The properties the cargo-fuzz targets check (fuzz/fuzz_targets/*.rs), one function per
//! target, shared with the corpus replay test (tests/it/fuzz_corpus.rs) so the two never drift
//! apart. Each panics when the parser breaks a property. Not part of the supported API.

use crate::config::load::{load_str_with, LoadOptions};
use crate::edge::client_dn::{rfc2253, serial_hex};
use crate::edge::forwarded::decide;
use crate::edge::forwarded_parse::{parse_forwarded, parse_xff, Node, MAX_HOPS};
use crate::edge::request_id;
use crate::edge::strict::valid_authority;
use crate::health::agent::{line_in, parse_line, MAX_PCT};
use crate::l4::client_hello::{inspect, Inspect, MAX_HELLO};
use crate::proxy_protocol::conn_id::{is_id_text, ConnId, MAX_LEN};
use crate::upstream::fastcgi::{parse_cgi_head, record};
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

/// FastCGI records from an app: taken off the buffer one by one until an error or a need
/// for more bytes, never a panic; each record consumes bytes and its content fits a record;
/// "more bytes" only while less than one largest record is buffered. The same bytes as a
/// PARAMS stream: pairs that decode re-encode and decode to the same pairs.
pub fn fastcgi_record(data: &[u8]) {
    let mut buf = bytes::BytesMut::from(data);
    loop {
        let before = buf.len();
        match record::decode(&mut buf) {
            Ok(Some(r)) => {
                assert!(buf.len() < before, "a record consumed nothing");
                if let record::Record::Stdout(c) | record::Record::Stderr(c) = r {
                    assert!(c.len() <= record::MAX_CONTENT);
                }
            }
            Ok(None) => {
                assert!(buf.len() < record::HEADER_LEN + record::MAX_CONTENT + 256);
                break;
            }
            Err(_) => break,
        }
    }
    if let Ok(pairs) = record::decode_pairs(data) {
        let mut enc = record::Pairs::new(usize::MAX);
        for (k, v) in &pairs {
            crate::upstream::cgi::VarSink::push(&mut enc, k, v).expect("a decoded pair encodes");
        }
        assert_eq!(record::decode_pairs(&enc.buf).as_ref(), Ok(&pairs));
    }
}

/// CGI response heads (FastCGI STDOUT): Complete/Incomplete/Invalid, never a panic; a
/// Complete head lies within the input and the limit, has a final status and no `Status`
/// field left; framing never panics. The first byte picks the limit.
pub fn fastcgi_head(data: &[u8]) {
    let (limit, buf) = match data.split_first() {
        Some((&b, rest)) => ((b as usize + 1) * 256, rest),
        None => (65536, data),
    };
    match parse_cgi_head(buf, limit) {
        HeadParse::Complete(head) => {
            assert!(head.len <= buf.len() && head.len <= limit);
            assert!(head.status.as_u16() >= 200);
            assert!(!head.headers.contains_key("status"));
            let _ = framing(&head, false);
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

/// Ids from untrusted bytes: a PROXY UNIQUE_ID value gives a connection id or none, never a
/// panic, and an id is id text (so a valid header value, loggable unescaped) of at most
/// 128 bytes; a trusted hop's `X-Request-Id` gives that value only when it is id text, else
/// `<conn id>-<n>`, and no `X-Request-Id` is left on the request.
pub fn request_id(data: &[u8]) {
    let conn = ConnId::from_unique_id(data);
    if let Some(id) = &conn {
        assert!(is_id_text(id.as_str().as_bytes()) && id.as_str().len() <= MAX_LEN);
        assert!(hyper::header::HeaderValue::from_str(id.as_str()).is_ok());
    }
    let conn = conn.unwrap_or_else(ConnId::fresh);
    let Ok(value) = hyper::header::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = hyper::HeaderMap::new();
    headers.insert("x-request-id", value);
    let got = request_id::take(&mut headers, &conn, 7, true);
    assert!(headers.is_empty());
    assert!(hyper::header::HeaderValue::from_str(&got).is_ok());
    if is_id_text(data) {
        assert_eq!(got.as_bytes(), data);
    } else {
        assert_eq!(&*got, format!("{conn}-7"));
    }
}

/// A client certificate's subject/issuer Name contents (the DER inside the SEQUENCE), as
/// `$ssl_client_s_dn` renders it: rendered or refused, never a panic; a rendering is printable
/// ASCII (control and non-ASCII bytes escaped as `\XX`). The same bytes as a serial number's
/// contents give upper-case hex, `-` first when negative.
pub fn client_dn(data: &[u8]) {
    if let Ok(dn) = rfc2253(data) {
        assert!(
            dn.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{dn:?}"
        );
    }
    let serial = serial_hex(data);
    let hex = serial.strip_prefix('-').unwrap_or(&serial);
    assert!(!hex.is_empty() && hex.len().is_multiple_of(2));
    assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')));
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

/// `grpc-timeout` values: a duration exactly for 1 to 8 ASCII digits and a unit of `HMSmun`,
/// never a panic, and never more than the largest value in hours.
pub fn grpc_timeout(data: &[u8]) {
    let got = crate::upstream::grpc::parse_timeout(data);
    let valid = match data.split_last() {
        Some((unit, digits)) => {
            (1..=8).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && b"HMSmun".contains(unit)
        }
        None => false,
    };
    assert_eq!(got.is_some(), valid, "{data:?}");
    if let Some(d) = got {
        assert!(d <= std::time::Duration::from_secs(99_999_999 * 3600));
    }
}

/// An HTTP/1.1 upgrade request's `Connection` and `Upgrade` (first two lines of `data`) with
/// the listed protocols (the other lines): never a panic; a protocol chosen is a trimmed,
/// non-empty name without `,` or `/`, one of the listed (when any), and `Connection` named
/// `upgrade`.
pub fn upgrade_request(data: &[u8]) {
    use hyper::header::{self, HeaderMap, HeaderValue};
    let mut lines = data.split(|&b| b == b'\n');
    let mut headers = HeaderMap::new();
    for name in [header::CONNECTION, header::UPGRADE] {
        if let Some(v) = lines.next().and_then(|l| HeaderValue::from_bytes(l).ok()) {
            headers.insert(name, v);
        }
    }
    let listed: Vec<String> = lines
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    if let Some(p) = crate::edge::upgrade::offered(&headers, &listed) {
        assert!(!p.is_empty() && p.trim() == p && !p.contains([',', '/']));
        assert!(listed.is_empty() || listed.iter().any(|l| l.eq_ignore_ascii_case(p)));
        let conn = headers[header::CONNECTION]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(conn.contains("upgrade"));
    }
}

/// An agent's reply (HAProxy agent-check): the line up to the first CR/LF (or all of it)
/// parses or is refused, never a panic; a parsed reply has a weight within `MAX_PCT`, and
/// written out again it parses to the same reply.
pub fn agent_reply(data: &[u8]) {
    let line = line_in(data).unwrap_or(data);
    let Ok(reply) = parse_line(line) else {
        return;
    };
    assert!(reply.weight_pct.is_none_or(|p| p <= MAX_PCT));
    let again = parse_line(reply.to_string().as_bytes()).expect("a written reply parses");
    assert_eq!(again, reply);
}
