//! The edge's upstream clients: one request in, one response out, to an app server over
//! uwsgi (`uwsgi`), FastCGI (`fastcgi`) or HTTP/1.1 with a keep-alive pool (`http`), behind the [`Upstream`]
//! trait. Shared here: the request context, the error type (with its HTTP status) and the
//! body types.
//! Choosing and health-checking the app server is `balance`'s job, not this module's.

mod body;
pub(crate) mod cgi;
mod client_cert;
mod connect;
pub mod fastcgi;
mod forwarding;
pub(crate) mod grpc;
mod h2;
mod h2_body;
mod h2_pool;
mod headers;
mod http;
mod sockets;
mod tlv_vars;
pub(crate) mod upgrade;
pub mod uwsgi;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod uwsgi_tests;

use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::{Request, Response, StatusCode, Version};

use crate::addr::{ClientAddr, LocalAddr};

pub use self::client_cert::{CertDetails, ClientCert};
pub use self::fastcgi::{FastCgiClient, FastCgiOpts};
pub use self::forwarding::Forwarding;
pub(crate) use self::forwarding::FORWARDING_NAMES;
pub use self::h2::{H2Opts, H2Upstream};
pub use self::h2_pool::H2Tls;
pub use self::http::{HttpOpts, HttpUpstream};
pub use self::sockets::SocketCaps;
pub use self::tlv_vars::{tlv_header_names, ProxyTlvs};
pub use self::upgrade::Upgraded;
pub use self::uwsgi::{UwsgiClient, UwsgiOpts};

/// The response body both clients return: streamed from the app server, never collected.
/// Errors are [`UpstreamError`] (a read timeout mid-body, the server closing early, ...);
/// it implements `std::error::Error + Send + Sync`, so hyper's server accepts this body.
pub type Body = http_body_util::combinators::BoxBody<Bytes, UpstreamError>;

/// The request body an [`Upstream`] takes: whatever the edge forwards (empty, buffered,
/// streamed from the client), boxed once by the edge.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// What [`Upstream::send`] returns: the response head with its body still streaming.
pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, UpstreamError>> + Send + 'a>>;

/// What [`Upstream::upgrade`] returns: the app switched protocols, or its answer.
pub type UpgradeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Upgraded, UpstreamError>> + Send + 'a>>;

/// An app-server protocol client, as the edge uses it: send one request to the server the
/// balancer picked, get its response. Limits, timeouts, pooling and error mapping are the
/// client's own ([`UwsgiClient`], [`HttpUpstream`]); the edge only picks and retries.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// Sends `req` to the server at `addr` for the client described by `ctx`. An
    /// [`UpstreamError::Connect`] means nothing reached the server: the caller may try
    /// another one if the body was not read. Errors before the head map to a status via
    /// [`UpstreamError::status`].
    fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &'a RequestContext,
    ) -> SendFuture<'a>;

    /// Whether a request body of unknown length must be read whole before sending (uwsgi
    /// needs CONTENT_LENGTH; HTTP can send it chunked).
    fn needs_length(&self) -> bool;

    /// Whether requests and responses stream whatever the frontend's buffering says (gRPC).
    fn streams(&self) -> bool {
        false
    }

    /// The answer to a request that failed with `status` before a response head, when the
    /// protocol has its own form (gRPC: a trailers-only status); None: the edge's page.
    fn failure_response(&self, _status: StatusCode, _version: Version) -> Option<Response<Body>> {
        None
    }

    /// Whether [`Upstream::upgrade`] works (uwsgi and HTTP apps); the edge upgrades nothing
    /// for a protocol that cannot.
    fn can_upgrade(&self) -> bool {
        false
    }

    /// Sends the head `parts` (no body) on a new connection to `addr`, asking the app to
    /// switch to `proto` (`Upgrade`), and reads its answer (`upstream/upgrade.rs`).
    fn upgrade<'a>(
        &'a self,
        addr: &'a ServerAddr,
        parts: hyper::http::request::Parts,
        proto: &'a str,
        ctx: &'a RequestContext,
    ) -> UpgradeFuture<'a> {
        let _ = (addr, parts, proto, ctx);
        Box::pin(async { Err(UpstreamError::BadRequest("no upgrade to this app".into())) })
    }
}

impl Upstream for H2Upstream {
    fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &'a RequestContext,
    ) -> SendFuture<'a> {
        Box::pin(H2Upstream::send(self, addr, req, ctx))
    }

    fn needs_length(&self) -> bool {
        false
    }

    fn streams(&self) -> bool {
        H2Upstream::streams(self)
    }

    fn failure_response(&self, status: StatusCode, version: Version) -> Option<Response<Body>> {
        H2Upstream::failure_response(self, status, version)
    }
}

