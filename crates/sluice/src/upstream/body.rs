//! Body plumbing shared by the upstream clients: an idle-timeout wrapper for response
//! bodies (a stalled server ends the body with `Timeout`), a task guard that aborts a
//! request-body writer when the response is dropped, and waiting with progress-reset
//! timeouts. No framing or protocol knowledge lives here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use super::UpstreamError;

/// Ends the inner body with [`UpstreamError::Timeout`] when no frame arrives for `idle`.
pub(crate) struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Made at the first wait: a body whose frames are there when asked for (a small
    /// response) never needs a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    _guard: Option<AbortOnDrop>,
}

impl<B> IdleTimeout<B> {
    /// `guard` (if any) lives as long as the body: drop the body, abort the task.
    pub(crate) fn new(inner: B, idle: Duration, guard: Option<AbortOnDrop>) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: None,
            armed: false,
            _guard: guard,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes, Error = UpstreamError> + Unpin,
{
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !this.armed {
                    let deadline = Instant::now() + this.idle;
                    match this.sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.armed = true;
                }
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(UpstreamError::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Aborts the task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Awaits `fut`, failing with `Timeout` after `idle` without a `progress` notification.
/// Each notification (a request-body chunk written) restarts the timer, so a slow but
/// moving upload is not cut off while a silent server still is.
pub(crate) async fn with_progress<F: Future>(
    fut: F,
    progress: &Notify,
    idle: Duration,
) -> Result<F::Output, UpstreamError> {
    tokio::pin!(fut);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Ok(out),
            _ = progress.notified() => sleep.as_mut().reset(Instant::now() + idle),
            _ = &mut sleep => return Err(UpstreamError::Timeout),
        }
    }
}

/// A request body that reports each data frame on `progress` (see [`with_progress`]).
pub(crate) struct Progress<B> {
    pub(crate) inner: B,
    pub(crate) progress: Arc<Notify>,
}

impl<B: Body + Unpin> Body for Progress<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &r {
            self.progress.notify_one();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
