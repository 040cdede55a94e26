//! Address newtypes that keep the trusted hop and the real client apart (after linkerd2-proxy).
//! `PeerAddr` is whoever opened the TCP connection; `ClientAddr` is who we believe the client
//! is (a trusted PROXY header's source or a trusted hop's forwarding header, else the peer).
//! Nothing converts one into the other implicitly: the only way to a `ClientAddr` from a peer
//! is `ClientAddr::direct`.
//! `ServerAddr` is where a backend server listens; parsing it from text is `config::parsed`'s.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The TCP peer of an accepted connection: possibly a trusted load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The real client: from a trusted PROXY header, or the peer itself when it is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(SocketAddr);

/// The local address the connection reached (the frontend's bound address, or the PROXY
/// header's destination when one was accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr(pub SocketAddr);

impl ClientAddr {
    /// The peer is the client: no PROXY header was expected or accepted.
    pub fn direct(peer: PeerAddr) -> Self {
        ClientAddr(peer.0)
    }

    /// The source a trusted PROXY header asserted (`proxy_protocol::expect`, after the peer was
    /// checked against the trusted CIDRs).
    pub(crate) fn from_trusted_header(src: SocketAddr) -> Self {
        ClientAddr(src)
    }

    /// The address a trusted hop's `X-Forwarded-For`/`Forwarded` named (`edge::forwarded`,
    /// after the hop matched `[frontend.forwarded] trusted`); port 0 when the header gave none.
    pub(crate) fn from_trusted_forwarded(src: SocketAddr) -> Self {
        ClientAddr(src)
    }

    /// The client's socket address.
    pub fn addr(self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a backend server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// "10.0.0.11:443", "[::1]:8080".
    Inet(SocketAddr),
    /// "unix:/tmp/app.sock".
    Unix(PathBuf),
    /// "app.internal:8080": resolved at start (`config::parsed::resolve`, `discovery`).
    Host { host: String, port: u16 },
    /// `srv = "_app._tcp.example.test"`: one `Inet` server per SRV record, expanded by
    /// `discovery` before a pool is built (never connected to as such).
    Srv { name: String },
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Inet(a) => a.fmt(f),
            ServerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ServerAddr::Host { host, port } => write!(f, "{host}:{port}"),
            ServerAddr::Srv { name } => write!(f, "SRV {name}"),
        }
    }
}
