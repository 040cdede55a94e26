//! Names of PROXY v2 TLVs as nginx spells them (`$proxy_protocol_tlv_NAME`): `alpn`,
//! `authority`, `unique_id`, `netns`, `ssl_version`.., `ssl_verify`, `aws_vpce_id`, `0xNN` and
//! `ssl_0xNN` for the rest. Parses and prints names only; reading TLVs is `upstream/tlv_vars.rs`.

/// One TLV an app or a log line can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvName {
    /// A top-level TLV by its type (ALPN 0x01, AUTHORITY 0x02, UNIQUE_ID 0x05, NETNS 0x30..).
    Type(u8),
    /// A sub-TLV of the SSL TLV (0x20) by its type (SSL_VERSION 0x21, SSL_CN 0x22..).
    Ssl(u8),
    /// The SSL TLV's `verify` field (0: the client certificate was verified).
    SslVerify,
    /// AWS's custom TLV 0xEA with sub-type 0x01: the VPC endpoint id.
    AwsVpceId,
}

const TYPES: &[(&str, u8)] = &[
    ("alpn", 0x01),
    ("authority", 0x02),
    ("unique_id", 0x05),
    ("netns", 0x30),
];

const SSL_TYPES: &[(&str, u8)] = &[
    ("version", 0x21),
    ("cn", 0x22),
    ("cipher", 0x23),
    ("sig_alg", 0x24),
    ("key_alg", 0x25),
    ("group", 0x26),
    ("sig_scheme", 0x27),
];

fn hex_byte(s: &str) -> Option<u8> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (h.len() == 2).then(|| u8::from_str_radix(h, 16).ok())?
}

impl TlvName {
    /// The part after `proxy_protocol_tlv_` (nginx's rules: a type name or `0x` and two hex
    /// digits; SSL sub-TLVs with `ssl_` in front; case-insensitive).
    pub fn parse(name: &str) -> Option<TlvName> {
        let name = name.to_ascii_lowercase();
        if name == "aws_vpce_id" {
            return Some(TlvName::AwsVpceId);
        }
        if let Some(sub) = name.strip_prefix("ssl_") {
            if sub == "verify" {
                return Some(TlvName::SslVerify);
            }
            let k = SSL_TYPES
                .iter()
                .find(|t| t.0 == sub)
                .map(|t| t.1)
                .or_else(|| hex_byte(sub))?;
            return Some(TlvName::Ssl(k));
        }
        let k = TYPES
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.1)
            .or_else(|| hex_byte(&name))?;
        Some(TlvName::Type(k))
    }

    /// The uwsgi variable suffix: `ALPN`, `SSL_CN`, `AWS_VPCE_ID`, `0xEA`, `SSL_0x28`.
    pub fn upper(self) -> String {
        let named = |table: &[(&str, u8)], k: u8| {
            table
                .iter()
                .find(|t| t.1 == k)
                .map_or_else(|| format!("0x{k:02X}"), |t| t.0.to_ascii_uppercase())
        };
        match self {
            TlvName::Type(k) => named(TYPES, k),
            TlvName::Ssl(k) => format!("SSL_{}", named(SSL_TYPES, k)),
            TlvName::SslVerify => "SSL_VERIFY".into(),
            TlvName::AwsVpceId => "AWS_VPCE_ID".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_names_and_numbers_parse_to_one_name() {
        assert_eq!(TlvName::parse("alpn"), Some(TlvName::Type(1)));
        assert_eq!(TlvName::parse("0x01"), Some(TlvName::Type(1)));
        assert_eq!(TlvName::parse("0xEA"), Some(TlvName::Type(0xEA)));
        assert_eq!(TlvName::parse("ssl_cn"), Some(TlvName::Ssl(0x22)));
        assert_eq!(TlvName::parse("ssl_0x22"), Some(TlvName::Ssl(0x22)));
        assert_eq!(TlvName::parse("SSL_VERIFY"), Some(TlvName::SslVerify));
        assert_eq!(TlvName::parse("aws_vpce_id"), Some(TlvName::AwsVpceId));
        for bad in ["", "0x", "0x1", "0x123", "0xzz", "ssl_", "sni", "ssl_nope"] {
            assert_eq!(TlvName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn upper_names_are_the_uwsgi_suffixes() {
        assert_eq!(TlvName::Type(2).upper(), "AUTHORITY");
        assert_eq!(TlvName::Type(0xea).upper(), "0xEA");
        assert_eq!(TlvName::Ssl(0x21).upper(), "SSL_VERSION");
        assert_eq!(TlvName::Ssl(0x28).upper(), "SSL_0x28");
        assert_eq!(TlvName::AwsVpceId.upper(), "AWS_VPCE_ID");
    }
}
