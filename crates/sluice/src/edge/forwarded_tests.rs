//! The forwarding-header policy, table-driven: which hop is believed, which address becomes
//! the client (nginx `real_ip_recursive` semantics) and the fields the app gets.

use hyper::header::HeaderValue;

use super::*;
use crate::addr::PeerAddr;

fn policy(trusted: &[&str], header: RealIpHeader, recursive: bool) -> Forwarded {
    Forwarded {
        trusted: trusted.iter().map(|c| c.parse().unwrap()).collect(),
        real_ip_header: header,
        recursive,
        emit: vec![
            ForwardField::XForwardedFor,
            ForwardField::XRealIp,
            ForwardField::XForwardedProto,
            ForwardField::XForwardedHost,
            ForwardField::Forwarded,
        ],
        forwarded_for: ForwardedFor::Ip,
    }
}

fn hop(s: &str) -> ClientAddr {
    ClientAddr::direct(PeerAddr(s.parse().unwrap()))
}

fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in lines {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

fn field<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
    let mut it = d.forwarding.fields.iter().filter(|(n, _)| n == name);
    let v = it.next().map(|(_, v)| v.to_str().unwrap());
    assert!(it.next().is_none(), "{name} twice");
    v
}

const CDN: &[&str] = &["10.0.0.0/8", "2001:db8:cd::/48"];

/// (case, policy, hop, request headers, expected client, expected X-Forwarded-For,
/// expected `Forwarded`).
type Case<'a> = (
    &'a str,
    Forwarded,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    &'a str,
    &'a str,
);

#[test]
fn hop_list_cases() {
    use RealIpHeader::{Forwarded as Fwd, None as NoHdr, XForwardedFor as Xff};
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        ("untrusted hop: client copies gone", policy(CDN, Xff, true), "203.0.113.7:5000",
         &[("x-forwarded-for", "8.8.8.8"), ("forwarded", "for=8.8.8.8"), ("x-real-ip", "8.8.8.8")],
         "203.0.113.7:5000", "203.0.113.7", "for=203.0.113.7;proto=https;host=\"app.test\""),
        ("default policy trusts nobody", policy(&[], NoHdr, false), "10.0.0.5:5000",
         &[("x-forwarded-for", "8.8.8.8")], "10.0.0.5:5000", "10.0.0.5",
         "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("trusted hop, no real_ip_header: appended, hop stays client", policy(CDN, NoHdr, false),
         "10.0.0.5:5000", &[("x-forwarded-for", "198.51.100.1")], "10.0.0.5:5000",
         "198.51.100.1, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("trusted hop, rightmost taken", policy(CDN, Xff, false), "10.0.0.5:5000",
         &[("x-forwarded-for", "1.1.1.1, 198.51.100.1")], "198.51.100.1:0",
         "1.1.1.1, 198.51.100.1, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("not recursive: a trusted rightmost is still taken", policy(CDN, Xff, false),
         "10.0.0.5:5000", &[("x-forwarded-for", "198.51.100.1, 10.0.0.9")], "10.0.0.9:0",
         "198.51.100.1, 10.0.0.9, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("recursive: trusted hops skipped", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", "198.51.100.1, 10.0.0.9, 10.1.1.1")], "198.51.100.1:0",
         "198.51.100.1, 10.0.0.9, 10.1.1.1, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("recursive: spoofed entries left of the client ignored", policy(CDN, Xff, true),
         "10.0.0.5:5000", &[("x-forwarded-for", "6.6.6.6, 127.0.0.1, 198.51.100.1, 10.0.0.9")],
         "198.51.100.1:0", "6.6.6.6, 127.0.0.1, 198.51.100.1, 10.0.0.9, 10.0.0.5",
         "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("recursive: all trusted gives the leftmost", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", "10.0.0.7, 10.0.0.9")], "10.0.0.7:0", "10.0.0.7, 10.0.0.9, 10.0.0.5",
         "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("multiple header lines are one list", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "10.0.0.9")], "198.51.100.1:0",
         "198.51.100.1, 10.0.0.9, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("malformed entry on the walk declines", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", "198.51.100.1, bogus, 10.0.0.9")], "10.0.0.5:5000",
         "198.51.100.1, bogus, 10.0.0.9, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("malformed entry left of the client does not matter", policy(CDN, Xff, true),
         "10.0.0.5:5000", &[("x-forwarded-for", "bogus, 198.51.100.1")], "198.51.100.1:0",
         "bogus, 198.51.100.1, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("IPv6 entries, with port", policy(CDN, Xff, true), "[2001:db8:cd::1]:5000",
         &[("x-forwarded-for", "[2001:db8:1::7]:4711, 2001:db8:cd::2")], "[2001:db8:1::7]:4711",
         "[2001:db8:1::7]:4711, 2001:db8:cd::2, 2001:db8:cd::1",
         "for=\"[2001:db8:cd::1]\";proto=https;host=\"app.test\""),
        ("IPv4-mapped entry is the IPv4 client", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", "::ffff:198.51.100.1")], "198.51.100.1:0",
         "::ffff:198.51.100.1, 10.0.0.5", "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("Forwarded header, recursive", policy(CDN, Fwd, true), "10.0.0.5:5000",
         &[("forwarded", "for=6.6.6.6, for=\"[2001:db8:1::7]\";proto=https, for=10.0.0.9")],
         "[2001:db8:1::7]:0", "10.0.0.5",
         "for=6.6.6.6, for=\"[2001:db8:1::7]\";proto=https, for=10.0.0.9, for=10.0.0.5;proto=https;host=\"app.test\""),
        ("Forwarded: obfuscated client declines", policy(CDN, Fwd, true), "10.0.0.5:5000",
         &[("forwarded", "for=_abc, for=10.0.0.9")], "10.0.0.5:5000", "10.0.0.5",
         "for=_abc, for=10.0.0.9, for=10.0.0.5;proto=https;host=\"app.test\""),
        ("Forwarded that does not parse is dropped", policy(CDN, Fwd, true), "10.0.0.5:5000",
         &[("forwarded", "for=1.2.3.4;for=5.6.7.8")], "10.0.0.5:5000", "10.0.0.5",
         "for=10.0.0.5;proto=https;host=\"app.test\""),
        ("too many hops declines", policy(CDN, Xff, true), "10.0.0.5:5000",
         &[("x-forwarded-for", &["10.0.0.1"; 65].join(","))], "10.0.0.5:5000",
         &[&["10.0.0.1"; 65].join(","), ", 10.0.0.5"].concat(), "for=10.0.0.5;proto=https;host=\"app.test\""),
    ];
    for (name, p, from, req, client, xff, fwd) in cases {
        let d = decide(
            p,
            hop(from),
            Scheme::Https,
            Some(b"app.test"),
            &headers(req),
        );
        assert_eq!(d.client.addr().to_string(), *client, "{name}: client");
        assert_eq!(
            field(&d, "x-real-ip"),
            Some(&*d.client.addr().ip().to_string()),
            "{name}"
        );
        assert_eq!(
            field(&d, "x-forwarded-for"),
            Some(*xff),
            "{name}: x-forwarded-for"
        );
        assert_eq!(field(&d, "forwarded"), Some(*fwd), "{name}: forwarded");
    }
}

