//! Building the PROXY header sluice writes first on a connection to a server: v1 or v2 with
//! the real client and the address it reached, v2 optionally with CRC32C, UNIQUE_ID, the
//! ClientHello's AUTHORITY/ALPN and the TLVs passed on from a trusted incoming header.
//! Encodes into a caller-provided buffer (`header_len` says how big); does no I/O.

use std::net::SocketAddr;

use proxy_header::tlv::kind;
use proxy_header::{Addresses, Command, EncodeError, Tlv, Tlvs, Transport, V2Encoder};

use crate::addr::{ClientAddr, LocalAddr};
use crate::spec::{self, SendProxy};

/// Big enough for any header built here: v1 is at most 107 bytes; v2 is 16 fixed + 36
/// (INET6 addresses) + 3+128 (UNIQUE_ID: a connection id taken from an incoming header may
/// be that long) + 3+4 (CRC32C) = 190 bytes.
pub(crate) const HEADER_BUF: usize = 192;

/// Length of the UNIQUE_ID value sluice generates (hex of 16 random bytes).
pub(crate) const UNIQUE_ID_LEN: usize = 32;

/// What a backend asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SendOpts {
    pub version: SendProxy,
    pub crc32c: bool,
    pub unique_id: bool,
    /// AUTHORITY from the ClientHello's SNI.
    pub authority: bool,
    /// ALPN from the ClientHello's offered protocols.
    pub alpn: bool,
    /// The TLVs of a trusted incoming v2 header.
    pub pass_tlvs: bool,
}

/// The per-connection TLV values `build_header` may add.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    /// A fresh UNIQUE_ID (used with `SendOpts::unique_id`).
    pub unique_id: Option<&'a [u8]>,
    /// The ClientHello's SNI (used with `SendOpts::authority`).
    pub authority: Option<&'a str>,
    /// The ClientHello's offered protocols (used with `SendOpts::alpn`).
    pub alpn: Option<&'a [u8]>,
    /// The incoming header's validated TLV area (used with `SendOpts::pass_tlvs`).
    pub passed: &'a [u8],
}

/// The buffer `build_header` needs for `extra`: `HEADER_BUF` plus the variable TLVs.
pub(crate) fn header_len(extra: &Extra<'_>) -> usize {
    HEADER_BUF
        + extra.passed.len()
        + extra.authority.map_or(0, |a| 3 + a.len())
        + extra.alpn.map_or(0, |a| 3 + a.len())
}

impl SendOpts {
    pub(crate) fn from_backend(b: &spec::Backend) -> Self {
        SendOpts {
            version: b.send_proxy,
            crc32c: b.proxy_v2_crc32c,
            unique_id: b.proxy_v2_unique_id,
            authority: b.proxy_v2_authority,
            alpn: b.proxy_v2_alpn,
            pass_tlvs: b.proxy_v2_pass_tlvs,
        }
    }

    /// Whether a connection waits for the client's TLS ClientHello before the header.
    pub(crate) fn reads_hello(&self) -> bool {
        self.version == SendProxy::V2 && (self.authority || self.alpn)
    }
}

