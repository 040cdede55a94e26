//! One accepted connection on a `mode = "tcp"` frontend: apply the PROXY policy, pick and
//! connect a server (retrying others on failure), write the outgoing PROXY header and any
//! early client bytes, pump bytes with `l4::forward`, then log one line. No accept loop here:
//! `server` hands connections over through the `server::Frontend` impl.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client_hello::{Hello, NoHello};
use super::log::{ConnLog, ConnRecord, Counters, End};
use super::route::L4Routes;
use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::balance::{Lease, NoServer, Pool, ServerId};
use crate::l4::bufpool;
use crate::l4::forward::{self, ForwardOpts};
use crate::metrics::FrontendHandles;
use crate::net::{self, Stream};
use crate::proxy_protocol::{self as proxy, ConnId, Extra, Policy, SendOpts, HEADER_BUF};
use crate::spec;

/// A backend as the L4 path uses it.
#[derive(Debug)]
pub(crate) struct L4Backend {
    pub name: Arc<str>,
    pub pool: Arc<Pool>,
    pub send: SendOpts,
    /// Local address to bind before connecting to a server.
    pub source: Option<IpAddr>,
    pub retries: u32,
    pub connect_timeout: Duration,
    /// Longest wait in the backend queue for a free server slot (`timeouts.queue`).
    pub queue_timeout: Duration,
    pub idle: Duration,
    /// Longest wait for the client's TLS ClientHello (`reads_hello()` only).
    pub preread: Duration,
    /// `balance = "hash"` with `hash_key = "sni"`: the SNI is the key.
    pub hash_sni: bool,
}

impl L4Backend {
    pub(crate) fn new(cfg: &spec::Backend, pool: Arc<Pool>) -> L4Backend {
        L4Backend {
            name: cfg.name.as_str().into(),
            pool,
            send: SendOpts::from_backend(cfg),
            source: cfg.source,
            retries: cfg.retries,
            connect_timeout: cfg.timeouts.connect,
            queue_timeout: cfg.timeouts.queue,
            idle: cfg.timeouts.idle,
            preread: cfg.timeouts.preread,
            hash_sni: cfg.balance == spec::Balance::Hash && cfg.hash_key == spec::HashKey::Sni,
        }
    }

    /// Whether connections need the client's ClientHello read before a server is picked.
    pub(crate) fn reads_hello(&self) -> bool {
        self.send.reads_hello() || self.hash_sni
    }
}

/// Everything a tcp frontend's connections share.
#[derive(Debug)]
pub(crate) struct TcpFrontend {
    pub name: Arc<str>,
    pub backend: Arc<L4Backend>,
    pub policy: Option<Policy>,
    pub log: ConnLog,
    /// Cancelled when the shutdown grace period ends: close whatever is still open.
    pub force: CancellationToken,
    /// Try splice(2) zero-copy forwarding.
    pub splice: bool,
    /// Let the kernel forward (BPF sockmap), falling back to the pump where it cannot.
    pub sockmap: bool,
    /// This frontend's counters, resolved once when it is built.
    pub metrics: FrontendHandles,
    /// Backends chosen by the ClientHello; None: always `backend`.
    pub routes: Option<L4Routes>,
}

impl crate::server::Frontend for TcpFrontend {
    fn name(&self) -> &str {
        &self.name
    }

    /// Shutdown does not interrupt a TCP connection; only `force` (end of grace) closes it.
    fn serve(self: Arc<Self>, conn: crate::server::Conn<'_>) {
        conn.spawn(|stream, peer, _stop| handle(self, stream, peer));
    }
}

/// Serves one accepted connection to the end and logs it. A plain fn around an `async`
/// block: an `async fn` would keep its arguments twice (as passed and as moved into its
/// body) in the task for the connection's whole life.
#[allow(clippy::manual_async_fn)] // on purpose: see the doc comment
pub(crate) fn handle(
    fe: Arc<TcpFrontend>,
    client: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    async move {
        let start = Instant::now();
        let conn_metrics = fe.metrics.conn_opened();
        let peer = PeerAddr(peer);
        let local = LocalAddr(client.local_addr().unwrap_or(peer.0));
        let mut rec = ConnRecord {
            conn_id: ConnId::fresh(),
            client: ClientAddr::direct(peer),
            peer,
            local,
            accepted: std::time::SystemTime::now(),
            frontend: fe.name.clone(),
            backend: fe.backend.name.clone(),
            server: None,
            queue_time: None,
            connect_time: None,
            duration: Duration::ZERO,
            to_server: 0,
            to_client: 0,
            retries: 0,
            sni: None,
            alpn: None,
            end: End::ClientClosed,
            counters: None,
        };
        rec.end = serve(&fe, client, &mut rec, start).await;
        if rec.counters.is_none() && fe.log.format.uses_counters() {
            rec.counters = Some(counters(&fe, &fe.backend, None));
        }
        conn_metrics
            .handles()
            .add_bytes(rec.to_server, rec.to_client);
        rec.duration = start.elapsed();
        fe.log.emit(&rec);
    }
}

