//! Decode and encode errors. `Invalid` names the rule and the field that failed, for logs,
//! and [`Invalid::reason`] gives a short stable code that metrics can count by.
//! Nothing here parses or encodes; the parsers construct these values.

use thiserror::Error;

/// Why a header is invalid. Offsets count from the first byte of the header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Invalid {
    /// The first bytes match neither `PROXY ` (v1) nor the 12-byte v2 signature.
    #[error("not a PROXY header: byte {byte:#04x} at offset {offset} matches neither the v1 'PROXY ' nor the v2 signature")]
    NoSignature { offset: usize, byte: u8 },

    /// No CRLF within the first 107 bytes of a v1 line.
    #[error("v1: no CRLF within the first 107 bytes")]
    V1TooLong,
    /// A CR not followed by LF.
    #[error("v1: lone CR at offset {offset} (the line must end with CRLF)")]
    V1LoneCr { offset: usize },
    /// An LF not preceded by CR.
    #[error("v1: lone LF at offset {offset} (the line must end with CRLF)")]
    V1LoneLf { offset: usize },
    /// The protocol field is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("v1: protocol field is not TCP4, TCP6 or UNKNOWN")]
    V1BadProtocol,
    /// Two spaces in a row, or a space right before CRLF.
    #[error("v1: field '{field}' is empty (fields are separated by exactly one space)")]
    V1EmptyField { field: &'static str },
    /// The line ended before all four address fields were seen.
    #[error("v1: line ends before field '{field}'")]
    V1MissingField { field: &'static str },
    /// Something follows the destination port.
    #[error("v1: extra field after 'dst port' (exactly four fields follow the protocol)")]
    V1ExtraField,
    /// An address that breaks the IPv4 (TCP4) or RFC 4291 IPv6 (TCP6) text grammar.
    #[error("v1: address field '{field}' {rule}")]
    V1BadAddress {
        field: &'static str,
        rule: &'static str,
    },
    /// An IPv6 address on a TCP4 line or an IPv4 address on a TCP6 line.
    #[error("v1: address field '{field}' is not of the family announced by {protocol}")]
    V1FamilyMismatch {
        field: &'static str,
        protocol: &'static str,
    },
    /// A port that is not a decimal integer 0..=65535 without sign or leading zero.
    #[error("v1: port field '{field}' {rule}")]
    V1BadPort {
        field: &'static str,
        rule: &'static str,
    },

    /// The version nibble of byte 13 is not 2.
    #[error("v2: version nibble is {version:#x}, only 0x2 is valid")]
    V2BadVersion { version: u8 },
    /// The command nibble of byte 13 is neither LOCAL (0) nor PROXY (1).
    #[error("v2: command nibble is {command:#x}, only LOCAL (0x0) and PROXY (0x1) are valid")]
    V2BadCommand { command: u8 },
    /// The family nibble of byte 14 is not UNSPEC, INET, INET6 or UNIX.
    #[error("v2: address family nibble is {family:#x}, only 0x0..=0x3 are valid")]
    V2BadFamily { family: u8 },
    /// The transport nibble of byte 14 is not UNSPEC, STREAM or DGRAM.
    #[error("v2: transport nibble is {transport:#x}, only 0x0..=0x2 are valid")]
    V2BadTransport { transport: u8 },
    /// The length field exceeds [`crate::DecodeOptions::max_v2_len`].
    #[error("v2: length field {len} exceeds the configured cap of {max}")]
    V2TooLong { len: usize, max: usize },
    /// The length field is too small for the announced address block.
    #[error("v2: {family} address block needs {needed} bytes but the length field is {len}")]
    V2ShortAddress {
        family: &'static str,
        needed: usize,
        len: usize,
    },
    /// A TLV (or SSL sub-TLV) declares more bytes than remain in its container.
    #[error("v2: TLV type {kind:#04x} at offset {offset} in the {within} declares {declared} bytes but only {remaining} remain")]
    V2TlvTruncated {
        within: &'static str,
        kind: u8,
        offset: usize,
        declared: usize,
        remaining: usize,
    },
    /// 1 or 2 bytes after the last TLV: too short to be a TLV, yet inside the header.
    #[error("v2: {count} stray byte(s) at offset {offset} after the last TLV in the {within}")]
    V2TlvTrailing {
        within: &'static str,
        offset: usize,
        count: usize,
    },
    /// An SSL TLV shorter than its 5-byte client+verify prefix.
    #[error(
        "v2: SSL TLV at offset {offset} has {len} bytes, at least 5 (client, verify) are required"
    )]
    V2SslTooShort { offset: usize, len: usize },
    /// A text TLV whose value is not valid UTF-8 / US-ASCII as the specification requires.
    #[error("v2: {name} TLV at offset {offset} is not valid {charset}")]
    V2TlvBadText {
        name: &'static str,
        offset: usize,
        charset: &'static str,
    },
    /// A UNIQUE_ID TLV longer than 128 bytes.
    #[error("v2: UNIQUE_ID TLV at offset {offset} has {len} bytes, at most 128 are allowed")]
    V2UniqueIdTooLong { offset: usize, len: usize },
    /// A CRC32C TLV whose value is not exactly 4 bytes.
    #[error("v2: CRC32C TLV at offset {offset} has {len} bytes, exactly 4 are required")]
    V2CrcBadLength { offset: usize, len: usize },
    /// More than one CRC32C TLV: which one covers the header would be ambiguous.
    #[error("v2: second CRC32C TLV at offset {offset}, at most one is allowed")]
    V2CrcDuplicate { offset: usize },
    /// The CRC32C TLV does not match the header.
    #[error("v2: CRC32C mismatch (header says {expected:#010x}, computed {computed:#010x})")]
    V2CrcMismatch { expected: u32, computed: u32 },
}