#[test]
fn proto_and_host_from_trusted_hops_only() {
    let req = headers(&[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "cdn.test"),
    ]);
    let p = policy(CDN, RealIpHeader::None, false);
    let d = decide(
        &p,
        hop("10.0.0.5:1"),
        Scheme::Http,
        Some(b"origin.test:8080"),
        &req,
    );
    assert_eq!(field(&d, "x-forwarded-proto"), Some("https"));
    assert_eq!(field(&d, "x-forwarded-host"), Some("cdn.test"));
    let d = decide(
        &p,
        hop("203.0.113.7:1"),
        Scheme::Http,
        Some(b"origin.test:8080"),
        &req,
    );
    assert_eq!(field(&d, "x-forwarded-proto"), Some("http"));
    assert_eq!(field(&d, "x-forwarded-host"), Some("origin.test:8080"));
    let odd = headers(&[("x-forwarded-proto", "gopher")]);
    let d = decide(&p, hop("10.0.0.5:1"), Scheme::Http, None, &odd);
    assert_eq!(field(&d, "x-forwarded-proto"), Some("http"));
    assert_eq!(field(&d, "x-forwarded-host"), None);
}

#[test]
fn emit_lists_exactly_what_the_app_gets() {
    let mut p = policy(&[], RealIpHeader::None, false);
    p.emit = vec![ForwardField::Forwarded];
    p.forwarded_for = ForwardedFor::Obfuscated;
    let d = decide(
        &p,
        hop("203.0.113.7:1"),
        Scheme::Https,
        None,
        &HeaderMap::new(),
    );
    assert_eq!(d.forwarding.fields.len(), 1);
    let v = field(&d, "forwarded").unwrap();
    let id = v
        .strip_prefix("for=_")
        .unwrap()
        .strip_suffix(";proto=https")
        .unwrap();
    assert_eq!(id.len(), 16, "{v}");
    let again = decide(
        &p,
        hop("203.0.113.7:2"),
        Scheme::Https,
        None,
        &HeaderMap::new(),
    );
    assert_eq!(field(&again, "forwarded"), Some(v), "stable per address");
    let other = decide(
        &p,
        hop("203.0.113.8:1"),
        Scheme::Https,
        None,
        &HeaderMap::new(),
    );
    assert_ne!(field(&other, "forwarded"), Some(v));
}

#[test]
fn element_quotes_ipv6_and_escapes_host() {
    let e = element(
        ForwardedFor::Ip,
        "::1".parse().unwrap(),
        Scheme::Http,
        Some(b"a\"b"),
    );
    assert_eq!(e, "for=\"[::1]\";proto=http;host=\"a\\\"b\"");
    assert_eq!(
        parse_forwarded(e.as_bytes()),
        Ok(vec![Node::Ip("::1".parse().unwrap(), 0)])
    );
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "127.0.0.2",
        "10.20.100.255",
        "199.9.99.100",
        "::1",
        "2001:db8::7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_text(ip), ip.to_string());
    }
}