/// HAProxy's connection counters now, for the log line (`be`: the backend chosen, `server`:
/// the one still leased).
fn counters(fe: &TcpFrontend, be: &L4Backend, server: Option<ServerId>) -> Counters {
    let pool = &be.pool;
    let servers = pool.servers();
    let queued = pool.queued() as u64;
    Counters {
        actconn: crate::metrics::global().current_connections(),
        feconn: fe.metrics.current(),
        beconn: servers.iter().map(|s| s.active as u64).sum::<u64>() + queued,
        srv_conn: server
            .and_then(|id| servers.iter().find(|s| s.id == id))
            .map_or(0, |s| s.active as u64),
        backend_queue: queued,
    }
}

/// Reads the ClientHello within the routes' timeout and picks the backend (the first route
/// that matches, else the frontend's); the bytes read stay in `leftover`, to be forwarded.
/// A client that sends no ClientHello gets the default backend or is closed (`no_hello`);
/// one too slow to finish it is closed. The choice is the log line's backend.
async fn route<'a>(
    fe: &'a TcpFrontend,
    routes: &'a L4Routes,
    client: &mut TcpStream,
    leftover: &mut Vec<u8>,
    rec: &mut ConnRecord,
) -> Result<(&'a Arc<L4Backend>, Option<Hello>), End> {
    let read = super::client_hello::read_hello(client, leftover, routes.preread_timeout);
    let chosen = match unless_forced(&fe.force, read).await {
        None => return Err(End::Shutdown),
        Some(Ok(hello)) => (routes.pick(&hello).unwrap_or(&fe.backend), Some(hello)),
        Some(Err(NoHello::Timeout)) => return Err(End::PrereadTimeout),
        Some(Err(NoHello::Closed)) => return Err(End::ClientClosed),
        Some(Err(NoHello::Io(e))) => return Err(End::ClientError(e)),
        Some(Err(why)) if routes.no_hello == spec::NoHello::Reject => {
            return Err(End::NoHello(why.to_string()))
        }
        Some(Err(why)) => {
            tracing::debug!(frontend = %fe.name, client = %rec.client, "default backend: {why}");
            (&fe.backend, None)
        }
    };
    rec.backend = chosen.0.name.clone();
    Ok(chosen)
}

/// Runs `fut` unless the shutdown grace period ends first.
async fn unless_forced<T>(
    force: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        v = fut => Some(v),
        _ = force.cancelled() => None,
    }
}

/// What the setup phase hands to the pump: both connections, the server lease held while
/// they forward, and the bytes already sent to the server (early and leftover client bytes).
struct Ready<'a> {
    be: &'a Arc<L4Backend>,
    client: TcpStream,
    server: Stream,
    lease: Lease,
    sent: u64,
}

async fn serve(fe: &TcpFrontend, client: TcpStream, rec: &mut ConnRecord, start: Instant) -> End {
    // The setup phase (PROXY header, ClientHello, connect, header write) is boxed: its state
    // is larger than the pump's, and a box is freed once it completes, so an idle connection
    // keeps only the pump's state, without the header, hello and leftover buffers.
    let Ready {
        be,
        client,
        server,
        lease,
        sent,
    } = match Box::pin(setup(fe, client, rec, start)).await {
        Ok(ready) => ready,
        Err(end) => return end,
    };
    let opts = ForwardOpts {
        idle: be.idle,
        splice: fe.splice,
    };
    let token = Some(fe.force.clone());
    let out = match server {
        // Boxed: the sockmap path's state is larger than the pump's and most connections
        // never take it.
        Stream::Tcp(s) if fe.sockmap => {
            match Box::pin(super::sockmap::forward(client, s, be.idle, token.clone())).await {
                Ok(out) => {
                    crate::metrics::global().sockmap_connection(&fe.name, "sockmap");
                    out
                }
                Err((client, s, why)) => {
                    tracing::debug!(frontend = %fe.name, "sockmap not used, pumping: {why}");
                    crate::metrics::global().sockmap_connection(&fe.name, "fallback");
                    forward::forward(client, s, &opts, token).await
                }
            }
        }
        Stream::Tcp(s) => forward::forward(client, s, &opts, token).await,
        Stream::Unix(s) => forward::forward(client, s, &opts, token).await,
    };
    if fe.log.format.uses_counters() {
        rec.counters = Some(counters(fe, be, Some(lease.id())));
    }
    drop(lease);
    rec.to_server = out.to_server + sent;
    rec.to_client = out.to_client;
    map_end(out.end)
}

