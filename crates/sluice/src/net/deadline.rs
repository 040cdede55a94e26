//! A send timeout (nginx `send_timeout`; the edge's clients, the admin endpoint): a stream
//! wrapper below hyper whose writes (flushes, shutdowns) fail with `TimedOut` once one has
//! been pending for longer than the timeout, so a peer that stops reading is closed. Armed
//! only when a write would block; reads pass through (read timers are elsewhere).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io` with a send timeout on its write side.
#[derive(Debug)]
pub(crate) struct SendDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// Allocated on the first write that would block, then reused.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A write is pending since the timer was last set.
    armed: bool,
}

impl<IO> SendDeadline<IO> {
    pub(crate) fn new(io: IO, timeout: Duration) -> Self {
        SendDeadline {
            io,
            timeout,
            sleep: None,
            armed: false,
        }
    }

    /// Passes a finished write through (disarming the timer), or arms the timer for a
    /// pending one and fails it once the timer has run out.
    fn guard<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        if !self.armed {
            self.armed = true;
            let at = Instant::now() + self.timeout;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match self.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client did not read for {:?} (send timeout)", self.timeout),
            ))),
            _ => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendDeadline<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write(cx, b);
        me.guard(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        me.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_flush(cx);
        me.guard(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.io).poll_shutdown(cx);
        me.guard(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write_after_the_timeout() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = SendDeadline::new(a, T);
        // Writes that fit complete at once and arm nothing.
        w.write_all(&[1u8; 1024]).await.unwrap();
        assert!(
            !w.armed && w.sleep.is_none(),
            "no timer for writes that complete"
        );
        let start = Instant::now();
        let err = w.write_all(&[2u8; 10]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), T);
        // Reading was never blocked.
        let mut got = [0u8; 1024];
        b.read_exact(&mut got).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_never_cut() {
        let (a, mut b) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 100];
            let mut total = 0;
            // Drains 100 bytes every 50 s: each gap is under the timeout, the whole is not.
            while total < 10 * 1024 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        let mut w = SendDeadline::new(a, T);
        let start = Instant::now();
        w.write_all(&[3u8; 10 * 1024]).await.unwrap();
        w.flush().await.unwrap();
        assert!(start.elapsed() > T * 10, "took {:?}", start.elapsed());
        drop(w);
        assert_eq!(reader.await.unwrap(), 10 * 1024);
    }
}
