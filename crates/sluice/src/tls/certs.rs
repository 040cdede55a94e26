//! Certificates for the edge: loads PEM chains and keys (ECDSA, RSA, Ed25519) and picks one
//! per handshake by SNI against the leaf's subjectAltName names, wildcards one label deep.
//! No SNI, an IP literal or an unknown name get the first certificate. No OCSP; client
//! certificates are `client_auth.rs`'s.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::san::{normalize_host, san_names};
use super::TlsError;

/// Largest certificate or key file we read (a long chain is a few tens of KiB).
pub(crate) const MAX_PEM_FILE: u64 = 1 << 20;

/// Reads a whole file, refusing anything larger than `limit` bytes.
pub(crate) fn read_limited(path: &str, limit: u64) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let io = |source| TlsError::Io {
        path: path.to_string(),
        source,
    };
    let file = std::fs::File::open(Path::new(path)).map_err(io)?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(TlsError::TooLarge {
            path: path.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// One loaded certificate with the names SNI can select it by.
#[derive(Debug)]
pub(crate) struct LoadedCert {
    pub(crate) cert_path: String,
    pub(crate) dns: Vec<String>,
    pub(crate) key: Arc<CertifiedKey>,
}

/// Loads a PEM chain (leaf first) and its PEM private key, checking that they belong together.
pub(crate) fn load_pair(
    provider: &CryptoProvider,
    cert_path: &str,
    key_path: &str,
) -> Result<LoadedCert, TlsError> {
    let bad_cert = |what: String| TlsError::Cert {
        path: cert_path.to_string(),
        what,
    };
    let pem = read_limited(cert_path, MAX_PEM_FILE)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("invalid PEM: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad_cert("no CERTIFICATE block found".into()))?;
    let names = san_names(leaf).map_err(|e| bad_cert(e.to_string()))?;

    let bad_key = |what: String| TlsError::Key {
        path: key_path.to_string(),
        what,
    };
    let pem = read_limited(key_path, MAX_PEM_FILE)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            bad_key("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found".into())
        }
        e => bad_key(format!("invalid PEM: {e}")),
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        bad_key(format!(
            "unsupported or invalid key (ECDSA, RSA, Ed25519): {e}"
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_string(),
        key: key_path.to_string(),
        what: match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "its public key is not the certificate's (nginx: key values mismatch)".into()
            }
            e => e.to_string(),
        },
    })?;
    Ok(LoadedCert {
        cert_path: cert_path.to_string(),
        dns: names.dns,
        key: Arc::new(certified),
    })
}

/// Picks a certificate by SNI. Exact names beat wildcards; on ties the earlier certificate
/// in the configuration wins.
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    /// `example.com` for a `*.example.com` SAN.
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    /// `certs[0]` is the default. Every other certificate must carry at least one DNS name,
    /// or SNI could never select it.
    pub(crate) fn new(certs: Vec<LoadedCert>) -> Result<SniResolver, TlsError> {
        if certs.is_empty() {
            return Err(TlsError::Config("no certificate configured".into()));
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            if i > 0 && c.dns.is_empty() {
                return Err(TlsError::Cert {
                    path: c.cert_path.clone(),
                    what: "no DNS names in subjectAltName, so SNI can never select it".into(),
                });
            }
            for name in &c.dns {
                match name.strip_prefix("*.") {
                    Some(base) => wildcard.entry(base.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Ok(SniResolver {
            certs,
            exact,
            wildcard,
        })
    }

    /// The certificate for this SNI value (`None`: no SNI or an IP literal).
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let idx = sni.and_then(normalize_host).and_then(|host| {
            self.exact.get(&host).copied().or_else(|| {
                let (_, parent) = host.split_once('.')?;
                self.wildcard.get(parent).copied()
            })
        });
        &self.certs[idx.unwrap_or(0)].key
    }

    /// Paths of the loaded certificates, in configuration order.
    pub fn cert_paths(&self) -> impl Iterator<Item = &str> {
        self.certs.iter().map(|c| c.cert_path.as_str())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(client_hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, file: &str, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = dir.join(format!("{file}.crt"));
        let k = dir.join(format!("{file}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.to_str().unwrap().into(), k.to_str().unwrap().into())
    }

    #[test]
    fn exact_beats_wildcard_and_wildcard_is_one_label() {
        let dir = tempfile::tempdir().unwrap();
        let p = rustls::crypto::aws_lc_rs::default_provider();
        let load = |f: &str, n: &[&str]| {
            let (c, k) = pair(dir.path(), f, n);
            load_pair(&p, &c, &k).unwrap()
        };
        let r = SniResolver::new(vec![
            load("d", &["default.test"]),
            load("w", &["*.example.test"]),
            load("e", &["www.example.test"]),
        ])
        .unwrap();
        let which = |sni: Option<&str>| {
            let k = r.select(sni);
            r.certs.iter().position(|c| Arc::ptr_eq(&c.key, k)).unwrap()
        };
        assert_eq!(which(Some("www.example.test")), 2);
        assert_eq!(which(Some("WWW.EXAMPLE.TEST.")), 2);
        assert_eq!(which(Some("api.example.test")), 1);
        assert_eq!(which(Some("a.b.example.test")), 0);
        assert_eq!(which(Some("example.test")), 0);
        assert_eq!(which(Some("127.0.0.1")), 0);
        assert_eq!(which(Some("")), 0);
        assert_eq!(which(None), 0);
    }
}
