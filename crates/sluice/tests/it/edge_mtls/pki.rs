//! A throwaway PKI for the mTLS tests (rcgen): a CA, intermediates, client certificates with
//! names OpenSSL must escape, CRLs; each written to PEM files. No assertions here.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

use crate::support::write_file;

/// A CA (root or intermediate) that can issue client certificates and CRLs.
pub struct Ca {
    pub cert: Certificate,
    pub key: KeyPair,
    /// Its certificate as a PEM file.
    pub pem: PathBuf,
}

/// A client certificate and its key as PEM files.
pub struct Client {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

impl Ca {
    /// A self-signed root named `CN=<cn>`, written to `dir/<file>`.
    pub fn root(dir: &Path, file: &str, cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(cn).self_signed(&key).unwrap();
        let pem = write_file(dir, file, &cert.pem());
        Ca { cert, key, pem }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, dir: &Path, file: &str, cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(cn)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let pem = write_file(dir, file, &cert.pem());
        Ca { cert, key, pem }
    }

    /// A client certificate `O=<org>, CN=<cn>` with `serial`, as `dir/<name>.crt/.key`.
    pub fn client(&self, dir: &Path, name: &str, org: &str, cn: &str, serial: &[u8]) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, org);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from_slice(serial));
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Client {
            cert: write_file(dir, &format!("{name}.crt"), &cert.pem()),
            key: write_file(dir, &format!("{name}.key"), &key.serialize_pem()),
        }
    }

    /// A CRL of this CA revoking `serials`, valid until 2099, as `dir/<file>`.
    pub fn crl(&self, dir: &Path, file: &str, serials: &[&[u8]]) -> PathBuf {
        let revoked = serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.cert, &self.key)
        .unwrap();
        write_file(dir, file, &crl.pem().unwrap())
    }
}
