//! v2 TLVs: validated once at decode time ([`Tlvs::parse`]), then iterated infallibly with
//! typed access to every registered type and raw access to custom/unknown ones.
//! No CRC checking here (the v2 parser does it) and no encoding (see `V2Encoder`).

use crate::error::Invalid;

/// Registered TLV type codes (`PP2_TYPE_*`, `PP2_SUBTYPE_SSL_*`, `PP2_CLIENT_*`).
pub mod kind {
    pub const ALPN: u8 = 0x01;
    pub const AUTHORITY: u8 = 0x02;
    pub const CRC32C: u8 = 0x03;
    pub const NOOP: u8 = 0x04;
    pub const UNIQUE_ID: u8 = 0x05;
    pub const SSL: u8 = 0x20;
    pub const SSL_VERSION: u8 = 0x21;
    pub const SSL_CN: u8 = 0x22;
    pub const SSL_CIPHER: u8 = 0x23;
    pub const SSL_SIG_ALG: u8 = 0x24;
    pub const SSL_KEY_ALG: u8 = 0x25;
    pub const SSL_GROUP: u8 = 0x26;
    pub const SSL_SIG_SCHEME: u8 = 0x27;
    pub const SSL_CLIENT_CERT: u8 = 0x28;
    pub const NETNS: u8 = 0x30;
    /// First and last type reserved for custom (application-specific) use.
    pub const CUSTOM_MIN: u8 = 0xE0;
    pub const CUSTOM_MAX: u8 = 0xEF;
    /// `client` bits of the SSL TLV.
    pub const CLIENT_SSL: u8 = 0x01;
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    pub const CLIENT_CERT_SESS: u8 = 0x04;
    /// Longest UNIQUE_ID value the specification allows.
    pub const UNIQUE_ID_MAX: usize = 128;
}

/// Walks `type, len_hi, len_lo, value` records; stops at the first malformed one.
#[derive(Clone)]
struct RawIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for RawIter<'a> {
    type Item = (usize, u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&[k, hi, lo], after) = self.rest.split_first_chunk::<3>()?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = after.get(..len)?;
        let at = self.offset;
        self.rest = &after[len..];
        self.offset += 3 + len;
        Some((at, k, value))
    }
}

fn raw(bytes: &[u8]) -> RawIter<'_> {
    RawIter {
        rest: bytes,
        offset: 0,
    }
}

/// Checks that `bytes` is a sequence of whole TLVs; `base` is its offset in the header.
fn check_framing(bytes: &[u8], base: usize, within: &'static str) -> Result<(), Invalid> {
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some(&[k, hi, lo]) = rest.first_chunk::<3>() else {
            return Err(Invalid::V2TlvTrailing {
                within,
                offset: base + pos,
                count: rest.len(),
            });
        };
        let declared = usize::from(u16::from_be_bytes([hi, lo]));
        if declared > rest.len() - 3 {
            return Err(Invalid::V2TlvTruncated {
                within,
                kind: k,
                offset: base + pos,
                declared,
                remaining: rest.len() - 3,
            });
        }
        pos += 3 + declared;
    }
    Ok(())
}

fn check_text(value: &[u8], name: &'static str, offset: usize, ascii: bool) -> Result<(), Invalid> {
    let ok = if ascii {
        value.is_ascii()
    } else {
        std::str::from_utf8(value).is_ok()
    };
    if ok {
        return Ok(());
    }
    let charset = if ascii { "US-ASCII" } else { "UTF-8" };
    Err(Invalid::V2TlvBadText {
        name,
        offset,
        charset,
    })
}

/// The name and charset rule of a text SSL sub-TLV, `None` for binary or unknown kinds.
fn ssl_text_kind(k: u8) -> Option<(&'static str, bool)> {
    Some(match k {
        kind::SSL_VERSION => ("SSL_VERSION", true),
        kind::SSL_CN => ("SSL_CN", false),
        kind::SSL_CIPHER => ("SSL_CIPHER", true),
        kind::SSL_SIG_ALG => ("SSL_SIG_ALG", true),
        kind::SSL_KEY_ALG => ("SSL_KEY_ALG", true),
        kind::SSL_GROUP => ("SSL_GROUP", true),
        kind::SSL_SIG_SCHEME => ("SSL_SIG_SCHEME", true),
        _ => return None,
    })
}

fn as_str(v: &[u8]) -> &str {
    // Validated at parse time; the fallback is unreachable but keeps iteration panic-free.
    std::str::from_utf8(v).unwrap_or_default()
}

