//! HTTP upstream client: HTTP/1.1 to TCP or unix-socket servers through a keep-alive pool
//! (hyper-util's legacy Client with a connector that understands `ServerAddr`). Requests
//! lose their hop-by-hop headers (and names with `_` unless allowed), and their forwarding
//! fields are the edge's (`RequestContext::forwarding`); HTTP/2 requests go out as HTTP/1.1; Host
//! is the target's authority when there is one. Sockets per server stay within its cap
//! (`sockets.rs`), whether in use, idle or connecting, with one pool per worker thread (a
//! connection is driven by the worker that opened it) unless the cap is below the workers.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use super::body::{with_progress, IdleTimeout, Progress};
use super::connect::connect;
use super::headers::{add_request_id, drop_underscored, join_cookies, strip_hop_by_hop};
use super::sockets::{Capped, SocketCaps};
use super::{Body, BoxError, RequestContext, ServerAddr, UpstreamError};
use crate::net::worker::PerWorker;

/// Pool and timeout settings of the HTTP client.
#[derive(Debug, Clone)]
pub struct HttpOpts {
    pub connect_timeout: Duration,
    /// Longest silence from the server: waiting for the head (restarted by each request
    /// body chunk sent) and between response body chunks.
    pub read_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub idle_timeout: Duration,
    /// Most idle connections kept per server; with several worker threads, each worker's
    /// pool keeps at most 1/N of the smallest cap (the socket cap stays server-wide). It
    /// must cover the edge's usual concurrency
    /// (h2 clients multiplex many requests): a connection beyond it is closed when its
    /// response ends, and the next request to that server pays a new connect.
    pub max_idle_per_server: usize,
    /// Pass header names containing `_` (nginx `underscores_in_headers`); dropped if false.
    pub underscores_in_headers: bool,
    /// Most sockets per server (its `max_connections`): a pool miss waits for a slot (within
    /// `connect_timeout`) instead of opening one more.
    pub socket_caps: Arc<SocketCaps>,
    /// PROXY v2 TLVs sent as request headers (`proxy_protocol_tlv_headers`); client-sent
    /// fields of these names are always removed.
    pub tlv_headers: Arc<[(crate::spec::TlvName, hyper::header::HeaderName)]>,
}

impl Default for HttpOpts {
    fn default() -> Self {
        HttpOpts {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_server: 256,
            underscores_in_headers: false,
            socket_caps: Arc::default(),
            tlv_headers: Arc::new([]),
        }
    }
}

type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

type Pool = Client<Connector, ReqBody>;

/// Keep-alive HTTP/1.1 client for app servers; clones share the pools.
///
/// A pooled connection is driven by a task on the runtime that opened it, so a request on
/// another worker thread would hand each read and write across threads: a request uses the
/// pool of the worker running it. Idle sockets hold slots of their server's cap
/// (`max_connections`, server-wide), so each of the N workers keeps at most cap/N idle:
/// the other workers' idle sockets then always leave a slot free, and a worker that finds
/// the cap full waits only for a request in flight (as with one pool). A server whose cap
/// is below N, and any request off the worker threads, use one pool for all.
#[derive(Clone)]
pub struct HttpUpstream {
    shared: Pool,
    per_worker: Arc<PerWorker<Pool>>,
    /// Idle connections per server that each worker's pool keeps.
    worker_idle: usize,
    opts: HttpOpts,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("opts", &self.opts)
            .finish()
    }
}

impl HttpUpstream {
    pub fn new(opts: HttpOpts) -> Self {
        let per_worker: PerWorker<Pool> = PerWorker::default();
        let n = per_worker.len();
        let worker_idle = opts
            .socket_caps
            .caps()
            .filter(|c| *c >= n)
            .map(|c| c / n)
            .min()
            .map_or(opts.max_idle_per_server, |m| {
                m.min(opts.max_idle_per_server)
            });
        HttpUpstream {
            shared: pool(&opts, opts.max_idle_per_server),
            per_worker: Arc::new(per_worker),
            worker_idle,
            opts,
        }
    }

    /// The pool for a request to `addr` on this thread.
    fn pool_for(&self, addr: &ServerAddr) -> &Pool {
        if !crate::net::worker::on_worker() {
            // The inline runtime (tests, the demo): one pool, as before workers.
            return &self.shared;
        }
        match self.opts.socket_caps.cap(addr) {
            Some(c) if c < self.per_worker.len() => &self.shared,
            _ => self
                .per_worker
                .get_or_init(|| pool(&self.opts, self.worker_idle)),
        }
    }

    pub(super) fn opts(&self) -> &HttpOpts {
        &self.opts
    }

