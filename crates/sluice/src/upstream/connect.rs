//! Opening a stream to an app server: TCP (with TCP_NODELAY) or a unix socket, under a
//! connect timeout, with `Host` addresses resolved at connect time. No pooling, no retries
//! across servers (the balancer picks another server; the HTTP pool reuses streams).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::{ServerAddr, UpstreamError};

/// A connected stream to an app server.
#[derive(Debug)]
pub(crate) enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Connects to `addr` within `timeout` (the whole resolution + all attempts).
pub(crate) async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Conn, UpstreamError> {
    match tokio::time::timeout(timeout, connect_inner(addr)).await {
        Ok(r) => r.map_err(UpstreamError::Connect),
        Err(_) => Err(UpstreamError::Timeout),
    }
}

async fn connect_inner(addr: &ServerAddr) -> io::Result<Conn> {
    match addr {
        ServerAddr::Inet(sa) => tcp(*sa).await,
        ServerAddr::Unix(path) => Ok(Conn::Unix(UnixStream::connect(path).await?)),
        ServerAddr::Host { host, port } => {
            let mut last = None;
            // lookup_host yields a short, finite list; each attempt is bounded by the timeout.
            for sa in tokio::net::lookup_host((host.as_str(), *port)).await? {
                match tcp(sa).await {
                    Ok(c) => return Ok(c),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"))
            }))
        }
    }
}

async fn tcp(sa: std::net::SocketAddr) -> io::Result<Conn> {
    let s = TcpStream::connect(sa).await?;
    s.set_nodelay(true)?;
    Ok(Conn::Tcp(s))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Conn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}
