//! FastCGI upstream client (php-fpm and friends), nginx's `fastcgi_pass`: one request per
//! connection at a time (request id 1, no multiplexing), the CGI variables of `upstream::cgi`
//! as PARAMS, the body as STDIN (streamed with its CONTENT_LENGTH, or buffered up to
//! `max_body` when unknown, as for uwsgi), the CGI head from STDOUT (`response`), the rest
//! of STDOUT streamed (`stream`), STDERR to the log. With `keepalive`, FCGI_KEEP_CONN and a
//! bounded idle pool per server (`pool`). Choosing the server is `balance`'s job.

pub mod record;
pub mod response;

mod pool;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::sync::Notify;

pub use self::response::parse_cgi_head;

use self::pool::IdlePool;
use self::record::{Pairs, Record, PARAMS, STDIN};
use self::stream::{FastCgiBody, KeepTo, StderrLog, WriteSide};
use super::body::{with_progress, IdleTimeout};
use super::cgi::{self, CgiOpts, Flavor};
use super::connect::connect;
use super::headers::strip_hop_by_hop;
use super::uwsgi::{framing, prepare_body, write_all, HeadParse, ReqBody, ResponseHead};
use super::{Body, BoxError, RequestContext, ServerAddr, UpstreamError};
use crate::net::Stream;

/// Most STDERR bytes accepted while waiting for the response head (the head itself is
/// capped by `max_response_head`), so a chatty app cannot keep the edge reading forever.
const MAX_STDERR_BEFORE_HEAD: usize = 1 << 20;

/// Limits, timeouts and paths of the FastCGI client.
#[derive(Debug, Clone)]
pub struct FastCgiOpts {
    pub connect_timeout: Duration,
    /// Longest wait for any read from the app (response head and each body record); while
    /// the request body is still being sent, each chunk written restarts it.
    pub read_timeout: Duration,
    /// Longest wait for each write to the app and for each chunk of the client's body.
    pub send_timeout: Duration,
    /// Largest request body of unknown length (buffered); beyond it: 413.
    pub max_body: usize,
    /// Largest CGI response head accepted; beyond it: 502.
    pub max_response_head: usize,
    /// Largest encoded PARAMS stream; beyond it: 431.
    pub max_params: usize,
    /// DOCUMENT_ROOT, and SCRIPT_FILENAME's first part (the backend's `root`).
    pub document_root: String,
    /// Appended to a path ending in `/` for SCRIPT_NAME (nginx `fastcgi_index`).
    pub index: String,
    /// Pass header names containing `_` as HTTP_* (nginx `underscores_in_headers`).
    pub underscores_in_headers: bool,
    /// Idle connections kept per server (FCGI_KEEP_CONN sent); 0: the app closes after each
    /// request (nginx's default, `fastcgi_keep_conn off`).
    pub keepalive: usize,
    /// An idle connection older than this is not reused (nginx upstream `keepalive_timeout`).
    pub keepalive_timeout: Duration,
}

impl Default for FastCgiOpts {
    fn default() -> Self {
        FastCgiOpts {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_body: 1 << 20,
            max_response_head: 64 * 1024,
            max_params: 256 * 1024,
            document_root: String::new(),
            index: "index.php".into(),
            underscores_in_headers: false,
            keepalive: 0,
            keepalive_timeout: Duration::from_secs(60),
        }
    }
}

/// Sends HTTP requests to FastCGI apps; holds the idle pool (share it with an `Arc`).
#[derive(Debug)]
pub struct FastCgiClient {
    opts: FastCgiOpts,
    pool: Option<Arc<IdlePool>>,
}

/// The response head and what was read past it.
struct Head {
    head: ResponseHead,
    /// STDOUT bytes after the head (the body's first bytes).
    first: Bytes,
    /// Undecoded record bytes.
    buf: BytesMut,
}

impl FastCgiOpts {
    /// The options of an edge backend: its FastCGI keys, `[connect, read, send]` timeouts,
    /// the frontend's `max_body` and `underscores_in_headers`; the rest default.
    pub fn for_backend(
        b: &crate::spec::FastCgi,
        [connect, read, send]: [Duration; 3],
        max_body: usize,
        underscores_in_headers: bool,
    ) -> Self {
        FastCgiOpts {
            connect_timeout: connect,
            read_timeout: read,
            send_timeout: send,
            max_body,
            document_root: b.root.clone(),
            index: b.index.clone(),
            underscores_in_headers,
            keepalive: b.keepalive,
            ..FastCgiOpts::default()
        }
    }
}

impl FastCgiClient {
    pub fn new(opts: FastCgiOpts) -> Self {
        let pool = (opts.keepalive > 0)
            .then(|| Arc::new(IdlePool::new(opts.keepalive, opts.keepalive_timeout)));
        FastCgiClient { opts, pool }
    }

    pub fn opts(&self) -> &FastCgiOpts {
        &self.opts
    }

