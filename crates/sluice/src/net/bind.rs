//! Binding listening sockets: the frontends' SO_REUSEPORT groups (SO_REUSEADDR, backlog
//! 1024, IPV6_V6ONLY on [::], TCP_NODELAY inherited by accepted sockets), the probe that
//! refuses an address another process listens on, and the admin endpoint's single socket.
//! Nothing here accepts (`accept`) or knows what a frontend is.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Listen backlog of every frontend socket.
pub(super) const BACKLOG: i32 = 1024;

/// Binds a non-blocking listening socket ready for tokio.
#[cfg(test)]
pub(super) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// Binds a non-blocking listening socket, not yet registered with any runtime (the worker
/// that accepts on it registers it).
pub(super) fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

/// Fails with `AddrInUse` when a socket already listens on `addr` (or on an address that
/// covers it: the wildcard of its family, or `addr` is a wildcard over it), even one that
/// set SO_REUSEPORT, as nginx and HAProxy do. The probe binds without SO_REUSEPORT and
/// never listens, so it conflicts with every listener and with no other probe; it is
/// closed before the group binds. Sockets of this process overlap on purpose (the group,
/// kept sockets of a reload): the caller skips the probe for those, and for port 0.
pub(crate) fn probe_unheld(addr: SocketAddr) -> io::Result<()> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR like the group: connections in TIME_WAIT do not hold the port.
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    match sock.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "Address already in use (another process listens on it)",
        )),
        other => other,
    }
}

/// Whether listening on `a` and on `b` would take the same connections: same port and
/// family, and the same IP or either one the family's wildcard.
pub(crate) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Binds `count` (at least 1) SO_REUSEPORT sockets on `addr`, one per accept loop: the kernel
/// spreads new connections over them, so accepting runs on every worker thread. A port 0
/// request is resolved by the first socket; the others join its port.
pub(crate) fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(addr)?;
    let actual = first.local_addr()?;
    let mut group = Vec::with_capacity(count.max(1));
    group.push(first);
    for _ in 1..count {
        group.push(bind_std(actual)?);
    }
    Ok(group)
}

/// A listening TCP socket handed over by another process (`sluice upgrade`), checked
/// (a stream socket, listening, with an inet address) and set non-blocking.
pub(crate) fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<std::net::TcpListener> {
    let sock = Socket::from(fd);
    let inet = sock.local_addr()?.as_socket().is_some();
    if sock.r#type()? != Type::STREAM || !sock.is_listener()? || !inet {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the handed-over descriptor is not a listening TCP socket",
        ));
    }
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Binds one plain listening socket (std's defaults: SO_REUSEADDR, no SO_REUSEPORT, so a
/// port already taken is an error) registered with the current tokio runtime. The admin
/// endpoint listens this way.
pub(crate) fn bind_single(addr: SocketAddr) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}