/// A fresh printable unique connection id (32 lowercase hex digits).
pub(crate) fn new_unique_id() -> [u8; UNIQUE_ID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let raw: [u8; UNIQUE_ID_LEN / 2] = rand::random();
    let mut out = [0u8; UNIQUE_ID_LEN];
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// Writes the header for `client` → `local` into `out` (at least `header_len(extra)`
/// bytes); returns its length (0 when the backend sends none). `extra`'s values are only
/// used by v2 with the matching `opts` flag. Passed-on TLVs come first (as received, less
/// CRC32C, NOOP and the types sluice writes itself), then sluice's own.
pub(crate) fn build_header(
    opts: &SendOpts,
    client: ClientAddr,
    local: LocalAddr,
    extra: &Extra<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    match opts.version {
        SendProxy::None => Ok(0),
        SendProxy::V1 => proxy_header::v1::encode(client.addr(), local.0, out),
        SendProxy::V2 => {
            let addresses = addresses(client.addr(), local.0);
            let mut enc = V2Encoder::new(out, Command::Proxy, Transport::Stream, &addresses)?;
            let unique_id = extra.unique_id.filter(|_| opts.unique_id);
            let authority = extra.authority.filter(|_| opts.authority);
            let alpn = extra.alpn.filter(|_| opts.alpn);
            if opts.pass_tlvs {
                let own = |k: u8| {
                    (k == kind::UNIQUE_ID && unique_id.is_some())
                        || (k == kind::AUTHORITY && authority.is_some())
                        || (k == kind::ALPN && alpn.is_some())
                };
                // Validated on receipt; a TLV area that does not validate passes nothing.
                for tlv in Tlvs::parse(extra.passed).unwrap_or_default().iter() {
                    if let Some((k, v)) = raw_tlv(&tlv) {
                        if !own(k) {
                            enc.tlv(k, &v)?;
                        }
                    }
                }
            }
            if let Some(id) = unique_id {
                enc.unique_id(id)?;
            }
            if let Some(host) = authority {
                enc.authority(host)?;
            }
            if let Some(protocols) = alpn {
                enc.alpn(protocols)?;
            }
            enc.finish(opts.crc32c)
        }
    }
}

/// A received TLV's type and value as it goes on the wire again; None for CRC32C (a new
/// one is computed) and NOOP (padding).
fn raw_tlv<'a>(tlv: &Tlv<'a>) -> Option<(u8, std::borrow::Cow<'a, [u8]>)> {
    use std::borrow::Cow::{Borrowed, Owned};
    Some(match *tlv {
        Tlv::Crc32c(_) | Tlv::Noop(_) => return None,
        Tlv::Alpn(v) => (kind::ALPN, Borrowed(v)),
        Tlv::Authority(v) => (kind::AUTHORITY, Borrowed(v.as_bytes())),
        Tlv::UniqueId(v) => (kind::UNIQUE_ID, Borrowed(v)),
        Tlv::Netns(v) => (kind::NETNS, Borrowed(v.as_bytes())),
        Tlv::Ssl(ssl) => {
            let mut v = vec![ssl.client()];
            v.extend_from_slice(&ssl.verify().to_be_bytes());
            v.extend_from_slice(ssl.sub_bytes());
            (kind::SSL, Owned(v))
        }
        Tlv::Custom { kind, value } | Tlv::Unknown { kind, value } => (kind, Borrowed(value)),
    })
}

/// Both IPv4 → INET; otherwise INET6 with IPv4 addresses mapped (`::ffff:a.b.c.d`).
fn addresses(src: SocketAddr, dst: SocketAddr) -> Addresses {
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => Addresses::Inet { src: s, dst: d },
        _ => Addresses::Inet6 {
            src: to_v6(src),
            dst: to_v6(dst),
        },
    }
}

