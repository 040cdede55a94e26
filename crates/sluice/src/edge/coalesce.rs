//! Holds the TLS 1.3 session ticket rustls writes after the client's Finished (a write and a
//! peer wake-up of its own) so that it leaves with the server's first h2 bytes in one `writev`,
//! and an HTTP/1 connection's last response so that close_notify joins it. Reads TLS record
//! headers only; its shutdown leaves the socket to the `close` that follows (no `shutdown(2)`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// TLS record content type of encrypted records (TLS 1.3 handshake and all application data).
const APPLICATION_DATA: u8 = 23;
/// Most bytes of a closing connection's last response held for its close_notify (a small
/// response: larger ones go out as they are written).
const MAX_LAST_WRITE: usize = 16 * 1024;
/// Flushes that may leave a closing connection's held bytes: hyper's write loop and its
/// shutdown each flush once before the close_notify is written.
const DEFERRED_FLUSHES: u8 = 2;

/// Follows TLS record boundaries through a byte stream, noting whether an application_data
/// record header went by.
#[derive(Debug, Default)]
struct Records {
    header: [u8; 5],
    have: usize,
    body_left: usize,
    saw_app_data: bool,
}

impl Records {
    fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(b.len());
                self.body_left -= n;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.have).min(b.len());
            self.header[self.have..self.have + n].copy_from_slice(&b[..n]);
            self.have += n;
            b = &b[n..];
            if self.have == 5 {
                self.saw_app_data |= self.header[0] == APPLICATION_DATA;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Handshake: writes pass; record headers are followed both ways.
    Watching {
        sent: Records,
        received: Records,
        /// The last write took every byte it was given (nothing of ours is pending).
        complete: bool,
    },
    /// TLS 1.3 after the client's Finished: writes are held until [`Coalesce::release`].
    Holding,
    /// After release: held bytes go out in front of the next write (or at shutdown; `eager`:
    /// at the next flush too), then plain pass-through.
    Released { eager: bool },
}

/// `inner` with the post-handshake TLS 1.3 flight held back until the first application write.
#[derive(Debug)]
pub(crate) struct Coalesce<S: AsyncWrite + Unpin> {
    inner: S,
    phase: Phase,
    held: Vec<u8>,
    /// Set (by the edge's service) once the response being written is the connection's
    /// last: after release, writes are held until the close_notify joins them.
    closing: Option<Arc<AtomicBool>>,
    /// Flushes that found held bytes of a closing connection and left them (waking the
    /// task each time); after [`DEFERRED_FLUSHES`] the next flush sends them.
    deferred: u8,
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    pub(crate) fn new(inner: S) -> Self {
        Coalesce {
            inner,
            phase: Phase::Watching {
                sent: Records::default(),
                received: Records::default(),
                complete: true,
            },
            held: Vec::new(),
            closing: None,
            deferred: 0,
        }
    }

    /// As [`Coalesce::new`], and once `closing` is set (the last response's body has ended
    /// and hyper closes after it), what is written next, at most [`MAX_LAST_WRITE`] bytes,
    /// waits for the close_notify: one `writev` and one TCP segment for both. hyper flushes
    /// twice (its write loop, then its shutdown) before the close_notify comes, in the same
    /// task poll; each flush that leaves bytes wakes the task, so that if no shutdown
    /// follows they still go out within [`DEFERRED_FLUSHES`] more polls.
    pub(crate) fn with_close_hint(inner: S, closing: Arc<AtomicBool>) -> Self {
        let mut c = Coalesce::new(inner);
        c.closing = Some(closing);
        c
    }

