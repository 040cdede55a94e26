//! v1 rows of the decoder table: valid lines, every rejection rule, incomplete prefixes.
//! Data only; the harness in `table.rs` runs them.
use super::*;

pub(crate) fn v1_cases() -> Vec<Case> {
    let f6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let worst = format!("PROXY UNKNOWN {f6} {f6} 65535 65535\r\n");
    assert_eq!(worst.len(), 107);
    let long_unknown = format!("PROXY UNKNOWN {}", "a".repeat(93));
    vec![
        case(
            "v1 tcp4 spec example",
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            v1_ok(inet([192, 168, 0, 1], 56324, [192, 168, 0, 11], 443)),
        ),
        case(
            "v1 tcp4 max",
            "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            v1_ok(inet([255; 4], 65535, [255; 4], 65535)),
        ),
        case(
            "v1 tcp4 zeros",
            "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
            v1_ok(inet([0; 4], 0, [0; 4], 0)),
        ),
        case(
            "v1 tcp6 longest (104 bytes)",
            format!("PROXY TCP6 {f6} {f6} 65535 65535\r\n"),
            v1_ok(inet6(f6, 65535, f6, 65535)),
        ),
        case(
            "v1 tcp6 compressed",
            "PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
            v1_ok(inet6("2001:db8::1", 1, "::1", 2)),
        ),
        case(
            "v1 tcp6 ipv4-mapped (haproxy mixed families)",
            "PROXY TCP6 ::ffff:127.0.0.2 ::ffff:127.0.0.1 4000 80\r\n",
            v1_ok(inet6("::ffff:127.0.0.2", 4000, "::ffff:127.0.0.1", 80)),
        ),
        case(
            "v1 tcp6 upper-case hex",
            "PROXY TCP6 FE80::A 1:2:3:4:5:6:7:8 1 2\r\n",
            v1_ok(inet6("fe80::a", 1, "1:2:3:4:5:6:7:8", 2)),
        ),
        case(
            "v1 tcp6 :: standing for one group",
            "PROXY TCP6 1:2:3:4:5:6:7:: :: 1 2\r\n",
            v1_ok(inet6("1:2:3:4:5:6:7:0", 1, "::", 2)),
        ),
        case(
            "v1 unknown short form",
            "PROXY UNKNOWN\r\n",
            v1_ok(Addresses::Unspec),
        ),
        case(
            "v1 unknown worst case 107 bytes",
            &worst,
            v1_ok(Addresses::Unspec),
        ),
        case(
            "v1 unknown ignores garbage",
            "PROXY UNKNOWN x  \x01\x7f junk ::\r\n",
            v1_ok(Addresses::Unspec),
        ),
        case("empty buffer", "", Want::Incomplete(None)),
        case("v1 signature prefix", "PROX", Want::Incomplete(None)),
        case("v1 signature only", "PROXY ", Want::Incomplete(None)),
        case("v1 protocol prefix", "PROXY UNKN", Want::Incomplete(None)),
        case(
            "v1 no CRLF yet",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            Want::Incomplete(None),
        ),
        case(
            "v1 CR without LF yet",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
            Want::Incomplete(None),
        ),
        case(
            "v1 106 bytes without CRLF",
            &long_unknown[..106],
            Want::Incomplete(None),
        ),
        bad(
            "v1 107 bytes without CRLF",
            &long_unknown,
            "v1_too_long",
            "no CRLF within the first 107 bytes",
        ),
        bad(
            "v1 CR as 107th byte",
            format!("{}\r\n", &long_unknown[..106]),
            "v1_too_long",
            "107",
        ),
        bad(
            "v1 lone LF",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            "v1_lone_lf",
            "lone LF at offset 30",
        ),
        bad(
            "v1 lone CR",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            "v1_lone_cr",
            "lone CR at offset 30",
        ),
        bad(
            "v1 lone CR inside UNKNOWN",
            "PROXY UNKNOWN a\rb\r\n",
            "v1_lone_cr",
            "offset 15",
        ),
        bad(
            "v1 lone LF inside UNKNOWN",
            "PROXY UNKNOWN a\nb\r\n",
            "v1_lone_lf",
            "offset 15",
        ),
        bad(
            "v1 unknown protocol",
            "PROXY TCP5",
            "v1_bad_protocol",
            "not TCP4, TCP6 or UNKNOWN",
        ),
        bad(
            "v1 lower-case protocol",
            "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            "v1_bad_protocol",
            "protocol",
        ),
        bad(
            "v1 UNKNOWN glued to junk",
            "PROXY UNKNOWNX\r\n",
            "v1_bad_protocol",
            "protocol",
        ),
        bad(
            "v1 empty protocol",
            "PROXY \r\n",
            "v1_bad_protocol",
            "protocol",
        ),
        bad(
            "v1 double space",
            "PROXY TCP4  1.2.3.4",
            "v1_empty_field",
            "field 'src address' is empty",
        ),
        bad(
            "v1 space before CRLF",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            "v1_extra_field",
            "extra field",
        ),
        bad(
            "v1 missing dst port",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "v1_missing_field",
            "before field 'dst port'",
        ),
        bad(
            "v1 missing addresses",
            "PROXY TCP4\r\n",
            "v1_missing_field",
            "'src address'",
        ),
        bad(
            "v1 fifth field",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            "v1_extra_field",
            "extra field",
        ),
        bad(
            "v1 ipv4 leading zero (early)",
            "PROXY TCP4 01",
            "v1_bad_address",
            "'src address' has an octet with a leading zero",
        ),
        bad(
            "v1 ipv4 octet 256",
            "PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n",
            "v1_bad_address",
            "'dst address' has an octet above 255",
        ),
        bad(
            "v1 ipv4 three octets",
            "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            "v1_bad_address",
            "fewer than 4 octets",
        ),
        bad(
            "v1 ipv4 five octets",
            "PROXY TCP4 1.2.3.4.5",
            "v1_bad_address",
            "more than 4 octets",
        ),
        bad(
            "v1 ipv4 empty octet",
            "PROXY TCP4 1..",
            "v1_bad_address",
            "empty octet",
        ),
        bad(
            "v1 ipv4 non-ascii",
            "PROXY TCP4 1.2.é",
            "v1_bad_address",
            "not a decimal digit",
        ),
        bad(
            "v1 tcp4 with ipv6 (early)",
            "PROXY TCP4 ::1",
            "v1_family_mismatch",
            "'src address' is not of the family announced by TCP4",
        ),
        bad(
            "v1 tcp6 with ipv4 (early)",
            "PROXY TCP6 127.",
            "v1_family_mismatch",
            "announced by TCP6",
        ),
        bad(
            "v1 tcp6 zone id",
            "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
            "v1_bad_address",
            "zone id",
        ),
        bad(
            "v1 tcp6 two ::",
            "PROXY TCP6 1::2::3",
            "v1_bad_address",
            "more than one '::'",
        ),
        bad("v1 tcp6 :::", "PROXY TCP6 1:::", "v1_bad_address", "':::'"),
        bad(
            "v1 tcp6 five hex digits",
            "PROXY TCP6 12345",
            "v1_bad_address",
            "more than 4 hex digits",
        ),
        bad(
            "v1 tcp6 seven groups",
            "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
            "v1_bad_address",
            "fewer than 8 groups",
        ),
        bad(
            "v1 tcp6 nine groups",
            "PROXY TCP6 1:2:3:4:5:6:7:8:",
            "v1_bad_address",
            "more than 8 groups",
        ),
        bad(
            "v1 tcp6 leading single colon",
            "PROXY TCP6 :1",
            "v1_bad_address",
            "starts with a single ':'",
        ),
        bad(
            "v1 tcp6 trailing single colon",
            "PROXY TCP6 1:2:3:4:5:6:7: ::1 1 2\r\n",
            "v1_bad_address",
            "ends with a single ':'",
        ),
        bad(
            "v1 tcp6 bad embedded ipv4",
            "PROXY TCP6 ::ffff:1.2.3.04",
            "v1_bad_address",
            "embedded IPv4",
        ),
        bad(
            "v1 port leading zero",
            "PROXY TCP4 1.2.3.4 5.6.7.8 08",
            "v1_bad_port",
            "port field 'src port' has a leading zero",
        ),
        bad(
            "v1 dst port leading zero",
            "PROXY TCP4 1.2.3.4 5.6.7.8 8 00",
            "v1_bad_port",
            "'dst port' has a leading zero",
        ),
        bad(
            "v1 port above 65535",
            "PROXY TCP4 1.2.3.4 5.6.7.8 65536",
            "v1_bad_port",
            "exceeds 65535",
        ),
        bad(
            "v1 port with sign",
            "PROXY TCP4 1.2.3.4 5.6.7.8 +8",
            "v1_bad_port",
            "has a sign",
        ),
        bad(
            "v1 port hex",
            "PROXY TCP4 1.2.3.4 5.6.7.8 8a",
            "v1_bad_port",
            "not a decimal digit",
        ),
        bad(
            "not proxy: HTTP",
            "GET / HTTP/1.1\r\n",
            "no_signature",
            "byte 0x47 at offset 0",
        ),
        bad(
            "not proxy: TLS ClientHello",
            b"\x16\x03\x01\x02\x00",
            "no_signature",
            "offset 0",
        ),
        bad("not proxy: PROXZ", "PROXZ", "no_signature", "offset 4"),
        bad(
            "v1 signature without space",
            "PROXY\tTCP4",
            "no_signature",
            "byte 0x09 at offset 5",
        ),
    ]
}
