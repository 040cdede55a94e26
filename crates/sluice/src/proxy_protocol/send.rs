//! Building the PROXY header sluice writes first on a connection to a server: v1 or v2 with
//! the real client and the address it reached, v2 optionally with CRC32C and UNIQUE_ID.
//! Encodes into a caller-provided stack buffer; does no I/O and no allocation.

use std::net::SocketAddr;

use proxy_header::{Addresses, Command, EncodeError, Transport, V2Encoder};

use crate::addr::{ClientAddr, LocalAddr};
use crate::spec::{self, SendProxy};

/// Big enough for any header built here: v1 is at most 107 bytes; v2 is 16 fixed + 36
/// (INET6 addresses) + 3+128 (UNIQUE_ID: a connection id taken from an incoming header may
/// be that long) + 3+4 (CRC32C) = 190 bytes.
pub(crate) const HEADER_BUF: usize = 192;

/// Length of the UNIQUE_ID value sluice generates (hex of 16 random bytes).
pub(crate) const UNIQUE_ID_LEN: usize = 32;

/// What a backend asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendOpts {
    pub version: SendProxy,
    pub crc32c: bool,
    pub unique_id: bool,
}

impl SendOpts {
    pub(crate) fn from_backend(b: &spec::Backend) -> Self {
        SendOpts {
            version: b.send_proxy,
            crc32c: b.proxy_v2_crc32c,
            unique_id: b.proxy_v2_unique_id,
        }
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

/// Writes the header for `client` → `local` into `out`; returns its length (0 when the
/// backend sends none). `unique_id` is only used by v2 with `opts.unique_id`.
pub(crate) fn build_header(
    opts: &SendOpts,
    client: ClientAddr,
    local: LocalAddr,
    unique_id: Option<&[u8]>,
    out: &mut [u8; HEADER_BUF],
) -> Result<usize, EncodeError> {
    match opts.version {
        SendProxy::None => Ok(0),
        SendProxy::V1 => proxy_header::v1::encode(client.addr(), local.0, out),
        SendProxy::V2 => {
            let addresses = addresses(client.addr(), local.0);
            let mut enc = V2Encoder::new(out, Command::Proxy, Transport::Stream, &addresses)?;
            if opts.unique_id {
                if let Some(id) = unique_id {
                    enc.unique_id(id)?;
                }
            }
            enc.finish(opts.crc32c)
        }
    }
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
        let n = build_header(&opts, client, local, Some(&id), &mut buf).unwrap();
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
        };
        assert_eq!(
            build_header(&opts, c, l, None, &mut [0u8; HEADER_BUF]).unwrap(),
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
        };
        let (_, src, _, n) = roundtrip(opts, "[::1]:1", "127.0.0.1:2");
        assert_eq!(src, Some("[::1]:1".parse().unwrap()));
        assert!(n <= HEADER_BUF);
        let (_, _, dst, _) = roundtrip(opts, "[::1]:1", "127.0.0.1:2");
        assert_eq!(dst, Some("[::ffff:127.0.0.1]:2".parse().unwrap()));
        // A connection id taken from an incoming header may use UNIQUE_ID's whole 128 bytes.
        let (client, local) = ends("[::1]:1", "[::1]:2");
        let id = [b'a'; proxy_header::tlv::kind::UNIQUE_ID_MAX];
        let n = build_header(&opts, client, local, Some(&id), &mut [0u8; HEADER_BUF]).unwrap();
        assert_eq!(n, 190);
    }
}
