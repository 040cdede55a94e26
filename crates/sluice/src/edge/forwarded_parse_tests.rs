//! The strict parsers of `X-Forwarded-For` and `Forwarded` values, table-driven.

use super::*;

fn ip(s: &str, port: u16) -> Node {
    Node::Ip(s.parse().unwrap(), port)
}

#[test]
fn xff_elements() {
    let cases: &[(&str, &[Node])] = &[
        (
            "1.2.3.4",
            &[Node::Ip(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 0)],
        ),
        (
            " 1.2.3.4 ,\t10.0.0.1 ",
            &[ip("1.2.3.4", 0), ip("10.0.0.1", 0)],
        ),
        ("1.2.3.4:80", &[ip("1.2.3.4", 80)]),
        ("2001:db8::1", &[ip("2001:db8::1", 0)]),
        ("[2001:db8::1]", &[ip("2001:db8::1", 0)]),
        ("[2001:db8::1]:443", &[ip("2001:db8::1", 443)]),
        ("unknown, 1.2.3.4", &[Node::Other, ip("1.2.3.4", 0)]),
        (
            "1.2.3.4,,5.6.7.8",
            &[ip("1.2.3.4", 0), Node::Other, ip("5.6.7.8", 0)],
        ),
        ("01.2.3.4", &[Node::Other]),
        ("1.2.3.4:99999", &[Node::Other]),
        ("1.2.3.4:", &[Node::Other]),
        ("[2001:db8::1", &[Node::Other]),
        ("1.2.3.4 5.6.7.8", &[Node::Other]),
        ("example.com", &[Node::Other]),
        ("", &[Node::Other]),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_xff(input.as_bytes()).as_deref(),
            Ok(*want),
            "{input:?}"
        );
    }
    assert_eq!(parse_xff(b"1.2.3.4\r\n"), Err(ParseError::BadByte));
    assert_eq!(
        parse_xff("1.2.3.4\u{e9}".as_bytes()),
        Err(ParseError::BadByte)
    );
    let long = vec!["1.1.1.1"; MAX_HOPS + 1].join(",");
    assert_eq!(parse_xff(long.as_bytes()), Err(ParseError::TooManyHops));
    assert_eq!(
        parse_xff(vec!["1.1.1.1"; MAX_HOPS].join(",").as_bytes()).map(|v| v.len()),
        Ok(MAX_HOPS)
    );
}

#[test]
fn forwarded_elements() {
    let cases: &[(&str, &[Node])] = &[
        (
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            &[ip("192.0.2.60", 0)],
        ),
        (
            "For=\"[2001:db8:cafe::17]:4711\"",
            &[ip("2001:db8:cafe::17", 4711)],
        ),
        (
            "for=192.0.2.43, for=198.51.100.17",
            &[ip("192.0.2.43", 0), ip("198.51.100.17", 0)],
        ),
        ("for=\"192.0.2.43:47011\"", &[ip("192.0.2.43", 47011)]),
        ("for=\"192.0.2.43:_p1\"", &[ip("192.0.2.43", 0)]),
        ("for=unknown, for=_hidden", &[Node::Other, Node::Other]),
        ("proto=https;host=\"a.test:8443\"", &[Node::Other]),
        ("for=1.2.3.4 ; proto=https", &[ip("1.2.3.4", 0)]),
        (", , for=1.2.3.4,", &[ip("1.2.3.4", 0)]),
        ("for=\"a\\\"b\"", &[Node::Other]),
        (
            "for=\"[::1]\";host=\"x,y;z\", for=5.6.7.8",
            &[ip("::1", 0), ip("5.6.7.8", 0)],
        ),
        ("for=\"2001:db8::1\"", &[Node::Other]),
        ("for=\"1.2.3.4:\"", &[Node::Other]),
        ("", &[]),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_forwarded(input.as_bytes()).as_deref(),
            Ok(*want),
            "{input:?}"
        );
    }
    for bad in [
        "for",
        "for=",
        "for=1.2.3.4;for=5.6.7.8",
        "for=[::1]",
        "for=1.2.3.4:80",
        "for=\"1.2.3.4",
        "for=1.2.3.4 proto=http",
        "=1.2.3.4",
        "for=\"a\rb\"",
        "for=1.2.3.4\n",
    ] {
        assert!(parse_forwarded(bad.as_bytes()).is_err(), "{bad:?} parsed");
    }
    let long = vec!["for=1.1.1.1"; MAX_HOPS + 1].join(",");
    assert_eq!(
        parse_forwarded(long.as_bytes()),
        Err(ParseError::TooManyHops)
    );
}
