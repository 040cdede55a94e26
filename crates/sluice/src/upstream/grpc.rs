//! gRPC's edge-side rules for `protocol = "grpc"` backends: the `grpc-timeout` request header
//! (strict parser, fuzz target `grpc_timeout`), the trailers-only error answer (HTTP 200,
//! `grpc-status`, `grpc-message`) an edge failure becomes, and a response body that ends with
//! DEADLINE_EXCEEDED trailers when the call's deadline passes. No HTTP/2 or pooling here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::time::{Instant, Sleep};

use super::{Body, UpstreamError};

/// The request header that carries the call's deadline.
pub(crate) static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// gRPC status codes the edge itself sends.
pub(crate) const DEADLINE_EXCEEDED: u8 = 4;
const PERMISSION_DENIED: u8 = 7;
const RESOURCE_EXHAUSTED: u8 = 8;
const UNIMPLEMENTED: u8 = 12;
const INTERNAL: u8 = 13;
pub(crate) const UNAVAILABLE: u8 = 14;
const UNAUTHENTICATED: u8 = 16;

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), nothing else (gRPC's HTTP/2 protocol spec). None for anything malformed: the call
/// then runs without a deadline of the edge's own, as if the header were absent.
pub(crate) fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 99_999_999: no overflow below, in any unit.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline a request's `grpc-timeout` sets (the first value; a malformed one sets none).
pub(crate) fn deadline(headers: &HeaderMap) -> Option<Instant> {
    let d = parse_timeout(headers.get(&GRPC_TIMEOUT)?.as_bytes())?;
    Instant::now().checked_add(d)
}

/// The gRPC status for an HTTP error status the edge would have answered with, as nginx's
/// gRPC gateway error pages map them (and gRPC's HTTP-to-gRPC table): 502/503/504 and 429
/// are UNAVAILABLE, 408 DEADLINE_EXCEEDED, 413/414/431 RESOURCE_EXHAUSTED, the rest INTERNAL.
pub(crate) fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        408 => DEADLINE_EXCEEDED,
        413 | 414 | 431 => RESOURCE_EXHAUSTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => INTERNAL,
    }
}

/// nginx's `grpc-message` texts for the codes the edge sends.
fn message(code: u8) -> &'static str {
    match code {
        DEADLINE_EXCEEDED => "deadline exceeded",
        PERMISSION_DENIED => "permission denied",
        RESOURCE_EXHAUSTED => "resource exhausted",
        UNIMPLEMENTED => "unimplemented",
        UNAVAILABLE => "unavailable",
        UNAUTHENTICATED => "unauthenticated",
        _ => "internal",
    }
}

/// `grpc-status` and `grpc-message` for `code`.
fn status_fields(code: u8) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    h.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(code)));
    h.insert(
        GRPC_MESSAGE.clone(),
        HeaderValue::from_static(message(code)),
    );
    h
}

/// A trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`, `grpc-status`
/// and `grpc-message` in the one HEADERS frame, no body (what a gRPC client reads as a
/// failed call with that status, where a 502 page would read as a protocol error).
pub(crate) fn status_response(code: u8) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|e| match e {}).boxed());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.extend(status_fields(code));
    resp
}

/// A response body that, when `deadline` passes before the app's body ended, drops it (the
/// app's stream is reset) and ends with DEADLINE_EXCEEDED trailers instead.
pub(crate) struct Deadline {
    inner: Option<Body>,
    sleep: Pin<Box<Sleep>>,
}

impl Deadline {
    pub(crate) fn new(inner: Body, deadline: Instant) -> Self {
        Deadline {
            inner: Some(inner),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(r) = Pin::new(inner).poll_frame(cx) {
            if r.is_none() {
                this.inner = None;
            }
            return Poll::Ready(r);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.inner = None;
                let trailers = status_fields(DEADLINE_EXCEEDED);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_strictly() {
        assert_eq!(parse_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"1s",
            b"123456789S",
            b" 1S",
            b"1 S",
            b"-1S",
            b"1.5S",
            b"\xff",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn failures_map_to_nginx_grpc_codes() {
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), UNAVAILABLE);
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), UNAVAILABLE);
        assert_eq!(code_for(StatusCode::GATEWAY_TIMEOUT), UNAVAILABLE);
        assert_eq!(code_for(StatusCode::REQUEST_TIMEOUT), DEADLINE_EXCEEDED);
        assert_eq!(code_for(StatusCode::PAYLOAD_TOO_LARGE), RESOURCE_EXHAUSTED);
        assert_eq!(code_for(StatusCode::BAD_REQUEST), INTERNAL);
        let r = status_response(UNAVAILABLE);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "unavailable");
        assert!(r.body().is_end_stream());
    }

    /// An app body that never sends anything.
    struct Silent;

    impl HttpBody for Silent {
        type Data = Bytes;
        type Error = UpstreamError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_ends_the_body_with_deadline_exceeded() {
        let mut b = Deadline::new(Silent.boxed(), Instant::now() + Duration::from_secs(2));
        let t = b.frame().await.unwrap().unwrap().into_trailers().unwrap();
        assert_eq!(t["grpc-status"], "4");
        assert_eq!(t["grpc-message"], "deadline exceeded");
        assert!(b.frame().await.is_none());
    }
}
