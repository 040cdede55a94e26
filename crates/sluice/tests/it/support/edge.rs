//! Helpers for the edge tests: a self-signed certificate, a tiny uwsgi app server and an
//! HTTP header-echo server on loopback, a TLS client that can send a PROXY header first,
//! raw HTTP/1.1 requests from 127.0.0.2 and curl invocations. No assertions live here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{connect_from, within, CLIENT_IP};

/// The name the test certificate is for.
pub const HOST: &str = "app.test";
/// Largest response a test client reads.
const MAX_READ: usize = 4 << 20;

/// A self-signed certificate for `app.test` written to `dir`: (cert, key, DER of the cert).
pub fn cert(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k, ck.cert.der().to_vec())
}

/// A TLS client trusting only `cert_der`, offering `alpn`.
pub fn tls_connector(cert_der: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(cert_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Reads until EOF (bounded in size and time); a reset after data still returns the data.
pub async fn read_all<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < MAX_READ {
        match within("read response", s.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// From `from`: optional raw PROXY header, then TLS (SNI app.test, ALPN http/1.1), then
/// `req`; returns the whole response (the request should say `Connection: close`).
pub async fn tls_request(
    from: IpAddr,
    to: SocketAddr,
    proxy: &[u8],
    cert_der: &[u8],
    req: &str,
) -> std::io::Result<String> {
    let mut tcp = within("connect", connect_from(from, to)).await?;
    tcp.write_all(proxy).await?;
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = within(
        "tls handshake",
        tls_connector(cert_der, &[b"http/1.1"]).connect(name, tcp),
    )
    .await?;
    tls.write_all(req.as_bytes()).await?;
    Ok(read_all(&mut tls).await)
}

/// Plain HTTP from 127.0.0.2: writes `req` as is and returns everything read back.
pub async fn raw_request(to: SocketAddr, req: &[u8]) -> String {
    let mut s = within("connect", connect_from(CLIENT_IP, to))
        .await
        .expect("connect");
    // The server may answer (413, 431) and close before it read everything.
    let _ = s.write_all(req).await;
    read_all(&mut s).await
}

/// The status code of a raw HTTP/1.x response ("" when none).
pub fn status_of(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

/// `curl` with `args`, from 127.0.0.2; returns stdout (panics with stderr on failure).
pub fn curl(curl: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(curl)
        .args(["-sS", "--max-time", "60", "--interface", "127.0.0.2"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------- tiny uwsgi app

/// A loopback uwsgi app server. Paths: `/garbage` answers something that is not HTTP,
/// `/slow` never answers, `/big?mb=N` streams N MiB, anything else answers 200 with one
/// `KEY=VALUE` line per uwsgi variable (sorted) and `body_len=N`.
pub async fn uwsgi_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = uwsgi_one(s).await;
            });
        }
    });
    addr
}

async fn uwsgi_one(mut s: TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let size = u16::from_le_bytes([head[1], head[2]]) as usize;
    let mut vars = vec![0u8; size];
    s.read_exact(&mut vars).await?;
    let mut map = HashMap::new();
    let mut i = 0;
    let take = |i: &mut usize| -> Option<String> {
        let n = u16::from_le_bytes([*vars.get(*i)?, *vars.get(*i + 1)?]) as usize;
        let v = vars.get(*i + 2..*i + 2 + n)?;
        *i += 2 + n;
        Some(String::from_utf8_lossy(v).into_owned())
    };
    while i < vars.len() {
        let (Some(k), Some(v)) = (take(&mut i), take(&mut i)) else {
            break;
        };
        map.insert(k, v);
    }
    let len: usize = map
        .get("CONTENT_LENGTH")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(16 << 20)];
    s.read_exact(&mut body).await?;
    match map.get("PATH_INFO").map(String::as_str) {
        Some("/garbage") => s.write_all(b"this is not http\r\n\r\n").await?,
        Some("/slow") => tokio::time::sleep(Duration::from_secs(60)).await,
        Some("/big") => {
            let mb: usize = map
                .get("QUERY_STRING")
                .and_then(|q| q.strip_prefix("mb="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                mb << 20
            );
            s.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..mb * 16 {
                s.write_all(&chunk).await?;
            }
        }
        _ => {
            let mut keys: Vec<_> = map.iter().collect();
            keys.sort();
            let mut text: String = keys.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            text.push_str(&format!("body_len={}\n", body.len()));
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            s.write_all(resp.as_bytes()).await?;
        }
    }
    s.shutdown().await
}

/// A loopback HTTP/1.1 server answering each request with its own head as the body
/// (so tests can see the forwarding headers), then closing.
pub async fn http_echo_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&head).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A loopback address where nothing listens (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The `tls = {..}` table for a fresh certificate in `dir`, and the certificate's DER.
pub fn tls_table(dir: &Path) -> (String, Vec<u8>) {
    let (c, k, der) = cert(dir);
    let line = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        c.display(),
        k.display()
    );
    (line, der)
}

/// Runs `openssl s_client -connect addr -ign_eof ARGS` with `input` on its stdin (then
/// closed), within `DEADLINE`; returns its output. The one s_client runner: tls_resume asks
/// for certificates and sessions directly, interop_matrix sends a request through a balancer.
pub async fn s_client(
    openssl: &Path,
    addr: SocketAddr,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    let mut child = tokio::process::Command::new(openssl)
        .args(["s_client", "-connect", &addr.to_string(), "-ign_eof"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.expect("s_client stdin");
    drop(stdin);
    within("openssl s_client", child.wait_with_output())
        .await
        .expect("openssl s_client")
}
