//! Strict, incremental PROXY protocol v1/v2 codec (HAProxy `doc/proxy-protocol.txt`).
//! Pure functions over byte slices: no I/O, no async, safe Rust only, never panics on input.
//! The caller reads bytes and asks [`decode`]; it alone decides that a header is required.

#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

pub mod error;
pub mod model;
pub mod tlv;
pub mod v1;
pub mod v2;

mod crc;
#[doc(hidden)]
pub mod fuzz_check;

pub use error::{EncodeError, Invalid};
pub use model::{Addresses, Command, Header, Transport, Version};
pub use tlv::{SslSubTlv, SslTlv, Tlv, TlvIter, Tlvs};
pub use v2::V2Encoder;

/// The 12-byte signature that starts every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes including CRLF.
pub const V1_MAX_LEN: usize = 107;
/// Default cap on the v2 length field (bytes after the 16-byte fixed part).
pub const DEFAULT_MAX_V2_LEN: usize = 4096;

/// Decoder knobs. `Default` follows the specification with a 4096-byte v2 cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// A v2 header whose length field exceeds this is invalid at once.
    pub max_v2_len: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }
}

/// The decoder's answer for the bytes received so far.
// Large because of the UNIX address block; boxing would allocate on every decode.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole header: `consumed` bytes belong to it, everything after is application data.
    Complete { header: Header<'a>, consumed: usize },
    /// Read more. `needed` is the number of bytes known to be missing, when known.
    Incomplete { needed: Option<usize> },
}

/// Decodes a v1 or v2 header at the start of `buf`, detected by signature only.
///
/// Call again with more bytes after `Incomplete`; a header split across reads decodes exactly
/// as in one read. `Complete::consumed` bytes are the header, the rest is application data.
/// `Incomplete::needed` is exact for v2 once its 16 fixed bytes are in, a lower bound before
/// that, and `None` for v1 (its length is only known at CRLF) or an empty buffer.
pub fn decode<'a>(buf: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<'a>, Invalid> {
    let Some(&first) = buf.first() else {
        return Ok(Decoded::Incomplete { needed: None });
    };
    let sig: &[u8] = if first == V2_SIGNATURE[0] {
        &V2_SIGNATURE
    } else {
        v1::SIGNATURE
    };
    let n = buf.len().min(sig.len());
    if let Some(offset) = (0..n).find(|&i| buf[i] != sig[i]) {
        return Err(Invalid::NoSignature {
            offset,
            byte: buf[offset],
        });
    }
    if sig.len() == v1::SIGNATURE.len() {
        if n < sig.len() {
            return Ok(Decoded::Incomplete { needed: None });
        }
        v1::decode(buf)
    } else if n < sig.len() {
        Ok(Decoded::Incomplete {
            needed: Some(v2::FIXED_LEN - n),
        })
    } else {
        v2::decode(buf, opts)
    }
}
