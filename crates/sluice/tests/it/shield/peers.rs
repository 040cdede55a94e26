//! Peers for the "edge as the app's shield" attack tests (issue #12): the real uWSGI with the
//! seed's Flask app (one process, 4 threads, `--listen 4`), a small HTTP app with a fixed
//! number of workers that reads whole bodies, a TCP listener that only counts accepts, an
//! HTTP/2 client (h2 crate) for bodyless streams, and the edge configs. No assertions here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::support::edge::{tls_connector, HOST};
use crate::support::{
    connect_from, seed_app_available, seed_uwsgi_args, spawn_peer, tool, ChildGuard, CLIENT_IP,
    DEADLINE,
};

/// How long a normal request may take while an attack is held. nginx answers in a few
/// milliseconds; this is only the point where the test stops waiting, not a timing check.
pub const NORMAL_WAIT: Duration = Duration::from_secs(5);

/// uWSGI's listen backlog in these tests (the "small --listen").
pub const UWSGI_LISTEN: &str = "4";
/// uWSGI's `--socket-timeout` (how long a worker waits for the next body bytes). Its default,
/// 4 s, frees a thread stuck on an absent body between two waves of an attack; an attacker
/// simply sends the next wave. 60 s (nginx's `client_body_timeout`) keeps one wave held for
/// the whole test, so what the test sees does not depend on how fast the machine is.
pub const UWSGI_SOCKET_TIMEOUT: &str = "60";

// ---------------------------------------------------------------- the real uWSGI

/// The seed app under the real uWSGI (one process, 4 threads) on `<dir>/app.sock`.
pub struct Uwsgi {
    _child: ChildGuard,
    pub sock: PathBuf,
    pub log: PathBuf,
}

impl Uwsgi {
    /// Starts uWSGI and waits until its socket accepts; None (after a loud SKIP line) when
    /// uwsgi, its python3 plugin or Flask is missing.
    pub async fn start(dir: &Path) -> Option<Uwsgi> {
        let uwsgi = tool("uwsgi", &["/usr/bin/uwsgi", "uwsgi"])?;
        if !seed_app_available() {
            return None;
        }
        let sock = dir.join("app.sock");
        let log = dir.join("uwsgi.log");
        let mut args = seed_uwsgi_args(&sock);
        args.extend(
            [
                "--listen",
                UWSGI_LISTEN,
                "--socket-timeout",
                UWSGI_SOCKET_TIMEOUT,
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_peer(&uwsgi, &args, &log);
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::UnixStream::connect(&sock).await.is_err() {
            let text = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(st)) = child.0.try_wait() {
                panic!("uwsgi exited ({st}):\n{}", text());
            }
            assert!(
                tokio::time::Instant::now() < end,
                "uwsgi socket not ready within 30s:\n{}",
                text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Uwsgi {
            _child: child,
            sock,
            log,
        })
    }

    /// The last `n` lines of uWSGI's log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The server address as a sluice config writes it.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.sock.display())
    }
}

// ---------------------------------------------------------------- HTTP apps

/// A one-process HTTP/1.1 app with `workers` workers (like gunicorn's sync workers): at most
/// that many connections are served at once, the others wait in a listen backlog of
/// `backlog`. Each request's head and whole Content-Length body are read (each read within
/// 30 s, at most 16 MiB), then `200 len=N` and close.
pub struct WorkerApp {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

pub async fn worker_app(workers: usize, backlog: u32) -> WorkerApp {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(backlog).unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let slots = Arc::new(Semaphore::new(workers));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((s, _)) = l.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = serve_one(s).await;
                drop(permit);
            });
        }
    });
    WorkerApp { addr, accepted }
}

async fn serve_one(mut s: tokio::net::TcpStream) -> std::io::Result<()> {
    const READ_TIMEOUT: Duration = Duration::from_secs(30);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        match tokio::time::timeout(READ_TIMEOUT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Ok(()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if len > 16 << 20 {
        return Ok(());
    }
    let mut have = buf.len() - head_end;
    while have < len {
        match tokio::time::timeout(READ_TIMEOUT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => have += n,
            _ => return Ok(()),
        }
    }
    let text = format!("len={len}\n");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

/// A TCP listener posing as an app server: it counts accepted connections and closes each
/// at once.
pub async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, accepted)
}

// ---------------------------------------------------------------- configs

/// `[global]` with the issue's `max_connections = 100`.
pub fn global() -> String {
    "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n".to_string()
}

/// One edge frontend `name` to `backend`; `extra` lines (TLS table, `max_body`) appended.
pub fn frontend(name: &str, backend: &str, extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\n\
         backend = \"{backend}\"\n{extra}\n\n"
    )
}

