//! The forwarding-header policy of one request (`[frontend.forwarded]`): whether the hop
//! that sent it is trusted, who the client is (the hop, or the address a trusted hop's
//! `X-Forwarded-For`/`Forwarded` names, nginx `real_ip_recursive` semantics), and the
//! forwarding fields the app gets. Pure: no I/O; parsing is `forwarded_parse.rs`'s, writing
//! the fields the upstream builders' (`upstream::Forwarding`).

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::addr::ClientAddr;
use crate::spec::{ForwardField, Forwarded, ForwardedFor, RealIpHeader};
use crate::upstream::{Forwarding, Scheme, FORWARDING_NAMES};

use super::forwarded_parse::{parse_forwarded, parse_xff, Node, MAX_HOPS};

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The client everything uses (REMOTE_ADDR, `$remote_addr`, X-Real-IP, balancing).
    pub client: ClientAddr,
    pub forwarding: Forwarding,
}

/// Decides for one request. `hop` is who the edge believes sent it (the PROXY source when a
/// trusted balancer sent one, else the TCP peer); `host` the request's authority as received
/// (`:authority` or Host, with its port).
pub(crate) fn decide(
    p: &Forwarded,
    hop: ClientAddr,
    scheme: Scheme,
    host: Option<&[u8]>,
    headers: &HeaderMap,
) -> Decision {
    let trusted = is_trusted(p, hop.addr().ip());
    let incoming = |i: usize| {
        trusted
            .then(|| joined(headers, &FORWARDING_NAMES[i]))
            .flatten()
    };
    let xff_in = incoming(0);
    let fwd_in = incoming(4);
    // Kept only when it parses and leaves room for the edge's element (the app's list stays
    // within MAX_HOPS, so a next sluice tier believes it too).
    let fwd_in = fwd_in.filter(|v| parse_forwarded(v).is_ok_and(|n| n.len() < MAX_HOPS));
    let chosen = match (trusted, p.real_ip_header) {
        (true, RealIpHeader::XForwardedFor) => xff_in
            .as_deref()
            .and_then(|v| parse_xff(v).ok())
            .and_then(|nodes| choose(p, &nodes)),
        (true, RealIpHeader::Forwarded) => fwd_in
            .as_deref()
            .and_then(|v| parse_forwarded(v).ok())
            .and_then(|nodes| choose(p, &nodes)),
        _ => None,
    };
    let client = chosen.map_or(hop, ClientAddr::from_trusted_forwarded);

    let hop_ip = ip_text(hop.addr().ip());
    // Printable ASCII: the one value of X-Forwarded-For and X-Real-IP of a direct client.
    let hop_value = HeaderValue::from_str(&hop_ip).ok();
    let value = |v: &[u8]| HeaderValue::from_bytes(v).ok();
    let mut fields = Vec::with_capacity(p.emit.len());
    for field in &p.emit {
        let v = match field {
            ForwardField::XForwardedFor => match xff_in.as_deref() {
                None => hop_value.clone(),
                prev => value(&appended(prev, hop_ip.as_bytes())),
            },
            ForwardField::XRealIp if client.addr().ip() == hop.addr().ip() => hop_value.clone(),
            ForwardField::XRealIp => value(ip_text(client.addr().ip()).as_bytes()),
            ForwardField::XForwardedProto => match incoming(2) {
                Some(v) if v == b"http" || v == b"https" => value(&v),
                _ => Some(HeaderValue::from_static(scheme.as_str())),
            },
            ForwardField::XForwardedHost => incoming(3)
                .filter(|v| single(v))
                .or_else(|| host.map(<[u8]>::to_vec))
                .and_then(|v| value(&v)),
            ForwardField::Forwarded => {
                let own = element(p.forwarded_for, hop.addr().ip(), scheme, host);
                value(&appended(fwd_in.as_deref(), own.as_bytes()))
            }
        };
        if let Some(v) = v {
            fields.push((FORWARDING_NAMES[index(*field)].clone(), v));
        }
    }
    Decision {
        client,
        forwarding: Forwarding { fields },
    }
}