    /// Forwards `req` to the server at `addr`; the response body streams.
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
        let (mut parts, body) = req.into_parts();
        self.prepare_head(&mut parts, ctx);
        parts.uri = match (addr, parts.uri.path_and_query()) {
            (ServerAddr::Inet(sa), Some(pq)) => inet_uri(*sa, pq)?,
            (_, pq) => pool_uri(addr, pq.map_or("/", |p| p.as_str()))?,
        };
        parts.version = Version::HTTP_11;

        // A body with nothing to send (GET) never reports progress: a plain timeout then.
        let silent = body.is_end_stream();
        let progress = Arc::new(Notify::new());
        let body = Progress {
            inner: Box::pin(body),
            progress: progress.clone(),
        };
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        let client = self.pool_for(addr);
        let sent = client.request(req);
        let resp = if silent {
            tokio::time::timeout(self.opts.read_timeout, sent)
                .await
                .map_err(|_| UpstreamError::Timeout)?
        } else {
            with_progress(sent, &progress, self.opts.read_timeout).await?
        }
        .map_err(map_client_error)?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = body.map_err(|e| UpstreamError::Io(io::Error::other(e)));
        let body = IdleTimeout::new(body, self.opts.read_timeout, None).boxed();
        Ok(Response::from_parts(parts, body))
    }

    /// The request's fields as the app gets them: hop-by-hop and (unless allowed) `_` names
    /// removed, cookies joined, the edge's forwarding fields, request id, client certificate
    /// and TLV headers set, Host the target's authority when there is one.
    pub(super) fn prepare_head(
        &self,
        parts: &mut hyper::http::request::Parts,
        ctx: &RequestContext,
    ) {
        // The target's authority (HTTP/2 :authority, HTTP/1 absolute-form) wins over a Host
        // field (RFC 9113 §8.3.1, RFC 9112 §3.2.2).
        let host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| parts.headers.get(header::HOST).cloned())
            .or_else(|| HeaderValue::from_str(&ctx.server_name).ok());
        strip_hop_by_hop(&mut parts.headers);
        if !self.opts.underscores_in_headers {
            drop_underscored(&mut parts.headers);
        }
        join_cookies(&mut parts.headers);
        ctx.forwarding.apply(&mut parts.headers);
        add_request_id(&mut parts.headers, ctx);
        super::client_cert::set_headers(&mut parts.headers, ctx.client_cert.as_deref());
        ctx.proxy_tlvs
            .set_headers(&mut parts.headers, &self.opts.tlv_headers);
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
    }
}

/// A keep-alive pool (hyper-util's legacy client) keeping up to `max_idle` per server.
fn pool(opts: &HttpOpts, max_idle: usize) -> Pool {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(opts.idle_timeout)
        .pool_max_idle_per_host(max_idle)
        .set_host(false)
        .build(Connector {
            timeout: opts.connect_timeout,
            caps: opts.socket_caps.clone(),
        })
}

/// The pool key for a server: `http://ip:port` or `http://host:port`, and for a unix
/// socket `unix://<hex of the path>`, decoded again by the connector.
fn pool_uri(addr: &ServerAddr, pq: &str) -> Result<Uri, UpstreamError> {
    let s = match addr {
        ServerAddr::Inet(sa) => format!("http://{sa}{pq}"),
        ServerAddr::Host { host, port } => format!("http://{host}:{port}{pq}"),
        // Expanded by `discovery` before a pool holds it; the URI fails to parse.
        ServerAddr::Srv { name } => format!("srv://{name}{pq}"),
        ServerAddr::Unix(path) => {
            let hex: String = path
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("unix://{hex}{pq}")
        }
    };
    s.parse()
        .map_err(|e| UpstreamError::BadRequest(format!("cannot address {addr}: {e}")))
}

/// `pool_uri` for an address, from parts: the target already parsed and the authority
/// formatted and parsed once per server and thread (`format!` and a full parse per request
/// were ~3.5k instructions). Anything but an origin-form target takes `pool_uri`'s way.
fn inet_uri(sa: SocketAddr, pq: &PathAndQuery) -> Result<Uri, UpstreamError> {
    thread_local! {
        static AUTHORITIES: RefCell<Vec<(SocketAddr, Authority)>> = const {
            RefCell::new(Vec::new())
        };
    }
    // Short enough that `pool_uri`'s whole URI could not be too long to parse.
    if !pq.as_str().starts_with('/') || pq.as_str().len() > 16 * 1024 {
        return pool_uri(&ServerAddr::Inet(sa), pq.as_str());
    }
    let authority = AUTHORITIES.with_borrow_mut(|known| {
        if let Some((_, a)) = known.iter().find(|(s, _)| *s == sa) {
            return Some(a.clone());
        }
        let a = Authority::try_from(sa.to_string().as_str()).ok()?;
        if known.len() >= 64 {
            known.clear();
        }
        known.push((sa, a.clone()));
        Some(a)
    });
    let Some(authority) = authority else {
        return pool_uri(&ServerAddr::Inet(sa), pq.as_str());
    };
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(pq.clone());
    Uri::from_parts(parts)
        .map_err(|e| UpstreamError::BadRequest(format!("cannot address {sa}: {e}")))
}

