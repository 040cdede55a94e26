//! The HTTP/2 connection pool of `protocol = "h2c"`/`"grpc"` backends: per server, one
//! multiplexed prior-knowledge connection (hyper's `client::conn::http2` over
//! `connect.rs`'s sockets), another only when every open one has as many streams in flight
//! as its peer allows (its SETTINGS_MAX_CONCURRENT_STREAMS); a connection that closed
//! (GOAWAY, reset, failed PING) leaves the pool. No request rewriting, no retries across
//! servers (`h2.rs`, the edge).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connect::connect;
use super::{RequestBody, ServerAddr, UpstreamError};

/// PING interval on pooled connections (idle ones too: a dead server is noticed before a
/// request is sent to it) and how long its answer may take.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One pooled connection.
struct Conn {
    sender: SendRequest<RequestBody>,
    /// Streams open on it through this pool.
    in_flight: AtomicUsize,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS as hyper last saw it.
    max_streams: Arc<AtomicUsize>,
    /// The connection task ended (or a request found it closed).
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.sender.is_closed()
    }

    /// Takes a stream slot if the peer allows one more.
    fn try_take(self: &Arc<Self>) -> Option<Stream> {
        let max = self.max_streams.load(Ordering::Acquire).max(1);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Stream(self.clone()))
    }
}

/// A stream slot on a pooled connection, released when dropped (the response body holds it
/// until the app's stream ends).
pub(crate) struct Stream(Arc<Conn>);

impl Stream {
    pub(crate) fn sender(&self) -> SendRequest<RequestBody> {
        self.0.sender.clone()
    }

    /// The connection turned out closed before the request went out: never pick it again.
    pub(crate) fn mark_closed(&self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One server's connections, and a lock that lets one request at a time open a new one (a
/// burst of requests to a cold server shares the first connection instead of opening one
/// each).
#[derive(Default)]
struct Server {
    conns: Mutex<Vec<Arc<Conn>>>,
    opening: tokio::sync::Mutex<()>,
}

impl Server {
    /// A slot on an open connection with room, dropping closed connections on the way.
    fn pick(&self) -> Option<Stream> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| c.usable());
        conns.iter().find_map(Conn::try_take)
    }
}

/// TLS to the servers (`protocol = "grpc"` with `[backend.tls]`).
#[derive(Debug, Clone)]
pub struct H2Tls {
    /// Verification, ALPN h2 and SNI are set here (`tls::upstream_client`).
    pub config: Arc<rustls::ClientConfig>,
    /// The name checked in the certificate (and sent as SNI when enabled); None: the
    /// server's host.
    pub name: Option<String>,
}

/// The pool: server address → its connections. Clones share it.
#[derive(Clone, Default)]
pub(crate) struct H2Pool {
    servers: Arc<Mutex<HashMap<ServerAddr, Arc<Server>>>>,
    tls: Option<H2Tls>,
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool").finish_non_exhaustive()
    }
}

impl H2Pool {
    pub(crate) fn new(tls: Option<H2Tls>) -> Self {
        H2Pool {
            servers: Arc::default(),
            tls,
        }
    }

    /// A stream slot to `addr`: on a pooled connection with room, else on a new connection
    /// (connect and HTTP/2 handshake within `connect_timeout`).
    pub(crate) async fn stream(
        &self,
        addr: &ServerAddr,
        connect_timeout: Duration,
    ) -> Result<Stream, UpstreamError> {
        let server = {
            let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
            servers.entry(addr.clone()).or_default().clone()
        };
        if let Some(s) = server.pick() {
            return Ok(s);
        }
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let _opening = tokio::time::timeout_at(deadline, server.opening.lock())
            .await
            .map_err(|_| UpstreamError::Timeout)?;
        // Another request may have opened one while this one waited.
        if let Some(s) = server.pick() {
            return Ok(s);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let conn = Arc::new(open(addr, left, self.tls.as_ref()).await?);
        let slot = conn.try_take().ok_or_else(|| {
            UpstreamError::Io(std::io::Error::other("new connection allows no streams"))
        })?;
        server
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        Ok(slot)
    }
}

/// Connects to `addr` (with a TLS handshake when `tls`) and does the HTTP/2 handshake (prior
/// knowledge) within `timeout`; the connection runs on its own task until the peer or the
/// pool (every sender dropped) ends it.
async fn open(
    addr: &ServerAddr,
    timeout: Duration,
    tls: Option<&H2Tls>,
) -> Result<Conn, UpstreamError> {
    let work = async {
        let stream = connect(addr, timeout).await?;
        let Some(tls) = tls else {
            return start(stream).await;
        };
        let name = server_name(addr, tls.name.as_deref())?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls.config.clone())
            .connect(name, stream)
            .await
            .map_err(UpstreamError::Connect)?;
        start(tls_stream).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

/// The name a server's certificate is checked against: `name`, else its host.
fn server_name(
    addr: &ServerAddr,
    name: Option<&str>,
) -> Result<ServerName<'static>, UpstreamError> {
    let bad = |e| UpstreamError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
    match (name, addr) {
        (Some(n), _) => ServerName::try_from(n.to_string()).map_err(|e| bad(e.to_string())),
        (None, ServerAddr::Inet(sa)) => Ok(ServerName::IpAddress(sa.ip().into())),
        (None, ServerAddr::Host { host, .. }) => {
            ServerName::try_from(host.clone()).map_err(|e| bad(e.to_string()))
        }
        (None, ServerAddr::Unix(_)) => Ok(ServerName::try_from("localhost").expect("a valid name")),
        // Discovery expands SRV servers into addresses before a pool holds them.
        (None, ServerAddr::Srv { name }) => Err(bad(format!("unexpanded SRV server {name}"))),
    }
}

/// The HTTP/2 handshake over `io`, the connection task spawned.
async fn start<T>(io: T) -> Result<Conn, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true);
    let (sender, conn) = b
        .handshake::<_, RequestBody>(TokioIo::new(io))
        .await
        .map_err(|e| UpstreamError::Connect(std::io::Error::other(e)))?;
    let max_streams = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
    let closed = Arc::new(AtomicBool::new(false));
    tokio::spawn(Driver {
        conn: Box::pin(conn),
        max_streams: max_streams.clone(),
        closed: closed.clone(),
    });
    Ok(Conn {
        sender,
        in_flight: AtomicUsize::new(0),
        max_streams,
        closed,
    })
}

/// Runs a connection, publishing the peer's stream limit after each poll and marking the
/// connection closed when it ends.
struct Driver<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    conn: Pin<Box<http2::Connection<TokioIo<T>, RequestBody, TokioExecutor>>>,
    max_streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let r = self.conn.as_mut().poll(cx);
        let max = self.conn.as_ref().get_ref().current_max_send_streams();
        self.max_streams.store(max, Ordering::Release);
        match r {
            Poll::Ready(res) => {
                self.closed.store(true, Ordering::Release);
                if let Err(e) = res {
                    tracing::debug!("upstream HTTP/2 connection ended: {e}");
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