/// [`decide`], kept in `cache` (the connection's) when it depends on nothing that changes
/// between the connection's requests: the hop is not trusted (its forwarding fields are
/// ignored) and no field to write carries the request's host (X-Forwarded-Host,
/// Forwarded). The policy, the hop and the scheme are the connection's.
pub(crate) fn decide_cached(
    cache: &OnceLock<Option<Decision>>,
    p: &Forwarded,
    hop: ClientAddr,
    scheme: Scheme,
    host: Option<&[u8]>,
    headers: &HeaderMap,
) -> Decision {
    if let Some(Some(d)) = cache.get() {
        return d.clone();
    }
    let d = decide(p, hop, scheme, host, headers);
    if cache.get().is_none() {
        let fixed = !is_trusted(p, hop.addr().ip())
            && p.emit
                .iter()
                .all(|f| !matches!(f, ForwardField::XForwardedHost | ForwardField::Forwarded));
        let _ = cache.set(fixed.then(|| d.clone()));
    }
    d
}

/// nginx's `ngx_http_get_forwarded_addr`: from the right, the first address; with
/// `recursive`, the first one not trusted (the leftmost when all are). A malformed or
/// address-less entry met on the way declines: the hop stays the client.
pub(crate) fn choose(p: &Forwarded, nodes: &[Node]) -> Option<SocketAddr> {
    let mut last = None;
    for n in nodes.iter().rev() {
        let Node::Ip(ip, port) = *n else {
            return None;
        };
        let addr = SocketAddr::new(ip.to_canonical(), port);
        if !p.recursive || !is_trusted(p, ip) {
            return Some(addr);
        }
        last = Some(addr);
    }
    last
}

fn is_trusted(p: &Forwarded, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    p.trusted.iter().any(|net| net.contains(&ip))
}

/// All values of `name` joined with ", " (one list, RFC 9110 §5.3); None when absent or empty.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in headers.get_all(name) {
        let v = v.as_bytes();
        match out.as_mut() {
            None => out = Some(v.to_vec()),
            Some(o) => {
                o.extend_from_slice(b", ");
                o.extend_from_slice(v);
            }
        }
    }
    out.filter(|v| v.iter().any(|&b| b != b' ' && b != b'\t' && b != b','))
}

/// An address as text: IPv4 written digit by digit (what `Display` prints, without its
/// formatting machinery, once or twice per request), IPv6 by `Display`.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(a) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

/// `prev, own` (nginx `$proxy_add_x_forwarded_for`), or `own` alone.
fn appended(prev: Option<&[u8]>, own: &[u8]) -> Vec<u8> {
    match prev {
        Some(p) => [p, b", ", own].concat(),
        None => own.to_vec(),
    }
}

/// One value, no list (a single host name for X-Forwarded-Host).
fn single(v: &[u8]) -> bool {
    !v.contains(&b',')
}

fn index(f: ForwardField) -> usize {
    match f {
        ForwardField::XForwardedFor => 0,
        ForwardField::XRealIp => 1,
        ForwardField::XForwardedProto => 2,
        ForwardField::XForwardedHost => 3,
        ForwardField::Forwarded => 4,
    }
}

/// The edge's RFC 7239 element: `for=NODE;proto=SCHEME;host="HOST"` (IPv6 quoted and
/// bracketed, RFC 7239 §6).
pub(crate) fn element(
    mode: ForwardedFor,
    ip: IpAddr,
    scheme: Scheme,
    host: Option<&[u8]>,
) -> String {
    let node = match (mode, ip) {
        (ForwardedFor::Obfuscated, _) => obfuscated(ip),
        (ForwardedFor::Ip, IpAddr::V4(a)) => a.to_string(),
        (ForwardedFor::Ip, IpAddr::V6(a)) => format!("\"[{a}]\""),
    };
    let mut out = format!("for={node};proto={}", scheme.as_str());
    if let Some(h) = host {
        out.push_str(";host=\"");
        for &b in h {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(char::from(b));
        }
        out.push('"');
    }
    out
}

/// `_` and 16 hex digits: a keyed hash of the address, the key random per process, so one
/// client keeps one identifier without the app learning its address.
fn obfuscated(ip: IpAddr) -> String {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let h = KEY
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(ip.to_canonical());
    format!("_{h:016x}")
}

#[cfg(test)]
#[path = "forwarded_tests.rs"]
mod tests;
