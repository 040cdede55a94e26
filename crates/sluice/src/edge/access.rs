//! The edge's access log: where a request's line goes (`AccessLog`: its `access_log` sink and
//! the process log), written once when the response body ends or is dropped (`RequestLog`:
//! 499 when no response was started), and the body wrapper counting bytes sent. What a line
//! says is `record.rs`'s. No request handling.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use crate::addr::PeerAddr;
use crate::balance::Lease;
use crate::log::{json_records, json_str, time, LogSink};
use crate::spec::LineFormat;
use crate::upstream::{Body, UpstreamError};

use super::conn::RequestGuard;
use super::record::AccessRecord;

/// Where a frontend's access lines go, and what they say.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    pub sink: Option<LogSink>,
    pub format: Arc<LineFormat>,
    /// Also to the process log (target `sluice::access`, at info).
    pub stderr: bool,
    /// The frontend's per-request metric series (responses, upstream time).
    pub series: Arc<crate::metrics::RequestSeries>,
}

impl AccessLog {
    /// Writes `rec` to the process log (when `stderr` and `sluice::access` is enabled at info;
    /// a flat JSON record with `--log-format json`) and to the sink when set. The line is only
    /// formatted when someone reads it: with `RUST_LOG=warn` and no `access_log` a request
    /// costs no formatting.
    pub(crate) fn emit(&self, rec: &AccessRecord) {
        self.series.response(rec.status);
        let traced =
            self.stderr && tracing::enabled!(target: "sluice::access", tracing::Level::INFO);
        if !traced && self.sink.is_none() {
            return;
        }
        if traced && json_records() {
            tracing::info!(target: "sluice::access", json_record = %rec.to_json());
            if self.sink.is_none() {
                return;
            }
        }
        let line = rec.line(&self.format);
        if traced && !json_records() {
            tracing::info!(target: "sluice::access", "{line}");
        }
        if let Some(sink) = &self.sink {
            sink.write_line("access", &line);
        }
    }
}

impl AccessLog {
    /// A connection closed for its PROXY header (no request, so no access line): to the
    /// process log when `stderr`, as key=value text or, with `--log-format json`, a flat
    /// record (`peer`, `frontend`, `end`, `code`, `reason`).
    pub(crate) fn proxy_rejected(&self, peer: PeerAddr, frontend: &str, code: &str, reason: &str) {
        if !self.stderr || !tracing::enabled!(target: "sluice::conn", tracing::Level::INFO) {
            return;
        }
        if json_records() {
            let rec = format!(
                "{{\"peer\":\"{peer}\",\"time_iso8601\":\"{}\",\"frontend\":{},\"end\":\"proxy_rejected\",\"code\":{},\"reason\":{}}}",
                time::iso8601(SystemTime::now()),
                json_str(frontend),
                json_str(code),
                json_str(reason)
            );
            tracing::info!(target: "sluice::conn", json_record = %rec);
        } else {
            tracing::info!(
                target: "sluice::conn",
                "{peer} frontend={frontend} end=proxy_rejected reason={reason:?}"
            );
        }
    }
}

/// nginx's status for a client that closed the connection before the response.
pub(super) const CLIENT_CLOSED: u16 = 499;

/// One request's access line, written exactly once: when it is dropped. It says 499 until
/// the handler sets the response status, so a request whose service future hyper dropped
/// (the client closed, reset or half-closed before the response) is logged as nginx does.
pub(super) struct RequestLog {
    /// Boxed: the line travels with the request's future and then its response body, each
    /// moved by value a few times per request; a pointer moves cheaper than ~460 bytes.
    rec: Box<AccessRecord>,
    log: AccessLog,
    start: Instant,
}

impl RequestLog {
    pub(super) fn new(mut rec: AccessRecord, log: AccessLog, start: Instant) -> RequestLog {
        rec.status = CLIENT_CLOSED;
        RequestLog {
            rec: Box::new(rec),
            log,
            start,
        }
    }

    /// The record, to fill in (server, status) before it is written.
    pub(super) fn rec(&mut self) -> &mut AccessRecord {
        &mut self.rec
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.rec.request_time = self.start.elapsed();
        self.log.emit(&self.rec);
    }
}

/// The response body as sent to the client: counts data bytes, keeps the app server's
/// lease and the connection's request count until it ends, then logs the request once
/// (at the end of the body, on an error, or when hyper drops it early: then with the
/// status already sent and fewer bytes, as nginx does).
pub(super) struct LogBody {
    inner: Body,
    pending: Option<Pending>,
    /// Set when the body ends: the connection closes after it (`Coalesce` then sends the
    /// last bytes with the close_notify).
    closes: Option<Arc<AtomicBool>>,
}

struct Pending {
    // Dropped in this order: the line is written before the lease and the guard end.
    line: RequestLog,
    _lease: Option<Lease>,
    _guard: RequestGuard,
}

impl LogBody {
    pub(super) fn new(
        inner: Body,
        line: RequestLog,
        lease: Option<Lease>,
        guard: RequestGuard,
    ) -> LogBody {
        LogBody {
            inner,
            pending: Some(Pending {
                line,
                _lease: lease,
                _guard: guard,
            }),
            closes: None,
        }
    }

    /// The connection closes after this response: `hint` is set when the body ends.
    pub(super) fn closing(mut self, hint: Option<Arc<AtomicBool>>) -> LogBody {
        self.closes = hint;
        self
    }

    /// A body that logs nothing (an upgraded request's line is written by its tunnel).
    pub(super) fn bare(inner: Body) -> LogBody {
        LogBody {
            inner,
            pending: None,
            closes: None,
        }
    }

    fn finish(&mut self) {
        self.pending = None;
        if let Some(hint) = self.closes.take() {
            hint.store(true, Ordering::Relaxed);
        }
    }
}

impl HttpBody for LogBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(p)) = (frame.data_ref(), this.pending.as_mut()) {
                    p.line.rec.body_bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::info!("response body from upstream failed: {e}");
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
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
