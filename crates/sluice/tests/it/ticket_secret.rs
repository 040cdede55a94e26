//! Session tickets from a shared `ticket_secret` (issue #17): edges that share the secret
//! resume each other's sessions with no key files, across a rotation boundary, and stop two
//! periods later; another secret means a full handshake, never an error. Edges A and B share
//! a secret, C has its own, all in one sluice process (separate frontends: separate key state
//! and session caches), with a roundrobin balancer frontend in front of A and B.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::ClientSessionMemoryCache;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::edge::*;
use crate::support::*;

/// The rotation the edges use: short, so the test crosses boundaries in seconds.
const ROTATION_SECS: u64 = 2;

/// The three edges (`tsec_a`, `tsec_b` sharing a secret, `tsec_c` with its own) and the
/// certificate's DER. Names unique to this test: the metrics are process-wide.
fn edges(dir: &Path, app: SocketAddr) -> (String, Vec<u8>) {
    let (c, k, der) = cert(dir);
    let secret = |name: &str, fill: u8| {
        let p = dir.join(name);
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(fill)).collect();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let (shared, other) = (secret("fleet.secret", 7), secret("other.secret", 11));
    let edge = |name: &str, secret: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"tsec_app\"\n\
             [frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\nticket_secret = \"{secret}\"\n\
             ticket_rotation = \"{ROTATION_SECS}s\"\nsession_cache = 0\n\n",
            c.display(),
            k.display()
        )
    };
    let cfg = format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n{}{}{}\
         [[backend]]\nname = \"tsec_app\"\nprotocol = \"http\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n",
        edge("tsec_a", &shared),
        edge("tsec_b", &shared),
        edge("tsec_c", &other),
    );
    (cfg, der)
}

/// A roundrobin balancer in front of `a` and `b`.
fn balancer(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"tsec_lb\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"tsec_edges\"\n\n\
         [[backend]]\nname = \"tsec_edges\"\nbalance = \"roundrobin\"\n\
         [[backend.servers]]\naddr = \"{a}\"\n[[backend.servers]]\naddr = \"{b}\"\n"
    )
}

