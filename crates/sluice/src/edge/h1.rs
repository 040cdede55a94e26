//! HTTP/1.1 on one client connection (ALPN `http/1.1`) with hyper, giving hyper's
//! per-connection state back while the connection waits idle for its next request, as nginx
//! frees its request buffers on keep-alive: hyper's connection (two 8 KiB buffers, its
//! dispatcher) is taken apart when idle and built again when the client's next bytes arrive.
//! Also hands an upgraded (101) connection to its tunnel. Timers and shutdown are `drive`'s.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1::{Connection, Parts};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::access::LogBody;
use super::conn::ConnState;
use super::HttpFrontend;

/// The I/O hyper reads and writes: the client stream with bytes to replay first.
type Io<IO> = TokioIo<Resumable<IO>>;

/// Largest read while parked: the client's next bytes, replayed to the next hyper
/// connection. On the stack of the poll, not in the connection's state.
const PARKED_READ: usize = 2048;

/// One HTTP/1.1 client connection, serving or parked.
pub(super) struct H1<IO, S>
where
    S: HttpService<Incoming>,
{
    fe: Arc<HttpFrontend>,
    state: Arc<ConnState>,
    waits: Arc<Waits>,
    phase: Phase<IO, S>,
    /// Graceful close asked (shutdown, idle timeout, `keepalive_requests`): no more parking.
    closing: bool,
    /// `drive` asked for a park while this many requests had started (`park`).
    park_at: Option<u64>,
    /// The requests started when hyper was last built with bytes to read: no park before
    /// the next request starts. hyper holds a partial head as work in progress, and a head
    /// sent slowly stays under one header timer.
    no_park_at: u64,
}

enum Phase<IO, S>
where
    S: HttpService<Incoming>,
{
    /// hyper serves the connection (boxed: ~2 KiB that a parked connection does not keep).
    Serving(Box<Connection<Io<IO>, S>>),
    /// Idle between requests: only the stream and the service are kept.
    Parked(Io<IO>, S),
    /// hyper is done: close the stream (TLS close_notify, then FIN).
    Closing(Io<IO>),
    Done,
}

impl<IO, S> H1<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = LogBody> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(super) fn new(fe: &Arc<HttpFrontend>, state: Arc<ConnState>, io: IO, svc: S) -> Self {
        H1::with_first(fe, state, io, svc, Bytes::new())
    }

    /// As [`H1::new`], for a connection whose `first` bytes were already read from `io`.
    pub(super) fn with_first(
        fe: &Arc<HttpFrontend>,
        state: Arc<ConnState>,
        io: IO,
        svc: S,
        first: Bytes,
    ) -> Self {
        let waits = Arc::new(Waits::default());
        let io = TokioIo::new(Resumable {
            prefix: first,
            inner: io,
            waits: waits.clone(),
        });
        H1 {
            phase: Phase::Serving(Box::new(fe.h1.serve_connection(io, svc))),
            fe: fe.clone(),
            state,
            waits,
            closing: false,
            park_at: None,
            no_park_at: 0,
        }
    }

    /// Closes gracefully: after the response in flight (`Connection: close` on one not
    /// yet started), or at once when idle.
    pub(super) fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.closing = true;
        if let Phase::Serving(conn) = &mut self.phase {
            Pin::new(&mut **conn).graceful_shutdown();
        }
    }

    /// The connection has been idle for `edge::PARK_AFTER`: let go of hyper's connection at
    /// the next poll if it is idle then (see [`H1::idle`]).
    pub(super) fn park(mut self: Pin<&mut Self>) {
        self.park_at = Some(self.state.load().1);
    }

    /// Asked to park in this idle period, and hyper waits for the client's next request:
    /// nothing in flight, nothing unsent, a
    /// read pending, and the last request left the connection reusable (`RequestGuard::
    /// reusable`; never before the first request, while hyper's header timeout runs, as
    /// nginx's `client_header_timeout`).
    fn idle(me: &Parking<'_>) -> bool {
        if me.closing || me.park_at.is_none() || me.waits.load() != READ_BLOCKED {
            return false;
        }
        let (in_flight, started, reusable) = me.state.load();
        in_flight == 0 && reusable && started != me.no_park_at && me.park_at == Some(started)
    }

    /// A new hyper connection that first reads `first` (bytes the last one left unread, or
    /// the client's first bytes after a pause).
    fn resume(&mut self, mut io: Io<IO>, svc: S, first: Bytes) -> Phase<IO, S> {
        self.no_park_at = self.state.load().1;
        self.park_at = None;
        io.inner_mut().prefix = first;
        Phase::Serving(Box::new(self.fe.h1.serve_connection(io, svc)))
    }
}

