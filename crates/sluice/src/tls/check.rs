//! Loads every file of a `[frontend.tls]` table the way [`super::TlsEdge::load`] does
//! (certificate chains, keys matching them, SNI names, ticket key sizes and secrets, client CAs
//! and CRLs)
//! and says which entry names the bad file, for `sluice check` and `sluice run` to position
//! the error. It builds no `ServerConfig` and keeps nothing.

use std::fmt;

use super::certs::{load_pair, LoadedCert};
use super::{edge_provider, SniResolver, TicketKey, TlsError};
use crate::spec;

/// The entry of a `[frontend.tls]` table that names a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsEntry {
    Cert,
    Key,
    /// `certs[i].cert`.
    PairCert(usize),
    /// `certs[i].key`.
    PairKey(usize),
    /// `ticket_keys[i]`.
    TicketKey(usize),
    /// `ticket_secret`.
    TicketSecret,
    /// `client_ca`.
    ClientCa,
    /// `client_crl`.
    ClientCrl,
}

impl fmt::Display for TlsEntry {
    /// The key path inside the table: `cert`, `certs[1].key`, `ticket_keys[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsEntry::Cert => f.write_str("cert"),
            TlsEntry::Key => f.write_str("key"),
            TlsEntry::PairCert(i) => write!(f, "certs[{i}].cert"),
            TlsEntry::PairKey(i) => write!(f, "certs[{i}].key"),
            TlsEntry::TicketKey(i) => write!(f, "ticket_keys[{i}]"),
            TlsEntry::TicketSecret => f.write_str("ticket_secret"),
            TlsEntry::ClientCa => f.write_str("client_ca"),
            TlsEntry::ClientCrl => f.write_str("client_crl"),
        }
    }
}

/// A TLS file that would stop the edge from loading, and the entry that names it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct TlsFileError {
    pub entry: TlsEntry,
    pub error: TlsError,
}

/// Loads and checks every certificate, key and ticket key file of `cfg` as
/// [`super::TlsEdge::load`] would; the first problem in table order comes back.
pub fn check_files(cfg: &spec::Tls) -> Result<(), TlsFileError> {
    let provider = edge_provider();
    let at = |entry, error| TlsFileError { entry, error };
    let pairs = std::iter::once((TlsEntry::Cert, TlsEntry::Key, &cfg.cert, &cfg.key)).chain(
        cfg.certs
            .iter()
            .enumerate()
            .map(|(i, p)| (TlsEntry::PairCert(i), TlsEntry::PairKey(i), &p.cert, &p.key)),
    );
    let mut loaded: Vec<LoadedCert> = Vec::new();
    let mut cert_entries = Vec::new();
    for (cert_entry, key_entry, cert, key) in pairs {
        let pair = load_pair(&provider, cert, key).map_err(|e| {
            let entry = match &e {
                TlsError::Cert { .. } => cert_entry,
                TlsError::Io { path, .. } | TlsError::TooLarge { path, .. } if path == cert => {
                    cert_entry
                }
                // Key unreadable or unparsable, or not the certificate's: nginx too points
                // at `ssl_certificate_key` for "key values mismatch".
                _ => key_entry,
            };
            at(entry, e)
        })?;
        loaded.push(pair);
        cert_entries.push(cert_entry);
    }
    // SNI must be able to select every certificate after the first.
    let unnamed = loaded.iter().skip(1).position(|c| c.dns.is_empty());
    if let Err(e) = SniResolver::new(loaded) {
        let entry = unnamed.map_or(TlsEntry::Cert, |i| cert_entries[i + 1]);
        return Err(at(entry, e));
    }
    for (i, path) in cfg.ticket_keys.iter().enumerate() {
        TicketKey::from_file(path).map_err(|e| at(TlsEntry::TicketKey(i), e))?;
    }
    if let Some(path) = &cfg.ticket_secret {
        super::ticket_secret::read_secret(path).map_err(|e| at(TlsEntry::TicketSecret, e))?;
    }
    if let Some(client) = &cfg.client {
        super::client_auth::load(&std::sync::Arc::new(provider), client).map_err(|e| {
            let entry = match &e {
                TlsError::Crl { .. } => TlsEntry::ClientCrl,
                TlsError::Io { path, .. } | TlsError::TooLarge { path, .. }
                    if Some(path) == client.crl.as_ref() =>
                {
                    TlsEntry::ClientCrl
                }
                _ => TlsEntry::ClientCa,
            };
            at(entry, e)
        })?;
    }
    Ok(())
}
