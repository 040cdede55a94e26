//! What the app learns about a TLS client certificate (mTLS), as nginx's `$ssl_client_*`:
//! uwsgi variables `SSL_CLIENT_VERIFY`, `SSL_CLIENT_S_DN`, ... and, for HTTP upstreams,
//! `X-SSL-Client-*` request headers (client-sent copies always removed, for uwsgi apps too,
//! also where no certificate is asked for). It does not read certificates (`edge/client_cert.rs` does).

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The verified identity of one TLS connection whose frontend asks for client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// "SUCCESS" (a certificate chaining to `client_ca` was presented) or "NONE"
    /// (`client_verify = "optional"` and no certificate). A bad certificate never gets here:
    /// the handshake refused it.
    pub verify: &'static str,
    /// The certificate's details; None with "NONE".
    pub cert: Option<CertDetails>,
}

/// A client certificate's fields, rendered as nginx renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDetails {
    /// Subject DN, RFC 2253 (`$ssl_client_s_dn`).
    pub subject: String,
    /// Issuer DN, RFC 2253 (`$ssl_client_i_dn`).
    pub issuer: String,
    /// Serial number, upper-case hex (`$ssl_client_serial`).
    pub serial: String,
    /// SHA-1 of the DER, lower-case hex (`$ssl_client_fingerprint`).
    pub fingerprint: String,
    /// The PEM (`$ssl_client_raw_cert`), only with `pass_client_cert = true`.
    pub pem: Option<String>,
}

/// Request headers an HTTP upstream gets; a client's own copies are always removed.
pub(crate) const HEADERS: [&str; 6] = [
    "x-ssl-client-verify",
    "x-ssl-client-s-dn",
    "x-ssl-client-i-dn",
    "x-ssl-client-serial",
    "x-ssl-client-fingerprint",
    "x-ssl-client-cert",
];

impl ClientCert {
    /// The uwsgi variables, in order.
    pub(crate) fn uwsgi_vars(&self) -> Vec<(&'static [u8], &[u8])> {
        let mut vars: Vec<(&'static [u8], &[u8])> =
            vec![(b"SSL_CLIENT_VERIFY", self.verify.as_bytes())];
        if let Some(c) = &self.cert {
            vars.push((b"SSL_CLIENT_S_DN", c.subject.as_bytes()));
            vars.push((b"SSL_CLIENT_I_DN", c.issuer.as_bytes()));
            vars.push((b"SSL_CLIENT_SERIAL", c.serial.as_bytes()));
            vars.push((b"SSL_CLIENT_FINGERPRINT", c.fingerprint.as_bytes()));
            if let Some(pem) = &c.pem {
                vars.push((b"SSL_CLIENT_CERT", pem.as_bytes()));
            }
        }
        vars
    }
}

/// Removes client-sent `X-SSL-Client-*` headers, then adds the connection's (the PEM
/// URL-encoded, as nginx's `$ssl_client_escaped_cert`).
pub(crate) fn set_headers(headers: &mut HeaderMap, cert: Option<&ClientCert>) {
    // Removing by `&str` parses each name: only when the client sent one of them.
    if headers.keys().any(|n| HEADERS.contains(&n.as_str())) {
        for name in HEADERS {
            headers.remove(name);
        }
    }
    let Some(cert) = cert else { return };
    let mut add = |name: &'static str, value: &str| {
        // Every value is printable ASCII (DNs escape the rest); a failure only skips it.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    add(HEADERS[0], cert.verify);
    if let Some(c) = &cert.cert {
        add(HEADERS[1], &c.subject);
        add(HEADERS[2], &c.issuer);
        add(HEADERS[3], &c.serial);
        add(HEADERS[4], &c.fingerprint);
        if let Some(pem) = &c.pem {
            add(HEADERS[5], &url_escape(pem));
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn url_escape(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success() -> ClientCert {
        ClientCert {
            verify: "SUCCESS",
            cert: Some(CertDetails {
                subject: "CN=alice,O=Example".into(),
                issuer: "CN=Example CA".into(),
                serial: "0A1B".into(),
                fingerprint: "00ff".into(),
                pem: Some("-----BEGIN CERTIFICATE-----\nAB+/=\n-----END CERTIFICATE-----\n".into()),
            }),
        }
    }

    #[test]
    fn client_copies_are_removed_even_without_a_certificate() {
        let mut h = HeaderMap::new();
        h.insert("x-ssl-client-verify", HeaderValue::from_static("SUCCESS"));
        h.insert("x-ssl-client-s-dn", HeaderValue::from_static("CN=admin"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        set_headers(&mut h, None);
        assert_eq!(h.len(), 1);
        let none = ClientCert {
            verify: "NONE",
            cert: None,
        };
        h.insert("x-ssl-client-s-dn", HeaderValue::from_static("CN=admin"));
        set_headers(&mut h, Some(&none));
        assert_eq!(h["x-ssl-client-verify"], "NONE");
        assert!(h.get("x-ssl-client-s-dn").is_none());
    }

    #[test]
    fn headers_and_vars_carry_the_certificate() {
        let mut h = HeaderMap::new();
        set_headers(&mut h, Some(&success()));
        assert_eq!(h["x-ssl-client-s-dn"], "CN=alice,O=Example");
        assert_eq!(h["x-ssl-client-serial"], "0A1B");
        assert_eq!(
            h["x-ssl-client-cert"],
            "-----BEGIN%20CERTIFICATE-----%0AAB%2B%2F%3D%0A-----END%20CERTIFICATE-----%0A"
        );
        let vars = success();
        let names: Vec<&[u8]> = vars.uwsgi_vars().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                &b"SSL_CLIENT_VERIFY"[..],
                b"SSL_CLIENT_S_DN",
                b"SSL_CLIENT_I_DN",
                b"SSL_CLIENT_SERIAL",
                b"SSL_CLIENT_FINGERPRINT",
                b"SSL_CLIENT_CERT"
            ]
        );
    }
}
