//! uwsgi upstream client: one connection per request (unix socket or TCP), the uwsgi packet
//! (`packet`), the request body streamed (or buffered up to `max_body` when its length is
//! unknown, since uwsgi needs CONTENT_LENGTH), the raw HTTP/1.x answer parsed (`response`)
//! and its body streamed back (`stream`). No connection reuse: uwsgi closes after a response.

pub mod packet;
pub mod response;
pub(crate) mod stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

pub(crate) use self::response::take_final_head;
pub use self::response::{framing, parse_response_head, Framing, HeadParse, ResponseHead};
pub use self::stream::CHUNK;

use super::body::{with_progress, AbortOnDrop, IdleTimeout};
use super::connect::connect_send;
use super::headers::strip_hop_by_hop;
use super::{Body, BoxError, RequestContext, ServerAddr, UpstreamError};

/// Limits and timeouts of the uwsgi client.
#[derive(Debug, Clone)]
pub struct UwsgiOpts {
    pub connect_timeout: Duration,
    /// Longest wait for any read from the server (response head and each body chunk); while
    /// the request body is still being sent, each chunk written restarts it.
    pub read_timeout: Duration,
    /// Longest wait for each write to the server and for each chunk of the client's body.
    pub send_timeout: Duration,
    /// Largest request body of unknown length (buffered); beyond it: 413.
    pub max_body: usize,
    /// Largest response head accepted; beyond it: 502.
    pub max_response_head: usize,
    /// Sent as DOCUMENT_ROOT (nginx sends its `root`); empty by default.
    pub document_root: String,
    /// Pass header names containing `_` as HTTP_* (nginx `underscores_in_headers`).
    pub underscores_in_headers: bool,
}

impl Default for UwsgiOpts {
    fn default() -> Self {
        UwsgiOpts {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_body: 1 << 20,
            max_response_head: 64 * 1024,
            document_root: String::new(),
            underscores_in_headers: false,
        }
    }
}

/// Sends HTTP requests to uwsgi servers. Cheap to share (`Arc` it or clone the opts).
#[derive(Debug, Clone)]
pub struct UwsgiClient {
    opts: UwsgiOpts,
}

/// The request body as it will be sent (FastCGI sends it the same way).
pub(crate) enum ReqBody<B> {
    /// Fully in memory (empty, or an unknown-length body buffered).
    Full(Bytes),
    /// Streamed; exactly this many bytes (the Content-Length) must come.
    Stream(B, u64),
}

impl UwsgiClient {
    pub fn new(opts: UwsgiOpts) -> Self {
        UwsgiClient { opts }
    }

    pub fn opts(&self) -> &UwsgiOpts {
        &self.opts
    }

