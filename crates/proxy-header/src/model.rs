//! The header model shared by the v1 and v2 parsers and encoders.
//! Plain data: no parsing or encoding lives here.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::tlv::Tlvs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// v2 command. A v1 header is always `Proxy` (`UNKNOWN` is `Proxy` with `Addresses::Unspec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Sent by the proxy for itself (health checks): use the connection's own addresses.
    Local,
    /// Relayed on behalf of a client.
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unspec,
    Stream,
    Dgram,
}

/// The address block. `Unspec` means "use the real connection's addresses".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    Unspec,
    Inet {
        src: SocketAddrV4,
        dst: SocketAddrV4,
    },
    Inet6 {
        src: SocketAddrV6,
        dst: SocketAddrV6,
    },
    /// Unix socket paths, 108 bytes each, NUL-padded as on the wire.
    Unix {
        src: [u8; 108],
        dst: [u8; 108],
    },
}

impl Addresses {
    /// INET when both sides are IPv4, else INET6 with any IPv4 side mapped
    /// (`::ffff:a.b.c.d`), as HAProxy does for mixed families. Scope ids are dropped.
    pub fn from_socket_addrs(src: SocketAddr, dst: SocketAddr) -> Addresses {
        let v6 = |a: SocketAddr| match a {
            SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
            SocketAddr::V6(v6) => SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0),
        };
        match (src, dst) {
            (SocketAddr::V4(src), SocketAddr::V4(dst)) => Addresses::Inet { src, dst },
            _ => Addresses::Inet6 {
                src: v6(src),
                dst: v6(dst),
            },
        }
    }
}

/// A decoded header, borrowing its TLVs from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub version: Version,
    pub command: Command,
    pub transport: Transport,
    pub addresses: Addresses,
    /// Already validated at decode time: iterating never fails. Empty for v1.
    pub tlvs: Tlvs<'a>,
}

impl Header<'_> {
    /// The real client address this header asserts: `Some` only for a PROXY command with
    /// an INET or INET6 address block. `None` means "use the connection's own address".
    pub fn source(&self) -> Option<std::net::SocketAddr> {
        match (self.command, self.addresses) {
            (Command::Proxy, Addresses::Inet { src, .. }) => Some(src.into()),
            (Command::Proxy, Addresses::Inet6 { src, .. }) => Some(src.into()),
            _ => None,
        }
    }

    /// The address the client connected to, under the same rule as [`Header::source`].
    pub fn destination(&self) -> Option<std::net::SocketAddr> {
        match (self.command, self.addresses) {
            (Command::Proxy, Addresses::Inet { dst, .. }) => Some(dst.into()),
            (Command::Proxy, Addresses::Inet6 { dst, .. }) => Some(dst.into()),
            _ => None,
        }
    }
}
