//! A minimal DNS stub client for A/AAAA look-ups over UDP (RFC 1035): builds one query,
//! parses the answer strictly (id, flags, question echo, bounded name decompression, CNAME
//! chain) and never panics on input. It does not cache, retry over TCP (a truncated answer
//! is an error), do EDNS, DNSSEC or search domains: names are looked up as given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Record type A.
pub(crate) const TYPE_A: u16 = 1;
/// Record type AAAA.
pub(crate) const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
/// Largest answer read (classic UDP limit is 512; leave room for servers that send more).
pub(crate) const MAX_RESPONSE: usize = 4096;
/// Compression pointers followed while decoding one name.
const MAX_POINTERS: usize = 16;
/// Records of a section examined at most.
const MAX_RECORDS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DnsError {
    #[error("invalid name {0:?}")]
    BadName(String),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("answer does not match the query: {0}")]
    Mismatch(&'static str),
    #[error("answer truncated (TC bit); DNS over TCP is not supported")]
    Truncated,
    #[error("no such name (NXDOMAIN)")]
    NxDomain,
    #[error("server answered rcode {0}")]
    Rcode(u8),
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("{0}")]
    Io(String),
}

/// Builds a recursive query for `name` (dots, optional trailing dot) and `qtype`.
pub(crate) fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    encode_name(name, &mut q)?;
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    let bad = || DnsError::BadName(name.to_string());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(bad());
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DnsError::Malformed("short message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Decodes the (possibly compressed) name at the cursor, lower-cased, without the
    /// trailing dot; the cursor moves past the name's bytes in place.
    fn name(&mut self) -> Result<String, DnsError> {
        let (name, next) = decode_name(self.buf, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Returns the name at `start` and the offset after it (after the first pointer, if any).
fn decode_name(buf: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    let mut after = None;
    let mut pointers = 0;
    loop {
        let len = *buf
            .get(pos)
            .ok_or(DnsError::Malformed("name past the end"))? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => {
                return Ok((out, after.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = buf
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(DnsError::Malformed("label past the end"))?;
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    if !b.is_ascii_graphic() || b == b'.' {
                        return Err(DnsError::Malformed("unprintable byte in a name"));
                    }
                    out.push(b.to_ascii_lowercase() as char);
                }
                if out.len() > 253 {
                    return Err(DnsError::Malformed("name longer than 253 bytes"));
                }
                pos += 1 + len;
            }
            0xC0 => {
                let low = *buf.get(pos + 1).ok_or(DnsError::Malformed("cut pointer"))?;
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DnsError::Malformed("compression pointer loop"));
                }
                after.get_or_insert(pos + 2);
                let target = ((len & 0x3F) << 8) | low as usize;
                if target >= pos {
                    return Err(DnsError::Malformed("compression pointer forward"));
                }
                pos = target;
            }
            _ => return Err(DnsError::Malformed("reserved label type")),
        }
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Parses the answer to `build_query(id, name, qtype)`: the addresses of `qtype` owned by
/// `name` or by a name its CNAME chain (in this answer) leads to. An empty list means the
/// name exists without such records.
pub(crate) fn parse_response(
    buf: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<Vec<IpAddr>, DnsError> {
    let mut r = Reader { buf, pos: 0 };
    if r.u16()? != id {
        return Err(DnsError::Mismatch("id"));
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Mismatch("not a response"));
    }
    if (flags >> 11) & 0xF != 0 {
        return Err(DnsError::Mismatch("opcode"));
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0xF) as u8 {
        0 => {}
        3 => return Err(DnsError::NxDomain),
        rc => return Err(DnsError::Rcode(rc)),
    }
    let (qd, an) = (r.u16()?, r.u16()?);
    let _ = (r.u16()?, r.u16()?); // authority and additional: not read
    if qd != 1 {
        return Err(DnsError::Mismatch("question count"));
    }
    let want = normalize(name);
    if r.name()? != want {
        return Err(DnsError::Mismatch("question name"));
    }
    if r.u16()? != qtype || r.u16()? != CLASS_IN {
        return Err(DnsError::Mismatch("question type or class"));
    }
    if an as usize > MAX_RECORDS {
        return Err(DnsError::Malformed("too many answers"));
    }
    let mut owners = vec![want];
    let mut found = Vec::new();
    for _ in 0..an {
        let owner = r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        let _ttl = r.u32()?;
        let len = r.u16()? as usize;
        let rdata_at = r.pos;
        let rdata = r.take(len)?;
        if class != CLASS_IN || !owners.contains(&owner) {
            continue;
        }
        match rtype {
            TYPE_A if qtype == TYPE_A => {
                let b: [u8; 4] = rdata
                    .try_into()
                    .map_err(|_| DnsError::Malformed("A record not 4 bytes"))?;
                found.push(IpAddr::V4(Ipv4Addr::from(b)));
            }
            TYPE_AAAA if qtype == TYPE_AAAA => {
                let b: [u8; 16] = rdata
                    .try_into()
                    .map_err(|_| DnsError::Malformed("AAAA record not 16 bytes"))?;
                found.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            TYPE_CNAME => {
                let (target, end) = decode_name(buf, rdata_at)?;
                if end != rdata_at + len {
                    return Err(DnsError::Malformed("CNAME length"));
                }
                if owners.len() < MAX_POINTERS {
                    owners.push(target);
                }
            }
            _ => {}
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Asks `server` for the `qtype` records of `name`, waiting at most `timeout`. Answers from
/// other addresses or with another id are ignored (a few at most) until the deadline.
pub(crate) async fn query(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(format!("{server}: {e}"));
    let id: u16 = rand::random();
    let q = build_query(id, name, qtype)?;
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(&q).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_RESPONSE];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = DnsError::Timeout(server, timeout);
    for _ in 0..8 {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(last),
            Ok(r) => r.map_err(io)?,
        };
        match parse_response(&buf[..n], id, name, qtype) {
            Err(DnsError::Mismatch(why)) => last = DnsError::Mismatch(why),
            other => return other,
        }
    }
    Err(last)
}

/// A and AAAA of `name` from the first of `servers` that answers; an error when none gives
/// an address (NXDOMAIN, an empty answer, timeouts).
pub(crate) async fn lookup(
    servers: &[SocketAddr],
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsError> {
    let mut last = DnsError::Io("no resolvers configured".into());
    for &s in servers {
        let a = query(s, name, TYPE_A, timeout).await;
        let aaaa = query(s, name, TYPE_AAAA, timeout).await;
        match (a, aaaa) {
            (Ok(mut v4), Ok(v6)) => {
                v4.extend(v6);
                if !v4.is_empty() {
                    return Ok(v4);
                }
                last = DnsError::Io(format!("{s}: {name} has no A or AAAA records"));
            }
            (Ok(v), Err(_)) | (Err(_), Ok(v)) if !v.is_empty() => return Ok(v),
            (Err(e), _) => last = e,
            (Ok(_), Err(e)) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
