//! Black-box tests of the TLS edge state (`sluice::tls`): certificate choice by SNI, key types,
//! load errors, and session resumption across edges sharing nginx-format ticket key files
//! (rustls and real `openssl s_client` clients), key rotation via the watcher, the session cache.
//! Servers are small loopback tokio TLS servers on port 0; no HTTP is involved.

#[path = "tls_resume/support.rs"]
mod tls_support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{ClientSessionMemoryCache, Tls12Resumption};
use rustls::server::ProducesTickets;
use rustls::{HandshakeKind, SupportedProtocolVersion};
use sluice::spec::Tls;
use sluice::tls::{spawn_watcher, TlsEdge};
use tls_support::*;

use crate::support::{tool, wait_until};
use tokio_util::sync::CancellationToken;

// ---------- certificates ----------

#[tokio::test]
async fn certificate_is_chosen_by_sni_with_first_as_default() {
    let dir = tempfile::tempdir().unwrap();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let def = rcgen_cert(
        dir.path(),
        "default.test",
        &["default.test"],
        &[lo],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let (a, b) = (ecdsa(dir.path(), "a.test"), ecdsa(dir.path(), "b.test"));
    let wild = rcgen_cert(dir.path(), "wild", &["*.w.test"], &[], &rcgen::PKCS_ED25519);
    let edge = TlsEdge::load(&tls_cfg(&def, &[&a, &b, &wild], &[], 100)).unwrap();
    let srv = serve(edge).await;
    let cache = Arc::new(ClientSessionMemoryCache::new(0));
    let trust = [&def, &a, &b, &wild];
    for (name, want) in [
        ("a.test", &a),
        ("b.test", &b),
        ("x.w.test", &wild),
        ("127.0.0.1", &def),
    ] {
        let out = connect(
            srv.addr,
            client(T13, &trust, &cache, Tls12Resumption::Disabled),
            name,
        )
        .await;
        assert_eq!(out.peer, want.der, "wrong certificate for {name}");
        assert_eq!(out.body, "hello TLSv1.3\n");
    }
    // No SNI at all (the client still verifies against default.test).
    let mut no_sni = (*client(T12, &trust, &cache, Tls12Resumption::Disabled)).clone();
    no_sni.enable_sni = false;
    let out = connect(srv.addr, Arc::new(no_sni), "default.test").await;
    assert_eq!(out.peer, def.der);
    let infos = srv.infos.lock().unwrap().clone();
    assert_eq!(infos[0].sni.as_deref(), Some("a.test"));
    assert_eq!(infos[3].sni, None, "an IP literal is not SNI");
    assert_eq!(infos[4].sni, None);
    assert_eq!(infos[4].version, "TLSv1.2");
    assert_eq!(infos[0].alpn.as_deref(), Some("http/1.1"));
    assert!(!infos[0].resumed);
    assert!(infos[0].cipher.is_some());
}

#[tokio::test]
async fn ip_literal_sni_from_openssl_gets_the_default_certificate() {
    let Some(openssl) = tool("openssl", &["/usr/bin/openssl", "openssl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (def, a) = (
        ecdsa(dir.path(), "default.test"),
        ecdsa(dir.path(), "a.test"),
    );
    let srv = serve(TlsEdge::load(&tls_cfg(&def, &[&a], &[], 100)).unwrap()).await;
    for (sni, cn) in [("127.0.0.1", "default.test"), ("a.test", "a.test")] {
        let out = stdout_of(&openssl, srv.addr, &["-servername", sni]).await;
        assert!(
            out.contains(&format!("subject=CN = {cn}")),
            "SNI {sni}: {out}"
        );
    }
}

#[tokio::test]
async fn ecdsa_ed25519_and_openssl_rsa_keys_load_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ecdsa(dir.path(), "p256.test"),
        rcgen_cert(
            dir.path(),
            "ed.test",
            &["ed.test"],
            &[],
            &rcgen::PKCS_ED25519,
        ),
        rcgen_cert(
            dir.path(),
            "p384.test",
            &["p384.test"],
            &[],
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ),
    ];
    if tool("openssl", &["/usr/bin/openssl", "openssl"]).is_some() {
        // PKCS#8 RSA, PKCS#1 ("RSA PRIVATE KEY") RSA and SEC1 ("EC PRIVATE KEY") keys.
        let rsa8 = "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out KEY";
        let rsa1 = "genrsa -traditional -out KEY 2048";
        let sec1 = "ecparam -name prime256v1 -genkey -noout -out KEY";
        for (name, keygen, pem) in [
            ("rsa8.test", rsa8, "-----BEGIN PRIVATE KEY-----"),
            ("rsa1.test", rsa1, "-----BEGIN RSA PRIVATE KEY-----"),
            ("sec1.test", sec1, "-----BEGIN EC PRIVATE KEY-----"),
        ] {
            let keygen: Vec<&str> = keygen.split(' ').collect();
            pairs.push(openssl_cert(dir.path(), name, &keygen, pem));
        }
    }
    for p in &pairs {
        let edge = TlsEdge::load(&tls_cfg(p, &[], &[], 10))
            .unwrap_or_else(|e| panic!("{} did not load: {e}", p.cert));
        let srv = serve(edge).await;
        let cache = Arc::new(ClientSessionMemoryCache::new(4));
        for v in [T13, T12] {
            let cn = Path::new(&p.cert).file_stem().unwrap().to_str().unwrap();
            let out = connect(
                srv.addr,
                client(v, &[p], &cache, Tls12Resumption::Disabled),
                cn,
            )
            .await;
            assert_eq!(out.peer, p.der);
        }
    }
}

