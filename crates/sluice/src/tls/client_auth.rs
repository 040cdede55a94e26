//! mTLS for a TLS edge: CA and CRL files into rustls' `WebPkiClientVerifier` plus the
//! `client_verify_depth` limit, and tickets/cached sessions bound to that setting so a session
//! resumes only where its identity was verified under the same CAs, CRLs, mode and depth
//! (nginx: the session id context). It does not read certificates for the app (`edge`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationOptionsBuilder,
};

use super::certs::{read_limited, MAX_PEM_FILE};
use super::TlsError;
use crate::spec;

/// Bytes of the tag that binds tickets and sessions to a client authentication setting.
const CONTEXT_LEN: usize = 16;

/// A loaded client authentication setting: the verifier and the tag of what it trusts.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuth {
    pub(crate) verifier: Arc<dyn ClientCertVerifier>,
    context: [u8; CONTEXT_LEN],
}

/// Loads `cfg`'s CA and CRL files and builds the verifier. Errors name the file.
pub(crate) fn load(
    provider: &Arc<CryptoProvider>,
    cfg: &spec::ClientAuth,
) -> Result<ClientAuth, TlsError> {
    let bad_ca = |what: String| TlsError::Cert {
        path: cfg.ca.clone(),
        what,
    };
    let ca_pem = read_limited(&cfg.ca, MAX_PEM_FILE)?;
    let cas = CertificateDer::pem_slice_iter(&ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_ca(format!("invalid PEM: {e}")))?;
    if cas.is_empty() {
        return Err(bad_ca("no CERTIFICATE block found".into()));
    }
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::with_capacity(cas.len());
    for (i, ca) in cas.iter().enumerate() {
        let anchor = webpki::anchor_from_trusted_cert(ca)
            .map_err(|e| bad_ca(format!("certificate {}: {e:?}", i + 1)))?;
        anchors.push(anchor.to_owned());
        roots
            .add(ca.clone())
            .map_err(|e| bad_ca(format!("certificate {}: {e}", i + 1)))?;
    }
    let mut crls = Vec::new();
    if let Some(path) = &cfg.crl {
        let bad_crl = |what: String| TlsError::Crl {
            path: path.clone(),
            what,
        };
        let pem = read_limited(path, MAX_CRL_FILE)?;
        crls = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_crl(format!("invalid PEM: {e}")))?;
        if crls.is_empty() {
            return Err(bad_crl("no X509 CRL block found".into()));
        }
    }
    let mut owned_crls = Vec::with_capacity(crls.len());
    for (i, crl) in crls.iter().enumerate() {
        let owned = OwnedCertRevocationList::from_der(crl).map_err(|e| TlsError::Crl {
            path: cfg.crl.clone().unwrap_or_default(),
            what: format!("CRL {}: {e:?}", i + 1),
        })?;
        owned_crls.push(CertRevocationList::Owned(owned));
    }
    let context = context_of(cfg, &cas, &crls);
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    if cfg.verify == spec::ClientVerify::Optional {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder
        .build()
        .map_err(|e| bad_ca(format!("cannot build the client verifier: {e}")))?;
    let verifier = Arc::new(DepthLimited {
        inner,
        depth: usize::from(cfg.depth),
        anchors,
        crls: owned_crls,
        provider: provider.clone(),
    });
    Ok(ClientAuth { verifier, context })
}

/// Largest CRL file we read (a CA's CRL with many revoked certificates can be a few MiB).
const MAX_CRL_FILE: u64 = 16 << 20;

/// The tag of a setting: mode, depth and the exact CA and CRL bytes.
fn context_of(
    cfg: &spec::ClientAuth,
    cas: &[CertificateDer<'_>],
    crls: &[CertificateRevocationListDer<'_>],
) -> [u8; CONTEXT_LEN] {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    h.update(b"sluice client auth v1");
    h.update(&[cfg.verify as u8, cfg.depth]);
    for der in cas
        .iter()
        .map(|c| c.as_ref())
        .chain(crls.iter().map(|c| c.as_ref()))
    {
        h.update(&(der.len() as u64).to_be_bytes());
        h.update(der);
    }
    h.update(&(crls.len() as u64).to_be_bytes());
    let mut out = [0u8; CONTEXT_LEN];
    out.copy_from_slice(&h.finish().as_ref()[..CONTEXT_LEN]);
    out
}

impl ClientAuth {
    /// Tickets sealed by `inner` with this setting's tag inside (authenticated with the
    /// rest): a ticket from another setting does not decrypt, so the client gets a full
    /// handshake, as OpenSSL does on a session id context mismatch.
    pub(crate) fn bind_tickets(&self, inner: Arc<dyn ProducesTickets>) -> Arc<dyn ProducesTickets> {
        Arc::new(BoundTickets {
            inner,
            context: self.context,
        })
    }

    /// The session cache with this setting's tag in front of every key.
    pub(crate) fn bind_sessions(
        &self,
        inner: Arc<dyn StoresServerSessions>,
    ) -> Arc<dyn StoresServerSessions> {
        Arc::new(BoundSessions {
            inner,
            context: self.context,
        })
    }
}

#[derive(Debug)]
struct BoundTickets {
    inner: Arc<dyn ProducesTickets>,
    context: [u8; CONTEXT_LEN],
}

impl ProducesTickets for BoundTickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut bound = Vec::with_capacity(CONTEXT_LEN + plain.len());
        bound.extend_from_slice(&self.context);
        bound.extend_from_slice(plain);
        self.inner.encrypt(&bound)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(ticket)?;
        let rest = plain.strip_prefix(&self.context[..])?;
        Some(rest.to_vec())
    }
}