    fn closing(&self) -> bool {
        self.closing
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// The handshake is done: what was held leaves with the next write or the shutdown, or
    /// with `eager` already at the next flush. HTTP/1 must be eager: a client that does not
    /// set TCP_NODELAY holds its request (Nagle) until its Finished is acknowledged, and
    /// with nothing to send back our delayed ACK would stall it for 40 ms. An h2 server
    /// writes its SETTINGS at once, which the ticket joins.
    pub(crate) fn release(&mut self, eager: bool) {
        self.phase = Phase::Released { eager };
    }

    /// Bytes held back right now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes held bytes in front of `bufs`; returns how many of `bufs`' bytes were taken.
    fn poll_write_with_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&self.held));
            all.extend_from_slice(bufs);
            let n = match Pin::new(&mut self.inner).poll_write_vectored(cx, &all) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if n < self.held.len() {
                self.held.drain(..n);
                continue;
            }
            let taken = n - self.held.len();
            self.held = Vec::new();
            self.deferred = 0;
            if taken > 0 {
                return Poll::Ready(Ok(taken));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.held) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(self.held.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.held = Vec::new();
        self.deferred = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Phase::Watching {
            sent,
            received,
            complete,
        } = &mut this.phase
        {
            received.feed(&buf.filled()[before..]);
            // The client encrypts only once it has our ServerHello (TLS 1.3; TLS 1.2 never
            // sees an application_data record from us before the handshake ends), and with all
            // of our flight out, whatever we write next comes after its Finished.
            if sent.saw_app_data && received.saw_app_data && *complete {
                this.phase = Phase::Holding;
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(b)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.phase {
            Phase::Watching { sent, complete, .. } => {
                let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
                if let Poll::Ready(Ok(mut n)) = r {
                    let total: usize = bufs.iter().map(|b| b.len()).sum();
                    *complete = n == total;
                    for b in bufs {
                        let k = n.min(b.len());
                        sent.feed(&b[..k]);
                        n -= k;
                    }
                }
                r
            }
            Phase::Holding => {
                let mut n = 0;
                for b in bufs {
                    this.held.extend_from_slice(b);
                    n += b.len();
                }
                Poll::Ready(Ok(n))
            }
            Phase::Released { .. } => {
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                if this.closing() && this.held.len() + total <= MAX_LAST_WRITE {
                    for b in bufs {
                        this.held.extend_from_slice(b);
                    }
                    return Poll::Ready(Ok(total));
                }
                this.poll_write_with_held(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Held bytes are not application data: unless eager, they wait for the next write
        // (hyper flushes on every pass, before it has anything to say) or the shutdown.
        match this.phase {
            Phase::Holding => Poll::Ready(Ok(())),
            Phase::Released { .. }
                if !this.held.is_empty() && this.deferred < DEFERRED_FLUSHES && this.closing() =>
            {
                this.deferred += 1;
                cx.waker().wake_by_ref();
                Poll::Ready(Ok(()))
            }
            Phase::Released { eager: true } => {
                std::task::ready!(this.poll_write_held(cx))?;
                Pin::new(&mut this.inner).poll_flush(cx)
            }
            Phase::Watching { .. } | Phase::Released { .. } => {
                Pin::new(&mut this.inner).poll_flush(cx)
            }
        }
    }

    /// Sends what is held but leaves the socket's write side open: the edge closes the
    /// connection as soon as hyper's shutdown returns, and `close` sends the FIN (a
    /// `shutdown(SHUT_WR)` first is one more syscall per connection; nginx makes none).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }
}

struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

impl<S: AsyncWrite + Unpin> Drop for Coalesce<S> {
    fn drop(&mut self) {
        // Only an alert can be held without a release (the handshake failed after the
        // client's Finished): one last non-blocking try to send it, as tokio-rustls does.
        // Or a closing connection's last response whose shutdown never came.
        if self.held.is_empty() || !(matches!(self.phase, Phase::Holding) || self.closing()) {
            return;
        }
        let waker = Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        let _ = Pin::new(&mut self.inner).poll_write(&mut cx, &self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A duplex end that takes whole vectored writes and counts the writes that sent bytes.
    struct Recorder {
        io: DuplexStream,
        writes: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(b)])
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let r = Pin::new(&mut self.io).poll_write(cx, &all);
            if let Poll::Ready(Ok(n)) = r {
                assert_eq!(n, all.len(), "the test duplex is large enough");
                self.writes += usize::from(n > 0);
            }
            r
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn configs() -> (Arc<ServerConfig>, RootCertStore) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["edge.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(crate::tls::edge_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13, &TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], pk)
            .unwrap();
        server.send_tls13_tickets = 1;
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        (Arc::new(server), roots)
    }

    /// What the server's writes looked like on one connection.
    #[derive(Debug)]
    struct Seen {
        /// Bytes held when the handshake returned.
        held: usize,
        /// Writes that sent bytes: during the handshake, after the flush that follows
        /// `release`, after the first data write.
        handshake: usize,
        flushed: usize,
        end: usize,
        kind: HandshakeKind,
    }

    /// One connection: handshake, release, flush, the server writes "hello" and closes.
    async fn one(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, eager: bool) -> Seen {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
        let srv = tokio::spawn(async move {
            let io = Coalesce::new(Recorder { io: a, writes: 0 });
            let mut tls = acceptor.accept(io).await.unwrap();
            let writes = |t: &tokio_rustls::server::TlsStream<Coalesce<Recorder>>| {
                t.get_ref().0.get_ref().writes
            };
            let (held, handshake) = (tls.get_ref().0.held(), writes(&tls));
            tls.get_mut().0.release(eager);
            tls.flush().await.unwrap();
            let flushed = writes(&tls);
            tls.write_all(b"hello").await.unwrap();
            tls.flush().await.unwrap();
            let end = writes(&tls);
            tls.shutdown().await.unwrap();
            (held, handshake, flushed, end)
        });
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        let name = ServerName::try_from("edge.test").unwrap();
        let mut tls = connector.connect(name, b).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        let kind = tls.get_ref().1.handshake_kind().unwrap();
        let (held, handshake, flushed, end) = srv.await.unwrap();
        Seen {
            held,
            handshake,
            flushed,
            end,
            kind,
        }
    }

    fn client(
        roots: RootCertStore,
        v: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[v])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    #[tokio::test]
    async fn tls13_ticket_leaves_with_the_first_write_and_still_resumes() {
        let (server, roots) = configs();
        let client = client(roots, &TLS13);
        let s = one(&server, &client, false).await;
        assert!(s.held > 0, "the ticket is held after the handshake: {s:?}");
        assert_eq!(s.handshake, 1, "only the first flight went out: {s:?}");
        assert_eq!(s.flushed, 1, "a flush does not send it: {s:?}");
        assert_eq!(s.end, 2, "ticket and data left in one write: {s:?}");
        assert_eq!(s.kind, HandshakeKind::Full);
        // The held ticket reached the client: the next connection resumes with it.
        let s = one(&server, &client, false).await;
        assert!(s.held > 0);
        assert_eq!((s.handshake, s.flushed, s.end), (1, 1, 2), "{s:?}");
        assert_eq!(s.kind, HandshakeKind::Resumed);
    }

    #[tokio::test]
    async fn eager_release_sends_the_ticket_at_the_next_flush() {
        let (server, roots) = configs();
        let client = client(roots, &TLS13);
        let s = one(&server, &client, true).await;
        assert!(s.held > 0);
        assert_eq!((s.handshake, s.flushed, s.end), (1, 2, 3), "{s:?}");
        let s = one(&server, &client, true).await;
        assert_eq!(s.kind, HandshakeKind::Resumed);
    }

    #[tokio::test]
    async fn tls12_final_flight_is_never_held() {
        let (server, roots) = configs();
        let client = client(roots, &TLS12);
        let s = one(&server, &client, false).await;
        assert_eq!(s.held, 0);
        assert_eq!(
            s.handshake, 2,
            "first flight, then the server's Finished: {s:?}"
        );
        assert_eq!((s.flushed, s.end), (2, 3), "{s:?}");
        assert_eq!(s.kind, HandshakeKind::Full);
        let s = one(&server, &client, false).await;
        assert_eq!(s.held, 0);
        assert_eq!(s.kind, HandshakeKind::Resumed);
    }

    #[tokio::test]
    async fn a_closing_connections_last_response_leaves_with_its_close_notify() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let closing = Arc::new(AtomicBool::new(false));
        let mut c = Coalesce::with_close_hint(Recorder { io: a, writes: 0 }, closing.clone());
        let writes = |c: &Coalesce<Recorder>| (c.get_ref().writes, c.held());
        c.release(true);
        c.write_all(b"keep").await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(writes(&c), (1, 0), "not closing: written at once");
        closing.store(true, Ordering::Relaxed);
        // Whatever happens, held bytes leave by the third flush.
        c.write_all(b"more").await.unwrap();
        c.flush().await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(writes(&c), (1, 4));
        c.flush().await.unwrap();
        assert_eq!(writes(&c), (2, 0));
        // Larger than a small last response: written as it comes.
        c.write_all(&[b'x'; MAX_LAST_WRITE + 1]).await.unwrap();
        assert_eq!(writes(&c), (3, 0));
        // hyper's order: response, flush, flush (its shutdown), close_notify, shutdown.
        c.write_all(b"response").await.unwrap();
        c.flush().await.unwrap();
        c.flush().await.unwrap();
        c.write_all(b"notify").await.unwrap();
        assert_eq!(writes(&c), (3, 14));
        c.shutdown().await.unwrap();
        assert_eq!(writes(&c), (4, 0), "one write for both");
        drop(c);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"keepmorex"));
        assert!(got.ends_with(b"xresponsenotify"));
        assert_eq!(got.len(), 8 + MAX_LAST_WRITE + 1 + 14);
    }

    #[test]
    fn record_headers_are_followed_across_split_writes() {
        let mut r = Records::default();
        // A handshake record (type 22) whose 3-byte body is all 23s, header split in two.
        r.feed(&[22, 3, 3]);
        r.feed(&[0, 3, 23, 23]);
        r.feed(&[23]);
        assert!(!r.saw_app_data, "23 inside a record body is not a header");
        r.feed(&[23, 3]);
        r.feed(&[3, 0, 1, 0]);
        assert!(r.saw_app_data);
    }
}
