//! The uwsgi response body: reads the socket in chunks of at most `CHUNK` bytes and hands
//! each on as a frame (never collecting), ending by Content-Length, chunked coding or EOF.
//! Timeouts are added by `IdleTimeout`; this type only frames bytes.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;

use super::response::Framing;
use crate::upstream::body::AbortOnDrop;
use crate::upstream::UpstreamError;

/// Largest read from the socket, hence largest frame.
pub const CHUNK: usize = 64 * 1024;
/// Longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Eof,
    Chunked(Chunk),
}

/// A streaming response body over the read side of an upstream connection.
pub(crate) struct UwsgiBody<R> {
    rd: R,
    buf: BytesMut,
    state: State,
    eof: bool,
    /// The request-body writer task: stops when the response is dropped.
    _writer: Option<AbortOnDrop>,
}

impl<R> UwsgiBody<R> {
    /// `leftover` is what was read past the response head.
    pub(crate) fn new(
        rd: R,
        leftover: BytesMut,
        framing: Framing,
        writer: Option<AbortOnDrop>,
    ) -> Self {
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Eof => State::Eof,
        };
        UwsgiBody {
            rd,
            buf: leftover,
            state,
            eof: false,
            _writer: writer,
        }
    }
}

fn bad(msg: &str) -> UpstreamError {
    UpstreamError::BadResponse(msg.to_string())
}

impl<R: AsyncRead + Unpin> UwsgiBody<R> {
    /// Produces a frame from buffered bytes, `Ok(None)` when more input is needed.
    /// Sets `state` to a terminal value when the body is complete.
    fn take(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        // Bounded: every pass consumes buffered bytes or returns.
        loop {
            match self.state {
                State::Length(0) | State::Chunked(Chunk::Done) => return Ok(None),
                State::Length(n) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let k = (self.buf.len() as u64).min(n) as usize;
                    self.state = State::Length(n - k as u64);
                    return Ok(Some(self.buf.split_to(k).freeze()));
                }
                State::Eof => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                State::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.advance(used);
                        self.state = State::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_LINE => return Ok(None),
                    _ => return Err(bad("bad chunk size line")),
                },
                State::Chunked(Chunk::Data(n)) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let k = (self.buf.len() as u64).min(n) as usize;
                    let left = n - k as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(self.buf.split_to(k).freeze()));
                }
                State::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(bad("chunk not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.state = State::Chunked(Chunk::Size);
                }
                State::Chunked(Chunk::Trailers) => {
                    // Trailer fields are dropped; the empty line ends the body.
                    match self.buf.windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            self.buf.advance(2);
                            self.state = State::Chunked(Chunk::Done);
                        }
                        Some(p) if p <= MAX_LINE => self.buf.advance(p + 2),
                        Some(_) => return Err(bad("trailer line too long")),
                        None if self.buf.len() <= MAX_LINE => return Ok(None),
                        None => return Err(bad("trailer line too long")),
                    }
                }
            }
        }
    }

    fn done(&self) -> bool {
        matches!(self.state, State::Length(0) | State::Chunked(Chunk::Done))
    }
}

impl<R: AsyncRead + Unpin> Body for UwsgiBody<R> {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        // Bounded: each pass either returns or reads more bytes from the socket.
        loop {
            match this.take() {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Some(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Ok(None) if this.done() => return Poll::Ready(None),
                Ok(None) => {}
            }
            if this.eof {
                return Poll::Ready(match this.state {
                    State::Eof => None,
                    _ => Some(Err(UpstreamError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed before the end of the body",
                    )))),
                });
            }
            if this.buf.capacity() - this.buf.len() < CHUNK / 4 {
                this.buf.reserve(CHUNK);
            }
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.rd),
                cx,
                &mut this.buf
            )) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(UpstreamError::Io(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