/// Everything before the pump: the incoming PROXY header, the ClientHello, picking and
/// connecting a server, and writing the outgoing PROXY header with the early client bytes.
async fn setup<'a>(
    fe: &'a TcpFrontend,
    mut client: TcpStream,
    rec: &mut ConnRecord,
    start: Instant,
) -> Result<Ready<'a>, End> {
    let mut leftover = Vec::new();
    let mut passed = Vec::new();
    if let Some(policy) = &fe.policy {
        let expect = proxy::expect_header(&mut client, rec.peer, rec.local, policy);
        let Some(accepted) = unless_forced(&fe.force, expect).await else {
            return Err(End::Shutdown);
        };
        match accepted {
            Ok(acc) => {
                rec.client = acc.client;
                rec.local = acc.local;
                leftover = acc.leftover;
                if let Some(id) = acc.unique_id {
                    rec.conn_id = id;
                }
                passed = acc.tlvs;
            }
            Err(rej) => {
                crate::metrics::global().proxy_rejected(&fe.name, rej.code);
                return Err(End::ProxyRejected {
                    code: rej.code,
                    reason: rej.reason,
                });
            }
        }
    }
    let (be, hello) = match &fe.routes {
        Some(routes) => match route(fe, routes, &mut client, &mut leftover, rec).await {
            Ok(chosen) => chosen,
            Err(end) => return Err(end),
        },
        None => (&fe.backend, None),
    };
    let hello = if hello.is_none() && fe.routes.is_none() && be.reads_hello() {
        let read = super::client_hello::read_hello(&mut client, &mut leftover, be.preread);
        match unless_forced(&fe.force, read).await {
            None => return Err(End::Shutdown),
            Some(Ok(hello)) => Some(hello),
            Some(Err(why)) => {
                tracing::debug!(frontend = %fe.name, client = %rec.client, "forwarded without ClientHello TLVs: {why}");
                None
            }
        }
    } else {
        hello
    };
    rec.sni = hello.as_ref().and_then(|h| h.sni.clone());
    rec.alpn = hello.as_ref().and_then(|h| h.alpn.clone());
    let (lease, mut server) = match unless_forced(&fe.force, connect_any(be, rec)).await {
        Some(Ok(pair)) => pair,
        Some(Err(end)) => return Err(end),
        None => return Err(End::Shutdown),
    };
    rec.connect_time = Some(start.elapsed());

    let mut hdr = [0u8; HEADER_BUF];
    let mut big = Vec::new();
    // The UNIQUE_ID sent (when the backend sends one) is the id this line logs, so the next
    // tier can log it too.
    let extra = Extra {
        unique_id: Some(rec.conn_id.as_str().as_bytes()),
        authority: rec.sni.as_deref(),
        alpn: rec.alpn.as_deref().map(str::as_bytes),
        passed: &passed,
    };
    let out: &mut [u8] = match proxy::header_len(&extra) {
        HEADER_BUF => &mut hdr,
        len => {
            big.resize(len, 0);
            &mut big
        }
    };
    let n = match proxy::build_header(&be.send, rec.client, rec.local, &extra, out) {
        Ok(n) => n,
        Err(e) => return Err(End::ServerError(format!("building PROXY header: {e}"))),
    };
    let early = write_first(fe, be, &client, &mut server, &out[..n], &leftover).await?;
    Ok(Ready {
        be,
        client,
        server,
        lease,
        sent: leftover.len() as u64 + early as u64,
    })
}