/// `keygen` writes the key to the path given as the `KEY` argument; its PEM must start
/// with `expect_pem`.
#[tokio::test]
async fn bad_files_give_errors_naming_the_file_and_reload_keeps_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ecdsa(dir.path(), "a.test"), ecdsa(dir.path(), "b.test"));
    let garbage = path_str(dir.path().join("garbage.pem"));
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let missing = path_str(dir.path().join("missing.pem"));
    let short_key = path_str(dir.path().join("short.key"));
    std::fs::write(&short_key, [7u8; 79]).unwrap();
    let mismatched = CertFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
        der: a.der.clone(),
    };
    let no_cert = CertFiles {
        cert: garbage.clone(),
        key: a.key.clone(),
        der: a.der.clone(),
    };
    let no_key = CertFiles {
        cert: a.cert.clone(),
        key: garbage.clone(),
        der: a.der.clone(),
    };
    let gone = CertFiles {
        cert: missing.clone(),
        key: a.key.clone(),
        der: a.der.clone(),
    };
    let cases: Vec<(Tls, &str, &str)> = vec![
        (tls_cfg(&gone, &[], &[], 1), &missing, "No such file"),
        (tls_cfg(&no_cert, &[], &[], 1), &garbage, "no CERTIFICATE"),
        (tls_cfg(&no_key, &[], &[], 1), &garbage, "no PRIVATE KEY"),
        (tls_cfg(&mismatched, &[], &[], 1), &b.key, "does not belong"),
        (
            tls_cfg(&a, &[], std::slice::from_ref(&short_key), 1),
            &short_key,
            "79 bytes, expected 80 or 48",
        ),
    ];
    for (cfg, path, what) in cases {
        let err = TlsEdge::load(&cfg).unwrap_err().to_string();
        assert!(err.contains(path) && err.contains(what), "{err}");
    }

    // A failed reload leaves the edge serving with its old material.
    let k = write_key(dir.path(), "k", 1);
    let edge = TlsEdge::load(&tls_cfg(&a, &[], std::slice::from_ref(&k), 1)).unwrap();
    std::fs::write(&a.cert, "broken").unwrap();
    let err = edge.reload().unwrap_err().to_string();
    assert!(err.contains(&a.cert), "{err}");
    std::fs::write(&k, [0u8; 10]).unwrap();
    assert!(edge.reload().is_err());
    assert_eq!(edge.ticketer().current_name(), key_name(1));
    let srv = serve(edge).await;
    let cache = Arc::new(ClientSessionMemoryCache::new(4));
    let out = connect(
        srv.addr,
        client(T13, &[&a], &cache, Tls12Resumption::Disabled),
        "a.test",
    )
    .await;
    assert_eq!(out.peer, a.der);
}

// ---------- resumption ----------

