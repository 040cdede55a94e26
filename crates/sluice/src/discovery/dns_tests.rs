//! Tests of the DNS codec: hand-built answers (compression, CNAME chains, rcodes) and
//! malformed ones, which must give errors, never panics.

use super::*;

/// An answer to `build_query(id, name, qtype)` with `answers` = (rtype, rdata), each owned
/// by the question name (a compression pointer to offset 12).
fn answer(id: u16, name: &str, qtype: u16, rcode: u8, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = build_query(id, name, qtype).unwrap();
    m[2] = 0x81; // QR, RD
    m[3] = 0x80 | rcode; // RA
    m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for (rtype, rdata) in answers {
        m.extend_from_slice(&[0xC0, 12]);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    m
}

#[test]
fn query_layout() {
    let q = build_query(0x1234, "app.test.", TYPE_A).unwrap();
    assert_eq!(
        q,
        [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'p', 4, b't', b'e', b's',
            b't', 0, 0, 1, 0, 1
        ]
    );
    for bad in ["", ".", "a..b", &"x".repeat(64), &"a.".repeat(130)] {
        assert!(build_query(1, bad, TYPE_A).is_err(), "{bad:?}");
    }
}

#[test]
fn a_and_aaaa_answers() {
    let m = answer(
        7,
        "app.test",
        TYPE_A,
        0,
        &[(TYPE_A, vec![127, 0, 0, 22]), (TYPE_A, vec![127, 0, 0, 21])],
    );
    let got = parse_response(&m, 7, "APP.test.", TYPE_A).unwrap();
    assert_eq!(
        got,
        vec![
            "127.0.0.21".parse::<IpAddr>().unwrap(),
            "127.0.0.22".parse().unwrap()
        ]
    );
    let m = answer(
        8,
        "app.test",
        TYPE_AAAA,
        0,
        &[(TYPE_AAAA, Ipv6Addr::LOCALHOST.octets().to_vec())],
    );
    assert_eq!(
        parse_response(&m, 8, "app.test", TYPE_AAAA).unwrap(),
        vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
    );
    // No records: the name exists, without addresses of that type.
    let m = answer(9, "app.test", TYPE_AAAA, 0, &[]);
    assert_eq!(
        parse_response(&m, 9, "app.test", TYPE_AAAA).unwrap(),
        Vec::<IpAddr>::new()
    );
}

#[test]
fn cname_chain_is_followed_and_strangers_ignored() {
    let mut m = answer(5, "app.test", TYPE_A, 0, &[]);
    m[7] = 3;
    // app.test CNAME real.test (label "real" + pointer to "test" at offset 16).
    m.extend_from_slice(&[
        0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 7, 4, b'r', b'e', b'a', b'l', 0xC0, 16,
    ]);
    let real_at = m.len() - 7;
    // real.test A 127.0.0.23
    m.extend_from_slice(&[
        0xC0,
        real_at as u8,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        30,
        0,
        4,
        127,
        0,
        0,
        23,
    ]);
    // other: "x" + pointer to test, A 127.0.0.99: not in the chain, ignored.
    m.extend_from_slice(&[
        1, b'x', 0xC0, 16, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 99,
    ]);
    assert_eq!(
        parse_response(&m, 5, "app.test", TYPE_A).unwrap(),
        vec!["127.0.0.23".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn errors_are_reported() {
    let ok = answer(1, "app.test", TYPE_A, 0, &[(TYPE_A, vec![127, 0, 0, 21])]);
    assert_eq!(
        parse_response(&ok, 2, "app.test", TYPE_A),
        Err(DnsError::Mismatch("id"))
    );
    assert_eq!(
        parse_response(&ok, 1, "other.test", TYPE_A),
        Err(DnsError::Mismatch("question name"))
    );
    assert!(parse_response(&ok, 1, "app.test", TYPE_AAAA).is_err());
    let nx = answer(1, "app.test", TYPE_A, 3, &[]);
    assert_eq!(
        parse_response(&nx, 1, "app.test", TYPE_A),
        Err(DnsError::NxDomain)
    );
    let fail = answer(1, "app.test", TYPE_A, 2, &[]);
    assert_eq!(
        parse_response(&fail, 1, "app.test", TYPE_A),
        Err(DnsError::Rcode(2))
    );
    let mut tc = ok.clone();
    tc[2] |= 0x02;
    assert_eq!(
        parse_response(&tc, 1, "app.test", TYPE_A),
        Err(DnsError::Truncated)
    );
    let query = build_query(1, "app.test", TYPE_A).unwrap();
    assert_eq!(
        parse_response(&query, 1, "app.test", TYPE_A),
        Err(DnsError::Mismatch("not a response"))
    );
    let bad_len = answer(1, "app.test", TYPE_A, 0, &[(TYPE_A, vec![127, 0, 0])]);
    assert!(matches!(
        parse_response(&bad_len, 1, "app.test", TYPE_A),
        Err(DnsError::Malformed(_))
    ));
    // A pointer to itself, and a forward pointer.
    let mut lp = ok.clone();
    let at = lp.len() - 16;
    lp[at] = 0xC0;
    lp[at + 1] = at as u8;
    assert!(matches!(
        parse_response(&lp, 1, "app.test", TYPE_A),
        Err(DnsError::Malformed(_))
    ));
}

#[test]
fn every_truncation_and_byte_flip_is_handled() {
    let ok = answer(
        3,
        "app.test",
        TYPE_A,
        0,
        &[
            (TYPE_A, vec![127, 0, 0, 21]),
            (TYPE_CNAME, vec![1, b'y', 0xC0, 12]),
        ],
    );
    for n in 0..ok.len() {
        assert!(
            parse_response(&ok[..n], 3, "app.test", TYPE_A).is_err(),
            "prefix {n}"
        );
    }
    for i in 0..ok.len() {
        for v in [0u8, 0x3F, 0x40, 0xC0, 0xFF] {
            let mut m = ok.clone();
            m[i] = v;
            let _ = parse_response(&m, 3, "app.test", TYPE_A);
        }
    }
}

#[tokio::test]
async fn query_over_udp_on_loopback() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let responder = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        // A stray answer with the wrong id first: ignored.
        let stray = answer(
            id.wrapping_add(1),
            "app.test",
            TYPE_A,
            0,
            &[(TYPE_A, vec![127, 0, 0, 99])],
        );
        server.send_to(&stray, from).await.unwrap();
        let mut m = buf[..n].to_vec();
        m[2] |= 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 21]);
        server.send_to(&m, from).await.unwrap();
    });
    let got = query(addr, "app.test", TYPE_A, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, vec!["127.0.0.21".parse::<IpAddr>().unwrap()]);
    responder.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn silent_server_times_out() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let got = query(addr, "app.test", TYPE_A, Duration::from_secs(2)).await;
    assert_eq!(got, Err(DnsError::Timeout(addr, Duration::from_secs(2))));
}
