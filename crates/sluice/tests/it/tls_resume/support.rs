//! Helpers for `tls_resume.rs`: rcgen/openssl certificate fixtures, nginx-format key files,
//! a loopback TLS test server over a `TlsEdge`, a rustls client, and `openssl s_client` runs.
//! No test cases live here.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::{ClientSessionMemoryCache, Resumption, Tls12Resumption};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
use sluice::spec::{CertPair, Tls};
use sluice::tls::{session_info, SessionInfo, TlsEdge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const T13: &SupportedProtocolVersion = &rustls::version::TLS13;
pub const T12: &SupportedProtocolVersion = &rustls::version::TLS12;
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------- fixtures ----------

pub struct CertFiles {
    pub cert: String,
    pub key: String,
    pub der: CertificateDer<'static>,
}

pub fn path_str(p: PathBuf) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// A self-signed rcgen certificate with CN `name` and DNS SANs `sans` (+ IP SANs).
pub fn rcgen_cert(
    dir: &Path,
    name: &str,
    sans: &[&str],
    ips: &[IpAddr],
    alg: &'static rcgen::SignatureAlgorithm,
) -> CertFiles {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    CertFiles {
        cert: path_str(c),
        key: path_str(k),
        der: cert.der().clone(),
    }
}

pub fn ecdsa(dir: &Path, name: &str) -> CertFiles {
    rcgen_cert(dir, name, &[name], &[], &rcgen::PKCS_ECDSA_P256_SHA256)
}

pub fn tls_cfg(main: &CertFiles, more: &[&CertFiles], ticket_keys: &[String], cache: usize) -> Tls {
    Tls {
        cert: main.cert.clone(),
        key: main.key.clone(),
        certs: more
            .iter()
            .map(|c| CertPair {
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .collect(),
        ticket_keys: ticket_keys.to_vec(),
        ticket_secret: None,
        ticket_rotation: sluice::spec::DEFAULT_TICKET_ROTATION,
        session_cache: cache,
        client: None,
    }
}

/// nginx-style key file: `fill` makes keys distinguishable (name = fill, fill+1, ...).
pub fn write_key(dir: &Path, file: &str, fill: u8) -> String {
    let bytes: Vec<u8> = (0..80u8).map(|i| fill.wrapping_add(i)).collect();
    let tmp = dir.join(format!("{file}.tmp"));
    let path = dir.join(file);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap(); // atomic, as rotation tooling should do it
    path_str(path)
}

pub fn key_name(fill: u8) -> [u8; 16] {
    std::array::from_fn(|i| fill.wrapping_add(i as u8))
}

// ---------- a loopback TLS server and a rustls client ----------

/// Accepts TLS with `edge` (the acceptor is fetched per connection, so reloads apply), records
/// the session info, writes `hello <version>\n` and closes with close_notify.
pub struct TestServer {
    pub addr: SocketAddr,
    pub infos: Arc<Mutex<Vec<SessionInfo>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(edge: Arc<TlsEdge>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let infos = Arc::new(Mutex::new(Vec::new()));
    let rec = infos.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (edge, rec) = (edge.clone(), rec.clone());
            tokio::spawn(async move {
                let accept = edge.acceptor().accept(tcp);
                let Ok(Ok(mut tls)) = tokio::time::timeout(IO_TIMEOUT, accept).await else {
                    return;
                };
                let info = session_info(tls.get_ref().1);
                let line = format!("hello {}\n", info.version);
                rec.lock().unwrap().push(info);
                let _ = tls.write_all(line.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TestServer { addr, infos, task }
}

pub fn client(
    version: &'static SupportedProtocolVersion,
    trust: &[&CertFiles],
    cache: &Arc<ClientSessionMemoryCache>,
    tls12: Tls12Resumption,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trust {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = Resumption::store(cache.clone()).tls12_resumption(tls12);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

pub struct Outcome {
    pub kind: HandshakeKind,
    pub peer: CertificateDer<'static>,
    pub body: String,
}

pub async fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>, name: &str) -> Outcome {
    let name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(name.to_string()).unwrap(),
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    let mut body = String::new();
    // Reading the app data also processes the TLS 1.3 tickets sent before it.
    let read = tls.read_to_string(&mut body);
    tokio::time::timeout(IO_TIMEOUT, read)
        .await
        .expect("read timed out")
        .unwrap();
    let conn = tls.get_ref().1;
    Outcome {
        kind: conn.handshake_kind().unwrap(),
        peer: conn.peer_certificates().unwrap()[0].clone(),
        body,
    }
}

pub fn openssl_cert(dir: &Path, name: &str, keygen: &[&str], expect_pem: &str) -> CertFiles {
    let key = path_str(dir.join(format!("{name}.key")));
    let cert = path_str(dir.join(format!("{name}.crt")));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let args: Vec<&str> = keygen
        .iter()
        .map(|a| if *a == "KEY" { &key[..] } else { a })
        .collect();
    run(&args);
    let head = std::fs::read_to_string(&key).unwrap();
    assert!(head.starts_with(expect_pem), "{name}: {head:.40}");
    // An end-entity certificate (req -x509 alone would mark it CA:TRUE).
    let conf = path_str(dir.join(format!("{name}.cnf")));
    std::fs::write(
        &conf,
        format!(
            "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n\
             [dn]\nCN = {name}\n[ext]\nsubjectAltName = DNS:{name}\n\
             basicConstraints = critical,CA:FALSE\n"
        ),
    )
    .unwrap();
    run(&[
        "req", "-new", "-x509", "-key", &key, "-out", &cert, "-days", "2", "-config", &conf,
    ]);
    let pem = std::fs::read(&cert).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    CertFiles { cert, key, der }
}

// ---------- real openssl s_client (run by support::edge::s_client) ----------

/// The first 16 bytes of the ticket in an s_client session file (`openssl sess_id -text`).
pub fn ticket_name(sess: &Path) -> [u8; 16] {
    let out = std::process::Command::new("openssl")
        .args(["sess_id", "-noout", "-text", "-in"])
        .arg(sess)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lifetime hint: 43200"), "{text}");
    let dump = text
        .split("TLS session ticket:")
        .nth(1)
        .expect("ticket in session");
    let first = dump
        .lines()
        .find(|l| l.trim_start().starts_with("0000 - "))
        .unwrap();
    let hex = &first.trim_start()["0000 - ".len()..][..47];
    let bytes: Vec<u8> = hex
        .replace('-', " ")
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}
