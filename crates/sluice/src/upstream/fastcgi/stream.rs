//! A FastCGI exchange after the request head went out: the STDIN writer task, the STDERR
//! logger (escaped, capped per request) and the response body, which hands on each STDOUT
//! record as a frame (never collecting) until END_REQUEST, then returns the connection to
//! the idle pool when it was kept. Timeouts are added by `IdleTimeout`; no parsing of the
//! CGI head here (`response`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::pool::IdlePool;
use super::record::{self, Record, REQUEST_COMPLETE, STDIN};
use crate::net::Stream;
use crate::upstream::uwsgi::{write_all, CHUNK};
use crate::upstream::{BoxError, ServerAddr, UpstreamError};

/// Most bytes of an app's STDERR logged per request (nginx logs stderr lines up to its
/// error-log line length); the rest is counted, not logged.
const MAX_STDERR_LOG: usize = 4096;

/// Logs the app's STDERR records as warnings, escaped, at most [`MAX_STDERR_LOG`] bytes.
#[derive(Debug)]
pub(crate) struct StderrLog {
    server: ServerAddr,
    logged: usize,
    dropped: usize,
    seen: usize,
}

impl StderrLog {
    pub(crate) fn new(server: ServerAddr) -> Self {
        StderrLog {
            server,
            logged: 0,
            dropped: 0,
            seen: 0,
        }
    }

    /// STDERR bytes of this request so far.
    pub(crate) fn seen(&self) -> usize {
        self.seen
    }

    pub(crate) fn record(&mut self, b: &[u8]) {
        self.seen = self.seen.saturating_add(b.len());
        let room = MAX_STDERR_LOG - self.logged;
        let take = b.len().min(room);
        self.dropped += b.len() - take;
        let text = String::from_utf8_lossy(&b[..take]);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return;
        }
        self.logged += take;
        tracing::warn!(
            server = %self.server,
            "FastCGI sent in stderr: \"{}\"{}",
            text.escape_debug(),
            if take < b.len() { " (truncated)" } else { "" }
        );
    }
}

impl Drop for StderrLog {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                server = %self.server,
                "FastCGI stderr: {} more bytes of this request not logged",
                self.dropped
            );
        }
    }
}

/// The STDIN writer: gives the write half back when the whole body went out.
pub(crate) struct Writer(JoinHandle<Option<WriteHalf<Stream>>>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts writing exactly `len` body bytes as STDIN records, then the empty STDIN record.
/// Each chunk written notifies `progress` (the read timeout restarts while the upload moves).
pub(crate) fn spawn_stdin<B>(
    body: Pin<Box<B>>,
    len: u64,
    mut wr: WriteHalf<Stream>,
    timeout: Duration,
    progress: Arc<Notify>,
) -> Writer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Writer(tokio::spawn(async move {
        match write_stdin(body, len, &mut wr, timeout, &progress).await {
            Ok(()) => Some(wr),
            Err(e) => {
                tracing::debug!("FastCGI request body not sent whole: {e}");
                // Tell the app the body is cut short rather than let it wait.
                let _ = tokio::time::timeout(timeout, wr.shutdown()).await;
                None
            }
        }
    }))
}

async fn write_stdin<B>(
    mut body: Pin<Box<B>>,
    len: u64,
    wr: &mut WriteHalf<Stream>,
    t: Duration,
    progress: &Notify,
) -> Result<(), UpstreamError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut left = len;
    let mut out = Vec::with_capacity(CHUNK + 2 * record::HEADER_LEN);
    // Bounded: each pass consumes a frame of a finite body or times out.
    while left > 0 {
        let data = match tokio::time::timeout(t, body.frame()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(None) => {
                return Err(UpstreamError::BadRequest(
                    "body shorter than Content-Length".into(),
                ))
            }
            Ok(Some(Err(e))) => return Err(UpstreamError::BadRequest(e.into().to_string())),
            Ok(Some(Ok(frame))) => frame.into_data().ok(),
        };
        let Some(data) = data else { continue };
        if data.len() as u64 > left {
            return Err(UpstreamError::BadRequest(
                "body longer than Content-Length".into(),
            ));
        }
        left -= data.len() as u64;
        // The end record goes with the last part of the last frame: one write.
        for (i, part) in data.chunks(CHUNK).enumerate() {
            out.clear();
            record::stream(&mut out, STDIN, part);
            if left == 0 && (i + 1) * CHUNK >= data.len() {
                record::end_stream(&mut out, STDIN);
            }
            write_all(wr, &out, t).await?;
        }
        progress.notify_one();
    }
    if len == 0 {
        out.clear();
        record::end_stream(&mut out, STDIN);
        write_all(wr, &out, t).await?;
    }
    Ok(())
}

