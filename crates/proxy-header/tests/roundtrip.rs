//! Property tests: whatever the encoders write decodes back to the same header and TLVs, and
//! the decoder never panics nor claims more bytes than it was given, for any input.
//! Fixed examples of each rule live in `table.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;
use proxy_header::tlv::kind;
use proxy_header::{
    decode, v1, v2, Addresses, Command, DecodeOptions, Decoded, Header, Tlv, Transport, V2Encoder,
    Version, V2_SIGNATURE,
};

fn sock() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((Ipv4Addr::from(ip), p))),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p))),
        // Mostly-zero IPv6 addresses exercise '::' compression.
        (0u8..8, any::<u16>(), any::<u16>()).prop_map(|(i, g, p)| {
            let mut groups = [0u16; 8];
            groups[i as usize] = g;
            SocketAddr::from((Ipv6Addr::from(groups), p))
        }),
    ]
}

fn addresses() -> impl Strategy<Value = Addresses> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| {
                Addresses::Inet {
                    src: SocketAddrV4::new(s.into(), sp),
                    dst: SocketAddrV4::new(d.into(), dp),
                }
            }),
        (any::<u128>(), any::<u16>(), any::<u128>(), any::<u16>()).prop_map(|(s, sp, d, dp)| {
            Addresses::Inet6 {
                src: SocketAddrV6::new(s.into(), sp, 0, 0),
                dst: SocketAddrV6::new(d.into(), dp, 0, 0),
            }
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Addresses::Unix {
            src: [a; 108],
            dst: [b; 108]
        }),
    ]
}

