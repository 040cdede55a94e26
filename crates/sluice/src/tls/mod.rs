//! TLS for the edge (issue #4): a live, reloadable rustls `ServerConfig` per frontend with
//! certificates chosen by SNI, a stateful session cache, and stateless tickets from shared
//! nginx-format key files (or a rotating random key). It does not accept connections or speak
//! HTTP: the edge server calls [`TlsEdge::acceptor`] and [`session_info`].

mod certs;
mod check;
mod client_auth;
#[cfg(test)]
mod edge_tests;
mod san;
mod ticket_secret;
mod tickets;
mod upstream;
mod watch;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions};
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};

use crate::spec;

pub use certs::SniResolver;
pub use check::{check_files, TlsEntry, TlsFileError};
pub use ticket_secret::{system_clock, Clock};
pub use tickets::{TicketKey, Ticketer, TICKET_LIFETIME_SECS};
pub(crate) use upstream::no_verify_client_config;
pub use upstream::upstream_client;
pub use watch::spawn_watcher;

/// ALPN protocols offered, in server preference order.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// TLS 1.3 tickets sent after each handshake, full or resumed (rustls sends the same count
/// after both). One per connection keeps a serial client resuming (each connection brings
/// the next ticket) at half the sealing and bytes of rustls' default 2; OpenSSL (nginx)
/// sends 2 after a full handshake and 1 after a resumption.
pub const TLS13_TICKETS: usize = 1;

/// Everything that can go wrong loading TLS material; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: file is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("certificate file {path}: {what}")]
    Cert { path: String, what: String },
    #[error("key file {path}: {what}")]
    Key { path: String, what: String },
    #[error("key file {key} does not belong to certificate {cert}: {what}")]
    Mismatch {
        cert: String,
        key: String,
        what: String,
    },
    #[error(
        "ticket key file {path} is {len} bytes, expected 80 or 48 (nginx ssl_session_ticket_key \
         format, e.g. `openssl rand 80 > {path}`)"
    )]
    TicketKeySize { path: String, len: usize },
    #[error("CRL file {path}: {what}")]
    Crl { path: String, what: String },
    #[error("tls: {0}")]
    Config(String),
    #[error("tls: the system random generator failed")]
    Random,
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Live, reloadable TLS state for one frontend.
#[derive(Debug)]
pub struct TlsEdge {
    cfg: spec::Tls,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<Ticketer>,
    sessions: Arc<dyn StoresServerSessions>,
    current: ArcSwap<ServerConfig>,
    /// Fingerprints of the files taken just before they were last loaded successfully.
    loaded: Mutex<Vec<Option<watch::Fingerprint>>>,
    reload_lock: Mutex<()>,
}