impl Invalid {
    /// A short stable code for counting failures by kind, e.g. `"v1_bad_port"`.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::NoSignature { .. } => "no_signature",
            Invalid::V1TooLong => "v1_too_long",
            Invalid::V1LoneCr { .. } => "v1_lone_cr",
            Invalid::V1LoneLf { .. } => "v1_lone_lf",
            Invalid::V1BadProtocol => "v1_bad_protocol",
            Invalid::V1EmptyField { .. } => "v1_empty_field",
            Invalid::V1MissingField { .. } => "v1_missing_field",
            Invalid::V1ExtraField => "v1_extra_field",
            Invalid::V1BadAddress { .. } => "v1_bad_address",
            Invalid::V1FamilyMismatch { .. } => "v1_family_mismatch",
            Invalid::V1BadPort { .. } => "v1_bad_port",
            Invalid::V2BadVersion { .. } => "v2_bad_version",
            Invalid::V2BadCommand { .. } => "v2_bad_command",
            Invalid::V2BadFamily { .. } => "v2_bad_family",
            Invalid::V2BadTransport { .. } => "v2_bad_transport",
            Invalid::V2TooLong { .. } => "v2_too_long",
            Invalid::V2ShortAddress { .. } => "v2_short_address",
            Invalid::V2TlvTruncated { .. } => "v2_tlv_truncated",
            Invalid::V2TlvTrailing { .. } => "v2_tlv_trailing",
            Invalid::V2SslTooShort { .. } => "v2_ssl_too_short",
            Invalid::V2TlvBadText { .. } => "v2_tlv_bad_text",
            Invalid::V2UniqueIdTooLong { .. } => "v2_unique_id_too_long",
            Invalid::V2CrcBadLength { .. } => "v2_crc_bad_length",
            Invalid::V2CrcDuplicate { .. } => "v2_crc_duplicate",
            Invalid::V2CrcMismatch { .. } => "v2_crc_mismatch",
        }
    }
}

/// Why an encoder could not write a header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's buffer cannot hold the header; `needed` is the size required so far.
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
    /// The v2 length field (everything after the 16 fixed bytes) would exceed 65535.
    #[error("v2 header too long: {len} bytes after the fixed part, at most 65535")]
    HeaderTooLong { len: usize },
    /// A TLV value longer than its 16-bit length field allows.
    #[error("TLV type {kind:#04x} value of {len} bytes exceeds 65535")]
    ValueTooLong { kind: u8, len: usize },
    /// A TLV that our own decoder would reject (e.g. UNIQUE_ID over 128 bytes, non-UTF-8
    /// AUTHORITY, malformed SSL sub-TLVs); nothing was written.
    #[error("TLV rejected by the decoding rules: {0}")]
    InvalidTlv(Invalid),
    /// The CRC32C TLV is written by `finish(true)`, never by hand.
    #[error("TLV type 0x03 (CRC32C) must be requested through finish(true)")]
    CrcViaFinish,
    /// An address block with an UNSPEC transport, which a strict receiver cannot place.
    #[error("an address family needs a STREAM or DGRAM transport")]
    AddressWithoutTransport,
}
