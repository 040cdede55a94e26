//! PROXY v1 text line: exact-grammar parser and encoder (TCP4, TCP6, UNKNOWN).
//! The parser re-checks the bytes received so far on every call and rejects a line as soon as
//! one byte makes it invalid. No I/O, no allocation; address grammars live in [`text`].

mod text;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use self::text::AddrError;
use crate::error::{EncodeError, Invalid};
use crate::model::{Addresses, Command, Header, Transport, Version};
use crate::tlv::Tlvs;
use crate::{Decoded, V1_MAX_LEN};

/// The v1 signature, including its mandatory space.
pub(crate) const SIGNATURE: &[u8; 6] = b"PROXY ";

const FIELDS: [&str; 4] = ["src address", "dst address", "src port", "dst port"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Tcp4,
    Tcp6,
}

/// Decodes a v1 line; `buf` starts with the full 6-byte [`SIGNATURE`].
pub(crate) fn decode(buf: &[u8]) -> Result<Decoded<'_>, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let term = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let content_end = term.unwrap_or(window.len());
    let crlf = term.and_then(|t| window.get(t..t + 2)) == Some(b"\r\n".as_slice());
    // Field errors come first: they sit at earlier offsets than any bad terminator.
    let parsed = parse_fields(&buf[SIGNATURE.len()..content_end], crlf)?;
    let Some(t) = term else {
        return if buf.len() >= V1_MAX_LEN {
            Err(Invalid::V1TooLong)
        } else {
            Ok(Decoded::Incomplete { needed: None })
        };
    };
    if window[t] == b'\n' {
        return Err(Invalid::V1LoneLf { offset: t });
    }
    match (window.get(t + 1), parsed) {
        (Some(b'\n'), Some((transport, addresses))) => Ok(Decoded::Complete {
            header: Header {
                version: Version::V1,
                command: Command::Proxy,
                transport,
                addresses,
                tlvs: Tlvs::empty(),
            },
            consumed: t + 2,
        }),
        (Some(_), _) => Err(Invalid::V1LoneCr { offset: t }),
        (None, _) if t + 1 >= V1_MAX_LEN => Err(Invalid::V1TooLong),
        (None, _) => Ok(Decoded::Incomplete { needed: None }),
    }
}

/// Checks the text between `PROXY ` and the terminator. `complete` says CRLF follows; if not,
/// the last field may be partial. `Ok(None)` means "valid so far".
fn parse_fields(content: &[u8], complete: bool) -> Result<Option<(Transport, Addresses)>, Invalid> {
    let mut tokens = content.split(|&b| b == b' ').peekable();
    let proto = tokens.next().unwrap_or_default();
    if tokens.peek().is_none() && !complete {
        let known = [b"TCP4".as_slice(), b"TCP6", b"UNKNOWN"];
        if known.iter().any(|k| k.starts_with(proto)) {
            return Ok(None);
        }
        return Err(Invalid::V1BadProtocol);
    }
    let family = match proto {
        b"TCP4" => Family::Tcp4,
        b"TCP6" => Family::Tcp6,
        b"UNKNOWN" if complete => return Ok(Some((Transport::Unspec, Addresses::Unspec))),
        b"UNKNOWN" => return Ok(None),
        _ => return Err(Invalid::V1BadProtocol),
    };
    let mut ips = [None; 2];
    let mut ports = [0u16; 2];
    for (i, field) in FIELDS.iter().copied().enumerate() {
        let Some(tok) = tokens.next() else {
            return Err(Invalid::V1MissingField { field });
        };
        let partial = tokens.peek().is_none() && !complete;
        if tok.is_empty() {
            if partial {
                return Ok(None);
            }
            return Err(Invalid::V1EmptyField { field });
        }
        if i < 2 {
            ips[i] = address(family, field, tok, !partial)?;
        } else {
            match text::port(tok, !partial) {
                Ok(p) => ports[i - 2] = p.unwrap_or(0),
                Err(rule) => return Err(Invalid::V1BadPort { field, rule }),
            }
        }
        if partial {
            return Ok(None);
        }
    }
    if tokens.next().is_some() {
        return Err(Invalid::V1ExtraField);
    }
    let addresses = match ips {
        [Some(IpAddr::V4(s)), Some(IpAddr::V4(d))] => Addresses::Inet {
            src: SocketAddrV4::new(s, ports[0]),
            dst: SocketAddrV4::new(d, ports[1]),
        },
        [Some(IpAddr::V6(s)), Some(IpAddr::V6(d))] => Addresses::Inet6 {
            src: SocketAddrV6::new(s, ports[0], 0, 0),
            dst: SocketAddrV6::new(d, ports[1], 0, 0),
        },
        // Both addresses were parsed complete with the same family above.
        _ => return Err(Invalid::V1MissingField { field: FIELDS[0] }),
    };
    Ok(Some((Transport::Stream, addresses)))
}

fn address(
    family: Family,
    field: &'static str,
    tok: &[u8],
    complete: bool,
) -> Result<Option<IpAddr>, Invalid> {
    let (res, protocol) = match family {
        Family::Tcp4 => (text::ipv4(tok, complete).map(|a| a.map(IpAddr::V4)), "TCP4"),
        Family::Tcp6 => (text::ipv6(tok, complete).map(|a| a.map(IpAddr::V6)), "TCP6"),
    };
    res.map_err(|e| match e {
        AddrError::Rule(rule) => Invalid::V1BadAddress { field, rule },
        AddrError::Family => Invalid::V1FamilyMismatch { field, protocol },
    })
}

/// Writes into a slice without allocating; on overflow keeps counting the needed length.
struct SliceWriter<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl std::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.pos + s.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(s.as_bytes());
        }
        self.pos = end;
        Ok(())
    }
}

impl SliceWriter<'_> {
    fn finish(self) -> Result<usize, EncodeError> {
        if self.pos > self.out.len() {
            return Err(EncodeError::BufferTooSmall {
                needed: self.pos,
                available: self.out.len(),
            });
        }
        Ok(self.pos)
    }
}

/// Writes `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` into `out`, returning its length.
/// Both IPv4 gives TCP4; otherwise TCP6, with an IPv4 side written as `::ffff:a.b.c.d`
/// (as HAProxy does). Scope ids and flow info are not representable and are dropped.
pub fn encode(src: SocketAddr, dst: SocketAddr, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = SliceWriter { out, pos: 0 };
    let r = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => write!(
            w,
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        _ => write!(
            w,
            "PROXY TCP6 {} {} {} {}\r\n",
            as_v6(src.ip()),
            as_v6(dst.ip()),
            src.port(),
            dst.port()
        ),
    };
    debug_assert!(r.is_ok());
    w.finish()
}

/// Writes `PROXY UNKNOWN\r\n` (use the real connection's addresses) into `out`.
pub fn encode_unknown(out: &mut [u8]) -> Result<usize, EncodeError> {
    const LINE: &[u8] = b"PROXY UNKNOWN\r\n";
    match out.get_mut(..LINE.len()) {
        Some(dst) => {
            dst.copy_from_slice(LINE);
            Ok(LINE.len())
        }
        None => Err(EncodeError::BufferTooSmall {
            needed: LINE.len(),
            available: out.len(),
        }),
    }
}

fn as_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