#[derive(Debug)]
struct BoundSessions {
    inner: Arc<dyn StoresServerSessions>,
    context: [u8; CONTEXT_LEN],
}

impl BoundSessions {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        [&self.context[..], key].concat()
    }
}

impl StoresServerSessions for BoundSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(self.key(&key), value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(&self.key(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(&self.key(key))
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// rustls' verifier, then at most `depth` intermediate CAs in the path (nginx
/// `ssl_verify_depth` as OpenSSL counts it). The path is only rebuilt when the client sent
/// more intermediates than allowed: a path never has more than were sent.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn ClientCertVerifier>,
    depth: usize,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    provider: Arc<CryptoProvider>,
}

/// Why a certificate chain deeper than `client_verify_depth` was refused.
#[derive(Debug, thiserror::Error)]
#[error("certificate chain longer than client_verify_depth = {0}")]
struct TooDeep(usize);

impl DepthLimited {
    fn check_depth(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let too_deep = || {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(TooDeep(self.depth)),
            )))
        };
        let cert = EndEntityCert::try_from(end_entity).map_err(|_| too_deep())?;
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| b.with_expiration_policy(ExpirationPolicy::Enforce).build());
        let depth = self.depth;
        let short_enough = |path: &webpki::VerifiedPath<'_>| {
            if path.intermediate_certificates().count() > depth {
                Err(webpki::Error::MaximumPathDepthExceeded)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            revocation,
            Some(&short_enough),
        )
        .map(|_| ())
        .map_err(|_| too_deep())
    }
}

impl ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if intermediates.len() > self.depth {
            self.check_depth(end_entity, intermediates, now)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ServerSessionMemoryCache;

    fn setting(dir: &std::path::Path, cn: &str, verify: spec::ClientVerify) -> ClientAuth {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let ca = p.self_signed(&key).unwrap();
        let path = dir.join(format!("{cn}.pem"));
        std::fs::write(&path, ca.pem()).unwrap();
        let cfg = spec::ClientAuth {
            ca: path.display().to_string(),
            verify,
            depth: 1,
            crl: None,
            pass_cert: false,
        };
        load(&Arc::new(super::super::edge_provider()), &cfg).unwrap()
    }

    #[test]
    fn tickets_and_sessions_open_only_under_the_setting_that_made_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = setting(dir.path(), "a", spec::ClientVerify::Required);
        let a_again = ClientAuth {
            verifier: a.verifier.clone(),
            context: a.context,
        };
        let b = setting(dir.path(), "b", spec::ClientVerify::Required);
        let cfg = |verify, depth| spec::ClientAuth {
            ca: String::new(),
            verify,
            depth,
            crl: None,
            pass_cert: false,
        };
        let cas = [CertificateDer::from(vec![1u8, 2, 3])];
        let tag = |verify, depth| context_of(&cfg(verify, depth), &cas, &[]);
        let required = tag(spec::ClientVerify::Required, 1);
        assert_ne!(required, tag(spec::ClientVerify::Optional, 1), "mode");
        assert_ne!(required, tag(spec::ClientVerify::Required, 2), "depth");
        let crl = [CertificateRevocationListDer::from(vec![4u8])];
        let with_crl = context_of(&cfg(spec::ClientVerify::Required, 1), &cas, &crl);
        assert_ne!(required, with_crl, "CRLs");
        let keys: Arc<dyn ProducesTickets> =
            Arc::new(super::super::Ticketer::random(std::time::Duration::from_secs(3600)).unwrap());
        let ticket = a.bind_tickets(keys.clone()).encrypt(b"session").unwrap();
        assert_eq!(
            a_again
                .bind_tickets(keys.clone())
                .decrypt(&ticket)
                .as_deref(),
            Some(&b"session"[..])
        );
        assert!(b.bind_tickets(keys.clone()).decrypt(&ticket).is_none());
        // The unbound ticketer (a frontend without client auth) opens it, but its plaintext is
        // not a session rustls can use; the reverse direction is the one that matters:
        let plain = keys.encrypt(b"session").unwrap();
        assert!(a.bind_tickets(keys).decrypt(&plain).is_none());

        let cache: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(16);
        assert!(a
            .bind_sessions(cache.clone())
            .put(b"id".to_vec(), b"v".to_vec()));
        assert_eq!(
            a_again.bind_sessions(cache.clone()).get(b"id"),
            Some(b"v".to_vec())
        );
        assert!(b.bind_sessions(cache.clone()).get(b"id").is_none());
        assert!(cache.get(b"id").is_none());
    }
}