/// Full handshake on edge A, then a second connection to edge B: resumed or not.
async fn resume_across(
    version: &'static SupportedProtocolVersion,
    same_keys: bool,
) -> HandshakeKind {
    let dir = tempfile::tempdir().unwrap();
    let a = ecdsa(dir.path(), "a.test");
    let ka = write_key(dir.path(), "ka", 10);
    let kb = if same_keys {
        ka.clone()
    } else {
        write_key(dir.path(), "kb", 20)
    };
    let edge_a = serve(TlsEdge::load(&tls_cfg(&a, &[], &[ka], 100)).unwrap()).await;
    let edge_b = serve(TlsEdge::load(&tls_cfg(&a, &[], &[kb], 100)).unwrap()).await;
    let cache = Arc::new(ClientSessionMemoryCache::new(32));
    let cfg = client(version, &[&a], &cache, Tls12Resumption::SessionIdOrTickets);
    let first = connect(edge_a.addr, cfg.clone(), "a.test").await;
    assert_eq!(first.kind, HandshakeKind::Full);
    let second = connect(edge_b.addr, cfg, "a.test").await;
    assert_eq!(
        second.body,
        format!(
            "hello {}\n",
            if version == T13 { "TLSv1.3" } else { "TLSv1.2" }
        )
    );
    let resumed = second.kind == HandshakeKind::Resumed;
    assert_eq!(
        edge_b.infos.lock().unwrap()[0].resumed,
        resumed,
        "session_info agrees"
    );
    second.kind
}

#[tokio::test]
async fn tls13_resumes_across_edges_sharing_ticket_keys() {
    assert_eq!(resume_across(T13, true).await, HandshakeKind::Resumed);
}

#[tokio::test]
async fn tls12_resumes_across_edges_sharing_ticket_keys() {
    assert_eq!(resume_across(T12, true).await, HandshakeKind::Resumed);
}

#[tokio::test]
async fn different_ticket_keys_do_not_resume() {
    assert_eq!(resume_across(T13, false).await, HandshakeKind::Full);
    assert_eq!(resume_across(T12, false).await, HandshakeKind::Full);
}

#[tokio::test]
async fn default_random_key_resumes_on_the_same_edge() {
    let dir = tempfile::tempdir().unwrap();
    let a = ecdsa(dir.path(), "a.test");
    let srv = serve(TlsEdge::load(&tls_cfg(&a, &[], &[], 0)).unwrap()).await;
    for v in [T13, T12] {
        let cache = Arc::new(ClientSessionMemoryCache::new(32));
        let cfg = client(v, &[&a], &cache, Tls12Resumption::SessionIdOrTickets);
        assert_eq!(
            connect(srv.addr, cfg.clone(), "a.test").await.kind,
            HandshakeKind::Full
        );
        assert_eq!(
            connect(srv.addr, cfg, "a.test").await.kind,
            HandshakeKind::Resumed
        );
    }
}

#[tokio::test]
async fn stateful_cache_resumes_tls12_session_ids() {
    let dir = tempfile::tempdir().unwrap();
    let a = ecdsa(dir.path(), "a.test");
    for (cache_size, want) in [(100, HandshakeKind::Resumed), (0, HandshakeKind::Full)] {
        let srv = serve(TlsEdge::load(&tls_cfg(&a, &[], &[], cache_size)).unwrap()).await;
        let cache = Arc::new(ClientSessionMemoryCache::new(32));
        let cfg = client(T12, &[&a], &cache, Tls12Resumption::SessionIdOnly);
        assert_eq!(
            connect(srv.addr, cfg.clone(), "a.test").await.kind,
            HandshakeKind::Full
        );
        assert_eq!(
            connect(srv.addr, cfg, "a.test").await.kind,
            want,
            "session_cache={cache_size}"
        );
    }
}

