//! Listening sockets and the accept loop: socket2 binding (SO_REUSEADDR, SO_REUSEPORT,
//! backlog 1024, IPV6_V6ONLY on [::]), the global connection limit, and back-off on
//! resource errors (EMFILE/ENFILE/ENOBUFS). What a connection does is up to its frontend.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::l4::frontend::{self, TcpFrontend};

/// Listen backlog of every frontend socket.
pub const BACKLOG: i32 = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds a non-blocking listening socket ready for tokio.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // "[::]:443" means IPv6 only; "0.0.0.0:443" is listed separately when wanted.
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    TcpListener::from_std(sock.into())
}

/// What serves the connections of one listener. The HTTP edge adds its variant here.
#[derive(Debug, Clone)]
pub enum FrontendKind {
    Tcp(Arc<TcpFrontend>),
}

impl FrontendKind {
    pub fn name(&self) -> &str {
        match self {
            FrontendKind::Tcp(fe) => &fe.name,
        }
    }
}

/// One bound listening socket of a frontend.
#[derive(Debug)]
pub struct Listener {
    pub kind: FrontendKind,
    pub listener: TcpListener,
    pub addr: SocketAddr,
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

/// Accepts until `stop` is cancelled, then drops the socket. Each connection holds one
/// permit of `limit` (the global max_connections) for its whole life.
pub async fn accept_loop(
    l: Listener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
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
            r = l.listener.accept() => r,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if burst > 0 {
                    tracing::info!(
                        "accept recovered on frontend={} addr={} after {burst} errors",
                        l.kind.name(),
                        l.addr
                    );
                    burst = 0;
                    backoff = BACKOFF_MIN;
                }
                match &l.kind {
                    FrontendKind::Tcp(fe) => {
                        let fe = fe.clone();
                        tracker.spawn(async move {
                            frontend::handle(fe, stream, peer).await;
                            drop(permit);
                        });
                    }
                }
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                if burst == 0 {
                    tracing::warn!(
                        "accept failed on frontend={} addr={}: {e}; backing off",
                        l.kind.name(),
                        l.addr
                    );
                }
                burst += 1;
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    tracing::info!(
        "stopped accepting frontend={} addr={}",
        l.kind.name(),
        l.addr
    );
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
        let v6 = bind_listener("[::1]:0".parse().unwrap());
        if let Ok(v6) = v6 {
            assert!(v6.local_addr().unwrap().is_ipv6());
        }
    }
}