/// The TLV area of a v2 header, already validated: iteration never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tlvs<'a> {
    raw: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// No TLVs (v1 headers, LOCAL and unspecified v2 headers).
    pub const fn empty() -> Self {
        Tlvs { raw: &[] }
    }

    /// Validates a TLV area: framing, text and length rules of every registered type, and at
    /// most one CRC32C TLV (whose value is *not* checked here). Offsets in errors are relative
    /// to `raw`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, Invalid> {
        Self::parse_at(raw, 0).map(|(t, _)| t)
    }

    /// Like [`Tlvs::parse`] with errors offset by `base`; also returns the position (within
    /// `raw`) of the CRC32C value, if any.
    pub(crate) fn parse_at(raw: &'a [u8], base: usize) -> Result<(Self, Option<usize>), Invalid> {
        check_framing(raw, base, "header")?;
        let mut crc_at = None;
        for (at, k, v) in self::raw(raw) {
            let offset = base + at;
            match k {
                kind::AUTHORITY => check_text(v, "AUTHORITY", offset, false)?,
                kind::NETNS => check_text(v, "NETNS", offset, true)?,
                kind::CRC32C => {
                    if crc_at.is_some() {
                        return Err(Invalid::V2CrcDuplicate { offset });
                    }
                    if v.len() != 4 {
                        return Err(Invalid::V2CrcBadLength {
                            offset,
                            len: v.len(),
                        });
                    }
                    crc_at = Some(at + 3);
                }
                kind::UNIQUE_ID if v.len() > kind::UNIQUE_ID_MAX => {
                    return Err(Invalid::V2UniqueIdTooLong {
                        offset,
                        len: v.len(),
                    })
                }
                kind::SSL => {
                    if v.len() < 5 {
                        return Err(Invalid::V2SslTooShort {
                            offset,
                            len: v.len(),
                        });
                    }
                    let sub_base = offset + 3 + 5;
                    check_framing(&v[5..], sub_base, "SSL TLV")?;
                    for (sat, sk, sv) in self::raw(&v[5..]) {
                        if let Some((name, ascii)) = ssl_text_kind(sk) {
                            check_text(sv, name, sub_base + sat, ascii)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((Tlvs { raw }, crc_at))
    }

    /// The validated bytes, exactly as on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every TLV in wire order, typed.
    pub fn iter(&self) -> TlvIter<'a> {
        TlvIter {
            inner: raw(self.raw),
        }
    }

    /// The raw value of the first TLV of type `kind`.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        raw(self.raw)
            .find(|&(_, k, _)| k == kind)
            .map(|(_, _, v)| v)
    }

    pub fn alpn(&self) -> Option<&'a [u8]> {
        self.get(kind::ALPN)
    }

    pub fn authority(&self) -> Option<&'a str> {
        self.get(kind::AUTHORITY).map(as_str)
    }

    pub fn crc32c(&self) -> Option<u32> {
        let v = self.get(kind::CRC32C)?;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }

    pub fn unique_id(&self) -> Option<&'a [u8]> {
        self.get(kind::UNIQUE_ID)
    }

    pub fn ssl(&self) -> Option<SslTlv<'a>> {
        self.get(kind::SSL).and_then(SslTlv::from_value)
    }

    pub fn netns(&self) -> Option<&'a str> {
        self.get(kind::NETNS).map(as_str)
    }
}

impl<'a> IntoIterator for &Tlvs<'a> {
    type Item = Tlv<'a>;
    type IntoIter = TlvIter<'a>;
    fn into_iter(self) -> TlvIter<'a> {
        self.iter()
    }
}

