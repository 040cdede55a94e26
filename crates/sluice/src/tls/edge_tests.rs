//! Handshake-level tests of the edge's rustls configuration, in memory (no sockets): the
//! suite chosen against a client that prefers AES-256, and how many TLS 1.3 tickets a full
//! and a resumed handshake hand out. Certificates and SNI selection are tested in `certs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ClientConfig, ClientConnection, HandshakeKind, NamedGroup};
use rustls::{RootCertStore, ServerConnection};

use super::*;

/// Counts the TLS 1.3 tickets the client receives, storing them in a real cache.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, s: ServerName<'static>, g: NamedGroup) {
        self.inner.set_kx_hint(s, g)
    }
    fn kx_hint(&self, s: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(s)
    }
    fn set_tls12_session(
        &self,
        s: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(s, v)
    }
    fn tls12_session(&self, s: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(s)
    }
    fn remove_tls12_session(&self, s: &ServerName<'static>) {
        self.inner.remove_tls12_session(s)
    }
    fn insert_tls13_ticket(&self, s: ServerName<'static>, v: Tls13ClientSessionValue) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(s, v)
    }
    fn take_tls13_ticket(&self, s: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(s)
    }
}

fn edge(dir: &std::path::Path) -> (Arc<TlsEdge>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["edge.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("e.crt"), dir.join("e.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let cfg = spec::Tls {
        cert: c.to_str().unwrap().into(),
        key: k.to_str().unwrap().into(),
        certs: vec![],
        ticket_keys: vec![],
        ticket_secret: None,
        ticket_rotation: spec::DEFAULT_TICKET_ROTATION,
        session_cache: 100,
        client: None,
    };
    (TlsEdge::load(&cfg).unwrap(), cert.der().to_vec())
}

/// Runs one handshake plus the first flight after it (where TLS 1.3 tickets travel).
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    // Bounded: a TLS 1.3 handshake is 2-3 flights; 20 passes is plenty.
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            return;
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn aes128_is_chosen_over_a_client_preferring_aes256_and_one_ticket_per_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, der) = edge(dir.path());
    let mut roots = RootCertStore::empty();
    roots.add(der.into()).unwrap();
    // A client listing AES-256 first, like OpenSSL's default order.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => 0,
        _ => 1,
    });
    assert_eq!(
        provider.cipher_suites[0].suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let store = Arc::new(CountingStore {
        inner: ClientSessionMemoryCache::new(8),
        tickets: AtomicUsize::new(0),
    });
    let mut ccfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ccfg.resumption = rustls::client::Resumption::store(store.clone());
    let ccfg = Arc::new(ccfg);
    let name = ServerName::try_from("edge.test").unwrap();

    let mut kinds = Vec::new();
    for round in 1..=2 {
        let mut client = ClientConnection::new(ccfg.clone(), name.clone()).unwrap();
        let mut server = ServerConnection::new(edge.server_config()).unwrap();
        handshake(&mut client, &mut server);
        let info = session_info(&server);
        assert_eq!(info.version, "TLSv1.3");
        assert_eq!(info.cipher, Some("TLS13_AES_128_GCM_SHA256"));
        assert_eq!(info.sni.as_deref(), Some("edge.test"));
        // Reading application data makes the client take in the tickets.
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut client.reader(), &mut buf);
        assert_eq!(
            store.tickets.load(Ordering::SeqCst),
            round,
            "tickets so far"
        );
        kinds.push(server.handshake_kind());
    }
    assert_eq!(
        kinds,
        vec![Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
}

#[test]
fn edge_provider_keeps_every_default_suite() {
    let mut ours: Vec<_> = edge_provider()
        .cipher_suites
        .iter()
        .map(|s| u16::from(s.suite()))
        .collect();
    let mut default: Vec<_> = rustls::crypto::aws_lc_rs::default_provider()
        .cipher_suites
        .iter()
        .map(|s| u16::from(s.suite()))
        .collect();
    assert_eq!(
        edge_provider().cipher_suites[0].suite(),
        CipherSuite::TLS13_AES_128_GCM_SHA256
    );
    ours.sort_unstable();
    default.sort_unstable();
    assert_eq!(ours, default);
}