impl TlsEdge {
    /// Loads certificates, keys and ticket keys. Errors name the file and what is wrong.
    pub fn load(cfg: &spec::Tls) -> Result<Arc<TlsEdge>, TlsError> {
        let loaded = watch::fingerprints(&files_of(cfg));
        let provider = Arc::new(edge_provider());
        let ticketer = Arc::new(match &cfg.ticket_secret {
            Some(secret) => Ticketer::from_secret(secret, cfg.ticket_rotation, system_clock())?,
            None if cfg.ticket_keys.is_empty() => Ticketer::random(tickets::RANDOM_ROTATION)?,
            None => Ticketer::from_files(&cfg.ticket_keys)?,
        });
        let sessions: Arc<dyn StoresServerSessions> = if cfg.session_cache > 0 {
            ServerSessionMemoryCache::new(cfg.session_cache)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        let resolver = load_resolver(&provider, cfg)?;
        let client = load_client_auth(&provider, cfg)?;
        let server = build(&provider, resolver, client, &ticketer, &sessions)?;
        Ok(Arc::new(TlsEdge {
            cfg: cfg.clone(),
            provider,
            ticketer,
            sessions,
            current: ArcSwap::from_pointee(server),
            loaded: Mutex::new(loaded),
            reload_lock: Mutex::new(()),
        }))
    }

    /// An acceptor over the current configuration (ALPN h2, http/1.1).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// The current rustls configuration.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-reads certificates, keys and ticket key files (SIGHUP, watcher). Everything is read
    /// and checked before anything changes: on error the old state stays in use. Sessions and
    /// tickets from before the reload keep resuming as long as their key is still listed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = watch::fingerprints(&self.watched_files());
        let resolver = load_resolver(&self.provider, &self.cfg)?;
        let client = load_client_auth(&self.provider, &self.cfg)?;
        let server = build(
            &self.provider,
            resolver,
            client,
            &self.ticketer,
            &self.sessions,
        )?;
        if self.ticketer.is_file_based() {
            self.ticketer.reload(&self.cfg.ticket_keys)?;
        }
        if let Some(secret) = &self.cfg.ticket_secret {
            self.ticketer
                .reload_secret(secret, self.cfg.ticket_rotation, system_clock())?;
        }
        self.current.store(Arc::new(server));
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// The ticket keys in use (e.g. to check which key name encrypts).
    pub fn ticketer(&self) -> &Arc<Ticketer> {
        &self.ticketer
    }

    /// The configuration this edge was loaded from.
    pub fn config(&self) -> &spec::Tls {
        &self.cfg
    }

    /// Every file the edge reads: certificates, keys, ticket keys.
    pub fn watched_files(&self) -> Vec<String> {
        files_of(&self.cfg)
    }

    fn loaded_fingerprints(&self) -> Vec<Option<watch::Fingerprint>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// aws-lc-rs with the same suites as rustls' default, AES-128-GCM (SHA-256) ahead of
/// AES-256-GCM (SHA-384), then ChaCha20. The handshake's key schedule and every record
/// hash with the suite's SHA: SHA-256 runs on the CPU's SHA extensions where SHA-384 (in
/// aws-lc on non-Intel x86) does not, and AES-128 does 10 rounds to AES-256's 14.
pub fn edge_provider() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| match s.suite() {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    // Stable: TLS 1.3 suites stay ahead of TLS 1.2 ones within each rank.
    p.cipher_suites.sort_by_key(rank);
    p
}

fn files_of(cfg: &spec::Tls) -> Vec<String> {
    let mut files = vec![cfg.cert.clone(), cfg.key.clone()];
    for p in &cfg.certs {
        files.push(p.cert.clone());
        files.push(p.key.clone());
    }
    files.extend(cfg.ticket_keys.iter().cloned());
    files.extend(cfg.ticket_secret.iter().cloned());
    if let Some(c) = &cfg.client {
        files.push(c.ca.clone());
        files.extend(c.crl.iter().cloned());
    }
    files
}

fn load_client_auth(
    provider: &Arc<CryptoProvider>,
    cfg: &spec::Tls,
) -> Result<Option<client_auth::ClientAuth>, TlsError> {
    cfg.client
        .as_ref()
        .map(|c| client_auth::load(provider, c))
        .transpose()
}

fn load_resolver(provider: &CryptoProvider, cfg: &spec::Tls) -> Result<SniResolver, TlsError> {
    let mut loaded = vec![certs::load_pair(provider, &cfg.cert, &cfg.key)?];
    for pair in &cfg.certs {
        loaded.push(certs::load_pair(provider, &pair.cert, &pair.key)?);
    }
    SniResolver::new(loaded)
}

fn build(
    provider: &Arc<CryptoProvider>,
    resolver: SniResolver,
    client: Option<client_auth::ClientAuth>,
    ticketer: &Arc<Ticketer>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&TLS13, &TLS12])?;
    let builder = match &client {
        Some(c) => builder.with_client_cert_verifier(c.verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut c = builder.with_cert_resolver(Arc::new(resolver));
    c.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Our order (AES-128-GCM first, see `edge_provider`), not the client's.
    c.ignore_client_order = true;
    c.session_storage = sessions.clone();
    c.ticketer = ticketer.clone();
    if let Some(client) = &client {
        c.session_storage = client.bind_sessions(c.session_storage.clone());
        c.ticketer = client.bind_tickets(c.ticketer.clone());
    }
    c.send_tls13_tickets = TLS13_TICKETS;
    Ok(c)
}

/// What the access log and the app learn about a finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// "TLSv1.3" or "TLSv1.2" (the names nginx's `$ssl_protocol` uses); "" before the handshake.
    pub version: &'static str,
    /// IANA cipher suite name, e.g. "TLS13_AES_128_GCM_SHA256".
    pub cipher: Option<&'static str>,
    /// True when the session was resumed (ticket or cache).
    pub resumed: bool,
    /// The negotiated ALPN protocol ("h2", "http/1.1").
    pub alpn: Option<String>,
    /// The SNI the client sent (lower case), if any.
    pub sni: Option<String>,
}

/// Describes a server connection after its handshake.
pub fn session_info(conn: &ServerConnection) -> SessionInfo {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(_) => "TLS",
        None => "",
    };
    SessionInfo {
        version,
        cipher: conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str()),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        sni: conn.server_name().map(str::to_string),
    }
}
