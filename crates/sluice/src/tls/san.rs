//! A tiny, strict DER walk that pulls the subjectAltName dNSName and iPAddress entries out of
//! an X.509 leaf certificate, so SNI can be matched against them. It does not validate the
//! certificate (signatures, dates, chains): rustls and the client do that. Malformed input is
//! an error, never a panic.

use std::net::IpAddr;

/// Names a certificate is valid for, as found in its subjectAltName extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SanNames {
    /// Lower-cased DNS names; a wildcard is kept as `*.example.com`.
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// Why a certificate's DER could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate DER: {0}")]
pub(super) struct DerError(pub &'static str);

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const INTEGER: u8 = 0x02;
const CTX0_CONSTRUCTED: u8 = 0xa0;
const CTX3_CONSTRUCTED: u8 = 0xa3;
const GN_DNS_NAME: u8 = 0x82;
const GN_IP_ADDRESS: u8 = 0x87;
/// 2.5.29.17 (id-ce-subjectAltName), content octets of the OID.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// One TLV: (tag, contents, rest of input after it).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("truncated tag"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tags are not used in certificates"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError("truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DerError("unsupported length form"));
        }
        if rest.len() < n {
            return Err(DerError("truncated length"));
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        if bytes[0] == 0 {
            return Err(DerError("non-minimal length"));
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err(DerError("non-minimal length"));
        }
        len
    };
    if rest.len() < len {
        return Err(DerError("content runs past the end"));
    }
    let (content, after) = rest.split_at(len);
    Ok((tag, content, after))
}

/// Reads one TLV that must carry `want` as its tag.
fn expect<'a>(
    input: &'a [u8],
    want: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), DerError> {
    let (tag, content, rest) = tlv(input)?;
    if tag != want {
        return Err(DerError(what));
    }
    Ok((content, rest))
}

/// Extracts the subjectAltName DNS names and IP addresses of a DER certificate. A certificate
/// without the extension yields empty lists. Invalid DNS names in the SAN are skipped.
pub(super) fn san_names(cert_der: &[u8]) -> Result<SanNames, DerError> {
    let (cert, trailing) = expect(cert_der, SEQUENCE, "certificate is not a SEQUENCE")?;
    if !trailing.is_empty() {
        return Err(DerError("trailing bytes after certificate"));
    }
    let (tbs, _) = expect(cert, SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let mut rest = tbs;
    // version [0] EXPLICIT is optional.
    if rest.first() == Some(&CTX0_CONSTRUCTED) {
        rest = tlv(rest)?.2;
    }
    rest = expect(rest, INTEGER, "serialNumber is not an INTEGER")?.1;
    for what in [
        "signature",
        "issuer",
        "validity",
        "subject",
        "subjectPublicKeyInfo",
    ] {
        let (tag, _, after) = tlv(rest)?;
        if tag != SEQUENCE {
            return Err(DerError(match what {
                "signature" => "signature algorithm is not a SEQUENCE",
                "issuer" => "issuer is not a SEQUENCE",
                "validity" => "validity is not a SEQUENCE",
                "subject" => "subject is not a SEQUENCE",
                _ => "subjectPublicKeyInfo is not a SEQUENCE",
            }));
        }
        rest = after;
    }
    let mut names = SanNames::default();
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3]: all optional.
    while !rest.is_empty() {
        let (tag, content, after) = tlv(rest)?;
        rest = after;
        if tag == CTX3_CONSTRUCTED {
            let (exts, _) = expect(content, SEQUENCE, "extensions is not a SEQUENCE")?;
            walk_extensions(exts, &mut names)?;
        }
    }
    Ok(names)
}

fn walk_extensions(mut exts: &[u8], names: &mut SanNames) -> Result<(), DerError> {
    while !exts.is_empty() {
        let (ext, after) = expect(exts, SEQUENCE, "extension is not a SEQUENCE")?;
        exts = after;
        let (oid, mut body) = expect(ext, OID, "extension id is not an OID")?;
        if body.first() == Some(&BOOLEAN) {
            body = tlv(body)?.2;
        }
        let (value, _) = expect(body, OCTET_STRING, "extension value is not an OCTET STRING")?;
        if oid == OID_SAN {
            let (general_names, _) = expect(value, SEQUENCE, "subjectAltName is not a SEQUENCE")?;
            walk_general_names(general_names, names)?;
        }
    }
    Ok(())
}

fn walk_general_names(mut gns: &[u8], names: &mut SanNames) -> Result<(), DerError> {
    while !gns.is_empty() {
        let (tag, content, after) = tlv(gns)?;
        gns = after;
        match tag {
            GN_DNS_NAME => {
                if let Some(name) = std::str::from_utf8(content)
                    .ok()
                    .and_then(normalize_pattern)
                {
                    names.dns.push(name);
                }
            }
            GN_IP_ADDRESS => match content.len() {
                4 => {
                    let b: [u8; 4] = content.try_into().map_err(|_| DerError("bad IPv4"))?;
                    names.ips.push(IpAddr::from(b));
                }
                16 => {
                    let b: [u8; 16] = content.try_into().map_err(|_| DerError("bad IPv6"))?;
                    names.ips.push(IpAddr::from(b));
                }
                _ => return Err(DerError("iPAddress is neither 4 nor 16 bytes")),
            },
            _ => {}
        }
    }
    Ok(())
}

/// Lower-cases a host name and strips one trailing dot; `None` unless every label is
/// 1..=63 of `[a-z0-9-_]`. Used for SNI values.
pub(super) fn normalize_host(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then_some(name)
}

/// Like [`normalize_host`], but also accepts a wildcard as the whole leftmost label of a name
/// with at least two more labels (`*.example.com`, not `*.com` or `a*.example.com`).
pub(super) fn normalize_pattern(name: &str) -> Option<String> {
    match name.strip_prefix("*.") {
        Some(base) => {
            let base = normalize_host(base)?;
            base.contains('.').then(|| format!("*.{base}"))
        }
        None => normalize_host(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("::1".parse().unwrap()));
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_dns_and_ip_names() {
        let der = cert_with(&["A.Test", "*.wild.test", "*.com", "bad*.x.test"]);
        let names = san_names(&der).unwrap();
        assert_eq!(names.dns, vec!["a.test", "*.wild.test"]);
        assert_eq!(
            names.ips,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_or_ok_never_a_panic() {
        let der = cert_with(&["a.test"]);
        for cut in 0..der.len() {
            assert!(san_names(&der[..cut]).is_err(), "truncated at {cut} parsed");
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = san_names(&bad);
        }
        assert!(san_names(&[]).is_err());
        assert!(san_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn host_normalization() {
        assert_eq!(
            normalize_host("WWW.Example.COM.").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(normalize_host("a..b"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(
            normalize_pattern("*.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(normalize_pattern("*.*.example.com"), None);
    }
}
