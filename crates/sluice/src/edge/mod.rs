//! The HTTP/TLS edge (`mode = "http"` frontends, issue #4): per connection, the PROXY policy
//! (leftover bytes replayed), a TLS handshake under a timeout, then HTTP/1.1 (`h1`) or HTTP/2
//! by ALPN or preface (`version`) with the limits against slow or abusive clients. Requests go to
//! `service`; access lines to `access`. Binding and accepting are `server`'s job.

mod access;
pub(crate) mod buffer;
mod client_cert;
pub(crate) mod client_dn;
mod coalesce;
mod conn;
pub(crate) mod forwarded;
pub(crate) mod forwarded_parse;
mod h1;
mod record;
pub(crate) mod request_id;
mod rewind;
mod service;
mod settings;
pub(crate) mod strict;
mod tunnel;
pub(crate) mod upgrade;
mod version;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::balance::Pool;
use crate::log::LogSink;
use crate::proxy_protocol::{self as proxy, ConnId, Policy};
use crate::spec::{self, Protocol};
use crate::tls::{self, TlsEdge};
use crate::upstream::{
    FastCgiClient, FastCgiOpts, H2Opts, H2Tls, H2Upstream, HttpOpts, HttpUpstream, Scheme,
    SocketCaps, Upstream, UwsgiClient, UwsgiOpts,
};

pub(crate) use access::AccessLog;
pub(crate) use coalesce::Coalesce;
pub(crate) use conn::ConnInfo;
pub(crate) use record::AccessRecord;
pub(crate) use rewind::Rewind;
pub(crate) use settings::EdgeSettings;

/// Default TLS handshake timeout (`[frontend.timeouts] handshake`).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 rapid reset defence: streams reset by the client before we accepted them.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// HTTP/2: resets we may send because of client errors before closing the connection.
pub(crate) const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// HTTP/2 PING interval and how long to wait for its answer.
pub(crate) const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often TLS files are checked for changes.
pub(crate) const TLS_WATCH_EVERY: Duration = Duration::from_secs(5);

