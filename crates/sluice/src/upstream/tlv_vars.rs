//! The TLVs of a connection's accepted PROXY v2 header as the app sees them: uwsgi variables
//! `PROXY_PROTOCOL_TLV_<NAME>` (nginx's names, see `spec::TlvName`), configured request
//! headers for HTTP apps and the values of `$proxy_protocol_tlv_NAME`. Values are text:
//! printable ASCII as is, other bytes hex-encoded. Decoding TLVs is `proxy-header`'s job.

use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use proxy_header::tlv::kind;
use proxy_header::{SslSubTlv, Tlv, Tlvs};

use crate::spec::TlvName;

/// Every TLV of one header, first occurrence of each name, in wire order. Cheap to clone;
/// None (no allocation) when there are none, the usual case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTlvs(Option<Arc<[Entry]>>);

/// One TLV by name and its value as text.
type Entry = (TlvName, Box<str>);

/// AWS NLB's custom TLV and the sub-type carrying the VPC endpoint id.
const AWS_TLV: u8 = 0xEA;
const AWS_VPCE_ID: u8 = 0x01;

/// `v` as text: printable ASCII unchanged, anything else as lowercase hex.
fn text(v: &[u8]) -> Box<str> {
    if v.iter().all(|b| (0x20..0x7f).contains(b)) {
        // All ASCII, so valid UTF-8.
        String::from_utf8_lossy(v).into()
    } else {
        v.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into()
    }
}

/// An SSL sub-TLV's type and raw value.
fn ssl_sub(sub: SslSubTlv<'_>) -> (u8, &[u8]) {
    match sub {
        SslSubTlv::Version(v) => (kind::SSL_VERSION, v.as_bytes()),
        SslSubTlv::Cn(v) => (kind::SSL_CN, v.as_bytes()),
        SslSubTlv::Cipher(v) => (kind::SSL_CIPHER, v.as_bytes()),
        SslSubTlv::SigAlg(v) => (kind::SSL_SIG_ALG, v.as_bytes()),
        SslSubTlv::KeyAlg(v) => (kind::SSL_KEY_ALG, v.as_bytes()),
        SslSubTlv::Group(v) => (kind::SSL_GROUP, v.as_bytes()),
        SslSubTlv::SigScheme(v) => (kind::SSL_SIG_SCHEME, v.as_bytes()),
        SslSubTlv::ClientCert(v) => (kind::SSL_CLIENT_CERT, v),
        SslSubTlv::Other { kind, value } => (kind, value),
    }
}

impl ProxyTlvs {
    /// From a header's validated TLV area (`Tlvs::as_bytes`); empty for anything that does
    /// not validate (it was validated on receipt, so never in practice). CRC32C and NOOP are
    /// framing, not facts, and left out.
    pub fn from_raw(raw: &[u8]) -> ProxyTlvs {
        let Ok(tlvs) = Tlvs::parse(raw) else {
            return ProxyTlvs::default();
        };
        if tlvs.is_empty() {
            return ProxyTlvs::default();
        }
        let mut out: Vec<Entry> = Vec::new();
        let mut add = |name: TlvName, value: Box<str>| {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, value));
            }
        };
        for tlv in tlvs.iter() {
            match tlv {
                Tlv::Crc32c(_) | Tlv::Noop(_) => {}
                Tlv::Alpn(v) => add(TlvName::Type(kind::ALPN), text(v)),
                Tlv::Authority(v) => add(TlvName::Type(kind::AUTHORITY), text(v.as_bytes())),
                Tlv::UniqueId(v) => add(TlvName::Type(kind::UNIQUE_ID), text(v)),
                Tlv::Netns(v) => add(TlvName::Type(kind::NETNS), text(v.as_bytes())),
                Tlv::Ssl(ssl) => {
                    add(TlvName::SslVerify, ssl.verify().to_string().into());
                    for sub in ssl.iter() {
                        let (k, v) = ssl_sub(sub);
                        add(TlvName::Ssl(k), text(v));
                    }
                }
                Tlv::Custom { kind, value } | Tlv::Unknown { kind, value } => {
                    if kind == AWS_TLV {
                        if let Some((&AWS_VPCE_ID, id)) = value.split_first() {
                            add(TlvName::AwsVpceId, text(id));
                        }
                    }
                    add(TlvName::Type(kind), text(value));
                }
            }
        }
        ProxyTlvs((!out.is_empty()).then(|| out.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn entries(&self) -> &[Entry] {
        self.0.as_deref().unwrap_or_default()
    }

    /// The value of `name`, None when the header had no such TLV.
    pub fn get(&self, name: TlvName) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| &**v)
    }

    /// (name, value) in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (TlvName, &str)> {
        self.entries().iter().map(|(n, v)| (*n, &**v))
    }

    /// The uwsgi variables: `PROXY_PROTOCOL_TLV_<NAME>` = value.
    pub(crate) fn uwsgi_vars(&self) -> impl Iterator<Item = (String, &str)> {
        self.iter()
            .map(|(n, v)| (format!("PROXY_PROTOCOL_TLV_{}", n.upper()), v))
    }
}