    /// Sends `req` to the uwsgi server at `addr` and returns its response with the body
    /// still streaming. Errors before the head map to a status via `UpstreamError::status`.
    pub async fn send<B>(
        &self,
        addr: &ServerAddr,
        req: Request<B>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, UpstreamError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let body = Box::pin(body);
        let is_head = parts.method == Method::HEAD;
        let req_body = prepare_body(
            &parts.headers,
            body,
            self.opts.max_body,
            self.opts.send_timeout,
        )
        .await?;
        let len = match &req_body {
            ReqBody::Full(b) => b.len() as u64,
            ReqBody::Stream(_, n) => *n,
        };
        let packet = packet::build(
            &parts,
            ctx,
            len,
            &self.opts.document_root,
            self.opts.underscores_in_headers,
        )?;

        let (conn, sent) = connect_send(addr, self.opts.connect_timeout, &packet).await?;
        let (mut rd, mut wr) = tokio::io::split(conn);
        let st = self.opts.send_timeout;
        write_all(&mut wr, &packet[sent..], st).await?;
        let progress = Arc::new(Notify::new());
        let writer = match req_body {
            ReqBody::Full(b) => {
                write_all(&mut wr, &b, st).await?;
                None
            }
            ReqBody::Stream(b, n) => {
                let progress = progress.clone();
                Some(AbortOnDrop(tokio::spawn(async move {
                    if stream_body(b, n, &mut wr, st, &progress).await.is_err() {
                        // Tell the app the body is cut short rather than let it wait.
                        let _ = tokio::time::timeout(st, wr.shutdown()).await;
                    }
                })))
            }
        };

        let mut buf = BytesMut::with_capacity(8 * 1024);
        let mut interim = 0;
        let head = loop {
            let max = self.opts.max_response_head;
            if let Some(h) =
                take_final_head(&mut buf, max, &mut interim).map_err(UpstreamError::BadResponse)?
            {
                break h;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            let n = with_progress(rd.read_buf(&mut buf), &progress, self.opts.read_timeout)
                .await?
                .map_err(UpstreamError::Io)?;
            if n == 0 {
                return Err(UpstreamError::BadResponse(
                    "upstream closed before a complete response head".into(),
                ));
            }
        };
        if head.status.as_u16() < 200 {
            return Err(UpstreamError::BadResponse(format!(
                "unexpected status {}",
                head.status
            )));
        }
        let framing = framing(&head, is_head).map_err(UpstreamError::BadResponse)?;
        let mut headers = head.headers;
        strip_hop_by_hop(&mut headers);
        if !matches!(framing, Framing::Length(_)) {
            headers.remove(header::CONTENT_LENGTH);
        }
        let body = stream::UwsgiBody::new(rd, buf, framing, writer);
        let body = IdleTimeout::new(body, self.opts.read_timeout, None).boxed();
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// Decides how the body goes: streamed with its Content-Length (header or exact size hint),
/// empty, or buffered up to `max_body` (each frame within `timeout`) when the length is
/// unknown (uwsgi and FastCGI need CONTENT_LENGTH).
pub(crate) async fn prepare_body<B>(
    headers: &HeaderMap,
    mut body: std::pin::Pin<Box<B>>,
    max_body: usize,
    timeout: Duration,
) -> Result<ReqBody<std::pin::Pin<Box<B>>>, UpstreamError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(n) = content_length(headers)? {
        return Ok(if n == 0 {
            ReqBody::Full(Bytes::new())
        } else {
            ReqBody::Stream(body, n)
        });
    }
    if body.is_end_stream() {
        return Ok(ReqBody::Full(Bytes::new()));
    }
    if let Some(n) = body.size_hint().exact() {
        return Ok(ReqBody::Stream(body, n));
    }
    let mut buf = BytesMut::new();
    // Bounded by max_body (bytes) and send_timeout (per frame).
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| UpstreamError::Timeout)?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| UpstreamError::BadRequest(e.into().to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max_body {
                return Err(UpstreamError::BodyTooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(ReqBody::Full(buf.freeze()))
}

/// The request's Content-Length: None when absent, BadRequest when malformed or conflicting.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, UpstreamError> {
    let mut len = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| UpstreamError::BadRequest("bad Content-Length".into()))?;
        if len.is_some_and(|l| l != n) {
            return Err(UpstreamError::BadRequest(
                "conflicting Content-Length".into(),
            ));
        }
        len = Some(n);
    }
    Ok(len)
}

pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    b: &[u8],
    t: Duration,
) -> Result<(), UpstreamError> {
    if b.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(t, w.write_all(b)).await {
        Ok(r) => r.map_err(UpstreamError::Io),
        Err(_) => Err(UpstreamError::Timeout),
    }
}

/// Copies exactly `len` body bytes to the server, one frame at a time.
async fn stream_body<B, W>(
    mut body: std::pin::Pin<Box<B>>,
    len: u64,
    wr: &mut W,
    t: Duration,
    progress: &Notify,
) -> Result<(), UpstreamError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
    W: AsyncWrite + Unpin,
{
    let mut left = len;
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
        if let Some(data) = data {
            if data.len() as u64 > left {
                return Err(UpstreamError::BadRequest(
                    "body longer than Content-Length".into(),
                ));
            }
            left -= data.len() as u64;
            write_all(wr, &data, t).await?;
            progress.notify_one();
        }
    }
    Ok(())
}