/// Where the write half is when the response ends.
pub(crate) enum WriteSide {
    /// The whole request went out before the response was read.
    Done(WriteHalf<Stream>),
    /// Still with the STDIN writer.
    Writing(Writer),
}

/// Returns the connection to this pool after a complete exchange (FCGI_KEEP_CONN sent).
pub(crate) struct KeepTo {
    pub(crate) pool: Arc<IdlePool>,
    pub(crate) addr: ServerAddr,
}

/// The response body: STDOUT records from the app until END_REQUEST.
pub(crate) struct FastCgiBody {
    rd: Option<ReadHalf<Stream>>,
    /// Undecoded bytes (at most one record plus one read).
    buf: BytesMut,
    /// STDOUT bytes read with the head, handed on first.
    first: Option<Bytes>,
    wr: Option<WriteSide>,
    keep: Option<KeepTo>,
    stderr: StderrLog,
    done: bool,
}

impl FastCgiBody {
    pub(crate) fn new(
        rd: ReadHalf<Stream>,
        buf: BytesMut,
        first: Bytes,
        wr: WriteSide,
        keep: Option<KeepTo>,
        stderr: StderrLog,
    ) -> Self {
        FastCgiBody {
            rd: Some(rd),
            buf,
            first: (!first.is_empty()).then_some(first),
            wr: Some(wr),
            keep,
            stderr,
            done: false,
        }
    }

    /// END_REQUEST arrived: keep the connection when the app served the request, nothing
    /// else came after it and the request went out whole.
    fn finish(&mut self, protocol_status: u8, cx: &mut Context<'_>) {
        self.done = true;
        let Some(keep) = self.keep.take() else { return };
        if protocol_status != REQUEST_COMPLETE || !self.buf.is_empty() {
            return;
        }
        let wr = match self.wr.take() {
            Some(WriteSide::Done(w)) => Some(w),
            Some(WriteSide::Writing(mut t)) => match Pin::new(&mut t.0).poll(cx) {
                Poll::Ready(Ok(w)) => w,
                _ => None,
            },
            None => None,
        };
        if let (Some(rd), Some(wr)) = (self.rd.take(), wr) {
            if rd.is_pair_of(&wr) {
                keep.pool.put(&keep.addr, rd.unsplit(wr));
            }
        }
    }
}

impl Body for FastCgiBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        // Bounded: each pass either returns, consumes a record or reads more bytes.
        while !this.done {
            match record::decode(&mut this.buf) {
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
                Ok(Some(Record::Stdout(b))) if !b.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Ok(Some(Record::Stdout(_))) => {}
                Ok(Some(Record::Stderr(b))) => this.stderr.record(&b),
                Ok(Some(Record::End {
                    protocol_status, ..
                })) => this.finish(protocol_status, cx),
                Ok(None) => {
                    let Some(rd) = this.rd.as_mut() else {
                        return Poll::Ready(None);
                    };
                    if this.buf.capacity() - this.buf.len() < CHUNK / 4 {
                        this.buf.reserve(CHUNK + record::HEADER_LEN + 256);
                    }
                    match ready!(tokio_util::io::poll_read_buf(
                        Pin::new(rd),
                        cx,
                        &mut this.buf
                    )) {
                        Ok(0) => {
                            return Poll::Ready(Some(Err(UpstreamError::Io(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "FastCGI app closed before END_REQUEST",
                            )))))
                        }
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(UpstreamError::Io(e)))),
                    }
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }
}
