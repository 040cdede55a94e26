//! Bodies of the HTTP/2 upstream client over the `h2` crate: the request pump (client body
//! frames to the app's stream within its flow-control window, trailers, a reset when the
//! client's body fails), tried once in the caller's task so a body already complete (a unary
//! gRPC message) costs no task, and the app's response body (data with its window released
//! at once, then trailers). No pooling, header rules or timeouts here (`h2.rs`, `body.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

use super::body::AbortOnDrop;
use super::h2_pool::Stream;
use super::{RequestBody, UpstreamError};

/// Moves the request body to the app's stream. Like hyper's own pipe, it takes the next
/// frame before asking for window (a body that never sends pins no connection window), and
/// holds at most one chunk beyond what the window has let out.
pub(crate) struct Pump {
    body: RequestBody,
    tx: SendStream<Bytes>,
    /// A chunk waiting for window, and whether the body ended with it.
    held: Option<(Bytes, bool)>,
    /// Told of each chunk sent (restarts the wait for the response head).
    progress: Arc<Notify>,
}

impl Pump {
    pub(crate) fn new(body: RequestBody, tx: SendStream<Bytes>, progress: Arc<Notify>) -> Self {
        Pump {
            body,
            tx,
            held: None,
            progress,
        }
    }

    /// Runs the pump as far as it goes now, in the caller's task; what is left (a body still
    /// streaming, or waiting for window) goes on a task of its own, aborted when the guard
    /// (held by the response body) drops.
    pub(crate) async fn start(mut self) -> Option<AbortOnDrop> {
        let done = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut self).poll(cx).is_ready()));
        if done.await {
            return None;
        }
        Some(AbortOnDrop(tokio::spawn(self)))
    }

    fn send(&mut self, data: Bytes, eos: bool) -> Result<(), h2::Error> {
        if !data.is_empty() {
            self.progress.notify_one();
        }
        self.tx.send_data(data, eos)
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // Bounded by the body's frames: each pass sends one or returns.
        loop {
            if let Poll::Ready(r) = this.tx.poll_reset(cx) {
                tracing::debug!("app reset the request stream: {r:?}");
                return Poll::Ready(());
            }
            if let Some((data, eos)) = this.held.take() {
                while this.tx.capacity() == 0 {
                    match this.tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(_) => return Poll::Ready(()),
                        Poll::Pending => {
                            this.held = Some((data, eos));
                            return Poll::Pending;
                        }
                    }
                }
                if this.send(data, eos).is_err() || eos {
                    return Poll::Ready(());
                }
                continue;
            }
            let frame = match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let _ = this.tx.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("request body failed: {e}");
                    this.tx.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(Ok(f))) => f,
            };
            match frame.into_data() {
                Ok(data) => {
                    let eos = this.body.is_end_stream();
                    if eos || data.is_empty() {
                        // In memory already and nothing follows it: no window to wait for
                        // (h2 sends it as the window allows).
                        if this.send(data, eos).is_err() || eos {
                            return Poll::Ready(());
                        }
                        continue;
                    }
                    this.tx.reserve_capacity(1);
                    this.held = Some((data, false));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        this.tx.reserve_capacity(0);
                        let _ = this.tx.send_trailers(trailers);
                        return Poll::Ready(());
                    }
                }
            }
        }
    }
}

/// The app's response body: DATA (each chunk's window given back at once, as hyper does),
/// then its trailers. Holds the stream's pool slot and the request pump until dropped.
pub(crate) struct RecvBody {
    rx: RecvStream,
    data_done: bool,
    /// Content-Length left, when the app sent one.
    remaining: Option<u64>,
    _slot: Stream,
    _pump: Option<AbortOnDrop>,
}

impl RecvBody {
    pub(crate) fn new(
        rx: RecvStream,
        content_length: Option<u64>,
        slot: Stream,
        pump: Option<AbortOnDrop>,
    ) -> Self {
        RecvBody {
            rx,
            data_done: false,
            remaining: content_length,
            _slot: slot,
            _pump: pump,
        }
    }
}

fn io_error(e: h2::Error) -> UpstreamError {
    UpstreamError::Io(io::Error::other(e))
}

impl HttpBody for RecvBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        if !this.data_done {
            match this.rx.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.rx.flow_control().release_capacity(data.len());
                    if let Some(r) = this.remaining.as_mut() {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io_error(e)))),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.rx.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(io_error(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
