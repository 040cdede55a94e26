//! Table-driven decoder verdicts: every rule of the specification with its exact expected
//! verdict (fields, reason code, `needed`). Valid headers are also replayed split at every
//! byte boundary and byte by byte, with application data after them. Encoding is not here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proxy_header::tlv::kind;
use proxy_header::{
    decode, Addresses, Command, DecodeOptions, Decoded, Header, Invalid, SslSubTlv, Tlv, Transport,
    Version, V2_SIGNATURE,
};

#[path = "table_cases/v1.rs"]
mod cases_v1;
#[path = "table_cases/v2.rs"]
mod cases_v2;

use cases_v1::v1_cases;
use cases_v2::v2_cases;

const APP_DATA: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\r\n";

#[allow(clippy::large_enum_variant)] // UNIX addresses; test data only
enum Want {
    Ok {
        version: Version,
        command: Command,
        transport: Transport,
        addresses: Addresses,
        tlvs: Vec<Tlv<'static>>,
    },
    /// Valid; fields checked one by one in `check_deep`.
    Deep,
    Incomplete(Option<usize>),
    Bad(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    opts: DecodeOptions,
    want: Want,
}

fn v4(a: [u8; 4], p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), p)
}
fn v6(s: &str, p: u16) -> SocketAddrV6 {
    SocketAddrV6::new(s.parse::<Ipv6Addr>().unwrap(), p, 0, 0)
}
fn inet(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> Addresses {
    Addresses::Inet {
        src: v4(s, sp),
        dst: v4(d, dp),
    }
}
fn inet6(s: &str, sp: u16, d: &str, dp: u16) -> Addresses {
    Addresses::Inet6 {
        src: v6(s, sp),
        dst: v6(d, dp),
    }
}
fn v1_ok(addresses: Addresses) -> Want {
    let transport = match addresses {
        Addresses::Unspec => Transport::Unspec,
        _ => Transport::Stream,
    };
    Want::Ok {
        version: Version::V1,
        command: Command::Proxy,
        transport,
        addresses,
        tlvs: vec![],
    }
}
fn v2_ok(
    command: Command,
    transport: Transport,
    addresses: Addresses,
    tlvs: Vec<Tlv<'static>>,
) -> Want {
    Want::Ok {
        version: Version::V2,
        command,
        transport,
        addresses,
        tlvs,
    }
}

/// A v2 header: signature, `vc`, `ft`, the length of `body`, `body`.
fn v2(vc: u8, ft: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[vc, ft]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}
fn tlv(k: u8, v: &[u8]) -> Vec<u8> {
    let mut t = vec![k];
    t.extend_from_slice(&(v.len() as u16).to_be_bytes());
    t.extend_from_slice(v);
    t
}
/// 127.0.0.2:4000 -> 127.0.0.1:80 as an INET address block.
const INET_BLOCK: [u8; 12] = [127, 0, 0, 2, 127, 0, 0, 1, 0x0f, 0xa0, 0, 80];
fn lo_inet() -> Addresses {
    inet([127, 0, 0, 2], 4000, [127, 0, 0, 1], 80)
}
fn inet_with(tlvs: &[u8]) -> Vec<u8> {
    v2(0x21, 0x11, &[&INET_BLOCK[..], tlvs].concat())
}
/// An INET header with `tlvs` then a CRC32C TLV holding the right checksum (xor `flip`).
fn inet_crc(tlvs: &[u8], flip: u32) -> Vec<u8> {
    let mut h = inet_with(&[tlvs, &tlv(kind::CRC32C, &[0; 4])[..]].concat());
    let n = h.len();
    let crc = crc32c::crc32c(&h) ^ flip;
    h[n - 4..].copy_from_slice(&crc.to_be_bytes());
    h
}
fn unix_path(p: &str) -> [u8; 108] {
    let mut a = [0u8; 108];
    a[..p.len()].copy_from_slice(p.as_bytes());
    a
}

fn case(name: &'static str, input: impl AsRef<[u8]>, want: Want) -> Case {
    Case {
        name,
        input: input.as_ref().to_vec(),
        opts: DecodeOptions::default(),
        want,
    }
}
fn bad(
    name: &'static str,
    input: impl AsRef<[u8]>,
    reason: &'static str,
    text: &'static str,
) -> Case {
    case(name, input, Want::Bad(reason, text))
}

/// Checks a decoded header against `want`; the two deep cases are checked by name.
fn check(c: &Case, h: &Header<'_>) {
    let Want::Ok {
        version,
        command,
        transport,
        addresses,
        tlvs,
    } = &c.want
    else {
        return check_deep(c, h);
    };
    assert_eq!(
        (h.version, h.command, h.transport, h.addresses),
        (*version, *command, *transport, *addresses),
        "{}",
        c.name
    );
    assert_eq!(h.tlvs.iter().collect::<Vec<_>>(), *tlvs, "{}", c.name);
}

fn check_deep(c: &Case, h: &Header<'_>) {
    assert_eq!(
        (h.version, h.command, h.addresses),
        (Version::V2, Command::Proxy, lo_inet()),
        "{}",
        c.name
    );
    if c.name.contains("CRC32C") {
        let crc = u32::from_be_bytes(c.input[c.input.len() - 4..].try_into().unwrap());
        assert_eq!(h.tlvs.crc32c(), Some(crc));
        assert_eq!(h.tlvs.alpn(), Some(&b"h2"[..]));
        return;
    }
    let ssl = h.tlvs.ssl().expect("SSL TLV");
    assert!(ssl.client_ssl() && ssl.cert_conn() && !ssl.cert_sess());
    assert_eq!(ssl.verify(), 0);
    assert_eq!(ssl.version(), Some("TLSv1.3"));
    assert_eq!(ssl.cn(), Some("Ünïcode CN"));
    assert_eq!(ssl.cipher(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(
        (ssl.sig_alg(), ssl.key_alg()),
        (Some("SHA256"), Some("RSA2048"))
    );
    assert_eq!(
        (ssl.group(), ssl.sig_scheme()),
        (Some("X25519"), Some("rsa_pss_rsae_sha256"))
    );
    assert_eq!(ssl.client_cert(), Some(&b"\x30\x82\x01\x00"[..]));
    let subs: Vec<_> = ssl.iter().collect();
    assert_eq!(subs.len(), 9);
    assert_eq!(
        subs[8],
        SslSubTlv::Other {
            kind: 0x2f,
            value: b"raw"
        }
    );
    assert!(matches!(h.tlvs.iter().next(), Some(Tlv::Ssl(s)) if s == ssl));
}

fn is_valid(c: &Case) -> bool {
    matches!(c.want, Want::Ok { .. } | Want::Deep)
}

#[test]
fn table_verdicts() {
    let cases: Vec<Case> = v1_cases().into_iter().chain(v2_cases()).collect();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for c in &cases {
        let got = decode(&c.input, &c.opts);
        match (&c.want, got) {
            (_, Ok(Decoded::Complete { header, consumed })) if is_valid(c) => {
                assert_eq!(consumed, c.input.len(), "{}", c.name);
                check(c, &header);
            }
            (Want::Incomplete(n), Ok(Decoded::Incomplete { needed })) => {
                assert_eq!(*n, needed, "{}", c.name)
            }
            (Want::Bad(reason, text), Err(e)) => {
                assert_eq!(e.reason(), *reason, "{}: {e}", c.name);
                let shown = e.to_string();
                assert!(shown.contains(text), "{}: {shown:?} lacks {text:?}", c.name);
                assert!(
                    shown.starts_with("v1: ")
                        || shown.starts_with("v2: ")
                        || e.reason() == "no_signature"
                );
            }
            (_, got) => panic!("{}: unexpected {got:?}", c.name),
        }
    }
}

/// Feeds `data` the way a reader would, in chunks ending at `cuts`, decoding after each.
/// With `valid`, `needed` must never ask for more bytes than `data` (a whole header) holds.
fn feed<'a>(
    data: &'a [u8],
    cuts: impl IntoIterator<Item = usize>,
    opts: &DecodeOptions,
    valid: bool,
) -> (usize, Result<Decoded<'a>, Invalid>) {
    let mut last = (0, Ok(Decoded::Incomplete { needed: None }));
    for have in cuts {
        let r = decode(&data[..have], opts);
        match &r {
            Ok(Decoded::Incomplete { needed: Some(n) }) if valid => {
                assert!(have + n <= data.len(), "asked for {n} more at {have}");
            }
            Ok(Decoded::Incomplete { .. }) => {}
            _ => return (have, r),
        }
        last = (have, r);
    }
    last
}

#[test]
fn valid_headers_split_anywhere_decode_identically() {
    let cases: Vec<Case> = v1_cases()
        .into_iter()
        .chain(v2_cases())
        .filter(is_valid)
        .collect();
    assert!(cases.len() >= 20);
    for c in &cases {
        let data = [&c.input[..], APP_DATA].concat();
        let Ok(Decoded::Complete {
            header: whole,
            consumed,
        }) = decode(&data, &c.opts)
        else {
            panic!("{}: whole input does not decode", c.name);
        };
        assert_eq!(consumed, c.input.len(), "{}", c.name);
        assert_eq!(&data[consumed..], APP_DATA, "{}", c.name);
        // One split at every boundary: first read ends at k, second read brings the rest.
        for k in 0..=data.len() {
            let (_, r) = feed(&data, [k, data.len()], &c.opts, true);
            assert_eq!(
                r,
                Ok(Decoded::Complete {
                    header: whole.clone(),
                    consumed
                }),
                "{} split at {k}",
                c.name
            );
        }
        // Byte by byte: complete exactly when the last header byte arrives.
        let (at, r) = feed(&data, 1..=data.len(), &c.opts, true);
        assert_eq!(
            (at, r),
            (
                consumed,
                Ok(Decoded::Complete {
                    header: whole.clone(),
                    consumed
                })
            ),
            "{} byte by byte",
            c.name
        );
        // v2: once the fixed part is in, `needed` is exact.
        if whole.version == Version::V2 {
            for k in 16..consumed {
                assert_eq!(
                    decode(&data[..k], &c.opts),
                    Ok(Decoded::Incomplete {
                        needed: Some(consumed - k)
                    }),
                    "{}",
                    c.name
                );
            }
        }
    }
}

#[test]
fn invalid_headers_fail_the_same_way_byte_by_byte() {
    for c in v1_cases().into_iter().chain(v2_cases()) {
        let Want::Bad(..) = c.want else { continue };
        let whole = decode(&c.input, &c.opts).unwrap_err();
        let (_, r) = feed(&c.input, 1..=c.input.len(), &c.opts, false);
        assert_eq!(r, Err(whole), "{}", c.name);
    }
}