/// Everything a `mode = "http"` frontend's connections share.
pub(crate) struct HttpFrontend {
    pub name: Arc<str>,
    pub backend: Arc<str>,
    pub policy: Option<Policy>,
    pub tls: Option<Arc<TlsEdge>>,
    /// How requests reach the app servers (uwsgi or HTTP, chosen when this is built).
    pub upstream: Arc<dyn Upstream>,
    pub pool: Arc<Pool>,
    pub retries: u32,
    /// Timeouts, limits, buffering: the typed `[frontend]` edge keys and backend timeouts.
    pub settings: EdgeSettings,
    pub log: AccessLog,
    /// Cancelled when the shutdown grace period ends: close whatever is still open.
    pub force: CancellationToken,
    /// HTTP/1 (`h1::H1`; ALPN http/1.1, or no ALPN and no HTTP/2 preface). hyper's own builder
    /// ignores `http1_only` when serving with upgrades.
    h1: hyper::server::conn::http1::Builder,
    /// HTTP/2 (ALPN h2, or the preface): under ALPN h2 anything but the preface ends the
    /// connection.
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl std::fmt::Debug for HttpFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFrontend")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a frontend could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

fn h2_builder(s: &EdgeSettings) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(s.limits.h2_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .max_header_list_size(u32::try_from(s.limits.header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    b
}

/// hyper's HTTP/1 server with the frontend's limits.
fn h1_builder(s: &EdgeSettings) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(s.client.header)
        .keep_alive(true)
        .max_buf_size(s.limits.header_bytes)
        .max_headers(s.limits.headers);
    b
}

impl HttpFrontend {
    /// Builds frontend `f` over backend `b` (whose pool is `pool`) with an already loaded TLS
    /// edge (None = plain HTTP); starts nothing. A reload passes the edge it keeps (sessions,
    /// ticket keys); the runtime starts a new edge's file watcher.
    pub(crate) fn new(
        f: &spec::Frontend,
        b: &spec::Backend,
        pool: Arc<Pool>,
        log_sink: Option<LogSink>,
        force: CancellationToken,
        tls: Option<Arc<TlsEdge>>,
    ) -> Result<Arc<HttpFrontend>, EdgeError> {
        let policy = f.proxy_protocol.as_ref().map(Policy::new);
        let settings = EdgeSettings::new(f, b);
        let up = settings.upstream;
        let upstream: Arc<dyn Upstream> = match b.protocol {
            Protocol::Uwsgi => Arc::new(UwsgiClient::new(UwsgiOpts {
                connect_timeout: up.connect,
                read_timeout: up.read,
                send_timeout: up.send,
                max_body: f.edge.max_body,
                underscores_in_headers: settings.underscores_in_headers,
                ..UwsgiOpts::default()
            })),
            Protocol::Fastcgi => Arc::new(FastCgiClient::new(FastCgiOpts::for_backend(
                &b.fastcgi,
                [up.connect, up.read, up.send],
                f.edge.max_body,
                settings.underscores_in_headers,
            ))),
            Protocol::Http => {
                // Each server's sockets stay within its max_connections (the lease bounds
                // requests; this bounds the pool's idle and background-connecting sockets).
                let caps = SocketCaps::new(
                    pool.servers()
                        .into_iter()
                        .map(|s| (s.addr, s.max_connections)),
                );
                let defaults = HttpOpts::default();
                Arc::new(HttpUpstream::new(HttpOpts {
                    connect_timeout: up.connect,
                    read_timeout: up.read,
                    max_idle_per_server: match caps.largest() {
                        0 => defaults.max_idle_per_server,
                        n => n.min(defaults.max_idle_per_server),
                    },
                    socket_caps: Arc::new(caps),
                    underscores_in_headers: settings.underscores_in_headers,
                    tlv_headers: crate::upstream::tlv_header_names(&f.edge.proxy_tlv_headers),
                    ..defaults
                }))
            }
            Protocol::H2c | Protocol::Grpc => Arc::new(H2Upstream::new(H2Opts {
                connect_timeout: up.connect,
                read_timeout: up.read,
                underscores_in_headers: settings.underscores_in_headers,
                tlv_headers: crate::upstream::tlv_header_names(&f.edge.proxy_tlv_headers),
                grpc: b.protocol == Protocol::Grpc,
                tls: match &b.tls {
                    Some(t) => Some(H2Tls {
                        config: tls::upstream_client(t)?,
                        name: t.name.clone(),
                    }),
                    None => None,
                },
            })),
        };
        let mut h2 = h2_builder(&settings);
        if upstream.can_upgrade() && !settings.upgrade_protocols.is_empty() {
            h2.enable_connect_protocol(); // RFC 8441, for WebSocket over HTTP/2
        }
        let h1 = h1_builder(&settings);
        let (name, backend): (Arc<str>, Arc<str>) =
            (f.name.as_str().into(), b.name.as_str().into());
        Ok(Arc::new(HttpFrontend {
            name: name.clone(),
            backend: backend.clone(),
            policy,
            tls,
            upstream,
            pool,
            retries: b.retries,
            settings,
            log: AccessLog {
                sink: log_sink,
                format: Arc::new(f.log_format.clone()),
                stderr: f.access_log_stderr,
                series: Arc::new(crate::metrics::RequestSeries::new(name, backend)),
            },
            force,
            h1,
            h2,
        }))
    }
}

impl crate::server::Frontend for HttpFrontend {
    fn name(&self) -> &str {
        &self.name
    }

    fn serve(self: Arc<Self>, conn: crate::server::Conn<'_>) {
        conn.spawn(|stream, peer, stop| handle(self, stream, peer, stop.clone()));
    }
}

/// Serves one accepted connection to its end. `stop` (shutdown began) asks the connection
/// to finish its requests and close; `fe.force` closes it at once.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment on its block
pub(crate) fn handle(
    fe: Arc<HttpFrontend>,
    mut stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send {
    // An `async` block, not an `async fn`: the latter keeps its arguments twice (as
    // passed and as moved into its body) in the task for the connection's whole life.
    async move {
        let peer = PeerAddr(peer);
        let conn_metrics = crate::metrics::global().conn_opened(&fe.name);
        // TCP_NODELAY comes from the listener (`net::bind_std`), no setsockopt here.
        let mut local = LocalAddr(stream.local_addr().unwrap_or(peer.0));
        let mut client = ClientAddr::direct(peer);
        let mut proxy_protocol = None;
        let mut unique_id = None;
        let mut proxy_tlvs = crate::upstream::ProxyTlvs::default();
        let mut leftover = Vec::new();
        if let Some(policy) = &fe.policy {
            let accepted = tokio::select! {
                r = proxy::expect_header(&mut stream, peer, local, policy) => r,
                _ = fe.force.cancelled() => return,
            };
            match accepted {
                Ok(acc) => {
                    client = acc.client;
                    local = acc.local;
                    leftover = acc.leftover;
                    unique_id = acc.unique_id;
                    proxy_tlvs = crate::upstream::ProxyTlvs::from_raw(&acc.tlvs);
                    proxy_protocol =
                        Some(client).filter(|c| acc.header_received && c.addr() != peer.0);
                }
                Err(rej) => {
                    crate::metrics::global().proxy_rejected(&fe.name, rej.code);
                    fe.log
                        .proxy_rejected(peer, &fe.name, rej.code, &rej.to_string());
                    return;
                }
            }
        }
        let conn_id = unique_id.unwrap_or_else(ConnId::fresh);
        // Counts wire bytes (TLS records included) into the frontend's byte counters.
        let io = crate::metrics::Counted::new(
            Rewind::new(leftover, stream),
            conn_metrics.handles().clone(),
        );
        let Some(edge) = fe.tls.clone() else {
            let info = ConnInfo {
                client,
                peer,
                proxy_protocol,
                id: conn::next_id(),
                conn_id,
                local,
                scheme: Scheme::Http,
                tls: None,
                client_cert: None,
                proxy_tlvs,
                close_hint: None,
                forwarding: Default::default(),
            };
            serve(&fe, io, info, Versions::Any, stop).await;
            return;
        };
        // With h2 the TLS 1.3 ticket leaves with our SETTINGS (one write, one wake-up less).
        // Boxed, and the stream bound only inside the match: the handshake's state (the TLS
        // stream, ~1.4 KiB) is freed when it ends instead of staying in this task's state
        // machine for the connection's whole life.
        let close_hint = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let io = Coalesce::with_close_hint(io, close_hint.clone());
        let handshake = Box::pin(tls_handshake(&fe, &edge, io, &stop, client));
        let serving = match handshake.await {
            None => return,
            Some(mut tls_stream) => {
                let info = tls::session_info(tls_stream.get_ref().1);
                let client_cert =
                    client_cert::identify(edge.config().client.as_ref(), tls_stream.get_ref().1);
                tls_stream
                    .get_mut()
                    .0
                    .release(info.alpn.as_deref() != Some("h2"));
                crate::metrics::global().tls_handshake(&fe.name, info.version, info.resumed);
                let versions = match info.alpn.as_deref() {
                    Some("http/1.1") => Versions::H1,
                    Some("h2") => Versions::H2,
                    _ => Versions::Any,
                };
                let info = ConnInfo {
                    client,
                    peer,
                    proxy_protocol,
                    id: conn::next_id(),
                    conn_id,
                    local,
                    scheme: Scheme::Https,
                    tls: Some(info),
                    client_cert,
                    proxy_tlvs,
                    close_hint: Some(close_hint),
                    forwarding: Default::default(),
                };
                serve(&fe, tls_stream, info, versions, stop)
            }
        };
        serving.await;
    }
}

/// The TLS handshake within the handshake timeout; None when it failed, timed out or a
/// shutdown came first.
async fn tls_handshake<IO>(
    fe: &HttpFrontend,
    edge: &TlsEdge,
    io: IO,
    stop: &CancellationToken,
    client: ClientAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = tokio::time::timeout(fe.settings.client.handshake, edge.acceptor().accept(io));
    tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                crate::metrics::global().tls_handshake_failed(&fe.name);
                tracing::debug!("{client} frontend={} tls handshake failed: {e}", fe.name);
                None
            }
            Err(_) => {
                crate::metrics::global().tls_handshake_failed(&fe.name);
                tracing::debug!("{client} frontend={} tls handshake timed out", fe.name);
                None
            }
        },
        _ = fe.force.cancelled() => None,
        _ = stop.cancelled() => None,
    }
}

