//! HTTP/2 upstream client of `protocol = "h2c"` and `protocol = "grpc"` backends: the request
//! gets the same header rules as `http.rs` (hop-by-hop and `_` names removed, the edge's
//! forwarding fields, request id, client certificate, TLV headers), `:authority` = the
//! client's, and goes out on a pooled multiplexed connection (`h2_pool.rs`); trailers flow
//! back in the response body. gRPC adds `te: trailers`, the `grpc-timeout` deadline and
//! trailers-only error answers (`grpc.rs`). Server choice and retries are the edge's.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::sync::Notify;
use tokio_util::either::Either;

use super::body::{with_progress, AbortOnDrop, IdleTimeout};
use super::grpc;
use super::h2_body::{Pump, RecvBody};
use super::h2_pool::{H2Pool, H2Tls, Stream};
use super::headers::{add_request_id, drop_underscored, strip_hop_by_hop};
use super::{Body, RequestBody, RequestContext, ServerAddr, UpstreamError};

/// Settings of the HTTP/2 client.
#[derive(Debug, Clone)]
pub struct H2Opts {
    pub connect_timeout: Duration,
    /// Longest silence from the server: waiting for the head (restarted by each request
    /// body chunk sent) and between response body frames (nginx `grpc_read_timeout`).
    pub read_timeout: Duration,
    /// Pass header names containing `_` (nginx `underscores_in_headers`); dropped if false.
    pub underscores_in_headers: bool,
    /// PROXY v2 TLVs sent as request headers (`proxy_protocol_tlv_headers`).
    pub tlv_headers: Arc<[(crate::spec::TlvName, hyper::header::HeaderName)]>,
    /// gRPC (`protocol = "grpc"`): HTTP/2 clients only, `te: trailers`, `grpc-timeout`
    /// deadlines, unbuffered streams, failures as gRPC statuses.
    pub grpc: bool,
    /// gRPC only: TLS to the servers (nginx `grpc_pass grpcs://`); None: h2c.
    pub tls: Option<H2Tls>,
}

/// The client of one edge frontend; clones share the pool.
#[derive(Debug, Clone)]
pub struct H2Upstream {
    pool: H2Pool,
    opts: H2Opts,
}

static TE_TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

impl H2Upstream {
    pub fn new(opts: H2Opts) -> Self {
        H2Upstream {
            pool: H2Pool::new(opts.tls.clone()),
            opts,
        }
    }

    /// gRPC: requests and responses stream, whatever the frontend's buffering says.
    pub(crate) fn streams(&self) -> bool {
        self.opts.grpc
    }

    /// gRPC over HTTP/2: an edge failure answered as a trailers-only gRPC status. An
    /// HTTP/1.x client gets the edge's usual page (it cannot be sent gRPC).
    pub(crate) fn failure_response(
        &self,
        status: StatusCode,
        version: Version,
    ) -> Option<Response<Body>> {
        (self.opts.grpc && version == Version::HTTP_2)
            .then(|| grpc::status_response(grpc::code_for(status)))
    }

