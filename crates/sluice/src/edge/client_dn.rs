//! Renders a certificate's subject/issuer Name as nginx's `$ssl_client_s_dn` (OpenSSL's
//! `XN_FLAG_RFC2253`: RDNs reversed, short names, RFC 2253 and `\XX` escapes, unknown
//! attributes as `OID=#hex`) and a serial as `$ssl_client_serial`. A strict DER walk: malformed
//! input is an error, never a panic. It validates nothing (rustls did).

use std::fmt::Write;

/// Why a Name could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed distinguished name: {0}")]
pub(crate) struct DnError(&'static str);

/// One TLV: its tag, contents, the input after it, and its whole encoded length.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], usize);

/// Reads one TLV (nesting is fixed: SET of SEQUENCE; lengths are bounded by the input).
fn tlv(input: &[u8]) -> Result<Tlv<'_>, DnError> {
    let (&tag, rest) = input.split_first().ok_or(DnError("truncated tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(DnError("multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(DnError("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return Err(DnError("bad length"));
        }
        let (bytes, rest) = rest.split_at(n);
        if bytes[0] == 0 {
            return Err(DnError("non-minimal length"));
        }
        let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        if len < 0x80 {
            return Err(DnError("non-minimal length"));
        }
        (len, rest)
    };
    if rest.len() < len {
        return Err(DnError("truncated value"));
    }
    let (value, rest) = rest.split_at(len);
    let header = input.len() - rest.len() - len;
    Ok((tag, value, rest, header + len))
}

/// One attribute: its name (short name or dotted OID) and its rendered value.
struct Ava {
    set: usize,
    text: String,
}

/// Renders the contents of a Name SEQUENCE (without its own tag and length).
pub(crate) fn rfc2253(name: &[u8]) -> Result<String, DnError> {
    let mut avas = Vec::new();
    let mut rdns = name;
    let mut set = 0;
    while !rdns.is_empty() {
        let (tag, mut members, rest, _) = tlv(rdns)?;
        if tag != 0x31 {
            return Err(DnError("RDN is not a SET"));
        }
        if members.is_empty() {
            return Err(DnError("empty RDN"));
        }
        while !members.is_empty() {
            let (tag, ava, more, _) = tlv(members)?;
            if tag != 0x30 {
                return Err(DnError("attribute is not a SEQUENCE"));
            }
            let (tag, oid, value, _) = tlv(ava)?;
            if tag != 0x06 {
                return Err(DnError("attribute type is not an OID"));
            }
            let (vtag, vbytes, end, whole) = tlv(value)?;
            if !end.is_empty() {
                return Err(DnError("trailing bytes in attribute"));
            }
            let dotted = dotted_oid(oid)?;
            let short = short_name(&dotted);
            let mut text = String::from(short.unwrap_or(&dotted));
            text.push('=');
            match decode_string(vtag, vbytes).filter(|_| short.is_some()) {
                Some(s) => escape_into(&s, &mut text),
                None => hex_into(&value[..whole], &mut text),
            }
            avas.push(Ava { set, text });
            members = more;
        }
        set += 1;
        rdns = rest;
    }
    let mut out = String::new();
    let mut prev: Option<usize> = None;
    for ava in avas.iter().rev() {
        if let Some(p) = prev {
            out.push(if p == ava.set { '+' } else { ',' });
        }
        out.push_str(&ava.text);
        prev = Some(ava.set);
    }
    Ok(out)
}

/// A serial number's DER contents (two's complement) as OpenSSL's `i2a_ASN1_INTEGER`
/// prints it: magnitude bytes in upper-case hex, `-` in front when negative.
pub(crate) fn serial_hex(der: &[u8]) -> String {
    let negative = der.first().is_some_and(|b| b & 0x80 != 0);
    let mut mag: Vec<u8> = if negative {
        // Two's complement negation: invert, add one.
        let mut v: Vec<u8> = der.iter().map(|b| !b).collect();
        for b in v.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
        v
    } else {
        der.to_vec()
    };
    while mag.len() > 1 && mag[0] == 0 {
        mag.remove(0);
    }
    let mut out = String::from(if negative { "-" } else { "" });
    if mag.is_empty() {
        mag.push(0);
    }
    for b in mag {
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn dotted_oid(oid: &[u8]) -> Result<String, DnError> {
    if oid.is_empty() || oid.len() > 64 {
        return Err(DnError("bad OID length"));
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut cur: u64 = 0;
    let mut start = true;
    for &b in oid {
        if start && b == 0x80 {
            return Err(DnError("non-minimal OID arc"));
        }
        start = false;
        if cur > (u64::MAX >> 7) {
            return Err(DnError("OID arc too large"));
        }
        cur = (cur << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(cur);
            cur = 0;
            start = true;
        }
    }
    if !start {
        return Err(DnError("truncated OID"));
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in &arcs[1..] {
        let _ = write!(out, ".{arc}");
    }
    Ok(out)
}

/// OpenSSL's short names for the attributes seen in certificate names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// A string-typed value as Unicode text; None for other types (dumped as hex).
fn decode_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        // UTF8String
        0x0c => std::str::from_utf8(v).ok().map(str::to_string),
        // NumericString, PrintableString, IA5String, VisibleString; T61String as Latin-1
        // (OpenSSL does the same).
        0x12 | 0x13 | 0x16 | 0x1a | 0x14 => Some(v.iter().map(|&b| char::from(b)).collect()),
        // BMPString (UCS-2)
        0x1e if v.len().is_multiple_of(2) => v
            .chunks_exact(2)
            .map(|c| char::from_u32(u32::from(u16::from_be_bytes([c[0], c[1]]))))
            .collect(),
        // UniversalString (UCS-4)
        0x1c if v.len().is_multiple_of(4) => v
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253 escaping as OpenSSL's `ASN1_STRFLGS_RFC2253` over the UTF-8 bytes.
fn escape_into(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// `#` and the whole DER of the value in upper-case hex (OpenSSL's DUMP_DER).
fn hex_into(der: &[u8], out: &mut String) {
    out.push('#');
    for b in der {
        let _ = write!(out, "{b:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subject of `openssl req -subj "/C=DE/O=Jöhn, Inc./CN=leaf+UID=x" -utf8`, whose
    /// `openssl x509 -subject -nameopt RFC2253` is the expected string.
    #[test]
    fn matches_openssl_rfc2253() {
        let ava = |oid: &[u8], tag: u8, v: &[u8]| {
            let mut a = vec![0x06, oid.len() as u8];
            a.extend_from_slice(oid);
            a.extend_from_slice(&[tag, v.len() as u8]);
            a.extend_from_slice(v);
            let mut s = vec![0x30, a.len() as u8];
            s.extend(a);
            s
        };
        let set = |avas: Vec<Vec<u8>>| {
            let body: Vec<u8> = avas.concat();
            let mut s = vec![0x31, body.len() as u8];
            s.extend(body);
            s
        };
        let name = [
            set(vec![ava(&[0x55, 4, 6], 0x13, b"DE")]),
            set(vec![ava(&[0x55, 4, 10], 0x0c, "Jöhn, Inc.".as_bytes())]),
            set(vec![
                ava(&[0x55, 4, 3], 0x0c, b"leaf"),
                ava(
                    &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
                    0x0c,
                    b"x",
                ),
            ]),
        ]
        .concat();
        assert_eq!(
            rfc2253(&name).unwrap(),
            "UID=x+CN=leaf,O=J\\C3\\B6hn\\, Inc.,C=DE"
        );
        let odd = set(vec![ava(&[0x55, 4, 3], 0x0c, b"#a b ")]);
        assert_eq!(rfc2253(&odd).unwrap(), "CN=\\#a b\\ ");
        let unknown = set(vec![ava(&[0x2a, 3], 0x0c, b"v")]);
        assert_eq!(rfc2253(&unknown).unwrap(), "1.2.3=#0C0176");
        assert_eq!(rfc2253(&[]).unwrap(), "");
    }

    #[test]
    fn malformed_names_are_errors() {
        for bad in [
            &[0x31][..],
            &[0x31, 0x00],
            &[0x30, 0x00],
            &[0x31, 0x05, 0x30, 0x03, 0x06, 0x01],
            &[0x31, 0x84, 0, 0, 0, 1],
            &[0x31, 0x81, 0x05, 0, 0, 0, 0, 0],
            &[0x31, 0x06, 0x30, 0x04, 0x06, 0x01, 0x80, 0x00],
        ] {
            assert!(rfc2253(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn serials_print_as_openssl_does() {
        assert_eq!(serial_hex(&[0x04, 0x81, 0x38]), "048138");
        assert_eq!(serial_hex(&[0x00, 0xff]), "FF");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0xff]), "-01");
    }
}