/// The HTTP versions a connection may speak: what ALPN chose, else either (by preface).
#[derive(Debug, Clone, Copy)]
enum Versions {
    Any,
    H1,
    H2,
}

/// Serves HTTP on `io` (`h1::H1`, hyper's HTTP/2, or `version::ByPreface` to pick) until
/// the connection ends, is idle too long, has served `keepalive_requests`, or shutdown
/// closes it. Writes to a client that stops reading fail after the send timeout
/// (`net::SendDeadline`).
///
/// Not an `async fn`: the connection (which owns `io`) is built here and boxed, and the
/// returned future (`drive` over the box) holds only the box. As an `async fn` the
/// connection's task kept `io` twice more next to the connection (the parameter and the
/// wrapped local stay in the state machine for its whole life), ~2.8 KiB per TLS
/// connection.
fn serve<'a, IO>(
    fe: &'a Arc<HttpFrontend>,
    io: IO,
    info: ConnInfo,
    versions: Versions,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'a
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let state = Arc::new(conn::ConnState::new(fe.settings.limits.keepalive_requests));
    let svc = {
        let (fe, info, state) = (fe.clone(), info.clone(), state.clone());
        service_fn(move |req| {
            let (fe, info, state) = (fe.clone(), info.clone(), state.clone());
            // Boxed per request: hyper keeps one allocation the size of this future for the
            // whole connection (HTTP/1's in-flight slot), idle or streaming a response, and
            // `handle` with body buffering, the pool wait and the upstream exchange inline is
            // ~3.5 KiB of which nothing is needed once the response head is out.
            Respond(Box::pin(service::handle(fe, info, state, req)))
        })
    };
    let io = crate::net::SendDeadline::new(io, fe.settings.client.send);
    // The stream boxed for HTTP/1: a parked connection moves it whole, twice per request.
    match versions {
        Versions::Any => {
            let conn = Box::pin(version::ByPreface::new(
                fe,
                state.clone(),
                Box::new(io),
                svc,
            ));
            let shut = |c: std::pin::Pin<&mut version::ByPreface<_, _>>| c.graceful_shutdown();
            let park = |c: std::pin::Pin<&mut version::ByPreface<_, _>>| c.park();
            Either::Left(drive(fe, info, state, stop, conn, shut, Some(park)))
        }
        Versions::H1 => {
            let conn = Box::pin(h1::H1::new(fe, state.clone(), Box::new(io), svc));
            let park = |c: std::pin::Pin<&mut h1::H1<_, _>>| c.park();
            let d = drive(
                fe,
                info,
                state,
                stop,
                conn,
                |c| c.graceful_shutdown(),
                Some(park),
            );
            Either::Right(Either::Left(d))
        }
        Versions::H2 => {
            let conn = Box::pin(fe.h2.serve_connection(TokioIo::new(io), svc));
            let d = drive(fe, info, state, stop, conn, |c| c.graceful_shutdown(), None);
            Either::Right(Either::Right(d))
        }
    }
}

