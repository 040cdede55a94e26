//! Loopback app servers for the edge limit tests, uwsgi and HTTP/1.1, that count their
//! connections (accepted, open, most open at once) and hold `/hold` requests until the test
//! releases them. `/big` answers `BIG` bytes; anything else answers 200 `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Size of the `/big` response: far more than the socket buffers between app and client.
pub const BIG: usize = 64 << 20;

/// Connection counters and the release valve of one app server.
#[derive(Clone)]
pub struct Counters {
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    pub max_open: Arc<AtomicUsize>,
    /// Requests to `/hold` now waiting for a permit.
    pub held: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            accepted: Arc::default(),
            open: Arc::default(),
            max_open: Arc::default(),
            held: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Counters {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets `n` held requests (now or later) answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }

    async fn hold(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        let permit = self.release.acquire().await.expect("never closed");
        permit.forget();
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    fn opened(&self) -> OpenGuard {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_open.fetch_max(now, Ordering::SeqCst);
        OpenGuard(self.open.clone())
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A uwsgi app on 127.0.0.1 (one connection per request, as uWSGI).
pub async fn uwsgi() -> (SocketAddr, Counters) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let c = Counters::default();
    let counters = c.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let _open = c.opened();
                let _ = uwsgi_one(s, &c).await;
            });
        }
    });
    (addr, counters)
}

async fn uwsgi_one(mut s: TcpStream, c: &Counters) -> std::io::Result<()> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let mut vars = vec![0u8; u16::from_le_bytes([head[1], head[2]]) as usize];
    s.read_exact(&mut vars).await?;
    let path = uwsgi_var(&vars, "PATH_INFO").unwrap_or_default();
    match path.as_str() {
        "/hold" => c.hold().await,
        "/big" => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
            s.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..BIG / chunk.len() {
                s.write_all(&chunk).await?;
            }
            return s.shutdown().await;
        }
        _ => {}
    }
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await?;
    s.shutdown().await
}

/// The value of uwsgi variable `name` in a packet body (bounded walk; None if malformed).
fn uwsgi_var(vars: &[u8], name: &str) -> Option<String> {
    let mut i = 0;
    let take = |i: &mut usize| -> Option<&[u8]> {
        let n = u16::from_le_bytes([*vars.get(*i)?, *vars.get(*i + 1)?]) as usize;
        let v = vars.get(*i + 2..*i + 2 + n)?;
        *i += 2 + n;
        Some(v)
    };
    while i < vars.len() {
        let k = take(&mut i)?;
        let v = take(&mut i)?;
        if k == name.as_bytes() {
            return Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    None
}

/// An HTTP/1.1 keep-alive app on 127.0.0.1 (hyper).
pub async fn http() -> (SocketAddr, Counters) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let c = Counters::default();
    let counters = c.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let _open = c.opened();
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let c = c.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        if path == "/hold" {
                            c.hold().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, counters)
}

/// A plain-HTTP edge `web` in front of backend `app` (one server at `app`), with extra
/// lines for the frontend, the backend and the server's inline table, and an access log.
pub fn edge_config(
    protocol: &str,
    app: SocketAddr,
    fe: &str,
    be: &str,
    server: &str,
    log: &std::path::Path,
) -> String {
    format!(
        "[global]\nmax_connections = 50\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"app\"\naccess_log = \"{}\"\n{fe}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"{protocol}\"\nretries = 0\n{be}\n\
         servers = [{{ addr = \"{app}\"{server} }}]\n",
        log.display()
    )
}

/// Reads one HTTP/1.1 response with a Content-Length: (head, body). Bounded: 64 KiB head.
pub async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "response head too large");
        let n = crate::support::within("response head", s.read(&mut b))
            .await
            .expect("read");
        assert!(n > 0, "closed before a response head: {buf:?}");
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = crate::support::content_length(&head).expect("content-length");
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = crate::support::within("response body", s.read(&mut b))
            .await
            .expect("read");
        assert!(n > 0, "closed inside a body");
        body.extend_from_slice(&b[..n]);
    }
    (head, body)
}
