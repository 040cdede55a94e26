//! Listening sockets and the accept loop: socket2 binding (SO_REUSEADDR, SO_REUSEPORT,
//! backlog 1024, IPV6_V6ONLY on [::]), the global connection limit, back-off on resource
//! errors (EMFILE/ENFILE/ENOBUFS), and the frontend slot a reload swaps (each accept reads
//! it; a removed listener drains its queue before closing). Each connection goes to its
//! frontend through the `Frontend` trait: what it does with it is not known here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frontend::{Conn, Frontend, FrontendSlot};

/// Listen backlog of every frontend socket.
pub const BACKLOG: i32 = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds a non-blocking listening socket ready for tokio.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// Binds a non-blocking listening socket, not yet registered with any runtime (the worker
/// that accepts on it registers it).
pub fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // "[::]:443" means IPv6 only; "0.0.0.0:443" is listed separately when wanted.
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt per listener
    // instead of one per connection (both roles want it: PROXY header, TLS records).
    sock.set_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// Binds `count` (at least 1) SO_REUSEPORT sockets on `addr`, one per accept loop: the kernel
/// spreads new connections over them, so accepting runs on every worker thread. A port 0
/// request is resolved by the first socket; the others join its port.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(addr)?;
    let actual = first.local_addr()?;
    let mut group = Vec::with_capacity(count.max(1));
    group.push(first);
    for _ in 1..count {
        group.push(bind_std(actual)?);
    }
    Ok(group)
}

/// Most connections taken from a removed listener's queue before it closes.
const DRAIN_MAX: usize = 4 * BACKLOG as usize;
/// How long draining a removed listener may wait for a connection slot.
const DRAIN_PERMIT_WAIT: Duration = Duration::from_secs(5);

/// One bound listening socket of a frontend.
#[derive(Debug)]
pub struct Listener {
    pub kind: FrontendSlot,
    /// Registered with the runtime of the accept loop that takes it.
    pub listener: std::net::TcpListener,
    pub addr: SocketAddr,
    /// Which socket of its bind's SO_REUSEPORT group this is (0 = the first, which logs).
    pub shard: usize,
    /// Cancelled when a reload removes this bind (or at shutdown, as a child of the stop
    /// token): stop accepting. Removal first accepts what is already queued.
    pub remove: CancellationToken,
}

/// Errors that concern one pending connection only: accept the next one at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// Accepts until `stop` (shutdown) or `l.remove` (a reload dropped this bind) is cancelled.
/// At shutdown the socket is dropped at once; on removal the connections already queued are
/// accepted and served first, so none is refused by the close. Each connection holds one
/// permit of `limit` (the global max_connections) for its whole life.
pub async fn accept_loop(
    l: Listener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let Listener {
        kind,
        listener,
        addr,
        remove,
        ..
    } = l;
    let name = kind.load().name().to_string();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot accept on frontend={name} addr={addr}: {e}");
            return;
        }
    };
    let on_conn = |stream, peer, permit| {
        let current: Arc<dyn Frontend> = Arc::clone(&kind.load());
        serve_conn(current, stream, peer, permit, &tracker, &stop);
    };
    run_accept(
        &name,
        addr,
        || listener.accept(),
        on_conn,
        limit.clone(),
        &remove,
    )
    .await;
    if stop.is_cancelled() {
        drop(listener);
        tracing::info!("stopped accepting frontend={name} addr={addr}");
        return;
    }
    let current: Arc<dyn Frontend> = Arc::clone(&kind.load());
    let drained = drain(
        listener,
        |stream, peer, permit| serve_conn(current.clone(), stream, peer, permit, &tracker, &stop),
        &limit,
    )
    .await;
    tracing::info!(
        "closed listener frontend={name} addr={addr} (reload), {drained} queued connections served"
    );
}

/// Hands one accepted connection to its frontend (which serves it on a tracked task).
fn serve_conn(
    fe: Arc<dyn Frontend>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    fe.serve(Conn::new(stream, peer, permit, tracker, stop));
}

/// Accepts everything queued on `listener` (until the kernel says EAGAIN, at most
/// [`DRAIN_MAX`]), handing each to `on_conn`, then closes it. Returns how many were served.
async fn drain(
    listener: TcpListener,
    mut on_conn: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
    limit: &Arc<Semaphore>,
) -> usize {
    // Out of the reactor: a plain non-blocking accept asks the kernel queue itself.
    let std = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot drain a removed listener: {e}");
            return 0;
        }
    };
    let mut served = 0;
    for _ in 0..DRAIN_MAX {
        let (sock, peer) = match std.accept() {
            Ok(pair) => pair,
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!("draining a removed listener: {e}");
                }
                break;
            }
        };
        let permit = tokio::time::timeout(DRAIN_PERMIT_WAIT, limit.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            tracing::warn!("draining a removed listener: no connection slot freed in time");
            break;
        };
        let stream = sock
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(sock));
        match stream {
            Ok(s) => {
                on_conn(s, peer, permit);
                served += 1;
            }
            Err(e) => tracing::debug!("draining a removed listener: {peer}: {e}"),
        }
    }
    served
}

