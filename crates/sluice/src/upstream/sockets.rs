//! Per-server socket caps for the HTTP keep-alive pool: before connecting, the pool's
//! connector takes a permit of the server's semaphore (sized by its `max_connections`), and
//! the socket holds it until it closes. So sockets in use, idle in the pool, or connecting in
//! the background after their request was served on another socket never exceed the cap.
//! No connecting or pooling here (`net`, `connect.rs`, `http.rs`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::net::Stream;

use super::ServerAddr;

/// The socket cap of each server address; addresses not listed are not capped.
#[derive(Debug, Default)]
pub struct SocketCaps {
    caps: HashMap<ServerAddr, (usize, Arc<Semaphore>)>,
}

impl SocketCaps {
    /// Caps from `(address, max_connections)` pairs; 0 = no cap. Two servers at one address
    /// share one pool key, so their caps add up (unless one of them is uncapped).
    pub fn new(servers: impl IntoIterator<Item = (ServerAddr, usize)>) -> Self {
        let mut sums: HashMap<ServerAddr, Option<usize>> = HashMap::new();
        for (addr, cap) in servers {
            let cap = (cap > 0).then_some(cap.min(Semaphore::MAX_PERMITS));
            let e = sums.entry(addr).or_insert(Some(0));
            *e = match (*e, cap) {
                (Some(a), Some(b)) => Some(a.saturating_add(b).min(Semaphore::MAX_PERMITS)),
                _ => None,
            };
        }
        let caps = sums
            .into_iter()
            .filter_map(|(a, c)| Some((a, (c?, Arc::new(Semaphore::new(c?))))))
            .collect();
        SocketCaps { caps }
    }

    /// The cap of `addr`, if it has one.
    pub fn cap(&self, addr: &ServerAddr) -> Option<usize> {
        self.caps.get(addr).map(|(c, _)| *c)
    }

    /// The largest cap (0 when none is capped).
    pub fn largest(&self) -> usize {
        self.caps.values().map(|(c, _)| *c).max().unwrap_or(0)
    }

    /// The caps of the capped addresses.
    pub(crate) fn caps(&self) -> impl Iterator<Item = usize> + '_ {
        self.caps.values().map(|(c, _)| *c)
    }

    /// Waits for a socket slot of `addr`; `None` when `addr` is not capped.
    pub(crate) async fn acquire(
        &self,
        addr: &ServerAddr,
    ) -> io::Result<Option<OwnedSemaphorePermit>> {
        let Some((_, sem)) = self.caps.get(addr) else {
            return Ok(None);
        };
        // The semaphore is never closed; an error would mean it was.
        sem.clone()
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| io::Error::other("socket cap closed"))
    }
}

/// A pooled upstream socket holding its slot of the server's cap until it is dropped.
#[derive(Debug)]
pub(crate) struct Capped {
    pub(crate) conn: Stream,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for Capped {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connection::connected(&self.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(port: u16) -> ServerAddr {
        ServerAddr::Inet(([127, 0, 0, 1], port).into())
    }

    #[tokio::test]
    async fn caps_add_up_per_address_and_zero_means_none() {
        let caps = SocketCaps::new([(inet(1), 2), (inet(1), 3), (inet(2), 0), (inet(3), 1)]);
        assert_eq!(caps.cap(&inet(1)), Some(5));
        assert_eq!(caps.cap(&inet(2)), None);
        assert_eq!(caps.cap(&inet(4)), None);
        assert!(caps.acquire(&inet(2)).await.unwrap().is_none());
        let p = caps.acquire(&inet(3)).await.unwrap();
        assert!(p.is_some());
        let three = inet(3);
        let second = caps.acquire(&three);
        tokio::pin!(second);
        assert!(
            futures_poll_once(second.as_mut()).await.is_none(),
            "the second socket waits for the first"
        );
        drop(p);
        assert!(second.await.unwrap().is_some());
    }

    /// Polls `f` once: its output if it is ready at once.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| match Pin::new(&mut f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
