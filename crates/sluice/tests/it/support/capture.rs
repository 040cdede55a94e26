//! The PROXY capture server: decodes the header sluice sends with `proxy_header`, answers
//! the source it saw, and reports header, addresses, TLVs and the bytes that followed. It
//! checks nothing itself; tests assert on what it reports.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{within, DEADLINE};

/// What a PROXY-expecting test server saw on one connection.
#[derive(Debug, Clone)]
pub struct Captured {
    pub version: Option<proxy_header::Version>,
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    pub unique_id: Option<Vec<u8>>,
    pub crc32c: bool,
    /// The header's TLV area as received (validated; empty for v1).
    pub tlvs: Vec<u8>,
    /// Error text when the connection did not start with a valid header.
    pub error: Option<String>,
    /// Application bytes after the header, up to the client's EOF (at most 1 MiB).
    pub data: Vec<u8>,
}

/// A server that decodes a PROXY header with `proxy_header`, replies `"src=<source>\n"`,
/// then collects the rest and reports everything on the channel when the client closes.
/// A connection without a valid header is closed at once and reported with `error` set.
pub async fn proxy_capture_server(ip: IpAddr) -> (SocketAddr, mpsc::UnboundedReceiver<Captured>) {
    let l = TcpListener::bind((ip, 0)).await.expect("bind capture");
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(capture_one(s).await);
            });
        }
    });
    (addr, rx)
}

async fn capture_one(mut s: TcpStream) -> Captured {
    let mut cap = Captured {
        version: None,
        source: None,
        destination: None,
        unique_id: None,
        crc32c: false,
        tlvs: Vec::new(),
        error: None,
        data: Vec::new(),
    };
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    let opts = proxy_header::DecodeOptions::default();
    loop {
        let n = match tokio::time::timeout(DEADLINE, s.read(&mut buf[filled..])).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        if n == 0 {
            cap.error = Some(format!(
                "closed after {filled} bytes without a complete header"
            ));
            return cap;
        }
        filled += n;
        match proxy_header::decode(&buf[..filled], &opts) {
            Ok(proxy_header::Decoded::Complete { header, consumed }) => {
                cap.version = Some(header.version);
                cap.source = header.source();
                cap.destination = header.destination();
                cap.unique_id = header.tlvs.unique_id().map(|u| u.to_vec());
                cap.crc32c = header.tlvs.crc32c().is_some();
                cap.tlvs = header.tlvs.as_bytes().to_vec();
                cap.data.extend_from_slice(&buf[consumed..filled]);
                break;
            }
            Ok(proxy_header::Decoded::Incomplete { .. }) if filled < buf.len() => continue,
            Ok(_) => {
                cap.error = Some("header too long".into());
                return cap;
            }
            Err(e) => {
                cap.error = Some(e.to_string());
                return cap;
            }
        }
    }
    let src = cap
        .source
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    let _ = s.write_all(format!("src={src}\n").as_bytes()).await;
    let mut chunk = [0u8; 4096];
    while cap.data.len() < (1 << 20) {
        match tokio::time::timeout(DEADLINE, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => cap.data.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    cap
}

/// Receives the next capture within `DEADLINE`.
pub async fn next_capture(rx: &mut mpsc::UnboundedReceiver<Captured>) -> Captured {
    within("a connection at the capture server", rx.recv())
        .await
        .expect("capture channel")
}