/// One backend with a single server at `addr` (protocol "uwsgi" or "http"), defaults else.
pub fn backend(name: &str, protocol: &str, addr: &str) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\n\
         [[backend.servers]]\nname = \"{name}1\"\naddr = \"{addr}\"\n\n"
    )
}

// ---------------------------------------------------------------- clients

/// TLS from 127.0.0.2 to `to` (SNI app.test) offering `alpn`; an error (never a panic) when
/// the edge does not answer within `DEADLINE`.
pub async fn tls_connect(
    to: SocketAddr,
    der: &[u8],
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
    let tcp = tokio::time::timeout(DEADLINE, connect_from(CLIENT_IP, to))
        .await
        .map_err(|_| timed_out("connect timed out"))??;
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    tokio::time::timeout(DEADLINE, tls_connector(der, alpn).connect(name, tcp))
        .await
        .map_err(|_| timed_out("TLS handshake timed out"))?
}

/// An HTTP/2 client connection over TLS (ALPN h2); its connection task runs detached.
pub struct H2Conn {
    pub send: h2::client::SendRequest<Bytes>,
    pub ping: h2::PingPong,
}

pub async fn h2_connect(to: SocketAddr, der: &[u8]) -> Result<H2Conn, String> {
    let tls = tls_connect(to, der, &[b"h2"])
        .await
        .map_err(|e| format!("connect: {e}"))?;
    h2_over(tls).await
}

/// The HTTP/2 handshake over an established stream.
pub async fn h2_over<T>(io: T) -> Result<H2Conn, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(128)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let ping = conn.ping_pong().expect("ping_pong taken once");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Conn { send, ping })
}

/// A request as an HTTP/2 client builds it (https://app.test`path`).
pub fn h2_request(method: &str, path: &str, content_length: Option<u64>) -> hyper::Request<()> {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("https://{HOST}{path}"));
    if let Some(n) = content_length {
        b = b.header("content-length", n.to_string());
    }
    b.body(()).unwrap()
}

/// Opens `n` POST /echo streams declaring `content-length: 1000` and sends no DATA. The send
/// halves are returned (dropping them would reset the streams); each response future runs in
/// a task that records its outcome in `outcomes` ("502", "error: ...").
pub async fn bodyless_streams(
    c: &mut H2Conn,
    n: usize,
    outcomes: &Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
) -> Result<Vec<h2::SendStream<Bytes>>, String> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let ready = tokio::time::timeout(DEADLINE, c.send.clone().ready())
            .await
            .map_err(|_| "no free stream slot".to_string())?
            .map_err(|e| format!("h2 ready: {e}"))?;
        c.send = ready;
        let (resp, stream) = c
            .send
            .send_request(h2_request("POST", "/echo", Some(1000)), false)
            .map_err(|e| format!("send_request: {e}"))?;
        held.push(stream);
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let key = match resp.await {
                Ok(r) => r.status().as_str().to_string(),
                Err(e) => format!("error: {e}"),
            };
            *outcomes.lock().unwrap().entry(key).or_default() += 1;
        });
    }
    Ok(held)
}

/// Sends a PING and waits for its answer: the peer has read every frame sent before it.
pub async fn ping_pong(c: &mut H2Conn) -> Result<(), String> {
    match tokio::time::timeout(DEADLINE, c.ping.ping(h2::Ping::opaque())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("ping: {e}")),
        Err(_) => Err("PING not answered".into()),
    }
}

/// One request on a new HTTP/2 connection: (status, body up to 1 MiB).
pub async fn h2_once(
    to: SocketAddr,
    der: &[u8],
    method: &str,
    path: &str,
    content_length: Option<u64>,
) -> Result<(u16, String), String> {
    let mut c = h2_connect(to, der).await?;
    let (resp, _stream) = c
        .send
        .send_request(
            h2_request(method, path, content_length),
            content_length.is_none(),
        )
        .map_err(|e| format!("send_request: {e}"))?;
    let resp = resp.await.map_err(|e| format!("response: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
        if out.len() > 1 << 20 {
            break;
        }
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}
