//! PROXY v2 binary header: strict incremental parser (this file) and the allocation-free
//! encoder ([`encode`]). Checks each fixed byte as soon as it arrives; verifies CRC32C.
//! No I/O; TLV rules live in `tlv.rs`.

mod encode;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub use self::encode::{encode_local, encode_proxy, V2Encoder};
use crate::crc::crc32c_zeroed;
use crate::error::Invalid;
use crate::model::{Addresses, Command, Header, Transport, Version};
use crate::tlv::Tlvs;
use crate::{DecodeOptions, Decoded};

/// Length of the fixed part: signature, version/command, family/transport, length.
pub const FIXED_LEN: usize = 16;
/// Address block sizes for INET, INET6 and UNIX.
pub const ADDR_LEN_INET: usize = 12;
pub const ADDR_LEN_INET6: usize = 36;
pub const ADDR_LEN_UNIX: usize = 216;

fn incomplete(have: usize, total: usize) -> Result<Decoded<'static>, Invalid> {
    Ok(Decoded::Incomplete {
        needed: Some(total - have),
    })
}

/// Decodes a v2 header; `buf` starts with the full 12-byte signature.
pub(crate) fn decode<'a>(buf: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<'a>, Invalid> {
    let Some(&vc) = buf.get(12) else {
        return incomplete(buf.len(), FIXED_LEN);
    };
    if vc >> 4 != 2 {
        return Err(Invalid::V2BadVersion { version: vc >> 4 });
    }
    let command = match vc & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        command => return Err(Invalid::V2BadCommand { command }),
    };
    let Some(&ft) = buf.get(13) else {
        return incomplete(buf.len(), FIXED_LEN);
    };
    let family = ft >> 4;
    if family > 3 {
        return Err(Invalid::V2BadFamily { family });
    }
    let transport = match ft & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Dgram,
        transport => return Err(Invalid::V2BadTransport { transport }),
    };
    let Some(&[hi, lo]) = buf.get(14..16).and_then(|s| s.first_chunk::<2>()) else {
        return incomplete(buf.len(), FIXED_LEN);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > opts.max_v2_len {
        return Err(Invalid::V2TooLong {
            len,
            max: opts.max_v2_len,
        });
    }
    // LOCAL, or an UNSPEC family or transport: the block is skipped, addresses unspecified.
    let specified = command == Command::Proxy && family != 0 && transport != Transport::Unspec;
    let (addr_len, name) = match family {
        1 => (ADDR_LEN_INET, "INET"),
        2 => (ADDR_LEN_INET6, "INET6"),
        _ => (ADDR_LEN_UNIX, "UNIX"),
    };
    if specified && len < addr_len {
        return Err(Invalid::V2ShortAddress {
            family: name,
            needed: addr_len,
            len,
        });
    }
    let total = FIXED_LEN + len;
    let Some(hdr) = buf.get(..total) else {
        return incomplete(buf.len(), total);
    };
    let mut header = Header {
        version: Version::V2,
        command,
        transport,
        addresses: Addresses::Unspec,
        tlvs: Tlvs::empty(),
    };
    if specified {
        let block = &hdr[FIXED_LEN..FIXED_LEN + addr_len];
        header.addresses = addresses(family, block);
        let tlv_at = FIXED_LEN + addr_len;
        let (tlvs, crc_at) = Tlvs::parse_at(&hdr[tlv_at..], tlv_at)?;
        if let Some(at) = crc_at {
            let value_at = tlv_at + at;
            let mut v = [0u8; 4];
            v.copy_from_slice(&hdr[value_at..value_at + 4]);
            let expected = u32::from_be_bytes(v);
            let computed = crc32c_zeroed(hdr, value_at);
            if expected != computed {
                return Err(Invalid::V2CrcMismatch { expected, computed });
            }
        }
        header.tlvs = tlvs;
    }
    Ok(Decoded::Complete {
        header,
        consumed: total,
    })
}

/// Reads an address block of the right size for `family` (1, 2 or 3).
fn addresses(family: u8, b: &[u8]) -> Addresses {
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    match family {
        1 => {
            let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
            Addresses::Inet {
                src: SocketAddrV4::new(ip(0), port(8)),
                dst: SocketAddrV4::new(ip(4), port(10)),
            }
        }
        2 => {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[i..i + 16]);
                Ipv6Addr::from(o)
            };
            Addresses::Inet6 {
                src: SocketAddrV6::new(ip(0), port(32), 0, 0),
                dst: SocketAddrV6::new(ip(16), port(34), 0, 0),
            }
        }
        _ => {
            let mut src = [0u8; 108];
            let mut dst = [0u8; 108];
            src.copy_from_slice(&b[..108]);
            dst.copy_from_slice(&b[108..216]);
            Addresses::Unix { src, dst }
        }
    }
}