    /// Forwards `req` to the server at `addr`; the response body (and its trailers) stream.
    ///
    /// Not an `async fn`, nor is `exchange`: the request is checked and rewritten before the
    /// returned future exists, which then holds its parts once. As `async fn`s each kept the
    /// request twice more (a parameter stays in the state machine next to what it was moved
    /// into) in a ~1.9 KiB future that every call allocates and moves into its box.
    pub fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &'a RequestContext,
    ) -> impl Future<Output = Result<Response<Body>, UpstreamError>> + Send + 'a {
        let mut deadline = None;
        if self.opts.grpc {
            if req.version() != Version::HTTP_2 {
                return Either::Left(std::future::ready(Err(UpstreamError::BadRequest(
                    "gRPC needs HTTP/2 between the client and the edge".into(),
                ))));
            }
            deadline = grpc::deadline(req.headers());
        }
        let exchange = self.exchange(addr, req, ctx);
        Either::Right(match deadline {
            None => Either::Left(exchange),
            Some(deadline) => Either::Right(Deadlined {
                timeout: Box::pin(tokio::time::timeout_at(deadline, exchange)),
                deadline,
            }),
        })
    }

    /// One request/response exchange on a pooled stream; a connection found closed before
    /// the request left is dropped and the request sent once more on a fresh one. The request
    /// goes to `h2` straight from this task: its body is pumped here as far as it goes at
    /// once (all of a unary gRPC call's), and only a body still streaming gets a task.
    fn exchange<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Response<Body>, UpstreamError>> + Send + 'a {
        let (parts, body) = match self.rewrite(req, ctx) {
            Ok(req) => req.into_parts(),
            Err(e) => return Either::Left(std::future::ready(Err(e))),
        };
        Either::Right(async move {
            let progress = Arc::new(Notify::new());
            let mut fresh = false;
            let (slot, mut sender) = loop {
                let slot = self.pool.stream(addr, self.opts.connect_timeout).await?;
                // The pool found room, so the stream may open at once: only a wait (the peer
                // lowered its limit) needs the timer.
                let mut ready = std::pin::pin!(slot.sender().ready());
                let now = std::future::poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx))).await;
                let ready = match now {
                    Poll::Ready(r) => r,
                    Poll::Pending => {
                        with_progress(ready, &progress, self.opts.read_timeout).await?
                    }
                };
                match ready {
                    Ok(sender) => break (slot, sender),
                    Err(_) if !fresh => {
                        slot.mark_closed();
                        fresh = true;
                    }
                    Err(e) => return Err(map_error(e)),
                }
            };
            let eos = body.is_end_stream();
            // In a block: the request (borrowed here) is not kept across the awaits below.
            let (response, tx) = {
                let mut req = Request::from_parts(parts, ());
                if let Some(len) = body.size_hint().exact() {
                    // As hyper's client: a known length is declared when there is a body, or
                    // the method defines one.
                    let bodiless =
                        matches!(*req.method(), Method::GET | Method::HEAD | Method::CONNECT);
                    if len != 0 || !bodiless {
                        req.headers_mut()
                            .entry(header::CONTENT_LENGTH)
                            .or_insert_with(|| HeaderValue::from(len));
                    }
                }
                sender.send_request(req, eos).map_err(map_error)?
            };
            let pump = if eos {
                None
            } else {
                Pump::new(body, tx, progress.clone()).start().await
            };
            let resp = match pump {
                // The body went out whole (or there was none): nothing restarts the timer
                // now, and the pump's notifications (a stored permit) would only restart it
                // once.
                None => tokio::time::timeout(self.opts.read_timeout, response)
                    .await
                    .map_err(|_| UpstreamError::Timeout)?,
                Some(_) => with_progress(response, &progress, self.opts.read_timeout).await?,
            }
            .map_err(map_error)?;
            Ok(self.response(resp, slot, pump))
        })
    }

    /// The request as the app gets it: the edge's header rules and an absolute URI.
    fn rewrite(
        &self,
        req: Request<RequestBody>,
        ctx: &RequestContext,
    ) -> Result<Request<RequestBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let bad = |e: &dyn std::fmt::Display| {
            UpstreamError::BadRequest(format!("cannot address the app: {e}"))
        };
        // The client's URI parts are kept as they are (no reparsing): an HTTP/2 client's
        // `:authority` is there already, an HTTP/1.x client's Host is parsed here.
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        let authority = match uri.authority.take() {
            Some(a) => a,
            None => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok());
                Authority::try_from(host.unwrap_or(&ctx.server_name)).map_err(|e| bad(&e))?
            }
        };
        // (gRPC sends `te: trailers` whatever the client's TE said.)
        let trailers = self.opts.grpc
            || parts
                .headers
                .get_all(header::TE)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        // Room for what is added below at once: growing the map one insert at a time
        // rehashes it (about 400 instructions per request in callgrind).
        parts.headers.reserve(ctx.forwarding.fields.len() + 3);
        if !self.opts.underscores_in_headers {
            drop_underscored(&mut parts.headers);
        }
        ctx.forwarding.apply(&mut parts.headers);
        add_request_id(&mut parts.headers, ctx);
        super::client_cert::set_headers(&mut parts.headers, ctx.client_cert.as_deref());
        ctx.proxy_tlvs
            .set_headers(&mut parts.headers, &self.opts.tlv_headers);
        if trailers {
            // The one TE value HTTP/2 allows, and the one gRPC servers require.
            parts.headers.insert(header::TE, TE_TRAILERS.clone());
        }
        uri.scheme = Some(if self.opts.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri).map_err(|e| bad(&e))?;
        parts.version = Version::HTTP_2;
        Ok(Request::from_parts(parts, body))
    }

    /// The app's response: its body (frames and trailers) holds the stream slot (and the
    /// request pump) until it ends, with the read timeout between frames.
    fn response(
        &self,
        resp: Response<h2::RecvStream>,
        slot: Stream,
        pump: Option<AbortOnDrop>,
    ) -> Response<Body> {
        let (mut parts, rx) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        // One box around both (each frame's poll goes through one vtable).
        let body = RecvBody::new(rx, len, slot, pump);
        let body = IdleTimeout::new(body, self.opts.read_timeout, None).boxed();
        Response::from_parts(parts, body)
    }
}

/// An exchange under a gRPC call's deadline (`grpc-timeout`). The timeout is boxed: the
/// exchange's future is not `Unpin`, and only calls with a deadline pay for the box.
struct Deadlined<F> {
    timeout: std::pin::Pin<Box<tokio::time::Timeout<F>>>,
    deadline: tokio::time::Instant,
}

impl<F> Future for Deadlined<F>
where
    F: Future<Output = Result<Response<Body>, UpstreamError>>,
{
    type Output = Result<Response<Body>, UpstreamError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Poll::Ready(r) = self.timeout.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let deadline = self.deadline;
        // Whatever comes at or after the deadline (the app's own DEADLINE_EXCEEDED, sent
        // when its copy of the timeout ran out, may beat the edge's timer by a tick) is the
        // edge's DEADLINE_EXCEEDED: the edge enforces the deadline, not the app.
        if r.is_err() || tokio::time::Instant::now() >= deadline {
            return Poll::Ready(Ok(grpc::status_response(grpc::DEADLINE_EXCEEDED)));
        }
        Poll::Ready(match r {
            Ok(Ok(resp)) => Ok(resp.map(|b| grpc::Deadline::new(b, deadline).boxed())),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(grpc::status_response(grpc::DEADLINE_EXCEEDED)),
        })
    }
}

/// `h2`'s error for a request that got no response head: our own reset (the client's body
/// failed: the pump cancels the stream) is a bad request (400), anything else the app's
/// side (502).
fn map_error(e: h2::Error) -> UpstreamError {
    if e.is_reset() && !e.is_remote() && e.reason() == Some(h2::Reason::CANCEL) {
        return UpstreamError::BadRequest(format!("request body: {e}"));
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    // Bounded by the depth of the error chain (a handful of links).
    for _ in 0..16 {
        let Some(s) = src else { break };
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    UpstreamError::Io(io::Error::other(msg))
}
