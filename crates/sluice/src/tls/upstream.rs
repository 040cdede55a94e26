//! TLS clients towards servers: the rustls `ClientConfig` of a gRPC backend's `[backend.tls]`
//! (nginx `grpc_ssl_verify` with `grpc_ssl_trusted_certificate`, or no verification as
//! nginx's default; ALPN h2; SNI only with `server_name`), and the no-verification client
//! the health checks use. No sockets or handshakes here.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::certs::{read_limited, MAX_PEM_FILE};
use super::TlsError;
use crate::spec;

/// The client config of `cfg`: verifying against its CA file, or not at all.
pub fn upstream_client(cfg: &spec::UpstreamTls) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match (&cfg.trusted_certificate, cfg.verify) {
        (Some(path), true) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        (None, true) => {
            return Err(TlsError::Config(
                "verify = true needs trusted_certificate".into(),
            ))
        }
        (_, false) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.enable_sni = cfg.server_name;
    Ok(Arc::new(config))
}

/// The CAs of a PEM file.
fn roots(path: &str) -> Result<RootCertStore, TlsError> {
    let bad = |what: String| TlsError::Cert {
        path: path.to_string(),
        what,
    };
    let pem = read_limited(path, MAX_PEM_FILE)?;
    let cas = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if cas.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(roots)
}

/// A rustls client that skips certificate verification (haproxy `check-ssl verify none`,
/// nginx `grpc_ssl_verify off`) but still checks the handshake signatures with aws-lc-rs.
pub(crate) fn no_verify_client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions");
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
