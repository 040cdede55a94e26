//! One HTTP request on the edge: build the upstream context from the connection, check the
//! declared body length, buffer the body (`buffer::request`) unless `request_buffering` is
//! off, pick an app server from the backend pool, send over uwsgi or HTTP (another server on
//! a connect failure while the body can be replayed), buffer the response
//! (`buffer::response`), map failures to 400/408/413/431/502/503/504, and wrap the response
//! for the access log. Connection setup (PROXY, TLS, hyper) is in `edge`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::time::Instant;

use crate::balance::{Lease, NoServer, ServerId};
use crate::upstream::{Body, RequestBody, RequestContext, UpstreamError};

use super::access::{LogBody, RequestLog};
use super::buffer::request::{self as reqbuf, BodyError};
use super::buffer::spool::Spooled;
use super::buffer::{response as respbuf, TempFiles};
use super::conn::{ConnInfo, ConnState};
use super::record::AccessRecord;
use super::request_id;
use super::HttpFrontend;

use crate::upstream::BoxError;

/// Why no app server answered.
#[derive(Debug)]
enum Failure {
    /// No server up (or all full until the connect timeout): 503.
    NoServer,
    Upstream(UpstreamError),
    /// The request body could not be taken (413, 408, 400, 503, 500).
    Body(BodyError),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Upstream(e) => e.status(),
            Failure::Body(e) => e.status(),
        }
    }
}