impl<IO, S> Future for H1<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = LogBody> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        loop {
            // Polled in place; the phase (holding the TLS stream, ~1.5 KiB) moves only
            // when it changes.
            let parking = match &mut me.phase {
                Phase::Serving(conn) => match conn.poll_without_shutdown(cx) {
                    Poll::Ready(Ok(())) => false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => {
                        let parking = Parking {
                            closing: me.closing,
                            park_at: me.park_at,
                            waits: &me.waits,
                            state: &me.state,
                            no_park_at: me.no_park_at,
                        };
                        if !Self::idle(&parking) {
                            return Poll::Pending;
                        }
                        // An idle hyper connection closes at once; one that is not (a
                        // request it has not handed over yet) ends after it, and then the
                        // client's connection ends too.
                        Pin::new(&mut **conn).graceful_shutdown();
                        match conn.poll_without_shutdown(cx) {
                            Poll::Ready(Ok(())) => true,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                            Poll::Pending => {
                                me.closing = true;
                                return Poll::Pending;
                            }
                        }
                    }
                },
                Phase::Parked(io, _) if !me.closing => {
                    let mut buf = [0u8; PARKED_READ];
                    let mut rb = ReadBuf::new(&mut buf);
                    match Pin::new(&mut io.inner_mut().inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) => {
                            let got = Bytes::copy_from_slice(rb.filled());
                            let Phase::Parked(io, svc) =
                                std::mem::replace(&mut me.phase, Phase::Done)
                            else {
                                return Poll::Ready(Ok(()));
                            };
                            me.phase = if got.is_empty() {
                                // The client closed its idle connection.
                                Phase::Closing(io)
                            } else {
                                me.resume(io, svc, got)
                            };
                            continue;
                        }
                    }
                }
                Phase::Parked(..) => {
                    if let Phase::Parked(io, _) = std::mem::replace(&mut me.phase, Phase::Done) {
                        me.phase = Phase::Closing(io);
                    }
                    continue;
                }
                Phase::Closing(io) => {
                    // As hyper's own close: a failing shutdown only means the client left.
                    let _ = std::task::ready!(Pin::new(io.inner_mut()).poll_shutdown(cx));
                    me.phase = Phase::Done;
                    continue;
                }
                Phase::Done => return Poll::Ready(Ok(())),
            };
            // hyper's connection ended (or stopped to park).
            let Phase::Serving(conn) = std::mem::replace(&mut me.phase, Phase::Done) else {
                return Poll::Ready(Ok(()));
            };
            let Parts {
                mut io,
                read_buf,
                service,
                ..
            } = conn.into_parts();
            if let Some(to_tunnel) = me.state.take_handoff() {
                // hyper sent the 101: the stream is the tunnel's from here.
                io.inner_mut().prefix = read_buf;
                let _ = to_tunnel.send(Box::new(io.into_inner()));
                return Poll::Ready(Ok(()));
            }
            if !parking || me.closing {
                me.phase = Phase::Closing(io);
            } else if read_buf.is_empty() {
                // hyper, idle, read in this very poll and was told to wait: the stream will
                // wake this task when the client writes. Reading again now would cost a
                // system call per request for nothing.
                me.phase = Phase::Parked(io, service);
                return Poll::Pending;
            } else {
                me.phase = me.resume(io, service, read_buf);
            }
        }
    }
}

/// What [`H1::idle`] looks at (the fields beside the phase being polled).
struct Parking<'a> {
    closing: bool,
    park_at: Option<u64>,
    waits: &'a Waits,
    state: &'a ConnState,
    no_park_at: u64,
}

/// What the connection's I/O last waited for (bits), as hyper left it.
#[derive(Debug, Default)]
struct Waits(AtomicU8);

const READ_BLOCKED: u8 = 1;
const WRITE_BLOCKED: u8 = 2;

impl Waits {
    fn load(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    fn note<T>(&self, bit: u8, r: &Poll<T>) {
        if r.is_pending() {
            self.0.fetch_or(bit, Ordering::Relaxed);
        } else if self.load() & bit != 0 {
            self.0.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// The client stream under hyper: `prefix` (bytes read before this hyper connection)
/// first, and a note of which way it last blocked.
pub(super) struct Resumable<IO> {
    prefix: Bytes,
    inner: IO,
    waits: Arc<Waits>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Resumable<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.prefix.is_empty() {
            let n = me.prefix.len().min(buf.remaining());
            buf.put_slice(&me.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        me.waits.note(READ_BLOCKED, &r);
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Resumable<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, b);
        me.waits.note(WRITE_BLOCKED, &r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        me.waits.note(WRITE_BLOCKED, &r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_flush(cx);
        me.waits.note(WRITE_BLOCKED, &r);
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
