//! The streams the L4 pump (`l4::forward`) can drive: tokio readiness plus the raw
//! descriptor (for splice(2)), implemented for TCP and unix-domain streams. TCP also gets
//! the `MSG_MORE` write that lets the last bytes share a segment with the FIN. No pumping
//! logic here.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use tokio::io::{AsyncRead, AsyncWrite, Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

/// A socket `forward` can pump: tokio readiness (`readable`/`writable`/`try_io`) plus the
/// raw descriptor, so splice(2) can be driven by tokio's reactor. Everything takes `&self`
/// so both directions share one stream without locks.
pub trait Pumpable: AsyncRead + AsyncWrite + AsRawFd + AsFd + Send + Sync + Unpin {
    /// Waits until the stream may be readable (see `TcpStream::readable`).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Waits until the stream may be writable.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Runs `f` if the stream is ready for `interest`; clears readiness when `f` returns
    /// `WouldBlock`.
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    /// Non-blocking read (readiness-aware).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Non-blocking write (readiness-aware).
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Waits until the stream may be ready for `interest`; the readiness says whether the
    /// peer's end of stream has arrived (`is_read_closed`).
    fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + Send;
    /// Like `try_write`, for the last bytes before this side's shutdown or close: on TCP
    /// they are sent with `MSG_MORE`, so the kernel holds them until the FIN that follows
    /// and sends both in one segment. A plain write elsewhere.
    fn try_write_last(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write(buf)
    }
    /// Disables Nagle where that means something (TCP); a no-op elsewhere.
    fn set_nodelay(&self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! impl_pumpable {
    ($t:ty) => {
        fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
            <$t>::readable(self)
        }
        fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
            <$t>::writable(self)
        }
        fn try_io<R>(
            &self,
            interest: Interest,
            f: impl FnOnce() -> io::Result<R>,
        ) -> io::Result<R> {
            <$t>::try_io(self, interest, f)
        }
        fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
            <$t>::try_read(self, buf)
        }
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            <$t>::try_write(self, buf)
        }
        fn ready(&self, interest: Interest) -> impl Future<Output = io::Result<Ready>> + Send {
            <$t>::ready(self, interest)
        }
    };
}

impl Pumpable for TcpStream {
    impl_pumpable!(TcpStream);
    fn set_nodelay(&self) -> io::Result<()> {
        TcpStream::set_nodelay(self, true)
    }
    fn try_write_last(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(self).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
        })
    }
}

impl Pumpable for UnixStream {
    impl_pumpable!(UnixStream);
}
