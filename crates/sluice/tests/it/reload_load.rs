//! Reload under load: four clients loop connect → send → read echo through a TCP frontend,
//! one client loops TLS requests through an HTTP edge, and three long-lived streams keep
//! echoing, while the config is reloaded 20 times (weights changed, a server added and
//! removed, the certificate swapped). Zero failed connections, zero broken streams.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::*;
use sluice::reload::BackendChange;
use sluice::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const RELOADS: usize = 20;
const RELOAD_EVERY: Duration = Duration::from_millis(250);
const CLIENTS: usize = 4;
const STREAMS: usize = 3;
/// Upper bound on iterations of any client loop (the loops end on `done` long before).
const MAX_ITER: u64 = 1_000_000;

struct Cert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn new_cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![support::edge::HOST.to_string()]).unwrap();
    Cert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
        der: ck.cert.der().to_vec(),
    }
}

/// Swaps in `c` with renames, so no reader sees a half-written file.
fn install(dir: &Path, c: &Cert) {
    for (name, text) in [("key.pem", &c.key_pem), ("cert.pem", &c.cert_pem)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// Reload `i`: weights cycle, server e3 is present on even steps only.
fn config(dir: &Path, echo: &[SocketAddr; 3], app: SocketAddr, i: usize) -> String {
    let mut servers = format!(
        r#"{{ name = "e1", addr = "{}", weight = {} }}, {{ name = "e2", addr = "{}", weight = {} }}"#,
        echo[0],
        1 + i % 3,
        echo[1],
        1 + (i + 1) % 4
    );
    if i & 1 == 0 {
        servers += &format!(r#", {{ name = "e3", addr = "{}" }}"#, echo[2]);
    }
    format!(
        r#"[global]
max_connections = 1000

[[frontend]]
name = "l4"
bind = ["127.0.0.1:0"]
backend = "echo"

[[frontend]]
name = "web"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "app"
[frontend.tls]
cert = "{cert}"
key = "{key}"

[[backend]]
name = "echo"
servers = [{servers}]

[[backend]]
name = "app"
servers = [{{ addr = "{app}" }}]
"#,
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
    )
}

/// connect → write a line → read it back → close; Err describes what broke.
async fn echo_once(to: SocketAddr, n: u64) -> Result<(), String> {
    let mut s = connect_from(CLIENT_IP, to)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let line = format!("ping {n}\n");
    s.write_all(line.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; line.len()];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut back))
        .await
        .map_err(|_| "echo timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if back != line.as_bytes() {
        return Err(format!(
            "echo mismatch: {:?}",
            String::from_utf8_lossy(&back)
        ));
    }
    Ok(())
}

/// One TLS request; returns the DER of the certificate the edge presented.
async fn tls_once(to: SocketAddr, roots: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut store = rustls::RootCertStore::empty();
    for der in roots {
        store
            .add(rustls_pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = connect_from(CLIENT_IP, to)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from(support::edge::HOST).unwrap();
    let mut tls = tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    let presented = tls.get_ref().1.peer_certificates().unwrap_or_default()[0].to_vec();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let resp = support::edge::read_all(&mut tls).await;
    if support::edge::status_of(&resp) != "200" {
        return Err(format!("response: {:?}", resp.lines().next()));
    }
    Ok(presented)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_nothing() {
    let echo = [
        echo_server(LO).await,
        echo_server(LO).await,
        echo_server(LO).await,
    ];
    let app = support::edge::http_echo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = [new_cert(), new_cert()];
    install(dir.path(), &certs[0]);
    let roots: Arc<Vec<Vec<u8>>> = Arc::new(certs.iter().map(|c| c.der.clone()).collect());

    let cfg = sluice::config::load_str(&config(dir.path(), &echo, app, 0), "t.toml").unwrap();
    let server = Server::bind(cfg).await.expect("bind");
    let (handle, live) = (server.reload_handle(), server.live());
    let addrs = live.local_addrs();
    let l4 = addrs.iter().find(|(f, _)| f == "l4").unwrap().1;
    let web = addrs.iter().find(|(f, _)| f == "web").unwrap().1;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS as u64 {
        let (done, ok) = (done.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for n in 0..MAX_ITER {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                match echo_once(l4, c * MAX_ITER + n).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.push(e);
                        0
                    }
                };
            }
            failures
        }));
    }
    let tls_ok = Arc::new(AtomicU64::new(0));
    let tls_client = {
        let (done, tls_ok, roots) = (done.clone(), tls_ok.clone(), roots.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut presented = Vec::new();
            for _ in 0..MAX_ITER {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                match tls_once(web, &roots).await {
                    Ok(der) => {
                        tls_ok.fetch_add(1, Ordering::Relaxed);
                        presented.push(der);
                    }
                    Err(e) => failures.push(e),
                }
            }
            (failures, presented)
        })
    };
    // Long-lived streams, opened before the first reload and used all along.
    let mut streams: Vec<TcpStream> = Vec::new();
    for _ in 0..STREAMS {
        streams.push(client(l4).await);
    }
    let streams_task = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut rounds = 0u64;
            for round in 0..MAX_ITER {
                for (k, s) in streams.iter_mut().enumerate() {
                    let line = format!("stream {k} round {round}\n");
                    s.write_all(line.as_bytes()).await.expect("stream write");
                    let mut back = vec![0u8; line.len()];
                    within("stream echo", s.read_exact(&mut back))
                        .await
                        .expect("established stream broke");
                    assert_eq!(back, line.as_bytes());
                }
                rounds += 1;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            rounds
        })
    };

    // 20 reloads: weights change every time, e3 comes and goes, the certificate alternates.
    let mut e3_changes = 0;
    for i in 1..=RELOADS {
        tokio::time::sleep(RELOAD_EVERY).await;
        install(dir.path(), &certs[i % 2]);
        let text = config(dir.path(), &echo, app, i);
        let cfg = sluice::config::load_str(&text, "t.toml").unwrap();
        let summary = handle
            .reload(cfg)
            .await
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        assert_eq!(summary.listeners_kept, vec![l4, web], "reload {i}");
        assert_eq!(summary.tls_reloaded, vec!["web".to_string()], "reload {i}");
        if let Some(BackendChange::Changed(d)) = summary.backend("echo") {
            if d.added.contains(&"e3".to_string()) || d.removed.contains(&"e3".to_string()) {
                e3_changes += 1;
            }
        }
    }
    assert_eq!(e3_changes, RELOADS, "e3 added or removed on every reload");
    // After the last reload, a fresh handshake gets the last certificate.
    let last = tls_once(web, &roots).await.expect("tls after reloads");
    assert_eq!(
        last,
        certs[RELOADS % 2].der,
        "the swapped certificate is served"
    );

    done.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(within("client", c).await.unwrap());
    }
    let (tls_failures, presented) = within("tls client", tls_client).await.unwrap();
    let rounds = within("streams", streams_task)
        .await
        .expect("streams kept echoing");
    let total = ok.load(Ordering::Relaxed);
    eprintln!(
        "reload load: {total} echo connections, {} TLS requests, {rounds} stream rounds, \
         {RELOADS} reloads",
        tls_ok.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "failed connections: {failures:?}");
    assert!(
        tls_failures.is_empty(),
        "failed TLS requests: {tls_failures:?}"
    );
    assert!(total > 100, "the clients actually ran ({total})");
    assert!(rounds > 20, "the streams echoed throughout ({rounds})");
    assert!(
        certs.iter().all(|c| presented.contains(&c.der)),
        "both certificates were served during the run"
    );
    let pool = live.pool("echo").unwrap();
    assert!(pool.servers().iter().map(|s| s.total).sum::<u64>() > 0);

    let _ = stop_tx.send(());
    within("shutdown", run).await.unwrap().expect("run");
}