/// A request's response future as hyper's service returns it: boxed (see `serve`), so
/// `Unpin` as `h1::H1` needs, and infallible.
struct Respond<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for Respond<F> {
    type Output = Result<F::Output, Infallible>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

/// Drives hyper's connection `conn` to its end (see [`serve`]); `shutdown` starts its
/// graceful close. An HTTP/1 connection that switched protocols ends once its tunnel did.
async fn drive<C, E>(
    fe: &Arc<HttpFrontend>,
    info: Arc<ConnInfo>,
    state: Arc<conn::ConnState>,
    stop: CancellationToken,
    mut conn: std::pin::Pin<Box<C>>,
    shutdown: impl Fn(std::pin::Pin<&mut C>),
    park: Park<C>,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut draining = false;
    let mut stopping = false;
    // Each pass ends the connection or starts its graceful close (at most once).
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    connection_error(fe, &info, e.into());
                }
                // An HTTP/1 connection that switched protocols lives on as its tunnel.
                state.tunnels.close();
                tokio::select! {
                    _ = state.tunnels.wait() => {}
                    _ = fe.force.cancelled() => {}
                }
                return;
            }
            // Shutdown (or `sluice upgrade`): closing an idle HTTP/1 connection races
            // a request the client may be sending, so it closes once idle for
            // DRAIN_LINGER; a request before that is answered with `Connection: close`.
            _ = stop.cancelled(), if !stopping => stopping = true,
            _ = state.busy(), if stopping && !draining => {
                draining = true;
                shutdown(conn.as_mut());
            }
            _ = state.idle_for(DRAIN_LINGER.min(fe.settings.client.keepalive)), if stopping && !draining => {
                draining = true;
                shutdown(conn.as_mut());
            }
            // One timer per idle period: first the park, then the keep-alive timeout.
            idle = state.idle_stage(park.and(Some(PARK_AFTER)), fe.settings.client.keepalive), if !draining => {
                match (idle, park) {
                    (conn::Idle::Park, Some(park)) => park(conn.as_mut()),
                    _ => {
                        draining = true;
                        shutdown(conn.as_mut());
                    }
                }
            }
            // HTTP/1: no keep-alive after the response in flight; HTTP/2: GOAWAY.
            _ = state.spent(), if !draining => {
                draining = true;
                shutdown(conn.as_mut());
            }
            _ = fe.force.cancelled() => return,
        }
    }
}

