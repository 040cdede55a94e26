//! Parsing the configuration's strings into typed values (`crate::addr::ServerAddr`, bind
//! addresses, CIDRs, source addresses). Pure parsing (plus `resolve`, which asks the system
//! resolver for `host:port`); validation in `config::load` proves the strings of a loaded
//! `Config` parse, and `config::convert` turns them into `spec` values once.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;

pub use crate::addr::ServerAddr;

/// Longest host name accepted (RFC 1035 limit on the presentation form).
const MAX_HOST_LEN: usize = 253;

/// Parses "ip:port", "[v6]:port", "host:port" or "unix:/path". Port 0 is refused: a server
/// cannot be reached there.
pub fn parse_server_addr(s: &str) -> Result<ServerAddr, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "invalid server address {s:?}: empty unix socket path"
            ));
        }
        if path.contains('\0') {
            return Err(format!(
                "invalid server address {s:?}: NUL byte in unix socket path"
            ));
        }
        return Ok(ServerAddr::Unix(PathBuf::from(path)));
    }
    let expected = "expected \"ip:port\", \"[ipv6]:port\", \"host:port\" or \"unix:/path\"";
    if let Ok(sa) = SocketAddr::from_str(s) {
        if sa.port() == 0 {
            return Err(format!("invalid server address {s:?}: port 0"));
        }
        return Ok(ServerAddr::Inet(sa));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "invalid server address {s:?}: missing port; {expected}"
        ));
    };
    if host.starts_with('[') || host.contains(':') {
        return Err(format!(
            "invalid server address {s:?}: not an IPv6 address with port; write \"[::1]:port\""
        ));
    }
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => {
            return Err(format!(
                "invalid server address {s:?}: port must be 1-65535"
            ));
        }
        Ok(p) => p,
    };
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "invalid server address {s:?}: {host:?} is not an IPv4 address"
        ));
    }
    if !valid_host(host) {
        return Err(format!(
            "invalid server address {s:?}: {host:?} is not a valid host name; {expected}"
        ));
    }
    Ok(ServerAddr::Host {
        host: host.to_string(),
        port,
    })
}

/// Letters, digits, '-' and '_' in dot-separated labels of 1-63 characters.
fn valid_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses a listen address: "0.0.0.0:443", "[::]:443", "127.0.0.1:0" (port 0 = any free port).
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(s).map_err(|_| {
        format!("invalid bind address {s:?}: expected \"ip:port\" such as \"0.0.0.0:443\" or \"[::]:443\"")
    })
}

/// Why a frontend cannot listen on `sa` on any machine, if it cannot: frontends bind IPv6
/// addresses IPv6-only (`[::]` leaves IPv4 to `0.0.0.0`), so an IPv4-mapped address is
/// EINVAL at `run`; so are IPv6 multicast and a link-local address without its `%scope`;
/// IPv4 multicast and broadcast bind but no TCP connection can ever reach them.
pub(super) fn bind_problem(sa: SocketAddr) -> Option<String> {
    match sa {
        SocketAddr::V6(v6) => {
            let ip = v6.ip();
            if let Some(v4) = ip.to_ipv4_mapped() {
                Some(format!(
                    "{ip} is an IPv4-mapped IPv6 address, which an IPv6-only listener cannot \
                     bind; write the IPv4 address: \"{v4}:{}\"",
                    sa.port()
                ))
            } else if ip.is_multicast() {
                Some(format!(
                    "{ip} is a multicast address; TCP cannot listen on it"
                ))
            } else if ip.is_unicast_link_local() && v6.scope_id() == 0 {
                Some(format!(
                    "{ip} is link-local: name the interface by its index, e.g. \"[{ip}%2]:{}\"",
                    sa.port()
                ))
            } else {
                None
            }
        }
        SocketAddr::V4(v4) => {
            let ip = v4.ip();
            (ip.is_multicast() || ip.is_broadcast()).then(|| {
                format!("{ip} is a multicast or broadcast address; no TCP connection reaches it")
            })
        }
    }
}

/// Parses "10.0.0.10/32" or "fd00::/8"; a bare address means a /32 (IPv4) or /128 (IPv6).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        IpNet::from_str(s).map_err(|_| {
            format!("invalid CIDR {s:?}: expected e.g. \"10.0.0.10/32\", \"10.0.0.0/24\" or \"::1/128\"")
        })
    } else {
        IpAddr::from_str(s)
            .map(IpNet::from)
            .map_err(|_| format!("invalid CIDR {s:?}: expected an address or address/prefix"))
    }
}

/// Parses `backend.source`: a bare IP address (no port) for outgoing connections.
pub fn parse_source(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s).map_err(|_| {
        format!("invalid source address {s:?}: expected an IP address such as \"10.0.0.10\"")
    })
}