#[derive(Debug, Clone)]
enum Spec {
    Alpn(Vec<u8>),
    Authority(String),
    UniqueId(Vec<u8>),
    Noop(usize),
    Netns(String),
    Custom(u8, Vec<u8>),
    Unknown(u8, Vec<u8>),
    Ssl(u8, u32, Vec<(u8, Vec<u8>)>),
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn spec() -> impl Strategy<Value = Spec> {
    let registered = [
        kind::ALPN,
        kind::AUTHORITY,
        kind::CRC32C,
        kind::NOOP,
        kind::UNIQUE_ID,
        kind::SSL,
        kind::NETNS,
    ];
    let sub = prop_oneof![
        (0x21u8..=0x27, "[ -~]{0,24}").prop_map(|(k, s)| (k, s.into_bytes())),
        (Just(kind::SSL_CN), "\\PC{0,12}").prop_map(|(k, s)| (k, s.into_bytes())),
        (Just(kind::SSL_CLIENT_CERT), bytes(300)),
        (0x40u8..0x50, bytes(8)),
    ];
    prop_oneof![
        bytes(16).prop_map(Spec::Alpn),
        "\\PC{0,40}".prop_map(Spec::Authority),
        bytes(129).prop_map(Spec::UniqueId),
        (0usize..20).prop_map(Spec::Noop),
        "[ -~]{0,16}".prop_map(Spec::Netns),
        (kind::CUSTOM_MIN..=kind::CUSTOM_MAX, bytes(32)).prop_map(|(k, v)| Spec::Custom(k, v)),
        (
            any::<u8>().prop_filter("unregistered", move |k| !registered.contains(k)
                && !(kind::CUSTOM_MIN..=kind::CUSTOM_MAX).contains(k)),
            bytes(32)
        )
            .prop_map(|(k, v)| Spec::Unknown(k, v)),
        (0u8..8, any::<u32>(), proptest::collection::vec(sub, 0..6))
            .prop_map(|(c, v, s)| Spec::Ssl(c, v, s)),
    ]
}

fn write(enc: &mut V2Encoder<'_>, s: &Spec) {
    let r = match s {
        Spec::Alpn(v) => enc.alpn(v),
        Spec::Authority(a) => enc.authority(a),
        Spec::UniqueId(v) => enc.unique_id(v),
        Spec::Noop(n) => enc.noop(*n),
        Spec::Netns(n) => enc.netns(n),
        Spec::Custom(k, v) | Spec::Unknown(k, v) => enc.tlv(*k, v),
        Spec::Ssl(c, v, subs) => {
            let subs: Vec<(u8, &[u8])> = subs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            enc.ssl(*c, *v, &subs)
        }
    };
    r.expect("valid TLV rejected by the encoder");
}

/// Asserts that the decoded TLV `t` is what `s` wrote.
fn same(s: &Spec, t: &Tlv<'_>) {
    match (s, t) {
        (Spec::Alpn(v), Tlv::Alpn(d)) | (Spec::UniqueId(v), Tlv::UniqueId(d)) => assert_eq!(v, d),
        (Spec::Authority(a), Tlv::Authority(d)) | (Spec::Netns(a), Tlv::Netns(d)) => {
            assert_eq!(a, d)
        }
        (Spec::Noop(n), Tlv::Noop(d)) => assert_eq!(*n, d.len()),
        (Spec::Custom(k, v), Tlv::Custom { kind, value })
        | (Spec::Unknown(k, v), Tlv::Unknown { kind, value }) => {
            assert_eq!((k, v.as_slice()), (kind, *value))
        }
        (Spec::Ssl(c, v, subs), Tlv::Ssl(d)) => {
            assert_eq!((*c, *v), (d.client(), d.verify()));
            let got: Vec<(u8, &[u8])> = subs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let mut raw = Vec::new();
            for (k, v) in &got {
                raw.push(*k);
                raw.extend_from_slice(&(v.len() as u16).to_be_bytes());
                raw.extend_from_slice(v);
            }
            assert_eq!(d.sub_bytes(), raw.as_slice());
            assert_eq!(d.iter().count(), subs.len());
        }
        _ => panic!("{s:?} decoded as {t:?}"),
    }
}

fn complete<'a>(buf: &'a [u8], n: usize) -> Header<'a> {
    match decode(buf, &DecodeOptions::default()) {
        Ok(Decoded::Complete { header, consumed }) => {
            assert_eq!(consumed, n);
            header
        }
        other => panic!("{other:?} for {buf:02x?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v1_roundtrip(src in sock(), dst in sock(), tail in bytes(8)) {
        let mut buf = [0u8; 128];
        let n = v1::encode(src, dst, &mut buf).unwrap();
        prop_assert!(n <= 104);
        let data = [&buf[..n], &tail].concat();
        let h = complete(&data, n);
        prop_assert_eq!(h.version, Version::V1);
        prop_assert_eq!(h.addresses, Addresses::from_socket_addrs(src, dst));
        let unmap = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        if matches!((src.ip(), dst.ip()), (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))) {
            prop_assert_eq!(h.source(), Some(src));
        } else {
            prop_assert_eq!(h.source().map(unmap), Some(unmap(src)));
            prop_assert_eq!(h.destination().map(unmap), Some(unmap(dst)));
        }
        // Too small a buffer is an error, never a truncated line.
        prop_assert!(v1::encode(src, dst, &mut buf[..n - 1]).is_err());
    }

    #[test]
    fn v2_roundtrip(cmd_proxy in any::<bool>(), dgram in any::<bool>(), addrs in addresses(),
                    specs in proptest::collection::vec(spec(), 0..8), crc in any::<bool>()) {
        let command = if cmd_proxy { Command::Proxy } else { Command::Local };
        let transport = if dgram { Transport::Dgram } else { Transport::Stream };
        let mut buf = vec![0u8; 4096];
        let mut enc = V2Encoder::new(&mut buf, command, transport, &addrs).unwrap();
        for s in &specs {
            write(&mut enc, s);
        }
        let n = enc.finish(crc).unwrap();
        let h = complete(&buf[..n], n);
        prop_assert_eq!((h.version, h.command, h.transport), (Version::V2, command, transport));
        if command == Command::Local {
            prop_assert_eq!(h.addresses, Addresses::Unspec);
            prop_assert!(h.tlvs.is_empty());
            return Ok(());
        }
        prop_assert_eq!(h.addresses, addrs);
        let tlvs: Vec<Tlv<'_>> = h.tlvs.iter().collect();
        prop_assert_eq!(tlvs.len(), specs.len() + usize::from(crc));
        for (s, t) in specs.iter().zip(&tlvs) {
            same(s, t);
        }
        prop_assert_eq!(crc, h.tlvs.crc32c().is_some());
        if crc {
            // A single-bit flip anywhere after the fixed part is caught by the checksum (or a
            // stricter rule), except in the CRC32C TLV's own type and length bytes: a flip there
            // turns it into another TLV, and a header without CRC32C is not checked.
            let mut bad = buf[..n].to_vec();
            let mut bit = (n * 7 + specs.len()) % (8 * (n - 16 - 3)) + 8 * 16;
            if bit >= 8 * (n - 7) {
                bit += 8 * 3;
            }
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = decode(&bad, &DecodeOptions::default());
            let accepted = matches!(r, Ok(Decoded::Complete { consumed, .. }) if consumed == n);
            prop_assert!(!accepted, "bit flip accepted");
        }
    }

    #[test]
    fn v2_encode_proxy_roundtrip(src in sock(), dst in sock()) {
        let mut buf = [0u8; 64];
        let n = v2::encode_proxy(src, dst, &mut buf).unwrap();
        let h = complete(&buf[..n], n);
        prop_assert_eq!(h.addresses, Addresses::from_socket_addrs(src, dst));
        prop_assert_eq!(h.transport, Transport::Stream);
    }

    #[test]
    fn any_bytes_never_panic(prefix in prop_oneof![
            Just(Vec::new()), Just(b"PROXY ".to_vec()), Just(b"PROXY TCP4 ".to_vec()),
            Just(b"PROXY TCP6 ".to_vec()), Just(V2_SIGNATURE.to_vec()),
            Just([&V2_SIGNATURE[..], &[0x21, 0x11, 0, 40]].concat())],
            body in bytes(300), cap in 0usize..5000) {
        let data = [&prefix[..], &body].concat();
        let opts = DecodeOptions { max_v2_len: cap };
        for end in [data.len(), data.len() / 2, prefix.len()] {
            if let Ok(Decoded::Complete { consumed, .. }) = decode(&data[..end], &opts) {
                prop_assert!(consumed <= end);
            }
        }
    }

    #[test]
    fn mutated_headers_never_panic(addrs in addresses(), specs in proptest::collection::vec(spec(), 0..5),
                                   flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                                   cut in any::<usize>()) {
        let mut buf = vec![0u8; 2048];
        let mut enc = V2Encoder::new(&mut buf, Command::Proxy, Transport::Stream, &addrs).unwrap();
        for s in &specs {
            write(&mut enc, s);
        }
        let n = enc.finish(true).unwrap();
        buf.truncate(n);
        for (at, x) in flips {
            let i = at % n;
            buf[i] ^= x;
        }
        let end = cut % (n + 1);
        if let Ok(Decoded::Complete { consumed, .. }) = decode(&buf[..end], &DecodeOptions::default()) {
            prop_assert!(consumed <= end);
        }
    }
}