/// Inverse of `pool_uri` for the connector.
fn server_of(uri: &Uri) -> io::Result<ServerAddr> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad upstream uri {uri}"),
        )
    };
    let host = uri.host().ok_or_else(bad)?;
    if uri.scheme_str() == Some("unix") {
        let b = host.as_bytes();
        if b.len() % 2 != 0 {
            return Err(bad());
        }
        let mut out = Vec::with_capacity(b.len() / 2);
        for pair in b.chunks(2) {
            let s = std::str::from_utf8(pair).map_err(|_| bad())?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| bad())?);
        }
        let path = String::from_utf8(out).map_err(|_| bad())?;
        return Ok(ServerAddr::Unix(path.into()));
    }
    let port = uri.port_u16().ok_or_else(bad)?;
    let h = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match h.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerAddr::Inet((ip, port).into()),
        Err(_) => ServerAddr::Host {
            host: h.to_string(),
            port,
        },
    })
}

/// Connects pool misses to the server named by the pool URI, within its socket cap.
#[derive(Clone)]
struct Connector {
    timeout: Duration,
    caps: Arc<SocketCaps>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Capped>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Capped>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let caps = self.caps.clone();
        Box::pin(async move {
            let addr = server_of(&uri)?;
            // The pool races this connect against an idle socket coming back: when that
            // wins, this future still runs in the background and pools its socket. Taking
            // the slot first keeps both within the cap; the whole wait counts as connecting.
            let start = tokio::time::Instant::now();
            let permit = tokio::time::timeout(timeout, caps.acquire(&addr))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "all sockets to the server busy")
                })??;
            match connect(&addr, timeout.saturating_sub(start.elapsed())).await {
                Ok(conn) => Ok(TokioIo::new(Capped {
                    conn,
                    _permit: permit,
                })),
                Err(UpstreamError::Connect(e)) => Err(e),
                Err(UpstreamError::Timeout) => {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                }
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        })
    }
}

/// Maps the pool's error: connect failures to Connect/Timeout, anything else to BadResponse.
fn map_client_error(e: hyper_util::client::legacy::Error) -> UpstreamError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut io_err = None;
    // Bounded by the depth of the error chain (a handful of links).
    for _ in 0..16 {
        let Some(s) = src else { break };
        if let Some(ioe) = s.downcast_ref::<io::Error>() {
            io_err = Some(io::Error::new(ioe.kind(), ioe.to_string()));
            break;
        }
        src = s.source();
    }
    // The client's own request body failed (a bad chunk, an early end): hyper reports it as
    // a user error. That is the client's fault (400), not the app's (502).
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    for _ in 0..16 {
        let Some(s) = src else { break };
        if let Some(he) = s.downcast_ref::<hyper::Error>() {
            if he.is_user() {
                return UpstreamError::BadRequest(format!("request body: {he}"));
            }
        }
        src = s.source();
    }
    if e.is_connect() {
        return match io_err {
            Some(ioe) if ioe.kind() == io::ErrorKind::TimedOut => UpstreamError::Timeout,
            Some(ioe) => UpstreamError::Connect(ioe),
            None => UpstreamError::Connect(io::Error::other(e.to_string())),
        };
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    for _ in 0..16 {
        let Some(s) = src else { break };
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    UpstreamError::BadResponse(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_uri_round_trips() {
        for a in [
            ServerAddr::Inet("127.0.0.1:8080".parse().unwrap()),
            ServerAddr::Inet("[::1]:9000".parse().unwrap()),
            ServerAddr::Unix("/tmp/x y/app.sock".into()),
            ServerAddr::Host {
                host: "localhost".into(),
                port: 81,
            },
        ] {
            let u = pool_uri(&a, "/p?q=1").unwrap();
            assert_eq!(u.path_and_query().unwrap().as_str(), "/p?q=1");
            assert_eq!(server_of(&u).unwrap(), a);
            if let ServerAddr::Inet(sa) = a {
                let pq = PathAndQuery::from_static("/p?q=1");
                for _ in 0..2 {
                    // Formatted once, then from the thread's list: the same URI.
                    assert_eq!(inet_uri(sa, &pq).unwrap(), u);
                }
            }
        }
    }
}