/// Turns `Host` into one `Inet` per address the system resolver returns; `Inet` and `Unix`
/// come back unchanged. Blocking: call it at start, not on the data path.
pub fn resolve(addr: &ServerAddr) -> io::Result<Vec<ServerAddr>> {
    match addr {
        ServerAddr::Host { host, port } => {
            let found: Vec<ServerAddr> = (host.as_str(), *port)
                .to_socket_addrs()?
                .map(ServerAddr::Inet)
                .collect();
            if found.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host}: the resolver returned no addresses"),
                ));
            }
            Ok(found)
        }
        other => Ok(vec![other.clone()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server_addr("10.0.0.11:443"),
            Ok(ServerAddr::Inet("10.0.0.11:443".parse().unwrap()))
        );
        assert_eq!(
            parse_server_addr("[::1]:8080"),
            Ok(ServerAddr::Inet("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            parse_server_addr("unix:/tmp/app.sock"),
            Ok(ServerAddr::Unix("/tmp/app.sock".into()))
        );
        assert_eq!(
            parse_server_addr("app.internal:8080"),
            Ok(ServerAddr::Host {
                host: "app.internal".into(),
                port: 8080
            })
        );
        for bad in [
            "",
            "10.0.0.11",
            "10.0.0.11:0",
            "10.0.0.11:70000",
            "::1:80",
            "[::1]",
            "unix:",
            "host:",
            ":80",
            "bad host:80",
            "a..b:80",
            "-a:80",
            "[::1:80",
            "10.0.0.300:80",
        ] {
            assert!(parse_server_addr(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}:80", "a.".repeat(200));
        assert!(parse_server_addr(&long).is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.0.0.11:443",
            "[::1]:8080",
            "unix:/tmp/app.sock",
            "app.internal:8080",
        ] {
            assert_eq!(parse_server_addr(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn binds_no_listener_can_use() {
        let problem = |s: &str| bind_problem(s.parse().unwrap());
        let mapped = problem("[::ffff:127.0.1.52]:8080").unwrap();
        assert!(mapped.contains("\"127.0.1.52:8080\""), "{mapped}");
        for bad in [
            "[ff02::1]:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
        ] {
            assert!(problem(bad).is_some(), "{bad} accepted");
        }
        for good in [
            "0.0.0.0:443",
            "127.0.0.1:0",
            "[::]:443",
            "[::1]:80",
            "[fe80::1%2]:80",
            "[2001:db8::1]:80",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
    }

    #[test]
    fn binds() {
        assert_eq!(
            parse_bind("0.0.0.0:443"),
            Ok("0.0.0.0:443".parse().unwrap())
        );
        assert_eq!(parse_bind("[::]:443"), Ok("[::]:443".parse().unwrap()));
        assert_eq!(parse_bind("127.0.0.1:0").unwrap().port(), 0);
        for bad in [
            "",
            "443",
            ":443",
            "localhost:443",
            "0.0.0.0",
            "[::]",
            "0.0.0.0:65536",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cidrs() {
        let n = parse_cidr("10.0.0.10/32").unwrap();
        assert!(n.contains(&"10.0.0.10".parse::<IpAddr>().unwrap()));
        assert!(!n.contains(&"10.0.0.11".parse::<IpAddr>().unwrap()));
        assert_eq!(parse_cidr("10.0.0.10").unwrap().prefix_len(), 32);
        assert_eq!(parse_cidr("::1").unwrap().prefix_len(), 128);
        assert!(parse_cidr("10.0.0.0/8")
            .unwrap()
            .contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        for bad in [
            "",
            "10.0.0.10/33",
            "10.0.0/24",
            "::1/129",
            "host",
            "10.0.0.10/",
            "/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sources() {
        assert_eq!(parse_source("10.0.0.10"), Ok("10.0.0.10".parse().unwrap()));
        assert_eq!(parse_source("::1"), Ok("::1".parse().unwrap()));
        for bad in ["", "10.0.0.10:80", "10.0.0.10/32", "host"] {
            assert!(parse_source(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn resolve_passes_through_and_resolves_loopback_names() {
        let inet = ServerAddr::Inet("127.0.0.1:80".parse().unwrap());
        assert_eq!(resolve(&inet).unwrap(), vec![inet.clone()]);
        let unix = ServerAddr::Unix("/tmp/x.sock".into());
        assert_eq!(resolve(&unix).unwrap(), vec![unix.clone()]);
        // "localhost" resolves from /etc/hosts to loopback only: no traffic leaves the host.
        let got = resolve(&ServerAddr::Host {
            host: "localhost".into(),
            port: 8080,
        })
        .unwrap();
        assert!(!got.is_empty());
        for a in got {
            match a {
                ServerAddr::Inet(sa) => {
                    assert!(sa.ip().is_loopback());
                    assert_eq!(sa.port(), 8080);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