#[test]
fn encoders_report_small_buffers_and_bad_tlvs() {
    let mut small = [0u8; 20];
    let a: SocketAddr = "127.0.0.2:4000".parse().unwrap();
    let b: SocketAddr = "[::1]:80".parse().unwrap();
    assert!(matches!(
        v2::encode_proxy(a, b, &mut small),
        Err(proxy_header::EncodeError::BufferTooSmall { needed: 52, .. })
    ));
    let mut line = [0u8; 64];
    let n = v1::encode(a, b, &mut line).unwrap();
    assert_eq!(&line[..n], b"PROXY TCP6 ::ffff:127.0.0.2 ::1 4000 80\r\n");
    assert_eq!(v1::encode_unknown(&mut line), Ok(15));
    assert_eq!(v2::encode_local(&mut line), Ok(16));
    let mut buf = [0u8; 256];
    let mut enc = V2Encoder::new(
        &mut buf,
        Command::Proxy,
        Transport::Stream,
        &Addresses::from_socket_addrs(a, a),
    )
    .unwrap();
    assert!(enc.unique_id(&[0; 129]).is_err());
    assert!(enc.tlv(kind::CRC32C, &[0; 4]).is_err());
    assert!(enc.ssl(1, 0, &[(kind::SSL_VERSION, b"\xff")]).is_err());
    assert!(
        enc.tlv(0xE0, &[0; 300]).is_err(),
        "buffer of 256 cannot hold it"
    );
    assert_eq!(
        enc.finish(false),
        Ok(28),
        "rejected TLVs leave nothing behind"
    );
    assert!(V2Encoder::new(
        &mut buf,
        Command::Proxy,
        Transport::Unspec,
        &Addresses::from_socket_addrs(a, a)
    )
    .is_err());
}

/// Every file of fuzz/corpus/decode replays through the fuzz target's own checks; the seeds
/// (every file but the crash/timeout/oom inputs libFuzzer writes and .ci/run keeps there)
/// are valid headers.
#[test]
fn fuzz_corpus_replays_and_seeds_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/decode") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| proxy_header::fuzz_check::decode(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let kept = ["crash-", "timeout-", "oom-", "leak-", "slow-unit-"];
        if !kept.iter().any(|k| name.starts_with(k)) {
            let r = decode(&data, &DecodeOptions::default());
            assert!(matches!(r, Ok(Decoded::Complete { .. })), "{name}: {r:?}");
            seeds += 1;
        }
    }
    assert!(seeds >= 6);
}