#[tokio::test]
async fn rotation_by_rewriting_key_files_is_picked_up_by_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let a = ecdsa(dir.path(), "a.test");
    let (p0, p1) = (
        write_key(dir.path(), "current.key", 1),
        write_key(dir.path(), "previous.key", 90),
    );
    let edge = TlsEdge::load(&tls_cfg(&a, &[], &[p0.clone(), p1.clone()], 0)).unwrap();
    let stop = CancellationToken::new();
    let watcher = spawn_watcher(edge.clone(), Duration::from_millis(25), stop.clone());
    let srv = serve(edge.clone()).await;
    let probe_k1 = edge.ticketer().encrypt(b"probe").unwrap();
    assert_eq!(probe_k1[..16], key_name(1));

    // Two clients each hold tickets issued under K1.
    let (c1, c2) = (
        Arc::new(ClientSessionMemoryCache::new(32)),
        Arc::new(ClientSessionMemoryCache::new(32)),
    );
    let (cfg1, cfg2) = (
        client(T13, &[&a], &c1, Tls12Resumption::Disabled),
        client(T13, &[&a], &c2, Tls12Resumption::Disabled),
    );
    assert_eq!(
        connect(srv.addr, cfg1.clone(), "a.test").await.kind,
        HandshakeKind::Full
    );
    assert_eq!(
        connect(srv.addr, cfg2.clone(), "a.test").await.kind,
        HandshakeKind::Full
    );

    // Files become [K2, K1]: K2 encrypts, K1 still decrypts.
    write_key(dir.path(), "previous.key", 1);
    write_key(dir.path(), "current.key", 2);
    wait_until("K2 to encrypt", || {
        edge.ticketer().current_name() == key_name(2)
    })
    .await;
    assert_eq!(edge.ticketer().encrypt(b"x").unwrap()[..16], key_name(2));
    assert_eq!(
        connect(srv.addr, cfg1, "a.test").await.kind,
        HandshakeKind::Resumed
    );

    // Files become [K2, K3]: K1 tickets no longer resume.
    write_key(dir.path(), "previous.key", 3);
    wait_until("K1 to be dropped", || {
        edge.ticketer().decrypt(&probe_k1).is_none()
    })
    .await;
    assert_eq!(
        connect(srv.addr, cfg2, "a.test").await.kind,
        HandshakeKind::Full
    );
    stop.cancel();
    tokio::time::timeout(IO_TIMEOUT, watcher)
        .await
        .expect("watcher stops")
        .unwrap();
}

#[tokio::test]
async fn openssl_s_client_resumes_across_edges_tls12_and_tls13() {
    let Some(openssl) = tool("openssl", &["/usr/bin/openssl", "openssl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = ecdsa(dir.path(), "a.test");
    let shared = write_key(dir.path(), "shared.key", 40);
    let other = write_key(dir.path(), "other.key", 50);
    let edge_a =
        serve(TlsEdge::load(&tls_cfg(&a, &[], std::slice::from_ref(&shared), 100)).unwrap()).await;
    let edge_b = serve(TlsEdge::load(&tls_cfg(&a, &[], &[shared], 100)).unwrap()).await;
    let edge_c = serve(TlsEdge::load(&tls_cfg(&a, &[], &[other], 100)).unwrap()).await;
    for (flag, ver) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let sess = dir.path().join(format!("sess{flag}.pem"));
        let sess_s = sess.to_str().unwrap();
        let base = ["-servername", "a.test", flag];
        let out = stdout_of(
            &openssl,
            edge_a.addr,
            &[&base[..], &["-sess_out", sess_s]].concat(),
        )
        .await;
        assert!(
            out.contains(&format!("New, {ver}")) && out.contains("hello"),
            "{out}"
        );
        assert_eq!(
            ticket_name(&sess),
            key_name(40),
            "the first key file names the ticket"
        );
        let out = stdout_of(
            &openssl,
            edge_b.addr,
            &[&base[..], &["-sess_in", sess_s]].concat(),
        )
        .await;
        assert!(
            out.contains(&format!("Reused, {ver}")),
            "edge B did not resume {ver}: {out}"
        );
        let out = stdout_of(
            &openssl,
            edge_c.addr,
            &[&base[..], &["-sess_in", sess_s]].concat(),
        )
        .await;
        assert!(
            out.contains(&format!("New, {ver}")),
            "edge C with other keys resumed {ver}: {out}"
        );
    }
}

/// `openssl s_client` (support::edge::s_client, nothing on stdin) against `addr`: its stdout.
async fn stdout_of(openssl: &Path, addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = crate::support::edge::s_client(openssl, addr, args, b"").await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}