/// One TLV, typed by its registered meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlv<'a> {
    Alpn(&'a [u8]),
    Authority(&'a str),
    Crc32c(u32),
    Noop(&'a [u8]),
    UniqueId(&'a [u8]),
    Ssl(SslTlv<'a>),
    /// Network namespace name (US-ASCII).
    Netns(&'a str),
    /// Types 0xE0..=0xEF, reserved for application-specific data.
    Custom {
        kind: u8,
        value: &'a [u8],
    },
    /// Any other type, kept raw.
    Unknown {
        kind: u8,
        value: &'a [u8],
    },
}

/// Iterator over validated TLVs.
#[derive(Clone)]
pub struct TlvIter<'a> {
    inner: RawIter<'a>,
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;
    fn next(&mut self) -> Option<Tlv<'a>> {
        let (_, k, v) = self.inner.next()?;
        Some(match k {
            kind::ALPN => Tlv::Alpn(v),
            kind::AUTHORITY => Tlv::Authority(as_str(v)),
            kind::CRC32C => match <[u8; 4]>::try_from(v) {
                Ok(b) => Tlv::Crc32c(u32::from_be_bytes(b)),
                Err(_) => Tlv::Unknown { kind: k, value: v },
            },
            kind::NOOP => Tlv::Noop(v),
            kind::UNIQUE_ID => Tlv::UniqueId(v),
            kind::SSL => match SslTlv::from_value(v) {
                Some(s) => Tlv::Ssl(s),
                None => Tlv::Unknown { kind: k, value: v },
            },
            kind::NETNS => Tlv::Netns(as_str(v)),
            kind::CUSTOM_MIN..=kind::CUSTOM_MAX => Tlv::Custom { kind: k, value: v },
            _ => Tlv::Unknown { kind: k, value: v },
        })
    }
}

/// The SSL TLV: `client` flags, `verify` result and second-level sub-TLVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslTlv<'a> {
    client: u8,
    verify: u32,
    sub: &'a [u8],
}

impl<'a> SslTlv<'a> {
    fn from_value(v: &'a [u8]) -> Option<Self> {
        let (&[client, a, b, c, d], sub) = v.split_first_chunk::<5>()?;
        Some(SslTlv {
            client,
            verify: u32::from_be_bytes([a, b, c, d]),
            sub,
        })
    }

    /// The raw `client` bit field (`kind::CLIENT_*`).
    pub fn client(&self) -> u8 {
        self.client
    }
    /// The client connected over SSL/TLS (`PP2_CLIENT_SSL`).
    pub fn client_ssl(&self) -> bool {
        self.client & kind::CLIENT_SSL != 0
    }
    /// The client presented a certificate on this connection (`PP2_CLIENT_CERT_CONN`).
    pub fn cert_conn(&self) -> bool {
        self.client & kind::CLIENT_CERT_CONN != 0
    }
    /// The client presented a certificate in this TLS session (`PP2_CLIENT_CERT_SESS`).
    pub fn cert_sess(&self) -> bool {
        self.client & kind::CLIENT_CERT_SESS != 0
    }
    /// The raw `verify` field: 0 when a certificate was presented and verified.
    pub fn verify(&self) -> u32 {
        self.verify
    }
    /// The sub-TLV bytes as on the wire.
    pub fn sub_bytes(&self) -> &'a [u8] {
        self.sub
    }
    /// Sub-TLVs in wire order, typed.
    pub fn iter(&self) -> SslSubIter<'a> {
        SslSubIter {
            inner: raw(self.sub),
        }
    }
    /// Raw value of the first sub-TLV of type `kind`.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        raw(self.sub)
            .find(|&(_, k, _)| k == kind)
            .map(|(_, _, v)| v)
    }
    pub fn version(&self) -> Option<&'a str> {
        self.get(kind::SSL_VERSION).map(as_str)
    }
    pub fn cn(&self) -> Option<&'a str> {
        self.get(kind::SSL_CN).map(as_str)
    }
    pub fn cipher(&self) -> Option<&'a str> {
        self.get(kind::SSL_CIPHER).map(as_str)
    }
    pub fn sig_alg(&self) -> Option<&'a str> {
        self.get(kind::SSL_SIG_ALG).map(as_str)
    }
    pub fn key_alg(&self) -> Option<&'a str> {
        self.get(kind::SSL_KEY_ALG).map(as_str)
    }
    pub fn group(&self) -> Option<&'a str> {
        self.get(kind::SSL_GROUP).map(as_str)
    }
    pub fn sig_scheme(&self) -> Option<&'a str> {
        self.get(kind::SSL_SIG_SCHEME).map(as_str)
    }
    /// DER bytes of the client certificate.
    pub fn client_cert(&self) -> Option<&'a [u8]> {
        self.get(kind::SSL_CLIENT_CERT)
    }
}

/// One second-level TLV of the SSL TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslSubTlv<'a> {
    Version(&'a str),
    Cn(&'a str),
    Cipher(&'a str),
    SigAlg(&'a str),
    KeyAlg(&'a str),
    Group(&'a str),
    SigScheme(&'a str),
    ClientCert(&'a [u8]),
    Other { kind: u8, value: &'a [u8] },
}

/// Iterator over validated SSL sub-TLVs.
#[derive(Clone)]
pub struct SslSubIter<'a> {
    inner: RawIter<'a>,
}

impl<'a> Iterator for SslSubIter<'a> {
    type Item = SslSubTlv<'a>;
    fn next(&mut self) -> Option<SslSubTlv<'a>> {
        let (_, k, v) = self.inner.next()?;
        Some(match k {
            kind::SSL_VERSION => SslSubTlv::Version(as_str(v)),
            kind::SSL_CN => SslSubTlv::Cn(as_str(v)),
            kind::SSL_CIPHER => SslSubTlv::Cipher(as_str(v)),
            kind::SSL_SIG_ALG => SslSubTlv::SigAlg(as_str(v)),
            kind::SSL_KEY_ALG => SslSubTlv::KeyAlg(as_str(v)),
            kind::SSL_GROUP => SslSubTlv::Group(as_str(v)),
            kind::SSL_SIG_SCHEME => SslSubTlv::SigScheme(as_str(v)),
            kind::SSL_CLIENT_CERT => SslSubTlv::ClientCert(v),
            _ => SslSubTlv::Other { kind: k, value: v },
        })
    }
}
