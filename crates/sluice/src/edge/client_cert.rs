//! The client certificate of a finished handshake as the app and the access log see it
//! (`SUCCESS` with DN, serial, SHA-1 and, with `pass_client_cert`, the PEM; or `NONE`); a
//! resumed session carries the one verified in its full handshake. It verifies nothing: a
//! certificate rustls refused never completes a handshake.

use std::sync::Arc;

use rustls::ServerConnection;
use rustls_pki_types::CertificateDer;

use super::client_dn::{rfc2253, serial_hex};
use crate::spec;
use crate::upstream::{CertDetails, ClientCert};

/// What the app and the log learn on a connection of a frontend with `client`; None when
/// the frontend asks for no certificate.
pub(crate) fn identify(
    client: Option<&spec::ClientAuth>,
    conn: &ServerConnection,
) -> Option<Arc<ClientCert>> {
    let auth = client?;
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    let cert = leaf.and_then(|leaf| match details(leaf, auth.pass_cert) {
        Ok(d) => Some(d),
        Err(e) => {
            // rustls accepted it, so this is a parser gap, not a client problem.
            tracing::warn!("client certificate accepted but not readable: {e}");
            None
        }
    });
    Some(Arc::new(ClientCert {
        verify: if leaf.is_some() { "SUCCESS" } else { "NONE" },
        cert,
    }))
}

/// A `$ssl_client_*` log variable: nginx's values (`$ssl_client_verify` is `NONE` on a TLS
/// connection that sent no certificate, as where none is asked for); None on plain HTTP or
/// without a certificate.
pub(crate) fn log_var(v: spec::Var, cert: Option<&ClientCert>, tls: bool) -> Option<&str> {
    let details = cert.and_then(|c| c.cert.as_ref());
    match v {
        spec::Var::SslClientVerify if tls => Some(cert.map_or("NONE", |c| c.verify)),
        spec::Var::SslClientSDn => details.map(|d| d.subject.as_str()),
        spec::Var::SslClientIDn => details.map(|d| d.issuer.as_str()),
        spec::Var::SslClientSerial => details.map(|d| d.serial.as_str()),
        spec::Var::SslClientFingerprint => details.map(|d| d.fingerprint.as_str()),
        _ => None,
    }
}

/// The fields of one certificate.
pub(crate) fn details(der: &CertificateDer<'_>, pass_pem: bool) -> Result<CertDetails, String> {
    let cert = webpki::EndEntityCert::try_from(der).map_err(|e| format!("{e:?}"))?;
    let cert: &webpki::Cert<'_> = &cert;
    Ok(CertDetails {
        subject: rfc2253(cert.subject()).map_err(|e| e.to_string())?,
        issuer: rfc2253(cert.issuer()).map_err(|e| e.to_string())?,
        serial: serial_hex(cert.serial()),
        fingerprint: sha1_hex(der),
        pem: pass_pem.then(|| pem(der)),
    })
}

fn sha1_hex(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificate as PEM, 64 base64 characters a line (nginx's `$ssl_client_raw_cert`).
fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            b64.push(if i <= chunk.len() {
                B64[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn pem_round_trips_and_fields_render() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0xab, 0x01]));
        let cert = params.self_signed(&key).unwrap();
        let d = details(cert.der(), true).unwrap();
        assert_eq!(d.subject, "CN=alice,O=Example\\, Inc.");
        assert_eq!(d.issuer, d.subject);
        assert_eq!(d.serial, "AB01");
        assert_eq!(d.fingerprint.len(), 40);
        let pem = d.pem.unwrap();
        assert_eq!(pem, cert.pem().replace("\r\n", "\n"));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), cert.der().as_ref());
    }
}
