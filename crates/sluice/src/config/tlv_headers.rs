//! The edge key `proxy_protocol_tlv_headers = { NAME = "Header-Name", .. }`: which PROXY v2
//! TLVs (nginx's names, `spec::TlvName`) an HTTP app gets as request headers. Checks the
//! table and converts it into the spec; the headers themselves are set in `upstream`.

use std::collections::BTreeMap;

use crate::spec::TlvName;

/// Headers sluice sets or owns itself: a TLV must not replace them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "forwarded",
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// (key, message) for each bad entry: an unknown TLV name, a header name that is not a
/// valid field name, reserved, or used twice.
pub(super) fn problems(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (tlv, header) in map {
        if TlvName::parse(tlv).is_none() {
            out.push((
                tlv.clone(),
                format!(
                    "unknown PROXY TLV {tlv:?} (alpn, authority, unique_id, netns, ssl_version, \
                     ssl_cn, ssl_cipher, ssl_sig_alg, ssl_key_alg, ssl_verify, aws_vpce_id, 0xNN, \
                     ssl_0xNN)"
                ),
            ));
        }
        let lower = header.to_ascii_lowercase();
        if !is_token(header) {
            out.push((
                tlv.clone(),
                format!("{header:?} is not a valid header name"),
            ));
        } else if RESERVED.contains(&lower.as_str()) {
            out.push((tlv.clone(), format!("{header:?} is set by sluice itself")));
        } else if seen.contains(&lower) {
            out.push((tlv.clone(), format!("header {header:?} is named twice")));
        }
        seen.push(lower);
    }
    out
}

/// The checked table as (TLV, lowercase header name) pairs.
pub(super) fn convert(map: &BTreeMap<String, String>) -> Vec<(TlvName, String)> {
    map.iter()
        .filter_map(|(t, h)| Some((TlvName::parse(t)?, h.to_ascii_lowercase())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_reserved_and_duplicate_headers_are_named() {
        let map: BTreeMap<String, String> = [
            ("authority", "X-PP-Authority"),
            ("aws_vpce_id", "x-pp-authority"),
            ("sni", "X-Sni"),
            ("alpn", "X Bad"),
            ("unique_id", "X-Real-IP"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let keys: Vec<String> = problems(&map).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["alpn", "aws_vpce_id", "sni", "unique_id"]);
        let ok: BTreeMap<String, String> = [("authority".to_string(), "X-SNI".to_string())].into();
        assert!(problems(&ok).is_empty());
        assert_eq!(convert(&ok), [(TlvName::Type(2), "x-sni".to_string())]);
    }
}
