//! The HTTP/2 connection pool of `protocol = "h2c"`/`"grpc"` backends: per worker thread and
//! server, one multiplexed prior-knowledge connection (the `h2` crate's client over `connect.rs`'s
//! sockets, driven by one task that also sends the keep-alive PINGs), another only when every
//! open one has as many streams in flight as its peer allows (its
//! SETTINGS_MAX_CONCURRENT_STREAMS); a connection that closed (GOAWAY, reset, unanswered
//! PING) leaves the pool. No request rewriting, no retries across servers (`h2.rs`, the edge).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{self, SendRequest};
use h2::{Ping, PingPong};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::connect::connect;
use super::{ServerAddr, UpstreamError};
use crate::net::worker::PerWorker;

/// PING interval on pooled connections (idle ones too: a dead server is noticed before a
/// request is sent to it) and how long its answer may take.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Windows and limits of the client side, hyper's HTTP/2 client defaults (what the pool
/// used before it drove `h2` itself): 2 MiB per stream, 5 MiB per connection, 16 KiB
/// frames and header lists, 1 MiB of send buffer per stream.
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;
const MAX_FRAME: u32 = 16 << 10;
const MAX_HEADER_LIST: u32 = 16 << 10;
const MAX_SEND_BUF: usize = 1 << 20;

/// One pooled connection.
struct Conn {
    sender: SendRequest<Bytes>,
    /// Streams open on it through this pool.
    in_flight: AtomicUsize,
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS as hyper last saw it.
    max_streams: Arc<AtomicUsize>,
    /// The connection task ended (or a request found it closed).
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
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
    pub(crate) fn sender(&self) -> SendRequest<Bytes> {
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

/// Server address → its connections.
type Servers = Mutex<HashMap<ServerAddr, Arc<Server>>>;

/// The pool: per worker thread, server address → its connections (a connection is driven by
/// the worker that opened it, so only that worker's requests use it: no cross-thread
/// wake-ups, as for the HTTP/1.1 pool). Clones share it.
#[derive(Clone, Default)]
pub(crate) struct H2Pool {
    servers: Arc<PerWorker<Servers>>,
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
            let mut servers = self
                .servers
                .get_or_init(Servers::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match servers.get(addr) {
                Some(s) => s.clone(),
                None => servers.entry(addr.clone()).or_default().clone(),
            }
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
        // Boxed: connecting (TLS, the HTTP/2 handshake) is once per connection, and inline
        // its future would be part of every request's upstream future, moved into a box
        // per request.
        let conn = Arc::new(Box::pin(open(addr, left, self.tls.as_ref())).await?);
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
    let mut b = client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUF)
        .enable_push(false);
    let (sender, mut conn) = b
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| UpstreamError::Connect(std::io::Error::other(e)))?;
    let max_streams = Arc::new(AtomicUsize::new(conn.max_concurrent_send_streams()));
    let closed = Arc::new(AtomicBool::new(false));
    let ping = conn.ping_pong();
    tokio::spawn(Driver {
        conn,
        ping,
        waiting: false,
        sleep: Box::pin(tokio::time::sleep(PING_EVERY)),
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

/// Runs a connection, publishing the peer's stream limit after each poll, sending a PING
/// every `PING_EVERY` (dropping the connection when its answer takes over `PING_TIMEOUT`),
/// and marking the connection closed when it ends.
struct Driver<T: AsyncRead + AsyncWrite + Unpin> {
    conn: client::Connection<T, Bytes>,
    ping: Option<PingPong>,
    /// A PING is out; `sleep` is its deadline (else the time of the next one).
    waiting: bool,
    sleep: Pin<Box<Sleep>>,
    max_streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    /// Ready when the peer failed to answer a PING in time (or PINGs cannot be sent).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ping) = self.ping.as_mut() else {
            return Poll::Pending;
        };
        // At most one PING sent and one answer taken per poll.
        for _ in 0..2 {
            if self.waiting {
                match ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.waiting = false;
                        self.sleep.as_mut().reset(Instant::now() + PING_EVERY);
                        continue;
                    }
                    // The connection failed: its own poll reports how.
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => {}
                }
                if self.sleep.as_mut().poll(cx).is_ready() {
                    tracing::debug!("upstream HTTP/2 connection: no PING answer in time");
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if ping.send_ping(Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.waiting = true;
            self.sleep.as_mut().reset(Instant::now() + PING_TIMEOUT);
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let r = Pin::new(&mut this.conn).poll(cx);
        let max = this.conn.max_concurrent_send_streams();
        this.max_streams.store(max, Ordering::Release);
        let dead = match r {
            Poll::Ready(Err(e)) => {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
                true
            }
            Poll::Ready(Ok(())) => true,
            Poll::Pending => this.poll_keepalive(cx).is_ready(),
        };
        if dead {
            // Dropping the connection (when this task ends) fails its open streams.
            this.closed.store(true, Ordering::Release);
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
