//! v2 rows of the decoder table: valid headers and TLVs, every rejection rule, incomplete
//! prefixes with their exact `needed`. Data only; the harness in `table.rs` runs them.
use super::*;

pub(crate) fn v2_cases() -> Vec<Case> {
    let six = b"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01";
    let block6 = [
        &six[..],
        &Ipv6Addr::LOCALHOST.octets(),
        &[0x12, 0x34, 0x01, 0xbb],
    ]
    .concat();
    let unix_block = [unix_path("/run/a.sock"), unix_path("/run/b.sock")].concat();
    let ssl = [
        &[kind::CLIENT_SSL | kind::CLIENT_CERT_CONN, 0, 0, 0, 0][..],
        &tlv(kind::SSL_VERSION, b"TLSv1.3"),
        &tlv(kind::SSL_CN, "Ünïcode CN".as_bytes()),
        &tlv(kind::SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
        &tlv(kind::SSL_SIG_ALG, b"SHA256"),
        &tlv(kind::SSL_KEY_ALG, b"RSA2048"),
        &tlv(kind::SSL_GROUP, b"X25519"),
        &tlv(kind::SSL_SIG_SCHEME, b"rsa_pss_rsae_sha256"),
        &tlv(kind::SSL_CLIENT_CERT, b"\x30\x82\x01\x00"),
        &tlv(0x2f, b"raw"),
    ]
    .concat();
    let mut capped = case(
        "v2 length above custom cap",
        v2(0x21, 0x11, &[0; 20]),
        Want::Bad(
            "v2_too_long",
            "length field 20 exceeds the configured cap of 16",
        ),
    );
    capped.opts = DecodeOptions { max_v2_len: 16 };
    let mut over = v2(0x21, 0x11, &[]);
    over[14..16].copy_from_slice(&4097u16.to_be_bytes());
    let all = [
        tlv(kind::ALPN, b"h2"),
        tlv(kind::AUTHORITY, b"example.com"),
        tlv(kind::NOOP, &[0; 3]),
        tlv(kind::UNIQUE_ID, b"uid-1"),
        tlv(kind::NETNS, b"blue"),
        tlv(0xE5, b"custom"),
        tlv(0x50, b"unknown"),
        tlv(kind::ALPN, b""),
    ]
    .concat();
    vec![
        case(
            "v2 proxy tcp4",
            inet_with(&[]),
            v2_ok(Command::Proxy, Transport::Stream, lo_inet(), vec![]),
        ),
        case(
            "v2 proxy udp4",
            v2(0x21, 0x12, &INET_BLOCK),
            v2_ok(Command::Proxy, Transport::Dgram, lo_inet(), vec![]),
        ),
        case(
            "v2 proxy tcp6",
            v2(0x21, 0x21, &block6),
            v2_ok(
                Command::Proxy,
                Transport::Stream,
                inet6("2001:db8::1", 0x1234, "::1", 443),
                vec![],
            ),
        ),
        case(
            "v2 proxy unix stream",
            v2(0x21, 0x31, &unix_block),
            v2_ok(
                Command::Proxy,
                Transport::Stream,
                Addresses::Unix {
                    src: unix_path("/run/a.sock"),
                    dst: unix_path("/run/b.sock"),
                },
                vec![],
            ),
        ),
        case(
            "v2 local",
            v2(0x20, 0x00, &[]),
            v2_ok(Command::Local, Transport::Unspec, Addresses::Unspec, vec![]),
        ),
        case(
            "v2 local skips block and junk",
            v2(0x20, 0x11, &[0xff; 20]),
            v2_ok(Command::Local, Transport::Stream, Addresses::Unspec, vec![]),
        ),
        case(
            "v2 proxy unspec skips block",
            v2(0x21, 0x00, &[1, 2, 3, 4, 5]),
            v2_ok(Command::Proxy, Transport::Unspec, Addresses::Unspec, vec![]),
        ),
        case(
            "v2 proxy inet with unspec transport skips block",
            v2(0x21, 0x10, &[9; 3]),
            v2_ok(Command::Proxy, Transport::Unspec, Addresses::Unspec, vec![]),
        ),
        case(
            "v2 all simple TLV types",
            inet_with(&all),
            v2_ok(
                Command::Proxy,
                Transport::Stream,
                lo_inet(),
                vec![
                    Tlv::Alpn(b"h2"),
                    Tlv::Authority("example.com"),
                    Tlv::Noop(&[0; 3]),
                    Tlv::UniqueId(b"uid-1"),
                    Tlv::Netns("blue"),
                    Tlv::Custom {
                        kind: 0xE5,
                        value: b"custom",
                    },
                    Tlv::Unknown {
                        kind: 0x50,
                        value: b"unknown",
                    },
                    Tlv::Alpn(b""),
                ],
            ),
        ),
        case(
            "v2 unique id of 128 bytes",
            inet_with(&tlv(kind::UNIQUE_ID, &[7; 128])),
            v2_ok(
                Command::Proxy,
                Transport::Stream,
                lo_inet(),
                vec![Tlv::UniqueId(&[7; 128])],
            ),
        ),
        case(
            "v2 SSL TLV with every sub-TLV",
            inet_with(&tlv(kind::SSL, &ssl)),
            Want::Deep,
        ),
        case(
            "v2 valid CRC32C",
            inet_crc(&tlv(kind::ALPN, b"h2"), 0),
            Want::Deep,
        ),
        case(
            "v2 first byte of signature",
            "\r",
            Want::Incomplete(Some(15)),
        ),
        case("v2 signature only", V2_SIGNATURE, Want::Incomplete(Some(4))),
        case(
            "v2 15 fixed bytes",
            &inet_with(&[])[..15],
            Want::Incomplete(Some(1)),
        ),
        case(
            "v2 fixed part only",
            &inet_with(&[])[..16],
            Want::Incomplete(Some(12)),
        ),
        case(
            "v2 half the address block",
            &inet_with(&[])[..20],
            Want::Incomplete(Some(8)),
        ),
        bad(
            "not proxy: bad v2 signature byte",
            b"\r\n\r\n\0\r\nQUIX",
            "no_signature",
            "byte 0x58 at offset 10",
        ),
        bad(
            "v2 version 1 (early)",
            [&V2_SIGNATURE[..], &[0x11]].concat(),
            "v2_bad_version",
            "version nibble is 0x1",
        ),
        bad(
            "v2 version 3",
            v2(0x31, 0x11, &INET_BLOCK),
            "v2_bad_version",
            "0x3",
        ),
        bad(
            "v2 command 2",
            v2(0x22, 0x11, &INET_BLOCK),
            "v2_bad_command",
            "command nibble is 0x2",
        ),
        bad(
            "v2 command 15",
            v2(0x2f, 0x00, &[]),
            "v2_bad_command",
            "0xf",
        ),
        bad(
            "v2 family 4 (early)",
            &v2(0x21, 0x41, &[])[..14],
            "v2_bad_family",
            "address family nibble is 0x4",
        ),
        bad(
            "v2 transport 3",
            v2(0x21, 0x13, &INET_BLOCK),
            "v2_bad_transport",
            "transport nibble is 0x3",
        ),
        bad(
            "v2 length above default cap (early)",
            over,
            "v2_too_long",
            "length field 4097 exceeds the configured cap of 4096",
        ),
        capped,
        bad(
            "v2 inet block too short",
            &v2(0x21, 0x11, &[0; 8])[..16],
            "v2_short_address",
            "INET address block needs 12 bytes but the length field is 8",
        ),
        bad(
            "v2 inet6 block too short",
            v2(0x21, 0x21, &[0; 20]),
            "v2_short_address",
            "INET6 address block needs 36",
        ),
        bad(
            "v2 unix block too short",
            v2(0x21, 0x31, &[0; 100]),
            "v2_short_address",
            "UNIX address block needs 216",
        ),
        bad(
            "v2 TLV runs past the end",
            inet_with(&[kind::ALPN, 0, 10, b'h', b'2', 0, 0]),
            "v2_tlv_truncated",
            "TLV type 0x01 at offset 28 in the header declares 10 bytes but only 4 remain",
        ),
        bad(
            "v2 two stray bytes after TLVs",
            inet_with(&[&tlv(kind::ALPN, b"h2")[..], &[0, 0]].concat()),
            "v2_tlv_trailing",
            "2 stray byte(s) at offset 33",
        ),
        bad(
            "v2 one stray byte",
            inet_with(&[0x01]),
            "v2_tlv_trailing",
            "1 stray byte(s) at offset 28",
        ),
        bad(
            "v2 CRC32C of 3 bytes",
            inet_with(&tlv(kind::CRC32C, &[0; 3])),
            "v2_crc_bad_length",
            "exactly 4",
        ),
        bad(
            "v2 CRC32C mismatch",
            inet_crc(&[], 1),
            "v2_crc_mismatch",
            "CRC32C mismatch (header says 0x",
        ),
        bad(
            "v2 two CRC32C TLVs",
            inet_crc(&tlv(kind::CRC32C, &[0; 4]), 0),
            "v2_crc_duplicate",
            "second CRC32C TLV at offset 35",
        ),
        bad(
            "v2 unique id of 129 bytes",
            inet_with(&tlv(kind::UNIQUE_ID, &[7; 129])),
            "v2_unique_id_too_long",
            "129 bytes",
        ),
        bad(
            "v2 AUTHORITY not UTF-8",
            inet_with(&tlv(kind::AUTHORITY, b"ex\xffample")),
            "v2_tlv_bad_text",
            "AUTHORITY TLV at offset 28 is not valid UTF-8",
        ),
        bad(
            "v2 NETNS not ASCII",
            inet_with(&tlv(kind::NETNS, "blü".as_bytes())),
            "v2_tlv_bad_text",
            "NETNS TLV at offset 28 is not valid US-ASCII",
        ),
        bad(
            "v2 SSL TLV shorter than 5",
            inet_with(&tlv(kind::SSL, &[1, 0, 0, 0])),
            "v2_ssl_too_short",
            "has 4 bytes",
        ),
        bad(
            "v2 SSL sub-TLV truncated",
            inet_with(&tlv(
                kind::SSL,
                &[1, 0, 0, 0, 0, kind::SSL_VERSION, 0, 9, b'T'],
            )),
            "v2_tlv_truncated",
            "TLV type 0x21 at offset 36 in the SSL TLV declares 9 bytes but only 1 remain",
        ),
        bad(
            "v2 SSL sub-TLV stray byte",
            inet_with(&tlv(kind::SSL, &[1, 0, 0, 0, 0, 7])),
            "v2_tlv_trailing",
            "in the SSL TLV",
        ),
        bad(
            "v2 SSL_VERSION not ASCII",
            inet_with(&tlv(
                kind::SSL,
                &[&[1, 0, 0, 0, 0][..], &tlv(kind::SSL_VERSION, b"TLS\x80")].concat(),
            )),
            "v2_tlv_bad_text",
            "SSL_VERSION TLV at offset 36",
        ),
    ]
}
