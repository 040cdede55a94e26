//! Opening a stream to a server: TCP (from a source address when asked; `Host` names
//! resolved at connect time, each address tried in turn) or a unix socket, under one
//! timeout, as the one [`Stream`] type. No retries across servers, no pooling, no TLS.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

use crate::addr::ServerAddr;

/// A connected stream to a server.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Sets TCP_NODELAY on a TCP stream; nothing to do on a unix socket.
    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(on),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// (local, peer) of a TCP stream; None on a unix socket.
    pub(crate) fn tcp_addrs(&self) -> io::Result<Option<(SocketAddr, SocketAddr)>> {
        match self {
            Stream::Tcp(s) => Ok(Some((s.local_addr()?, s.peer_addr()?))),
            Stream::Unix(_) => Ok(None),
        }
    }
}

/// The error inside the `TimedOut` [`io::Error`] of a connect that ran out of time (see
/// [`is_connect_timeout`]); a kernel ETIMEDOUT stays an OS error.
#[derive(Debug)]
struct ConnectTimeout;

impl fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connect timed out")
    }
}

impl std::error::Error for ConnectTimeout {}

/// Whether `e` is [`connect`]'s own timeout (not a kernel error).
pub(crate) fn is_connect_timeout(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ConnectTimeout>())
}

/// Connects to `addr` within `timeout` (resolution and every attempt included), binding
/// `source` (port 0) first for TCP. TCP_NODELAY is left to the caller.
pub(crate) async fn connect(
    addr: &ServerAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<Stream> {
    connect_send(addr, source, timeout, &[])
        .await
        .map(|(s, _)| s)
}

/// Like [`connect`], and on a unix socket also sends as much of `first` as the socket takes
/// at once, in the same turn: nginx sends its uwsgi request right after `connect` returns,
/// while a new tokio stream's first write would wait a turn of the event loop for its
/// initial writable event. Returns how many bytes of `first` went out (always 0 over TCP,
/// where the connect itself takes a turn); the caller writes the rest. A send error is left
/// for the caller's next write to meet.
pub(crate) async fn connect_send(
    addr: &ServerAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    first: &[u8],
) -> io::Result<(Stream, usize)> {
    match tokio::time::timeout(timeout, connect_inner(addr, source, first)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, ConnectTimeout)),
    }
}

async fn connect_inner(
    addr: &ServerAddr,
    source: Option<IpAddr>,
    first: &[u8],
) -> io::Result<(Stream, usize)> {
    match addr {
        ServerAddr::Inet(sa) => Ok((Stream::Tcp(tcp(*sa, source).await?), 0)),
        ServerAddr::Unix(path) => {
            let (s, sent) = unix(path, first).await?;
            Ok((Stream::Unix(s), sent))
        }
        ServerAddr::Host { host, port } => {
            let mut last = None;
            // lookup_host yields a short, finite list; each attempt is bounded by the timeout.
            for sa in tokio::net::lookup_host((host.as_str(), *port)).await? {
                if source.is_some_and(|ip| ip.is_ipv4() != sa.is_ipv4()) {
                    continue;
                }
                match tcp(sa, source).await {
                    Ok(s) => return Ok((Stream::Tcp(s), 0)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"))
            }))
        }
        // `discovery` expands SRV servers before any pool holds them.
        ServerAddr::Srv { name } => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("SRV {name}: not expanded into servers"),
        )),
    }
}

async fn tcp(sa: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if sa.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(sa).await
}

/// A unix-socket connect completes (or fails) inside the syscall, so the socket is usable
/// at once: `first` goes out before the stream is handed to tokio (whose `connect` would wait
/// a turn of the event loop, arming the connect timeout's timer meanwhile). A full listen
/// backlog fails with EAGAIN, as before. Returns the stream and how much of `first` was sent.
async fn unix(path: &Path, first: &[u8]) -> io::Result<(UnixStream, usize)> {
    // Non-blocking from the start (and close-on-exec, as socket2 always asks).
    let nonblocking = socket2::Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let sock = socket2::Socket::new(socket2::Domain::UNIX, nonblocking, None)?;
    match sock.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => {
            let sent = if first.is_empty() {
                0
            } else {
                sock.send_with_flags(first, libc::MSG_NOSIGNAL).unwrap_or(0)
            };
            Ok((UnixStream::from_std(sock.into())?, sent))
        }
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            // Not seen on Linux for unix sockets; handled like a TCP connect in progress.
            let s = UnixStream::from_std(sock.into())?;
            s.writable().await?;
            match s.take_error()? {
                Some(e) => Err(e),
                None => Ok((s, 0)),
            }
        }
        Err(e) => Err(e),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
