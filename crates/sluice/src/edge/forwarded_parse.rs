//! Strict, bounded parsers of the forwarding fields a trusted hop sends: `X-Forwarded-For`
//! (a comma list of addresses, each optionally with a port) and RFC 7239 `Forwarded` (the
//! `for=` node of each element, the rest checked for syntax only). Errors, never panics; no
//! policy here (which hop is believed is `forwarded.rs`'s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most elements a list may have (a longer one is refused whole).
pub(crate) const MAX_HOPS: usize = 64;

/// One hop of a list, as far as the client address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// An address, with its port when the hop gave one (0 otherwise).
    Ip(IpAddr, u16),
    /// `unknown`, an obfuscated identifier, a missing `for=` or a malformed entry: no address.
    Other,
}

/// Why a whole field value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// More than [`MAX_HOPS`] elements.
    TooManyHops,
    /// A byte no list may contain (control bytes, non-ASCII outside quoted strings).
    BadByte,
    /// `Forwarded` syntax (RFC 7239 §4): a pair, a token, a quoted string, a repeated
    /// parameter in one element.
    Syntax,
}

/// `X-Forwarded-For`: elements split on `,`, optional whitespace trimmed. An element that is
/// not an address (empty, `unknown`, garbage) is [`Node::Other`]: the caller decides whether
/// it matters (only the ones it walks over do).
pub(crate) fn parse_xff(value: &[u8]) -> Result<Vec<Node>, ParseError> {
    if value
        .iter()
        .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(ParseError::BadByte);
    }
    let mut out = Vec::new();
    for part in value.split(|&b| b == b',') {
        if out.len() == MAX_HOPS {
            return Err(ParseError::TooManyHops);
        }
        out.push(node(trim(part)).unwrap_or(Node::Other));
    }
    Ok(out)
}

/// `Forwarded` (RFC 7239): `1#forwarded-element`, each `[pair] *( ";" [pair] )`, a pair
/// `token "=" ( token / quoted-string )`. Returns each element's `for=` node (Other when it
/// has none or it is `unknown`/obfuscated). Empty list elements are skipped (RFC 9110 §5.6.1).
pub(crate) fn parse_forwarded(value: &[u8]) -> Result<Vec<Node>, ParseError> {
    let mut out = Vec::new();
    let mut p = Cursor { s: value, i: 0 };
    loop {
        p.skip_ows();
        if p.peek() == Some(b',') {
            p.i += 1;
            continue;
        }
        if p.peek().is_none() {
            return Ok(out);
        }
        if out.len() == MAX_HOPS {
            return Err(ParseError::TooManyHops);
        }
        out.push(element(&mut p)?);
        p.skip_ows();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => p.i += 1,
            Some(_) => return Err(ParseError::Syntax),
        }
    }
}

/// One element, up to (not including) the `,` that ends it.
fn element(p: &mut Cursor<'_>) -> Result<Node, ParseError> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut for_node = Node::Other;
    loop {
        p.skip_ows();
        if matches!(p.peek(), Some(b';')) {
            p.i += 1;
            continue;
        }
        if matches!(p.peek(), None | Some(b',')) {
            return Ok(for_node);
        }
        let name = p.token()?.to_ascii_lowercase();
        if p.peek() != Some(b'=') {
            return Err(ParseError::Syntax);
        }
        p.i += 1;
        let value = if p.peek() == Some(b'"') {
            p.quoted()?
        } else {
            p.token()?.to_vec()
        };
        if seen.contains(&name) {
            return Err(ParseError::Syntax);
        }
        if name == b"for" {
            for_node = forwarded_node(&value);
        }
        seen.push(name);
        p.skip_ows();
        match p.peek() {
            None | Some(b',') => return Ok(for_node),
            Some(b';') => p.i += 1,
            Some(_) => return Err(ParseError::Syntax),
        }
    }
}

/// RFC 7239 §6 node: `nodename [ ":" node-port ]`, nodename an IPv4 address, a bracketed
/// IPv6 address, `unknown` or `_obfuscated`. Only addresses give [`Node::Ip`]; an obfuscated
/// port keeps the address with port 0.
fn forwarded_node(v: &[u8]) -> Node {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) => (&v[..=end], &v[end + 1..]),
            None => return Node::Other,
        },
        _ => match v.iter().position(|&b| b == b':') {
            Some(c) => (&v[..c], &v[c..]),
            None => (v, &v[v.len()..]),
        },
    };
    let ip = match host {
        [b'[', inner @ .., b']'] => match ascii(inner).and_then(|s| s.parse::<Ipv6Addr>().ok()) {
            Some(a) => IpAddr::V6(a),
            None => return Node::Other,
        },
        _ => match ascii(host).and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            Some(a) => IpAddr::V4(a),
            None => return Node::Other,
        },
    };
    match port {
        [] => Node::Ip(ip, 0),
        [b':', b'_', rest @ ..] if !rest.is_empty() && rest.iter().all(|&b| obf_char(b)) => {
            Node::Ip(ip, 0)
        }
        [b':', digits @ ..] => match port_number(digits) {
            Some(n) => Node::Ip(ip, n),
            None => Node::Other,
        },
        _ => Node::Other,
    }
}

/// An `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`.
fn node(s: &[u8]) -> Option<Node> {
    let text = ascii(s)?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Node::Ip(ip, 0));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(Node::Ip(IpAddr::V6(ip), 0)),
            _ => Some(Node::Ip(
                IpAddr::V6(ip),
                port_number(after.strip_prefix(':')?.as_bytes())?,
            )),
        };
    }
    let (addr, port) = text.split_once(':')?;
    Some(Node::Ip(
        IpAddr::V4(addr.parse().ok()?),
        port_number(port.as_bytes())?,
    ))
}

/// 1 to 5 digits, at most 65535.
fn port_number(d: &[u8]) -> Option<u16> {
    if d.is_empty() || d.len() > 5 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    ascii(d)?.parse().ok()
}

fn ascii(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok().filter(|t| t.is_ascii())
}

fn obf_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &s[s.len()..];
    };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

/// RFC 9110 tchar.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.i;
        while self.peek().is_some_and(tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(match self.peek() {
                Some(b) if !(0x20..0x7f).contains(&b) => ParseError::BadByte,
                _ => ParseError::Syntax,
            });
        }
        Ok(&self.s[start..self.i])
    }

    /// A quoted-string (RFC 9110 §5.6.4), unescaped.
    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::Syntax),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let b = self.s.get(self.i + 1).copied().ok_or(ParseError::Syntax)?;
                    if !qtext_or_escapable(b) && b != b'"' && b != b'\\' {
                        return Err(ParseError::BadByte);
                    }
                    out.push(b);
                    self.i += 2;
                }
                Some(b) if qtext_or_escapable(b) => {
                    out.push(b);
                    self.i += 1;
                }
                Some(_) => return Err(ParseError::BadByte),
            }
        }
    }
}

/// qdtext (HTAB, SP, VCHAR but `"` and `\`, obs-text).
fn qtext_or_escapable(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\' || b >= 0x80
}

#[cfg(test)]
#[path = "forwarded_parse_tests.rs"]
mod tests;
