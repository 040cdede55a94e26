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
    connect_send(addr, timeout, &[]).await.map(|(c, _)| c)
}

/// Like [`connect`], and on a unix socket also sends as much of `first` as the socket takes
/// at once, in the same turn: nginx sends its uwsgi request right after `connect` returns,
/// while a new tokio stream's first write would wait a turn of the event loop for its
/// initial writable event. Returns how many bytes of `first` went out (always 0 over TCP,
/// where the connect itself takes a turn); the caller writes the rest. A send error is left
/// for the caller's next write to meet.
pub(crate) async fn connect_send(
    addr: &ServerAddr,
    timeout: Duration,
    first: &[u8],
) -> Result<(Conn, usize), UpstreamError> {
    match tokio::time::timeout(timeout, connect_inner(addr, first)).await {
        Ok(r) => r.map_err(UpstreamError::Connect),
        Err(_) => Err(UpstreamError::Timeout),
    }
}

async fn connect_inner(addr: &ServerAddr, first: &[u8]) -> io::Result<(Conn, usize)> {
    match addr {
        ServerAddr::Inet(sa) => Ok((tcp(*sa).await?, 0)),
        ServerAddr::Unix(path) => {
            let (s, sent) = unix(path, first).await?;
            Ok((Conn::Unix(s), sent))
        }
        ServerAddr::Host { host, port } => {
            let mut last = None;
            // lookup_host yields a short, finite list; each attempt is bounded by the timeout.
            for sa in tokio::net::lookup_host((host.as_str(), *port)).await? {
                match tcp(sa).await {
                    Ok(c) => return Ok((c, 0)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"))
            }))
        }
    }
}

/// A unix-socket connect completes (or fails) inside the syscall, so the socket is usable
/// at once: `first` goes out before the stream is handed to tokio (whose `connect` would wait
/// a turn of the event loop, arming the connect timeout's timer meanwhile). A full listen
/// backlog fails with EAGAIN, as before. Returns the stream and how much of `first` was sent.
async fn unix(path: &std::path::Path, first: &[u8]) -> io::Result<(UnixStream, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unix_connect_is_usable_at_once_and_errors_stay_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let addr = ServerAddr::Unix(path.clone());
        // Nobody listening: a connect error (502 upstream), not a timeout.
        let err = connect(&addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");

        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let Conn::Unix(mut c) = connect(&addr, Duration::from_secs(5)).await.unwrap() else {
            panic!("a unix address gives a unix stream")
        };
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connect_send_puts_the_first_bytes_out_with_the_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let addr = ServerAddr::Unix(path.clone());
        let (conn, sent) = connect_send(&addr, Duration::from_secs(5), b"request")
            .await
            .unwrap();
        assert_eq!(sent, 7, "a unix socket takes a small request at once");
        // Already in the server's socket: readable without any further write from us.
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 7];
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        assert_eq!(&b, b"request");
        drop(conn);
        // Over TCP nothing is sent early: the caller writes everything.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ServerAddr::Inet(tcp.local_addr().unwrap());
        let (_c, sent) = connect_send(&addr, Duration::from_secs(5), b"request")
            .await
            .unwrap();
        assert_eq!(sent, 0);
    }
}