fn to_v6(a: SocketAddr) -> std::net::SocketAddrV6 {
    match a {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(v4) => {
            std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PeerAddr;
    use proxy_header::{DecodeOptions, Decoded, Version};

    fn ends(c: &str, l: &str) -> (ClientAddr, LocalAddr) {
        (
            ClientAddr::direct(PeerAddr(c.parse().unwrap())),
            LocalAddr(l.parse().unwrap()),
        )
    }

    fn roundtrip(
        opts: SendOpts,
        c: &str,
        l: &str,
    ) -> (Version, Option<SocketAddr>, Option<SocketAddr>, usize) {
        let (client, local) = ends(c, l);
        let id = new_unique_id();
        let mut buf = [0u8; HEADER_BUF];
        let extra = Extra {
            unique_id: Some(&id),
            ..Extra::default()
        };
        let n = build_header(&opts, client, local, &extra, &mut buf).unwrap();
        match proxy_header::decode(&buf[..n], &DecodeOptions::default()).unwrap() {
            Decoded::Complete { header, consumed } => {
                assert_eq!(consumed, n);
                if opts.version == SendProxy::V2 {
                    assert_eq!(header.tlvs.unique_id().is_some(), opts.unique_id);
                    assert_eq!(header.tlvs.crc32c().is_some(), opts.crc32c);
                }
                (header.version, header.source(), header.destination(), n)
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn none_writes_nothing() {
        let (c, l) = ends("127.0.0.2:1", "127.0.0.1:2");
        let opts = SendOpts {
            version: SendProxy::None,
            crc32c: true,
            unique_id: true,
            ..SendOpts::default()
        };
        assert_eq!(
            build_header(&opts, c, l, &Extra::default(), &mut [0u8; HEADER_BUF]).unwrap(),
            0
        );
    }

    #[test]
    fn v1_and_v2_decode_to_the_same_addresses() {
        for (version, crc32c, unique_id) in [
            (SendProxy::V1, false, false),
            (SendProxy::V2, false, false),
            (SendProxy::V2, true, false),
            (SendProxy::V2, true, true),
        ] {
            let opts = SendOpts {
                version,
                crc32c,
                unique_id,
                ..SendOpts::default()
            };
            let (_, src, dst, _) = roundtrip(opts, "127.0.0.2:40000", "127.0.0.1:443");
            assert_eq!(src, Some("127.0.0.2:40000".parse().unwrap()), "{opts:?}");
            assert_eq!(dst, Some("127.0.0.1:443".parse().unwrap()), "{opts:?}");
        }
    }

    #[test]
    fn largest_v2_fits_and_mixed_families_map() {
        let opts = SendOpts {
            version: SendProxy::V2,
            crc32c: true,
            unique_id: true,
            ..SendOpts::default()
        };
        let (_, src, _, n) = roundtrip(opts, "[::1]:1", "127.0.0.1:2");
        assert_eq!(src, Some("[::1]:1".parse().unwrap()));
        assert!(n <= HEADER_BUF);
        let (_, _, dst, _) = roundtrip(opts, "[::1]:1", "127.0.0.1:2");
        assert_eq!(dst, Some("[::ffff:127.0.0.1]:2".parse().unwrap()));
        // A connection id taken from an incoming header may use UNIQUE_ID's whole 128 bytes.
        let (client, local) = ends("[::1]:1", "[::1]:2");
        let id = [b'a'; proxy_header::tlv::kind::UNIQUE_ID_MAX];
        let extra = Extra {
            unique_id: Some(&id),
            ..Extra::default()
        };
        let n = build_header(&opts, client, local, &extra, &mut [0u8; HEADER_BUF]).unwrap();
        assert_eq!(n, 190);
    }

    #[test]
    fn passed_tlvs_kept_and_own_ones_win() {
        // An incoming header's TLVs: AWS VPCE id, an AUTHORITY, a UNIQUE_ID, NOOP, CRC32C.
        let mut inbuf = [0u8; 256];
        let a = Addresses::from_socket_addrs(
            "10.0.0.1:1".parse().unwrap(),
            "10.0.0.2:2".parse().unwrap(),
        );
        let mut enc = V2Encoder::new(&mut inbuf, Command::Proxy, Transport::Stream, &a).unwrap();
        enc.tlv(0xEA, b"\x01vpce-1").unwrap();
        enc.authority("old.example").unwrap();
        enc.unique_id(b"theirs").unwrap();
        enc.noop(2).unwrap();
        let n = enc.finish(true).unwrap();
        let passed = &inbuf[28..n];

        let opts = SendOpts {
            version: SendProxy::V2,
            crc32c: true,
            unique_id: true,
            authority: true,
            alpn: true,
            pass_tlvs: true,
        };
        let (client, local) = ends("127.0.0.2:1", "127.0.0.1:2");
        let extra = Extra {
            unique_id: Some(b"ours"),
            authority: Some("app.example"),
            alpn: Some(b"h2,http/1.1"),
            passed,
        };
        let mut out = vec![0u8; header_len(&extra)];
        let n = build_header(&opts, client, local, &extra, &mut out).unwrap();
        let Ok(Decoded::Complete { header, .. }) =
            proxy_header::decode(&out[..n], &DecodeOptions::default())
        else {
            panic!("does not decode");
        };
        let t = header.tlvs;
        assert_eq!(t.get(0xEA), Some(&b"\x01vpce-1"[..]));
        assert_eq!(t.authority(), Some("app.example"));
        assert_eq!(t.unique_id(), Some(&b"ours"[..]));
        assert_eq!(t.alpn(), Some(&b"h2,http/1.1"[..]));
        assert_eq!(t.get(kind::NOOP), None);
        assert_eq!(
            t.iter().filter(|x| matches!(x, Tlv::Authority(_))).count(),
            1
        );
        assert!(t.crc32c().is_some());

        // Without the flags the same extra adds nothing.
        let plain = SendOpts {
            version: SendProxy::V2,
            ..SendOpts::default()
        };
        let n = build_header(&plain, client, local, &extra, &mut out).unwrap();
        assert_eq!(n, 28);
    }
}
