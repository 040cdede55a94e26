//! Strict, incremental PROXY protocol v1/v2 codec (HAProxy `doc/proxy-protocol.txt`).
//! Pure functions over byte slices: no I/O, no async, no `unsafe`, never panics on input.
//! The caller reads bytes and asks [`decode`]; it alone decides that a header is required.

#![forbid(unsafe_code)]

pub mod error;
pub mod model;
pub mod tlv;
pub mod v1;
pub mod v2;

mod crc;

pub use error::{EncodeError, Invalid};
pub use model::{Addresses, Command, Header, Transport, Version};
pub use tlv::{SslTlv, Tlv, Tlvs};
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
        DecodeOptions { max_v2_len: DEFAULT_MAX_V2_LEN }
    }
}

/// The decoder's answer for the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole header: `consumed` bytes belong to it, everything after is application data.
    Complete { header: Header<'a>, consumed: usize },
    /// Read more. `needed` is the number of bytes known to be missing, when known.
    Incomplete { needed: Option<usize> },
}

/// Decodes a v1 or v2 header at the start of `buf`, detected by signature only.
pub fn decode<'a>(buf: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<'a>, Invalid> {
    todo!("issue 2: {buf:?} {opts:?}")
}