/// `proxy_protocol_tlv_headers` as header names (checked at config load; a name that does
/// not parse is left out).
pub fn tlv_header_names(cfg: &[(TlvName, String)]) -> Arc<[(TlvName, HeaderName)]> {
    cfg.iter()
        .filter_map(|(t, h)| Some((*t, HeaderName::from_bytes(h.as_bytes()).ok()?)))
        .collect()
}

impl ProxyTlvs {
    /// Removes every field named in `names` (a client cannot supply them), then sets each
    /// to its TLV's value when the connection's header had that TLV.
    pub(crate) fn set_headers(&self, headers: &mut HeaderMap, names: &[(TlvName, HeaderName)]) {
        // Typically none configured: nothing to look at per request.
        for (tlv, name) in names {
            headers.remove(name);
            let value = self.get(*tlv).and_then(|v| HeaderValue::from_str(v).ok());
            if let Some(v) = value {
                headers.insert(name.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_header::{Addresses, Command, Transport, V2Encoder};

    fn tlvs(build: impl FnOnce(&mut V2Encoder<'_>)) -> ProxyTlvs {
        let mut buf = [0u8; 512];
        let a = Addresses::from_socket_addrs(
            "127.0.0.2:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut enc = V2Encoder::new(&mut buf, Command::Proxy, Transport::Stream, &a).unwrap();
        build(&mut enc);
        let n = enc.finish(true).unwrap();
        // 16 fixed + 12 INET addresses, then the TLVs.
        ProxyTlvs::from_raw(&buf[28..n])
    }

    #[test]
    fn registered_ssl_and_aws_tlvs_get_nginx_names() {
        let t = tlvs(|e| {
            e.authority("example.com").unwrap();
            e.alpn(b"h2").unwrap();
            e.unique_id(b"abc").unwrap();
            e.ssl(
                1,
                0,
                &[(kind::SSL_VERSION, b"TLSv1.3"), (kind::SSL_CN, b"client")],
            )
            .unwrap();
            e.tlv(0xEA, b"\x01vpce-0123abcd").unwrap();
            e.tlv(0xE1, &[0, 255]).unwrap();
            e.alpn(b"http/1.1").unwrap();
        });
        let vars: Vec<(String, &str)> = t.uwsgi_vars().collect();
        let want = [
            ("PROXY_PROTOCOL_TLV_AUTHORITY", "example.com"),
            ("PROXY_PROTOCOL_TLV_ALPN", "h2"),
            ("PROXY_PROTOCOL_TLV_UNIQUE_ID", "abc"),
            ("PROXY_PROTOCOL_TLV_SSL_VERIFY", "0"),
            ("PROXY_PROTOCOL_TLV_SSL_VERSION", "TLSv1.3"),
            ("PROXY_PROTOCOL_TLV_SSL_CN", "client"),
            ("PROXY_PROTOCOL_TLV_AWS_VPCE_ID", "vpce-0123abcd"),
            ("PROXY_PROTOCOL_TLV_0xEA", "01767063652d3031323361626364"),
            ("PROXY_PROTOCOL_TLV_0xE1", "00ff"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, want);
        assert_eq!(t.get(TlvName::parse("0x02").unwrap()), Some("example.com"));
        assert_eq!(t.get(TlvName::parse("netns").unwrap()), None);
    }

    #[test]
    fn configured_headers_replace_client_copies() {
        let t = tlvs(|e| {
            e.authority("example.com").unwrap();
        });
        let names = tlv_header_names(&[
            (TlvName::Type(kind::AUTHORITY), "x-pp-authority".into()),
            (TlvName::AwsVpceId, "x-amzn-vpce-id".into()),
        ]);
        let mut h = HeaderMap::new();
        h.append("x-pp-authority", "forged".parse().unwrap());
        h.append("x-pp-authority", "forged2".parse().unwrap());
        h.append("x-amzn-vpce-id", "forged".parse().unwrap());
        t.set_headers(&mut h, &names);
        let got: Vec<_> = h.get_all("x-pp-authority").iter().collect();
        assert_eq!(got, ["example.com"]);
        assert_eq!(h.get("x-amzn-vpce-id"), None);
    }

    #[test]
    fn nothing_but_framing_is_empty() {
        assert!(tlvs(|e| {
            e.noop(4).unwrap();
        })
        .is_empty());
        assert!(ProxyTlvs::from_raw(&[0x02, 0, 9, b'x']).is_empty());
    }
}
