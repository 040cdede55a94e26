//! A connection ALPN did not settle (plain HTTP, or TLS without ALPN): its first bytes tell
//! HTTP/2's connection preface from HTTP/1, then the version's own server takes over with
//! those bytes replayed: `h1::H1` or hyper's HTTP/2 connection. Nothing is parsed beyond
//! the 24 bytes of the preface; timers stay `drive`'s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::access::LogBody;
use super::conn::ConnState;
use super::h1::H1;
use super::{HttpFrontend, Rewind};

/// HTTP/2's connection preface (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type H2Conn<IO, S> = hyper::server::conn::http2::Connection<TokioIo<Rewind<IO>>, S, TokioExecutor>;

/// One connection, by the version its first bytes show.
pub(super) enum ByPreface<IO, S>
where
    S: HttpService<Incoming>,
{
    /// Reading up to the preface's length; `got` is a prefix of it so far.
    Reading {
        fe: Arc<HttpFrontend>,
        state: Arc<ConnState>,
        io: Option<(IO, S)>,
        got: Vec<u8>,
        closing: bool,
    },
    H1(H1<IO, S>),
    H2(Pin<Box<H2Conn<IO, S>>>),
    Done,
}

impl<IO, S> ByPreface<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = LogBody> + Unpin + Clone + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(super) fn new(fe: &Arc<HttpFrontend>, state: Arc<ConnState>, io: IO, svc: S) -> Self {
        ByPreface::Reading {
            fe: fe.clone(),
            state,
            io: Some((io, svc)),
            got: Vec::new(),
            closing: false,
        }
    }

    /// Idle long enough: HTTP/1 lets go of hyper's connection (`H1::park`).
    pub(super) fn park(self: Pin<&mut Self>) {
        if let ByPreface::H1(h1) = self.get_mut() {
            Pin::new(h1).park();
        }
    }

    /// Closes gracefully, as the version's own server does; before the version is known,
    /// at once (no request has started).
    pub(super) fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.get_mut() {
            ByPreface::Reading { closing, .. } => *closing = true,
            ByPreface::H1(h1) => Pin::new(h1).graceful_shutdown(),
            ByPreface::H2(h2) => h2.as_mut().graceful_shutdown(),
            ByPreface::Done => {}
        }
    }
}

impl<IO, S> Future for ByPreface<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = LogBody> + Unpin + Clone + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        let next = match me {
            ByPreface::H1(h1) => return Pin::new(h1).poll(cx),
            ByPreface::H2(h2) => return h2.as_mut().poll(cx).map_err(Into::into),
            ByPreface::Done => return Poll::Ready(Ok(())),
            ByPreface::Reading {
                fe,
                state,
                io,
                got,
                closing,
            } => {
                let Some((stream, _)) = io.as_mut() else {
                    return Poll::Ready(Ok(()));
                };
                let mut eof = false;
                while !*closing && got.len() < PREFACE.len() && PREFACE.starts_with(got) {
                    let mut buf = [0u8; PREFACE.len()];
                    let mut rb = ReadBuf::new(&mut buf[..PREFACE.len() - got.len()]);
                    match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            eof = true;
                            break;
                        }
                        Poll::Ready(Ok(())) => got.extend_from_slice(rb.filled()),
                    }
                }
                let Some((stream, svc)) = io.take() else {
                    return Poll::Ready(Ok(()));
                };
                if *closing || (eof && got.is_empty()) {
                    // Shut down before a byte came, or the client left without one.
                    ByPreface::Done
                } else if got.as_slice() == PREFACE {
                    let rewound = TokioIo::new(Rewind::new(std::mem::take(got), stream));
                    ByPreface::H2(Box::pin(fe.h2.serve_connection(rewound, svc)))
                } else {
                    let first = Bytes::from(std::mem::take(got));
                    ByPreface::H1(H1::with_first(fe, state.clone(), stream, svc, first))
                }
            }
        };
        *me = next;
        Pin::new(me).poll(cx)
    }
}
