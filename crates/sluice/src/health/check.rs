//! One health check against one server: connect (tcp or unix, from `source` when set), send a
//! PROXY header first when the backend sends them, then tcp / tls handshake / http(s) GET.
//! Returns Ok or a short human reason, and with `run_report` HAProxy's status code for it
//! (`L4OK`, `L4CON`, `L7STS`, ...). Scheduling, rise/fall and logging live elsewhere.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::balance::ServerAddr;
use crate::net;
use crate::spec::{Backend, HealthKind, SendProxy};

/// Most bytes read looking for the HTTP status line.
const MAX_STATUS_LINE: usize = 4096;

/// Everything a check needs, derived once from the backend configuration.
#[derive(Clone)]
pub(crate) struct CheckSpec {
    pub kind: HealthKind,
    pub timeout: Duration,
    pub path: String,
    pub expect_status: u16,
    pub send_proxy: SendProxy,
    /// Local address to bind before connecting (`backend.source`, port 0).
    pub source: Option<SocketAddr>,
    pub tls: Arc<ClientConfig>,
}

impl CheckSpec {
    /// None when the backend has no `[health]` section.
    pub(crate) fn from_backend(cfg: &Backend) -> Option<CheckSpec> {
        let h = cfg.health.as_ref()?;
        Some(CheckSpec {
            kind: h.kind,
            timeout: h.timeout,
            path: if h.path.starts_with('/') {
                h.path.clone()
            } else {
                format!("/{}", h.path)
            },
            expect_status: h.expect_status,
            send_proxy: cfg.send_proxy,
            source: cfg.source.map(|ip| SocketAddr::new(ip, 0)),
            tls: crate::tls::no_verify_client_config(),
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How far a check got, so a failure or timeout gets HAProxy's layer (L4, L6, L7).
#[derive(Default)]
struct Progress {
    /// One of the `AT_*` phases.
    phase: AtomicU8,
    /// The HTTP status received; 0 before.
    code: AtomicU16,
}

const AT_CONNECT: u8 = 0;
const AT_PROXY: u8 = 1;
const AT_TLS: u8 = 2;
const AT_HTTP: u8 = 3;

impl Progress {
    fn at(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// Runs one check within `spec.timeout`.
#[cfg(test)]
pub(crate) async fn run(addr: &ServerAddr, spec: &CheckSpec) -> Result<(), String> {
    run_report(addr, spec).await.0
}

/// Runs one check within `spec.timeout`; also says HAProxy's status for the result and the
/// HTTP status received, if any.
pub(crate) async fn run_report(
    addr: &ServerAddr,
    spec: &CheckSpec,
) -> (Result<(), String>, &'static str, Option<u16>) {
    let progress = Progress::default();
    let r = match tokio::time::timeout(spec.timeout, check(addr, spec, &progress)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {:?}", spec.timeout)),
    };
    let code = match progress.code.load(Ordering::Relaxed) {
        0 => None,
        c => Some(c),
    };
    let phase = progress.phase.load(Ordering::Relaxed);
    let timed_out = r.as_ref().is_err_and(|e| e.starts_with("timeout"));
    let status = match (&r, phase) {
        (Ok(()), _) => match spec.kind {
            HealthKind::Tcp => "L4OK",
            HealthKind::Tls => "L6OK",
            HealthKind::Http | HealthKind::Https => "L7OK",
        },
        (Err(_), AT_CONNECT | AT_PROXY) if timed_out => "L4TOUT",
        (Err(_), AT_CONNECT) => "L4CON",
        (Err(_), AT_PROXY) => "SOCKERR",
        (Err(_), AT_TLS) if timed_out => "L6TOUT",
        (Err(_), AT_TLS) => "L6RSP",
        (Err(_), _) if timed_out => "L7TOUT",
        (Err(_), _) if code.is_some() => "L7STS",
        (Err(_), _) => "L7RSP",
    };
    (r, status, code)
}

async fn check(addr: &ServerAddr, spec: &CheckSpec, progress: &Progress) -> Result<(), String> {
    let source = spec.source.map(|s| s.ip());
    let mut io = net::connect(addr, source, spec.timeout)
        .await
        .map_err(|e| connect_failed(&e, spec.timeout))?;
    progress.at(AT_PROXY);
    // For a v1 header: (local, peer) of a TCP check connection.
    let ends = io.tcp_addrs().map_err(|e| short(&e))?;
    if ends.is_some() {
        let _ = io.set_nodelay(true);
    }
    send_proxy(&mut io, spec.send_proxy, ends).await?;
    progress.at(AT_TLS);
    let host = match addr {
        ServerAddr::Inet(sa) => sa.ip().to_string(),
        ServerAddr::Host { host, .. } => host.clone(),
        ServerAddr::Srv { name } => name.clone(),
        ServerAddr::Unix(_) => "localhost".to_owned(),
    };
    match spec.kind {
        HealthKind::Tcp => {
            let _ = io.shutdown().await;
            Ok(())
        }
        HealthKind::Http => {
            progress.at(AT_HTTP);
            http_get(&mut io, &host, &spec.path, spec.expect_status, progress).await
        }
        HealthKind::Tls | HealthKind::Https => {
            let name = server_name(addr)?;
            let connector = tokio_rustls::TlsConnector::from(spec.tls.clone());
            let mut tls = connector
                .connect(name, io)
                .await
                .map_err(|e| format!("tls handshake: {}", short(&e)))?;
            if spec.kind == HealthKind::Tls {
                let _ = tls.shutdown().await;
                Ok(())
            } else {
                progress.at(AT_HTTP);
                http_get(&mut tls, &host, &spec.path, spec.expect_status, progress).await
            }
        }
    }
}

/// Why the connect failed: running out of the check's time reads as the whole check timing
/// out (the same budget), anything else as its short reason.
fn connect_failed(e: &io::Error, timeout: Duration) -> String {
    if net::is_connect_timeout(e) {
        format!("timeout after {timeout:?}")
    } else {
        short(e)
    }
}

/// A short lowercase reason for logs: "connection refused", not "Connection refused (os error 111)".
fn short(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::NotFound => "no such socket".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::UnexpectedEof => "connection closed".into(),
        _ => e.to_string(),
    }
}

/// Writes the PROXY header a strict receiver expects from a check: v2 LOCAL, or a v1 line
/// with the check connection's own addresses (UNKNOWN over unix sockets).
async fn send_proxy(
    io: &mut dyn Io,
    send: SendProxy,
    ends: Option<(SocketAddr, SocketAddr)>,
) -> Result<(), String> {
    let mut buf = [0u8; 128];
    let n = match (send, ends) {
        (SendProxy::None, _) => return Ok(()),
        (SendProxy::V2, _) => proxy_header::v2::encode_local(&mut buf),
        (SendProxy::V1, Some((local, peer))) => proxy_header::v1::encode(local, peer, &mut buf),
        (SendProxy::V1, None) => proxy_header::v1::encode_unknown(&mut buf),
    }
    .map_err(|e| format!("proxy header: {e}"))?;
    io.write_all(&buf[..n])
        .await
        .map_err(|e| format!("sending proxy header: {}", short(&e)))
}

fn server_name(addr: &ServerAddr) -> Result<ServerName<'static>, String> {
    match addr {
        ServerAddr::Inet(sa) => Ok(ServerName::IpAddress(sa.ip().into())),
        ServerAddr::Unix(_) => Ok(ServerName::try_from("localhost").map_err(|e| e.to_string())?),
        ServerAddr::Host { host, .. } | ServerAddr::Srv { name: host } => {
            ServerName::try_from(host.clone()).map_err(|e| format!("tls server name {host:?}: {e}"))
        }
    }
}

/// Sends `GET path HTTP/1.0` and checks the status code of the reply's status line.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    host: &str,
    path: &str,
    expect: u16,
    progress: &Progress,
) -> Result<(), String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n"
    );
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending request: {}", short(&e)))?;
    io.flush().await.map_err(|e| short(&e))?;
    let mut buf = vec![0u8; MAX_STATUS_LINE];
    let mut have = 0;
    let line_end = loop {
        if let Some(end) = buf[..have].iter().position(|&b| b == b'\n') {
            break end;
        }
        if have == buf.len() {
            return Err(format!(
                "no HTTP status line within {MAX_STATUS_LINE} bytes"
            ));
        }
        let n = io
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("reading response: {}", short(&e)))?;
        if n == 0 {
            return Err("connection closed before the HTTP status line".into());
        }
        have += n;
    };
    let status = parse_status_line(&buf[..line_end])?;
    progress.code.store(status, Ordering::Relaxed);
    if status == expect {
        Ok(())
    } else {
        Err(format!("HTTP status {status}, expected {expect}"))
    }
}

/// "HTTP/1.x NNN reason" (CR optional) -> NNN.
pub(crate) fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || {
        format!(
            "bad HTTP status line {:?}",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        )
    };
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [minor, b' ', a, b, c, tail @ ..]
            if minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(bad()),
    }
}
