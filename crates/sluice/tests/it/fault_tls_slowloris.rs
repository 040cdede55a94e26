//! TLS slowloris at the edge under paused tokio time: hundreds of clients sending a real
//! ClientHello one byte per second are all cut at the TLS handshake timeout, while a normal
//! TLS client is served meanwhile. Real loopback sockets; no wall-clock waiting.

use std::sync::Arc;
use std::time::Duration;

use crate::support::edge::*;
use crate::support::*;
use sluice::edge::TLS_HANDSHAKE_TIMEOUT;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const SLOW: usize = 1000;

/// The bytes of a genuine rustls ClientHello for app.test.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[tokio::test(start_paused = true)]
async fn slow_client_hellos_are_cut_at_the_handshake_timeout() {
    let app = http_echo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k, der) = cert(dir.path());
    let cfg = format!(
        "[global]\nmax_connections = {max}\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"tls\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        c.display(),
        k.display(),
        // Room for the normal client beside the crowd: it must be served while the crowd
        // is held, not after the crowd is cut.
        max = SLOW + 10,
    );
    let sl = Sluice::start(&cfg).await;
    let fe = sl.addr("tls");
    let hello = client_hello();
    assert!(hello.len() > 100);

    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        slow.push(connect_from(CLIENT_IP, fe).await.unwrap());
    }
    let start = Instant::now();
    let mut open = vec![true; SLOW];
    let mut closed_at = vec![None; SLOW];
    let mut sent = 0usize;
    let mut normal: Option<tokio::task::JoinHandle<(String, Duration)>> = None;
    // One byte per second to every slow client until all are closed (bounded: 3x timeout).
    while open.iter().any(|o| *o) && start.elapsed() < TLS_HANDSHAKE_TIMEOUT * 3 {
        for (i, s) in slow.iter_mut().enumerate() {
            if !open[i] {
                continue;
            }
            let mut b = [0u8; 64];
            // Closed by sluice? (EOF or reset; it never sends a ServerHello to a partial hello.)
            let closed = match s.try_read(&mut b) {
                Ok(0) => true,
                Ok(n) => panic!("slow client {i} got {n} bytes back"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sent < hello.len() && s.write_all(&hello[sent..=sent]).await.is_err()
                }
                Err(_) => true,
            };
            if closed {
                open[i] = false;
                closed_at[i] = Some(start.elapsed());
            }
        }
        sent += 1;
        if sent == 3 {
            // A normal client, during the attack.
            let der = der.clone();
            normal = Some(tokio::spawn(async move {
                let resp = tls_request(
                    CLIENT_IP,
                    fe,
                    b"",
                    &der,
                    "GET /normal HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                (resp, start.elapsed())
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (resp, served_at) = within("normal client", normal.unwrap()).await.unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    let first_cut = closed_at.iter().flatten().min().copied();
    assert!(
        first_cut.is_some_and(|cut| served_at < cut),
        "the normal client was served at {served_at:?}, the first slow client cut at \
         {first_cut:?}: it must be served while the crowd is held"
    );
    for (i, at) in closed_at.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("slow client {i} never cut"));
        assert!(
            at >= TLS_HANDSHAKE_TIMEOUT - Duration::from_secs(1)
                && at <= TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(2),
            "slow client {i} cut after {at:?}"
        );
    }
    assert!(sent < hello.len(), "a slow hello completed ({sent} bytes)");
    // After the attack the edge still serves.
    let mut s = connect_from(CLIENT_IP, fe).await.unwrap();
    let _ = s.write_all(b"\x16\x03\x01").await;
    drop(s);
    let resp = tls_request(
        CLIENT_IP,
        fe,
        b"",
        &der,
        "GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    sl.shutdown().await;
}