/// What an accept loop went through (for tests and the final log line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptStats {
    pub accepted: u64,
    /// Resource errors (EMFILE, ENFILE, ENOBUFS, ...) that caused a back-off.
    pub errors: u64,
    /// Warnings logged: one per burst of consecutive errors.
    pub warnings: u64,
}

/// The accept loop proper, generic over the accept call so back-off can be tested.
async fn run_accept<S, Fut>(
    name: &str,
    addr: SocketAddr,
    mut accept: impl FnMut() -> Fut,
    mut on_conn: impl FnMut(S, SocketAddr, OwnedSemaphorePermit),
    limit: Arc<Semaphore>,
    stop: &CancellationToken,
) -> AcceptStats
where
    Fut: Future<Output = io::Result<(S, SocketAddr)>>,
{
    let mut stats = AcceptStats::default();
    let mut backoff = BACKOFF_MIN;
    let mut burst = 0u64;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = accept() => r,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if burst > 0 {
                    tracing::info!(
                        "accept recovered on frontend={name} addr={addr} after {burst} errors"
                    );
                    burst = 0;
                    backoff = BACKOFF_MIN;
                }
                stats.accepted += 1;
                on_conn(stream, peer, permit);
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                if burst == 0 {
                    stats.warnings += 1;
                    tracing::warn!(
                        "accept failed on frontend={name} addr={addr}: {e}; backing off"
                    );
                }
                burst += 1;
                stats.errors += 1;
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_binds_a_real_port_twice_with_reuseport() {
        let a = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        // SO_REUSEPORT: a second socket may bind the same address (multi-process accept).
        let b = bind_listener(addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        // Connections accepted from it have TCP_NODELAY without a setsockopt of their own.
        // The kernel hands the connection to either socket of the group (hash of the
        // 4-tuple), so accept on both.
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = tokio::select! {
            r = a.accept() => r.unwrap(),
            r = b.accept() => r.unwrap(),
        };
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY inherited from the listener"
        );
        let v6 = bind_listener("[::1]:0".parse().unwrap());
        if let Ok(v6) = v6 {
            assert!(v6.local_addr().unwrap().is_ipv6());
        }
    }

    #[tokio::test]
    async fn a_removed_listener_serves_its_queue_before_closing() {
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        // Five clients complete the handshake in the kernel queue; nobody accepted them yet.
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let limit = Arc::new(Semaphore::new(10));
        let mut got = Vec::new();
        let served = drain(l, |s, peer, _permit| got.push((s, peer)), &limit).await;
        assert_eq!(served, 5);
        assert_eq!(got.len(), 5);
        let mine: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        for (_, peer) in &got {
            assert!(mine.contains(peer), "{peer} is one of ours");
        }
        // Closed afterwards: a new connection is refused.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn resource_errors_back_off_and_log_once_per_burst() {
        let emfile = || Err::<((), SocketAddr), _>(io::Error::from_raw_os_error(libc::EMFILE));
        let peer: SocketAddr = "127.0.0.2:1".parse().unwrap();
        // 12 EMFILEs, one connection, 3 ENFILEs, one connection, then nothing more.
        let mut script: Vec<io::Result<((), SocketAddr)>> = (0..12).map(|_| emfile()).collect();
        script.push(Ok(((), peer)));
        script.extend((0..3).map(|_| Err(io::Error::from_raw_os_error(libc::ENFILE))));
        script.push(Ok(((), peer)));
        script.reverse();
        let calls = std::cell::Cell::new(0u32);
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let accept = || {
            calls.set(calls.get() + 1);
            let next = script.pop();
            if next.is_none() {
                stop.cancel();
            }
            async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        };
        let mut got = 0;
        let limit = Arc::new(Semaphore::new(10));
        let on_conn = |(), _peer, _permit| got += 1;
        let stats = run_accept("fe", peer, accept, on_conn, limit, &stop).await;
        assert_eq!(
            stats,
            AcceptStats {
                accepted: 2,
                errors: 15,
                warnings: 2
            }
        );
        assert_eq!(got, 2);
        assert_eq!(
            calls.get(),
            18,
            "no extra accept calls: it slept instead of spinning"
        );
        // 10+20+40+80+160+320+640+1000*5 ms for the first burst, 10+20+40 ms for the second:
        // the back-off restarts small after a success and is capped at one second.
        assert_eq!(start.elapsed(), Duration::from_millis(6270 + 70));
    }
}