/// A client with its own session store, trusting the test certificate.
fn client(der: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(der.to_vec().into()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::store(Arc::new(ClientSessionMemoryCache::new(8)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One request over a new TLS connection to `to`; how the handshake went.
async fn request(to: SocketAddr, cfg: &Arc<ClientConfig>) -> HandshakeKind {
    let tcp = within("connect", TcpStream::connect(to)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg.clone());
    let mut tls = within("tls handshake", connector.connect(name, tcp))
        .await
        .expect("handshake");
    tls.write_all(b"GET /t HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Reading the response also takes in the tickets sent before it.
    let resp = read_all(&mut tls).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    tls.get_ref().1.handshake_kind().unwrap()
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Sleeps until 100 ms into the next rotation period (wall clock, as the edges count) and
/// returns that period. The edges' periods are whole multiples of the rotation since the epoch.
async fn next_period() -> u64 {
    let rot = Duration::from_secs(ROTATION_SECS);
    let period = now().as_secs() / ROTATION_SECS + 1;
    let at = rot * period as u32 + Duration::from_millis(100);
    tokio::time::sleep(at.saturating_sub(now())).await;
    period
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_sharing_a_secret_resume_each_other_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let app = http_echo_app().await;
    let (cfg, der) = edges(dir.path(), app);
    let edges = Sluice::start(&cfg).await;
    let (a, b, c) = (
        edges.addr("tsec_a"),
        edges.addr("tsec_b"),
        edges.addr("tsec_c"),
    );
    let lb = Sluice::start(&balancer(a, b)).await;

    // Three clients get tickets from A early in period n (again, should a slow machine have
    // let the handshakes run into the next period).
    let (mut n, mut tries) = (0, 0);
    let (mut now_b, mut after_one, mut after_two) = (client(&der), client(&der), client(&der));
    while tries < 3 {
        n = next_period().await;
        (now_b, after_one, after_two) = (client(&der), client(&der), client(&der));
        for cfg in [&now_b, &after_one, &after_two] {
            assert_eq!(request(a, cfg).await, HandshakeKind::Full);
        }
        if now().as_secs() / ROTATION_SECS == n {
            break;
        }
        tries += 1;
    }
    assert!(
        tries < 3,
        "three handshakes never fit in one {ROTATION_SECS}s period"
    );
    assert_eq!(
        request(b, &now_b).await,
        HandshakeKind::Resumed,
        "same period on B"
    );
    // Edge C (another secret) cannot open A's tickets: a full handshake, no error.
    assert_eq!(
        request(c, &now_b).await,
        HandshakeKind::Full,
        "another secret"
    );

    assert_eq!(next_period().await, n + 1);
    assert_eq!(
        request(b, &after_one).await,
        HandshakeKind::Resumed,
        "just after the next boundary: the previous period's key still opens it"
    );
    assert_eq!(next_period().await, n + 2);
    assert_eq!(
        request(b, &after_two).await,
        HandshakeKind::Full,
        "two periods later the ticket's key is gone"
    );

    // Through the roundrobin balancer, alternating A and B: 200 reconnects of one client.
    let cfg = client(&der);
    assert_eq!(request(lb.addr("tsec_lb"), &cfg).await, HandshakeKind::Full);
    let mut resumed = 0;
    for _ in 0..200 {
        if request(lb.addr("tsec_lb"), &cfg).await == HandshakeKind::Resumed {
            resumed += 1;
        }
    }
    assert!(
        resumed >= 198,
        "{resumed} of 200 resumed through the balancer"
    );

    let metrics = sluice::metrics::global().encode(&[]);
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("sluice_tls_ticket_decrypt_failures_total{frontend=\"tsec_c\"}"))
        .unwrap_or_else(|| panic!("no tsec_c ticket failure count:\n{metrics}"));
    assert!(!failures.ends_with(" 0"), "{failures}");
    lb.shutdown().await;
    edges.shutdown().await;
}

/// `sluice check` refuses a short secret (at its line), both ticket_secret and ticket_keys,
/// a rotation without a secret or out of range, and accepts a good secret.
#[test]
fn check_refuses_bad_ticket_secret_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, k, _) = cert(d);
    let short = d.join("short.secret");
    std::fs::write(&short, [1u8; 31]).unwrap();
    let good = d.join("good.secret");
    std::fs::write(&good, [2u8; 32]).unwrap();
    let key = d.join("ticket.key");
    std::fs::write(&key, [3u8; 80]).unwrap();
    let run = |extra: &str| {
        let text = format!(
            "[global]\nmax_connections = 100\n\n\
             [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
             [frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n\
             [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n",
            c.display(),
            k.display()
        );
        let path = write_file(d, "sluice.toml", &text);
        let out = sluice_cli(&["check"], &path);
        (out.status.success(), output_text(&out), path)
    };
    let (g, s, kf) = (good.display(), short.display(), key.display());
    for (extra, why, line) in [
        (format!("ticket_secret = \"{s}\""), "31 bytes", 12),
        (
            format!("ticket_secret = \"{g}\"\nticket_keys = [\"{kf}\"]"),
            "choose one",
            12,
        ),
        (
            "ticket_rotation = \"1h\"".to_string(),
            "no effect without ticket_secret",
            12,
        ),
        (
            format!("ticket_secret = \"{g}\"\nticket_rotation = \"100h\""),
            "must be 1s to 84h",
            13,
        ),
    ] {
        let (ok, text, path) = run(&extra);
        assert!(!ok, "{extra} accepted");
        assert!(text.contains(why), "{extra}: {text}");
        assert!(
            text.contains(&format!("{}:{line}:", path.display())),
            "not at line {line}: {text}"
        );
    }
    let (ok, text, _) = run(&format!(
        "ticket_secret = \"{g}\"\nticket_rotation = \"10s\""
    ));
    assert!(ok, "{text}");
}
