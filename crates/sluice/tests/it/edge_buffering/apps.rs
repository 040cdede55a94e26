//! Loopback app servers for the buffering tests, one uwsgi and one HTTP/1.1, both counting
//! accepted connections. `POST /sum` answers `len=N fnv=H` for the body it read;
//! `GET /big?n=N` sends N pattern bytes, then waits for the edge to close the connection
//! (counted in `closed`). Each connection serves one request. No assertions here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// FNV-1a over a stream of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn add(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Byte `i` of every pattern body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// A counting app server.
#[derive(Clone)]
pub struct App {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    chunked: Arc<AtomicUsize>,
}

impl App {
    /// Connections accepted.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// `/big` responses fully written whose connection the edge then closed.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// HTTP requests that came with chunked coding.
    pub fn chunked(&self) -> usize {
        self.chunked.load(Ordering::SeqCst)
    }

    pub async fn uwsgi() -> App {
        App::start(true).await
    }

    pub async fn http() -> App {
        App::start(false).await
    }

    async fn start(uwsgi: bool) -> App {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App {
            addr: l.local_addr().unwrap(),
            accepts: Arc::default(),
            closed: Arc::default(),
            chunked: Arc::default(),
        };
        let a = app.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                a.accepts.fetch_add(1, Ordering::SeqCst);
                let a = a.clone();
                tokio::spawn(async move {
                    let _ = if uwsgi {
                        a.uwsgi_one(s).await
                    } else {
                        a.http_one(s).await
                    };
                });
            }
        });
        app
    }

    async fn uwsgi_one(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
        let mut vars = vec![0u8; u16::from_le_bytes([head[1], head[2]]) as usize];
        s.read_exact(&mut vars).await?;
        let mut map = HashMap::new();
        let mut i = 0;
        let take = |i: &mut usize| -> Option<String> {
            let n = u16::from_le_bytes([*vars.get(*i)?, *vars.get(*i + 1)?]) as usize;
            let v = vars.get(*i + 2..*i + 2 + n)?;
            *i += 2 + n;
            Some(String::from_utf8_lossy(v).into_owned())
        };
        while let (Some(k), Some(v)) = (take(&mut i), take(&mut i)) {
            map.insert(k, v);
        }
        let len: u64 = map
            .get("CONTENT_LENGTH")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let target = format!(
            "{}?{}",
            map.get("PATH_INFO").cloned().unwrap_or_default(),
            map.get("QUERY_STRING").cloned().unwrap_or_default()
        );
        self.answer(&mut s, &target, len).await
    }

    async fn http_one(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 || s.read(&mut b).await? == 0 {
                return Ok(());
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if text.contains("transfer-encoding: chunked") {
            self.chunked.fetch_add(1, Ordering::SeqCst);
        }
        let len = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let target = text.split(' ').nth(1).unwrap_or("/").to_string();
        self.answer(&mut s, &target, len).await
    }

    async fn answer(&self, s: &mut TcpStream, target: &str, len: u64) -> std::io::Result<()> {
        let (sum, got) = checksum(&mut *s, len, Fnv::default()).await?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path == "/big" {
            let n: u64 = query
                .strip_prefix("n=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {n}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await?;
            let mut at = 0u64;
            while at < n {
                let k = (n - at).min(64 * 1024);
                let chunk: Vec<u8> = (at..at + k).map(pattern).collect();
                s.write_all(&chunk).await?;
                at += k;
            }
            // The edge has it all: wait for it to let go of this connection.
            let mut b = [0u8; 1];
            let eof = tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await;
            if matches!(eof, Ok(Ok(0)) | Ok(Err(_))) {
                self.closed.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(());
        }
        let text = format!("len={got} fnv={:016x}\n", sum.0);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{text}",
            text.len()
        );
        s.write_all(resp.as_bytes()).await?;
        s.shutdown().await
    }
}

/// Reads `len` bytes (fewer at EOF): `sum` carried on over them, and their count.
pub async fn checksum<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u64,
    mut sum: Fnv,
) -> std::io::Result<(Fnv, u64)> {
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        sum.add(&buf[..n]);
        got += n as u64;
    }
    Ok((sum, got))
}
