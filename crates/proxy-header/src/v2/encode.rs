//! Allocation-free v2 encoder: fixed part and address block, then TLVs, then an optional
//! CRC32C TLV filled in by `finish`. Every TLV written is re-checked with the decoder's rules
//! so that what we send, we would accept. No parsing of received bytes here.

use std::net::SocketAddr;

use crate::crc::crc32c_zeroed;
use crate::error::EncodeError;
use crate::model::{Addresses, Command, Transport};
use crate::tlv::{kind, Tlvs};
use crate::V2_SIGNATURE;

use super::FIXED_LEN;

/// Builds one v2 header in a caller-supplied buffer.
#[derive(Debug)]
pub struct V2Encoder<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl<'b> V2Encoder<'b> {
    /// Writes the fixed part and the address block. `Addresses::Unspec` writes family UNSPEC
    /// and no block; any other family needs a STREAM or DGRAM transport.
    pub fn new(
        out: &'b mut [u8],
        command: Command,
        transport: Transport,
        addresses: &Addresses,
    ) -> Result<Self, EncodeError> {
        let (family, addr_len) = match addresses {
            Addresses::Unspec => (0u8, 0usize),
            Addresses::Inet { .. } => (1, super::ADDR_LEN_INET),
            Addresses::Inet6 { .. } => (2, super::ADDR_LEN_INET6),
            Addresses::Unix { .. } => (3, super::ADDR_LEN_UNIX),
        };
        let tr = match transport {
            Transport::Unspec if family != 0 => return Err(EncodeError::AddressWithoutTransport),
            Transport::Unspec => 0u8,
            Transport::Stream => 1,
            Transport::Dgram => 2,
        };
        let needed = FIXED_LEN + addr_len;
        let available = out.len();
        let Some(h) = out.get_mut(..needed) else {
            return Err(EncodeError::BufferTooSmall { needed, available });
        };
        h[..12].copy_from_slice(&V2_SIGNATURE);
        h[12] = 0x20 | if command == Command::Proxy { 1 } else { 0 };
        h[13] = family << 4 | tr;
        h[14..16].copy_from_slice(&(addr_len as u16).to_be_bytes());
        let b = &mut h[FIXED_LEN..];
        match addresses {
            Addresses::Unspec => {}
            Addresses::Inet { src, dst } => {
                b[0..4].copy_from_slice(&src.ip().octets());
                b[4..8].copy_from_slice(&dst.ip().octets());
                b[8..10].copy_from_slice(&src.port().to_be_bytes());
                b[10..12].copy_from_slice(&dst.port().to_be_bytes());
            }
            Addresses::Inet6 { src, dst } => {
                b[0..16].copy_from_slice(&src.ip().octets());
                b[16..32].copy_from_slice(&dst.ip().octets());
                b[32..34].copy_from_slice(&src.port().to_be_bytes());
                b[34..36].copy_from_slice(&dst.port().to_be_bytes());
            }
            Addresses::Unix { src, dst } => {
                b[..108].copy_from_slice(src);
                b[108..216].copy_from_slice(dst);
            }
        }
        Ok(V2Encoder { out, pos: needed })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Always false: the fixed part is written by `new`.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Claims `n` more bytes, checking the buffer and the 16-bit length field.
    fn reserve(&mut self, n: usize) -> Result<&mut [u8], EncodeError> {
        let end = self.pos + n;
        if end - FIXED_LEN > usize::from(u16::MAX) {
            return Err(EncodeError::HeaderTooLong {
                len: end - FIXED_LEN,
            });
        }
        let available = self.out.len();
        match self.out.get_mut(self.pos..end) {
            Some(s) => Ok(s),
            None => Err(EncodeError::BufferTooSmall {
                needed: end,
                available,
            }),
        }
    }

    /// Appends a TLV with a `value` written in `parts`, then checks it with the decoder's
    /// rules; a rejected TLV is not kept.
    fn put(&mut self, k: u8, head: &[u8], parts: &[(u8, &[u8])]) -> Result<&mut Self, EncodeError> {
        let sub: usize = parts.iter().map(|(_, v)| 3 + v.len()).sum();
        let value_len = head.len() + sub;
        if value_len > usize::from(u16::MAX) {
            return Err(EncodeError::ValueTooLong {
                kind: k,
                len: value_len,
            });
        }
        let dst = self.reserve(3 + value_len)?;
        dst[0] = k;
        dst[1..3].copy_from_slice(&(value_len as u16).to_be_bytes());
        dst[3..3 + head.len()].copy_from_slice(head);
        let mut at = 3 + head.len();
        for (sk, sv) in parts {
            dst[at] = *sk;
            dst[at + 1..at + 3].copy_from_slice(&(sv.len() as u16).to_be_bytes());
            dst[at + 3..at + 3 + sv.len()].copy_from_slice(sv);
            at += 3 + sv.len();
        }
        Tlvs::parse(dst).map_err(EncodeError::InvalidTlv)?;
        self.pos += 3 + value_len;
        Ok(self)
    }

    /// Appends any TLV except CRC32C (use `finish(true)`). Registered types must follow
    /// their rules (UTF-8 AUTHORITY, UNIQUE_ID ≤ 128 bytes, well-formed SSL, ASCII NETNS).
    pub fn tlv(&mut self, kind: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        if kind == kind::CRC32C {
            return Err(EncodeError::CrcViaFinish);
        }
        self.put(kind, value, &[])
    }

    /// PP2_TYPE_ALPN: the negotiated protocol, e.g. `b"h2"`.
    pub fn alpn(&mut self, protocol: &[u8]) -> Result<&mut Self, EncodeError> {
        self.tlv(kind::ALPN, protocol)
    }

    /// PP2_TYPE_AUTHORITY: the host name the client asked for (SNI).
    pub fn authority(&mut self, host: &str) -> Result<&mut Self, EncodeError> {
        self.tlv(kind::AUTHORITY, host.as_bytes())
    }

    /// PP2_TYPE_UNIQUE_ID: at most 128 opaque bytes.
    pub fn unique_id(&mut self, id: &[u8]) -> Result<&mut Self, EncodeError> {
        self.tlv(kind::UNIQUE_ID, id)
    }

    /// PP2_TYPE_NETNS: a US-ASCII namespace name.
    pub fn netns(&mut self, name: &str) -> Result<&mut Self, EncodeError> {
        self.tlv(kind::NETNS, name.as_bytes())
    }

    /// PP2_TYPE_NOOP of `len` zero bytes (padding).
    pub fn noop(&mut self, len: usize) -> Result<&mut Self, EncodeError> {
        let dst = self.reserve(3 + len)?;
        dst.fill(0);
        dst[0] = kind::NOOP;
        let l = u16::try_from(len).map_err(|_| EncodeError::ValueTooLong {
            kind: kind::NOOP,
            len,
        })?;
        dst[1..3].copy_from_slice(&l.to_be_bytes());
        self.pos += 3 + len;
        Ok(self)
    }

    /// PP2_TYPE_SSL: `client` flags (`kind::CLIENT_*`), `verify` (0 = verified) and sub-TLVs
    /// as `(kind::SSL_*, value)` pairs; text sub-TLVs must be ASCII (CN: UTF-8).
    pub fn ssl(
        &mut self,
        client: u8,
        verify: u32,
        sub_tlvs: &[(u8, &[u8])],
    ) -> Result<&mut Self, EncodeError> {
        let v = verify.to_be_bytes();
        self.put(kind::SSL, &[client, v[0], v[1], v[2], v[3]], sub_tlvs)
    }

    /// Fills in the length field and, if `crc32c`, appends the CRC32C TLV and its checksum.
    /// Returns the header length.
    pub fn finish(mut self, crc32c: bool) -> Result<usize, EncodeError> {
        if crc32c {
            let dst = self.reserve(7)?;
            dst.copy_from_slice(&[kind::CRC32C, 0, 4, 0, 0, 0, 0]);
            self.pos += 7;
        }
        let len = (self.pos - FIXED_LEN) as u16;
        self.out[14..16].copy_from_slice(&len.to_be_bytes());
        if crc32c {
            let at = self.pos - 4;
            let crc = crc32c_zeroed(&self.out[..self.pos], at);
            self.out[at..self.pos].copy_from_slice(&crc.to_be_bytes());
        }
        Ok(self.pos)
    }
}

/// A PROXY/STREAM header for a TCP connection, without TLVs. Mixed families are sent as
/// INET6 with the IPv4 side mapped (`::ffff:a.b.c.d`).
pub fn encode_proxy(
    src: SocketAddr,
    dst: SocketAddr,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let addresses = Addresses::from_socket_addrs(src, dst);
    V2Encoder::new(out, Command::Proxy, Transport::Stream, &addresses)?.finish(false)
}

/// A LOCAL header (health checks: "use the connection's own addresses"), 16 bytes.
pub fn encode_local(out: &mut [u8]) -> Result<usize, EncodeError> {
    V2Encoder::new(out, Command::Local, Transport::Unspec, &Addresses::Unspec)?.finish(false)
}