/// Handles one request to the end of its response head; the body streams afterwards.
/// Strict HTTP checks (`strict`) come first: a refused request never goes upstream.
/// If hyper drops this future (the client went away first), `line` logs 499.
pub(crate) async fn handle(
    fe: Arc<HttpFrontend>,
    conn: Arc<ConnInfo>,
    state: Arc<ConnState>,
    mut req: Request<Incoming>,
) -> Response<LogBody> {
    let start = Instant::now();
    let mut guard = state.begin();
    // Whether the whole request body is known to be read (hyper is then done with it).
    let mut body_read = req.body().is_end_stream();
    let checked = super::strict::check(&req).and_then(|()| super::upgrade::classify(&fe, &req));
    let decision = forwarded_decision(&fe, &conn, &req);
    let client = decision.client;
    let (mut line, id) = access_line(&fe, &conn, guard.number(), &mut req, client, start);
    let version = req.version();
    let client_closes = version < hyper::Version::HTTP_2 && !keeps_alive(version, req.headers());
    // From when the request (and a buffered body) is ready for the app, as nginx's
    // $upstream_response_time: a slow upload is not the app's time.
    let mut upstream_start = start;
    let (mut resp, lease) = match checked {
        Err(refusal) => {
            tracing::debug!(frontend = %fe.name, client = %client, "refused: {}", refusal.reason);
            (super::strict::refuse(refusal, req.version()), None)
        }
        Ok(Some(want)) => {
            let ctx = context(&conn, &req, decision, id);
            // Boxed: the tunnel's setup is rare, and inline it would make every request's
            // future (moved into its box per request) that much larger.
            let up = Box::pin(super::upgrade::handle(
                &fe, ctx, want, req, line, guard, &state,
            ));
            return up.await;
        }
        Ok(None) => {
            let ctx = context(&conn, &req, decision, id);
            match forward(&fe, &ctx, req, line.rec(), &mut upstream_start).await {
                Ok((resp, lease, whole)) => {
                    body_read |= whole;
                    buffer_response(&fe, resp, lease)
                }
                Err(f) => {
                    match &f {
                        Failure::Upstream(e) => tracing::info!(
                            frontend = %fe.name,
                            client = %client,
                            server = line.rec().upstream.as_deref().unwrap_or("-"),
                            "request failed: {e}"
                        ),
                        Failure::Body(e) => tracing::info!(
                            frontend = %fe.name,
                            client = %client,
                            "request refused: {e}"
                        ),
                        Failure::NoServer => {}
                    }
                    let gen = fe.upstream.failure_response(f.status(), version);
                    (gen.unwrap_or_else(|| error_response(f.status())), None)
                }
            }
        }
    };
    let rec = line.rec();
    rec.upstream_time = rec.upstream.as_ref().map(|_| upstream_start.elapsed());
    if let Some(took) = rec.upstream_time {
        fe.log.series.upstream(took);
    }
    rec.status = resp.status().as_u16();
    if guard.is_last() && version < hyper::Version::HTTP_2 {
        // `keepalive_requests` reached: hyper closes after a response that says so.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // hyper closes after this response: its end can leave with the close_notify.
    let last = client_closes || (guard.is_last() && version < hyper::Version::HTTP_2);
    guard.reusable(!last && body_read);
    let hint = conn.close_hint.clone().filter(|_| last);
    resp.map(|b| LogBody::new(b, line, lease, guard).closing(hint))
}

/// The request's access line, filled in as far as the head and the connection tell, and
/// its id (`request_id::take` takes the client's `X-Request-Id` off the request). A plain
/// fn: the ~460-byte record is built on its stack and boxed by `RequestLog`, instead of
/// staying in `handle`'s state machine (moved into a box per request) as a local.
fn access_line(
    fe: &HttpFrontend,
    conn: &ConnInfo,
    number: u64,
    req: &mut Request<Incoming>,
    client: crate::addr::ClientAddr,
    start: Instant,
) -> (RequestLog, Arc<str>) {
    let mut rec = AccessRecord::for_request(
        client,
        fe.name.clone(),
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        fe.log.format.headers(),
    );
    rec.peer = conn.peer;
    rec.proxy_protocol = conn.proxy_protocol;
    rec.local = Some(conn.local);
    rec.proxy_tlvs = conn.proxy_tlvs.clone();
    (rec.connection, rec.connection_requests) = (conn.id, number);
    let trusted = request_id::trusted_hop(
        fe.policy.as_ref(),
        &fe.settings.forwarded,
        conn.client.addr().ip(),
    );
    let id = request_id::take(req.headers_mut(), &conn.conn_id, number, trusted);
    (rec.connection_id, rec.request_id) = (Some(conn.conn_id.clone()), Some(id.clone()));
    if let Some(tls) = &conn.tls {
        rec.tls_version = Some(tls.version).filter(|v| !v.is_empty());
        rec.tls_resumed = tls.resumed;
    }
    rec.client_cert = conn.client_cert.clone();
    (RequestLog::new(rec, fe.log.clone(), start), id)
}

/// hyper keeps an HTTP/1 connection open after this request: HTTP/1.1 unless `Connection`
/// lists `close`, HTTP/1.0 only when it lists `keep-alive`.
fn keeps_alive(version: hyper::Version, headers: &hyper::HeaderMap) -> bool {
    let has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == hyper::Version::HTTP_10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// Response buffering (`buffer::response`): the lease comes back only when the response
/// streams, so `LogBody` holds it until the client is done.
fn buffer_response(
    fe: &HttpFrontend,
    resp: Response<Body>,
    lease: Lease,
) -> (Response<Body>, Option<Lease>) {
    let b = &fe.settings.buffering;
    let limits = respbuf::Limits {
        enabled: b.response && !fe.upstream.streams(),
        mem: b.response_buffer_size,
        max_file: b.max_temp_file_size,
        temp_dir: &b.temp_dir,
    };
    let name = fe.name.clone();
    respbuf::buffer(resp, lease, &limits, TempFiles::global(), move || {
        crate::metrics::global().body_spilled(&name, "response")
    })
}

/// The forwarding-header policy's decision for this request (`forwarded`): the client and
/// the forwarding fields the app gets.
fn forwarded_decision(
    fe: &HttpFrontend,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> super::forwarded::Decision {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| req.headers().get(header::HOST).map(HeaderValue::as_bytes))
        .filter(|h| !h.is_empty() && h.iter().all(u8::is_ascii_graphic));
    super::forwarded::decide_cached(
        &conn.forwarding,
        &fe.settings.forwarded,
        conn.client,
        conn.scheme,
        host,
        req.headers(),
    )
}

/// The upstream request context: the real client, the reached address, SNI or Host.
fn context(
    conn: &ConnInfo,
    req: &Request<Incoming>,
    decision: super::forwarded::Decision,
    request_id: Arc<str>,
) -> RequestContext {
    let host = req.uri().host().map(str::to_string).or_else(|| {
        let h = req.headers().get(header::HOST)?.to_str().ok()?;
        let h = h.parse::<hyper::http::uri::Authority>().ok()?;
        Some(h.host().to_string())
    });
    let sni = conn.tls.as_ref().and_then(|t| t.sni.clone());
    RequestContext {
        client: decision.client,
        forwarding: decision.forwarding,
        local: conn.local,
        scheme: conn.scheme,
        server_name: sni
            .or(host)
            .unwrap_or_else(|| conn.local.0.ip().to_string()),
        server_port: conn.local.0.port(),
        tls_version: conn
            .tls
            .as_ref()
            .map(|t| t.version)
            .filter(|v| !v.is_empty()),
        tls_resumed: conn.tls.as_ref().is_some_and(|t| t.resumed),
        request_id: Some(request_id),
        client_cert: conn.client_cert.clone(),
        proxy_tlvs: conn.proxy_tlvs.clone(),
    }
}

/// A small text answer for an error status.
pub(crate) fn error_response(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The request body, in a form that can be offered to a second server.
enum Prepared {
    /// Empty.
    Full(Bytes),
    /// Read whole before contacting the app (memory or temp file); replayable.
    Buffered(Spooled),
    /// Streamed from the client; retryable only while nobody has read from it.
    Shared(SharedBody),
}

impl Prepared {
    fn attempt(&self) -> RequestBody {
        match self {
            Prepared::Full(b) if b.is_empty() => {
                Empty::new().map_err(|e| match e {}).boxed_unsync()
            }
            Prepared::Full(b) => Full::new(b.clone()).map_err(|e| match e {}).boxed_unsync(),
            Prepared::Buffered(s) => s.body().boxed_unsync(),
            Prepared::Shared(s) => s.clone().boxed_unsync(),
        }
    }

    fn touched(&self) -> bool {
        match self {
            Prepared::Full(_) | Prepared::Buffered(_) => false,
            Prepared::Shared(s) => s.touched.load(Ordering::SeqCst),
        }
    }
}

/// The client's body behind a shared slot, so an attempt that never read it gives it back.
#[derive(Clone)]
struct SharedBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    touched: Arc<AtomicBool>,
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.touched.store(true, Ordering::SeqCst);
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// Checks the declared length (413 before reading anything), then reads the whole body
/// (`request_buffering`, and always for uwsgi when the length is unknown: uwsgi needs
/// CONTENT_LENGTH), or leaves it to stream.
async fn prepare(fe: &HttpFrontend, req: Request<Incoming>) -> Result<Request<Prepared>, Failure> {
    let (mut parts, body) = req.into_parts();
    let b = &fe.settings.buffering;
    reqbuf::check_declared(&parts.headers, &body, b.max_body).map_err(Failure::Body)?;
    let unknown_len =
        !parts.headers.contains_key(header::CONTENT_LENGTH) && body.size_hint().exact().is_none();
    let prepared = if body.is_end_stream() {
        Prepared::Full(Bytes::new())
    } else if (b.request && !fe.upstream.streams()) || (unknown_len && fe.upstream.needs_length()) {
        let limits = reqbuf::Limits {
            max_body: b.max_body,
            mem: b.body_buffer_size,
            temp_dir: &b.temp_dir,
            timeout: fe.settings.client.body,
        };
        // Boxed, as the upgrade: only buffered bodies read here, and `handle`'s future (its
        // every request's memcpy into the box) stays small.
        let spooled = Box::pin(reqbuf::read_body(
            body,
            &limits,
            TempFiles::global(),
            || crate::metrics::global().body_spilled(&fe.name, "request"),
        ))
        .await
        .map_err(Failure::Body)?;
        // The app gets the length read, never chunked coding.
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(spooled.len()));
        Prepared::Buffered(spooled)
    } else {
        Prepared::Shared(SharedBody {
            slot: Arc::new(Mutex::new(Some(body))),
            touched: Arc::new(AtomicBool::new(false)),
        })
    };
    Ok(Request::from_parts(parts, prepared))
}

/// Picks servers and sends, at most `1 + retries` attempts; only connect failures with
/// the body still unread move on to another server. With the response: whether the
/// request body was read whole before it (not streamed).
async fn forward(
    fe: &HttpFrontend,
    ctx: &RequestContext,
    req: Request<Incoming>,
    rec: &mut AccessRecord,
    upstream_start: &mut Instant,
) -> Result<(Response<Body>, Lease, bool), Failure> {
    let req = prepare(fe, req).await?;
    if !matches!(req.body(), Prepared::Full(_)) {
        *upstream_start = Instant::now();
    }
    let (parts, body) = req.into_parts();
    // Cloned for each attempt but the last, which takes it.
    let mut parts = Some(parts);
    let mut tried: Vec<ServerId> = Vec::new();
    let mut last: Option<UpstreamError> = None;
    for attempt in 0..=fe.retries {
        let deadline = Instant::now() + fe.settings.upstream.queue;
        let lease = match fe.pool.acquire(&ctx.client, &tried, deadline).await {
            Ok(l) => l,
            Err(NoServer::Unavailable) if last.is_some() => break,
            Err(_) => return Err(Failure::NoServer),
        };
        let (name, addr) = lease.log_names();
        (rec.upstream, rec.upstream_addr) = (Some(name), Some(addr));
        let head = if attempt == fe.retries {
            parts.take()
        } else {
            parts.clone()
        };
        let Some(head) = head else { break };
        let attempt = Request::from_parts(head, body.attempt());
        match fe.upstream.send(lease.addr(), attempt, ctx).await {
            Ok(resp) => {
                lease.connected();
                return Ok((resp, lease, !matches!(body, Prepared::Shared(_))));
            }
            Err(UpstreamError::Connect(e)) => {
                let why = format!("{}: {e}", lease.name());
                lease.connect_failed(&why);
                if body.touched() {
                    return Err(Failure::Upstream(UpstreamError::Connect(e)));
                }
                tried.push(lease.id());
                last = Some(UpstreamError::Connect(e));
            }
            Err(e) => return Err(Failure::Upstream(e)),
        }
    }
    Err(match last {
        Some(e) => Failure::Upstream(e),
        None => Failure::NoServer,
    })
}