fn map_end(end: forward::End) -> End {
    match end {
        forward::End::ClientClosed => End::ClientClosed,
        forward::End::ServerClosed => End::ServerClosed,
        forward::End::IdleTimeout => End::IdleTimeout,
        forward::End::ClientError(k) => End::ClientError(io::Error::from(k).to_string()),
        forward::End::ServerError(k) => End::ServerError(io::Error::from(k).to_string()),
        forward::End::Shutdown => End::Shutdown,
    }
}

/// Writes the outgoing PROXY header in one write together with whatever the client has
/// sent by now: the bytes after an incoming PROXY header, or, without those, what the
/// reactor already reported readable (typically the whole first request), as HAProxy does.
/// One segment and one wake-up of the server fewer than header and data apart. Nothing is
/// waited for: a server-speaks-first protocol gets the header alone. Returns how many
/// bytes were read from the client here (not counting `leftover`).
async fn write_first(
    fe: &TcpFrontend,
    be: &L4Backend,
    client: &TcpStream,
    server: &mut Stream,
    hdr: &[u8],
    leftover: &[u8],
) -> Result<usize, End> {
    if hdr.is_empty() && leftover.is_empty() {
        return Ok(0);
    }
    let mut buf = bufpool::take();
    let (mut len, mut early) = (hdr.len(), 0);
    let oversized;
    let joined: &[u8] = if len + leftover.len() > buf.len() {
        // An oversized leftover (a large incoming v2 TLV block allowed by configuration).
        oversized = [hdr, leftover].concat();
        &oversized
    } else {
        buf[..len].copy_from_slice(hdr);
        if leftover.is_empty() {
            early = match forward::read_drained(client, &mut buf[len..]) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    bufpool::give(buf);
                    return Err(End::ClientError(e.to_string()));
                }
            };
        } else {
            buf[len..len + leftover.len()].copy_from_slice(leftover);
        }
        len += leftover.len() + early;
        &buf[..len]
    };
    let write = tokio::time::timeout(be.idle, server.write_all(joined));
    let res = match unless_forced(&fe.force, write).await {
        Some(Ok(Ok(()))) => Ok(early),
        Some(Ok(Err(e))) => Err(End::ServerError(e.to_string())),
        Some(Err(_)) => Err(End::IdleTimeout),
        None => Err(End::Shutdown),
    };
    bufpool::give(buf);
    res
}

/// Picks servers and connects, at most `1 + retries` attempts, each waiting at most the
/// queue timeout for a server slot and then the connect timeout to connect; failed servers
/// are reported to the pool and not tried again.
async fn connect_any(be: &L4Backend, rec: &mut ConnRecord) -> Result<(Lease, Stream), End> {
    let mut tried: Vec<ServerId> = Vec::new();
    let mut last_err: Option<String> = None;
    for _attempt in 0..=be.retries {
        let queued_at = Instant::now();
        let queued_by = queued_at + be.queue_timeout;
        // Host names compare without case: the key is the lower-case SNI.
        let key = (rec.sni.as_deref())
            .filter(|_| be.hash_sni)
            .map(str::to_ascii_lowercase);
        let acquired = (be.pool)
            .acquire_keyed(
                &rec.client,
                key.as_deref().map(str::as_bytes),
                &tried,
                queued_by,
            )
            .await;
        rec.queue_time = Some(rec.queue_time.unwrap_or_default() + queued_at.elapsed());
        let lease = match acquired {
            Ok(lease) => lease,
            Err(NoServer::Unavailable) if last_err.is_some() => break,
            Err(_) => return Err(End::NoServer),
        };
        rec.server = Some(lease.name().to_string());
        // TCP_NODELAY is set once by `forward`, not at connect too: the PROXY header is the
        // first segment on an idle connection, which Nagle never delays.
        match net::connect(lease.addr(), be.source, be.connect_timeout).await {
            Ok(stream) => {
                lease.connected();
                return Ok((lease, stream));
            }
            Err(e) if !net::is_connect_timeout(&e) => {
                let why = format!("{}: {e}", lease.name());
                lease.connect_failed(&why);
                last_err = Some(why);
            }
            Err(_) => {
                let why = format!(
                    "{}: connect timeout after {:?}",
                    lease.name(),
                    be.connect_timeout
                );
                lease.connect_failed(&why);
                last_err = Some(why);
            }
        }
        tried.push(lease.id());
        rec.retries += 1;
    }
    // `retries` counts failed attempts; the last one was not followed by a retry.
    rec.retries = rec.retries.saturating_sub(1);
    Err(End::ConnectFailed(
        last_err.unwrap_or_else(|| "no attempt made".into()),
    ))
}
