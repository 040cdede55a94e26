//! Prefix-checking grammars for the v1 address and port fields: IPv4 dotted quad without
//! leading zeros, RFC 4291 IPv6 text (no zone id), decimal ports. Written by hand because
//! std's parsers are not the contract. Each check also runs on a partial field (early reject).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an address field failed: a grammar rule, or the other family's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrError {
    Rule(&'static str),
    Family,
}

/// Checks `s` as an IPv4 address. With `complete == false`, `s` may be a prefix and
/// `Ok(None)` means "valid so far"; with `complete == true` a full address is required.
pub(crate) fn ipv4(s: &[u8], complete: bool) -> Result<Option<Ipv4Addr>, AddrError> {
    let mut octets = [0u8; 4];
    let mut idx = 0usize;
    let mut val = 0u32;
    let mut digits = 0usize;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                if digits == 1 && val == 0 {
                    return Err(AddrError::Rule("has an octet with a leading zero"));
                }
                val = val * 10 + u32::from(b - b'0');
                digits += 1;
                if val > 255 {
                    return Err(AddrError::Rule("has an octet above 255"));
                }
            }
            b'.' => {
                if digits == 0 {
                    return Err(AddrError::Rule("has an empty octet"));
                }
                if idx == 3 {
                    return Err(AddrError::Rule("has more than 4 octets"));
                }
                octets[idx] = val as u8;
                idx += 1;
                val = 0;
                digits = 0;
            }
            b':' => return Err(AddrError::Family),
            _ => {
                return Err(AddrError::Rule(
                    "has a byte that is not a decimal digit or '.'",
                ))
            }
        }
    }
    if !complete {
        return Ok(None);
    }
    if digits == 0 {
        return Err(AddrError::Rule("has an empty octet"));
    }
    if idx != 3 {
        return Err(AddrError::Rule("has fewer than 4 octets"));
    }
    octets[3] = val as u8;
    Ok(Some(Ipv4Addr::from(octets)))
}