impl Upstream for UwsgiClient {
    fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &'a RequestContext,
    ) -> SendFuture<'a> {
        Box::pin(UwsgiClient::send(self, addr, req, ctx))
    }

    fn needs_length(&self) -> bool {
        true
    }

    fn can_upgrade(&self) -> bool {
        true
    }

    fn upgrade<'a>(
        &'a self,
        addr: &'a ServerAddr,
        parts: hyper::http::request::Parts,
        proto: &'a str,
        ctx: &'a RequestContext,
    ) -> UpgradeFuture<'a> {
        let o = self.opts();
        let limits = upgrade::Limits {
            connect: o.connect_timeout,
            read: o.read_timeout,
            max_head: o.max_response_head,
        };
        Box::pin(async move {
            let packet = upgrade::uwsgi_packet(
                &parts,
                ctx,
                proto,
                &o.document_root,
                o.underscores_in_headers,
            )?;
            upgrade::exchange(addr, &packet, limits).await
        })
    }
}

impl Upstream for HttpUpstream {
    fn send<'a>(
        &'a self,
        addr: &'a ServerAddr,
        req: Request<RequestBody>,
        ctx: &'a RequestContext,
    ) -> SendFuture<'a> {
        Box::pin(HttpUpstream::send(self, addr, req, ctx))
    }

    fn needs_length(&self) -> bool {
        false
    }

    fn can_upgrade(&self) -> bool {
        true
    }

    fn upgrade<'a>(
        &'a self,
        addr: &'a ServerAddr,
        mut parts: hyper::http::request::Parts,
        proto: &'a str,
        ctx: &'a RequestContext,
    ) -> UpgradeFuture<'a> {
        self.prepare_head(&mut parts, ctx);
        let limits = upgrade::Limits {
            connect: self.opts().connect_timeout,
            read: self.opts().read_timeout,
            max_head: 64 * 1024,
        };
        let head = upgrade::http_head(&parts, proto);
        Box::pin(async move { upgrade::exchange(addr, &head, limits).await })
    }
}

/// Scheme the client used to reach the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the edge knows about the client connection, passed with every request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The real client (PROXY source when trusted, or what a trusted hop's forwarding header
    /// named); becomes REMOTE_ADDR / REMOTE_PORT.
    pub client: ClientAddr,
    /// The forwarding fields the app gets (HTTP headers, uwsgi `HTTP_*`), decided by the
    /// edge's `[frontend.forwarded]` policy; client-sent copies never pass.
    pub forwarding: Forwarding,
    /// The address the client reached; becomes SERVER_ADDR.
    pub local: LocalAddr,
    pub scheme: Scheme,
    /// SNI or Host; becomes SERVER_NAME.
    pub server_name: String,
    pub server_port: u16,
    /// "TLSv1.3"/"TLSv1.2" on TLS connections (uwsgi: SSL_PROTOCOL, like nginx's
    /// `$ssl_protocol`); None on plain HTTP.
    pub tls_version: Option<&'static str>,
    /// The TLS session was resumed (uwsgi: SSL_SESSION_REUSED "r", else ".").
    pub tls_resumed: bool,
    /// The request's id (nginx's `$request_id`; the edge's `edge/request_id.rs`): uwsgi
    /// `REQUEST_ID` and `HTTP_X_REQUEST_ID`, HTTP `X-Request-Id`. None: nothing is added.
    pub request_id: Option<std::sync::Arc<str>>,
    /// The client certificate (mTLS): uwsgi SSL_CLIENT_*, HTTP X-SSL-Client-*; None where
    /// the frontend asks for none (or on plain HTTP).
    pub client_cert: Option<std::sync::Arc<ClientCert>>,
    /// The TLVs of the accepted PROXY v2 header (uwsgi: PROXY_PROTOCOL_TLV_*); empty without.
    pub proxy_tlvs: ProxyTlvs,
}

/// Where an app server listens (a spec server's address; `Host` is resolved at connect
/// time).
pub use crate::addr::ServerAddr;

/// Why a request to an app server failed; [`UpstreamError::status`] is what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server could not be reached (refused, no such socket, DNS failure). 502.
    #[error("connect to upstream failed: {0}")]
    Connect(io::Error),
    /// Connect, a read or a write took longer than its timeout. 504.
    #[error("upstream timed out")]
    Timeout,
    /// The server answered something that is not a valid HTTP/1.x response. 502.
    #[error("bad response from upstream: {0}")]
    BadResponse(String),
    /// I/O error talking to the server after connecting (reset, early close). 502.
    #[error("upstream i/o error: {0}")]
    Io(io::Error),
    /// A request body of unknown length exceeded `max_body`. 413.
    #[error("request body larger than the limit")]
    BodyTooLarge,
    /// The request's variables do not fit one uwsgi packet (65535 bytes). 431.
    #[error("request headers too large for the upstream protocol")]
    HeadersTooLarge,
    /// The request cannot be forwarded as it is (bad path encoding, body shorter than its
    /// Content-Length, client body error). 400.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl UpstreamError {
    /// The status the edge answers with when this error happens before the response head.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Connect(_) | UpstreamError::BadResponse(_) | UpstreamError::Io(_) => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UpstreamError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Boxed error used for request bodies of any type.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