/// How `drive` lets an idle connection give back its per-request state (`h1::H1::park`);
/// None where the protocol keeps it (HTTP/2).
type Park<C> = Option<fn(std::pin::Pin<&mut C>)>;

/// How long an HTTP/1 connection waits idle before it lets go of hyper's state (`h1`).
/// nginx frees its request buffers at once; taking hyper's connection apart and building
/// it again costs ~6 k instructions, ~8 % of a keep-alive request through the TLS edge
/// (callgrind), which a client sending its next request at once should not pay.
pub(crate) const PARK_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// How long an idle keep-alive connection stays open for a next request once the server
/// stops accepting (the request is answered, with `Connection: close`).
const DRAIN_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Logs a connection that hyper ended with an error; a request hyper itself refused
/// (malformed: 400, head too large: 431) gets an access line like nginx writes.
fn connection_error(
    fe: &HttpFrontend,
    info: &ConnInfo,
    e: Box<dyn std::error::Error + Send + Sync>,
) {
    let status = match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_parse_too_large() => Some(431),
        Some(h) if h.is_parse() => Some(400),
        _ => None,
    };
    tracing::debug!("{} frontend={} connection error: {e}", info.client, fe.name);
    if let Some(status) = status {
        let mut rec = AccessRecord::for_request(
            info.client,
            fe.name.clone(),
            &hyper::Method::GET,
            &hyper::Uri::from_static("/"),
            hyper::Version::HTTP_11,
            &hyper::HeaderMap::new(),
            fe.log.format.headers(),
        );
        (rec.peer, rec.proxy_protocol) = (info.peer, info.proxy_protocol);
        (rec.local, rec.connection) = (Some(info.local), info.id);
        rec.connection_id = Some(info.conn_id.clone());
        rec.request = "-".into();
        rec.protocol = "-";
        rec.status = status;
        if let Some(tls) = &info.tls {
            rec.tls_version = Some(tls.version).filter(|v| !v.is_empty());
            rec.tls_resumed = tls.resumed;
        }
        rec.client_cert = info.client_cert.clone();
        fe.log.emit(&rec);
    }
}