fn hex_val(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u32::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Checks `s` as an RFC 4291 section 2.2 IPv6 text address: 1-4 hex digits per group, at
/// most one `::`, optional trailing dotted IPv4 (`::ffff:1.2.3.4`), exactly 128 bits.
/// Same prefix contract as [`ipv4`].
pub(crate) fn ipv6(s: &[u8], complete: bool) -> Result<Option<Ipv6Addr>, AddrError> {
    let mut groups = [0u16; 8];
    let mut n = 0usize;
    let mut gap: Option<usize> = None;
    let mut digits = 0usize;
    let mut val = 0u32;
    let mut tok_start = 0usize;
    let mut run = 0u8; // consecutive ':' just seen
    const TOO_MANY: AddrError = AddrError::Rule("has more than 8 groups");
    for (i, &b) in s.iter().enumerate() {
        if let Some(h) = hex_val(b) {
            if run == 1 && n == 0 && gap.is_none() {
                return Err(AddrError::Rule("starts with a single ':'"));
            }
            if digits == 0 {
                tok_start = i;
            }
            digits += 1;
            if digits > 4 {
                return Err(AddrError::Rule("has a group of more than 4 hex digits"));
            }
            val = val * 16 + h;
            run = 0;
            continue;
        }
        match b {
            b':' => {
                if digits > 0 {
                    groups[n] = val as u16;
                    n += 1;
                    digits = 0;
                    val = 0;
                    run = 1;
                    // Another group must follow this ':' (or it starts the '::').
                    let room = if gap.is_some() { 6 } else { 7 };
                    if n > room {
                        return Err(TOO_MANY);
                    }
                } else if run == 0 {
                    run = 1; // leading ':' of a leading '::'
                } else if run == 1 {
                    if gap.is_some() {
                        return Err(AddrError::Rule("has more than one '::'"));
                    }
                    gap = Some(n);
                    run = 2;
                } else {
                    return Err(AddrError::Rule("has ':::'"));
                }
            }
            b'.' => {
                if digits == 0 {
                    return Err(AddrError::Rule("has an empty octet"));
                }
                if n == 0 && gap.is_none() {
                    return Err(AddrError::Family);
                }
                let max = if gap.is_some() { 7 } else { 8 };
                if n + 2 > max {
                    return Err(TOO_MANY);
                }
                let v4 = match ipv4(&s[tok_start..], complete) {
                    Ok(v4) => v4,
                    Err(AddrError::Family) => {
                        return Err(AddrError::Rule("has ':' after an embedded IPv4 address"))
                    }
                    Err(AddrError::Rule(_)) => {
                        return Err(AddrError::Rule("has an invalid embedded IPv4 address"))
                    }
                };
                let Some(v4) = v4 else { return Ok(None) };
                let o = v4.octets();
                groups[n] = u16::from_be_bytes([o[0], o[1]]);
                groups[n + 1] = u16::from_be_bytes([o[2], o[3]]);
                return Ok(Some(expand(groups, n + 2, gap)));
            }
            b'%' => return Err(AddrError::Rule("has a zone id ('%'), which is not allowed")),
            _ => {
                return Err(AddrError::Rule(
                    "has a byte that is not a hex digit, ':' or '.'",
                ))
            }
        }
    }
    if !complete {
        return Ok(None);
    }
    if s.is_empty() {
        return Err(AddrError::Rule("is empty"));
    }
    if digits > 0 {
        let max = if gap.is_some() { 7 } else { 8 };
        if n + 1 > max {
            return Err(TOO_MANY);
        }
        groups[n] = val as u16;
        n += 1;
    } else if run == 1 {
        return Err(AddrError::Rule("ends with a single ':'"));
    }
    if gap.is_none() && n != 8 {
        return Err(AddrError::Rule("has fewer than 8 groups and no '::'"));
    }
    Ok(Some(expand(groups, n, gap)))
}

/// Places the explicit groups around the `::` gap (if any) into a full address.
fn expand(groups: [u16; 8], n: usize, gap: Option<usize>) -> Ipv6Addr {
    let mut full = [0u16; 8];
    match gap {
        None => full = groups,
        Some(g) => {
            let tail = n - g;
            full[..g].copy_from_slice(&groups[..g]);
            full[8 - tail..].copy_from_slice(&groups[g..n]);
        }
    }
    Ipv6Addr::from(full)
}

/// Checks `s` as a decimal port 0..=65535 without sign or leading zero (prefix contract).
pub(crate) fn port(s: &[u8], complete: bool) -> Result<Option<u16>, &'static str> {
    let mut val = 0u32;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                if i == 1 && s[0] == b'0' {
                    return Err("has a leading zero");
                }
                val = val * 10 + u32::from(b - b'0');
                if val > 65535 {
                    return Err("exceeds 65535");
                }
            }
            b'+' | b'-' => return Err("has a sign"),
            _ => return Err("has a byte that is not a decimal digit"),
        }
    }
    if !complete {
        return Ok(None);
    }
    if s.is_empty() {
        return Err("is empty");
    }
    Ok(Some(val as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Result<Option<Ipv6Addr>, AddrError> {
        ipv6(s.as_bytes(), true)
    }

    #[test]
    fn ipv6_accepts_rfc4291_forms() {
        for s in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "fe80::1",
            "FFFF:ffff::abcd",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1::5:6:1.2.3.4",
            "2001:db8:0:0:1:0:0:1",
        ] {
            let want: Ipv6Addr = s.parse().unwrap();
            assert_eq!(v6(s), Ok(Some(want)), "{s}");
        }
    }

    #[test]
    fn ipv6_rejects_what_rfc4291_forbids() {
        for s in [
            "",
            ":",
            ":1",
            "1:",
            ":::",
            "1:::2",
            "1::2::3",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "12345::",
            "fe80::1%eth0",
            "1.2.3.4",
            "::ffff:01.2.3.4",
            "::ffff:1.2.3",
            "::ffff:1.2.3.4:5",
            "1:2:3:4:5:6:7:1.2.3.4",
            "g::",
            "::ffff:1.2.3.256",
        ] {
            assert!(v6(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn prefixes_of_valid_forms_stay_open() {
        for s in ["1:2:3:4:5:6:7::", "::ffff:1.2.3.4", "fe80::1"] {
            for i in 0..s.len() {
                assert_eq!(ipv6(&s.as_bytes()[..i], false), Ok(None), "{s} at {i}");
            }
        }
        for i in 0..15 {
            assert_eq!(ipv4(&b"255.255.255.255"[..i], false), Ok(None));
        }
    }

    #[test]
    fn ipv4_and_port_rules() {
        assert_eq!(ipv4(b"0.0.0.0", true), Ok(Some(Ipv4Addr::UNSPECIFIED)));
        assert!(ipv4(b"01.0.0.0", false).is_err());
        assert!(ipv4(b"1.2.3.4.", false).is_err());
        assert_eq!(ipv4(b"::1", false), Err(AddrError::Family));
        assert_eq!(port(b"0", true), Ok(Some(0)));
        assert_eq!(port(b"65535", true), Ok(Some(65535)));
        assert_eq!(port(b"65536", false), Err("exceeds 65535"));
        assert_eq!(port(b"08", false), Err("has a leading zero"));
        assert_eq!(port(b"+8", false), Err("has a sign"));
    }
}