    /// Sends `req` to the app at `addr` and returns its response with the body still
    /// streaming. A kept connection the app closed meanwhile costs one retry on a fresh one
    /// when nothing of the request reached the app (or the request is all in memory and no
    /// answer came).
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
        let o = &self.opts;
        let req_body =
            prepare_body(&parts.headers, Box::pin(body), o.max_body, o.send_timeout).await?;
        let (len, mut streamed) = match req_body {
            ReqBody::Full(b) => (b.len() as u64, Err(b)),
            ReqBody::Stream(b, n) => (n, Ok(b)),
        };
        let mut pairs = Pairs::new(o.max_params);
        let cgi_opts = CgiOpts {
            document_root: &o.document_root,
            underscores: o.underscores_in_headers,
            flavor: Flavor::FastCgi { index: &o.index },
        };
        cgi::build(&parts, ctx, len, &cgi_opts, &mut pairs)?;
        let mut out = Vec::with_capacity(pairs.buf.len() + 64);
        record::begin_request(&mut out, self.pool.is_some());
        record::stream(&mut out, PARAMS, &pairs.buf);
        record::end_stream(&mut out, PARAMS);
        if let Err(b) = &streamed {
            record::stream(&mut out, STDIN, b);
            record::end_stream(&mut out, STDIN);
        }

        let mut reused = self.pool.as_ref().and_then(|p| p.take(addr));
        // Bounded: a second pass only after a kept connection failed, and takes a fresh one.
        loop {
            let retry_allowed = reused.is_some();
            let conn = match reused.take() {
                Some(c) => c,
                None => {
                    if let Some(p) = &self.pool {
                        p.close_elsewhere(addr);
                    }
                    connect(addr, o.connect_timeout).await?
                }
            };
            let (mut rd, mut wr) = tokio::io::split(conn);
            if let Err(e) = write_all(&mut wr, &out, o.send_timeout).await {
                if retry_allowed {
                    continue;
                }
                return Err(e);
            }
            let progress = Arc::new(Notify::new());
            let in_memory = streamed.is_err();
            let wr = match std::mem::replace(&mut streamed, Err(Bytes::new())) {
                Ok(b) => WriteSide::Writing(stream::spawn_stdin(
                    b,
                    len,
                    wr,
                    o.send_timeout,
                    progress.clone(),
                )),
                Err(full) => {
                    streamed = Err(full);
                    WriteSide::Done(wr)
                }
            };
            let mut stderr = StderrLog::new(addr.clone());
            let head = match self.read_head(&mut rd, &progress, &mut stderr).await {
                Ok(h) => h,
                Err((_, false)) if retry_allowed && in_memory => continue,
                Err((e, _)) => return Err(e),
            };
            let keep = self.pool.as_ref().map(|p| KeepTo {
                pool: p.clone(),
                addr: addr.clone(),
            });
            let body = FastCgiBody::new(rd, head.buf, head.first, wr, keep, stderr);
            return response(head.head, body, o.read_timeout);
        }
    }

    /// Reads records until STDOUT holds a complete CGI head. The error says whether any
    /// byte came from the app (a kept connection that gave none may be retried).
    async fn read_head(
        &self,
        rd: &mut ReadHalf<Stream>,
        progress: &Notify,
        stderr: &mut StderrLog,
    ) -> Result<Head, (UpstreamError, bool)> {
        let max = self.opts.max_response_head;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut stdout = BytesMut::new();
        let mut got = false;
        // Bounded: STDOUT beyond `max` without a head is Invalid; each read has a timeout.
        loop {
            while let Some(rec) = record::decode(&mut buf).map_err(|e| (e.into(), true))? {
                match rec {
                    Record::Stdout(b) => {
                        stdout.extend_from_slice(&b);
                        match parse_cgi_head(&stdout, max) {
                            HeadParse::Complete(head) => {
                                let first = stdout.split_off(head.len).freeze();
                                return Ok(Head { head, first, buf });
                            }
                            HeadParse::Invalid(m) => {
                                return Err((UpstreamError::BadResponse(m), true))
                            }
                            HeadParse::Incomplete => {}
                        }
                    }
                    Record::Stderr(b) => {
                        stderr.record(&b);
                        if stderr.seen() > MAX_STDERR_BEFORE_HEAD {
                            let m = "FastCGI app sent over 1 MiB of stderr and no response head";
                            return Err((UpstreamError::BadResponse(m.into()), true));
                        }
                    }
                    Record::End { .. } => {
                        return Err((
                            UpstreamError::BadResponse(
                                "FastCGI app ended the request without a response head".into(),
                            ),
                            true,
                        ))
                    }
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(16 * 1024);
            }
            let n = with_progress(rd.read_buf(&mut buf), progress, self.opts.read_timeout)
                .await
                .map_err(|e| (e, got))?
                .map_err(|e| (UpstreamError::Io(e), got))?;
            if n == 0 {
                let e = UpstreamError::BadResponse(
                    "FastCGI app closed before a complete response head".into(),
                );
                return Err((e, got));
            }
            got = true;
        }
    }
}

/// The client's response: the app's status and end-to-end headers over the streamed body.
fn response(
    head: ResponseHead,
    body: FastCgiBody,
    read_timeout: Duration,
) -> Result<Response<Body>, UpstreamError> {
    let mut head = head;
    strip_hop_by_hop(&mut head.headers);
    // A malformed or conflicting Content-Length is the app's error (502), as for uwsgi.
    framing(&head, false).map_err(UpstreamError::BadResponse)?;
    let body = IdleTimeout::new(body, read_timeout, None).boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

impl super::Upstream for FastCgiClient {
    fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<super::RequestBody>,
        ctx: &'a RequestContext,
    ) -> super::SendFuture<'a> {
        Box::pin(FastCgiClient::send(self, addr, req, ctx))
    }

    /// FastCGI apps (PHP) need CONTENT_LENGTH, as uwsgi does.
    fn needs_length(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
