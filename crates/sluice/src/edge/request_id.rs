//! Each request's id (issue #15): `<connection id>-<n>`, n the request's number on its
//! connection, or the `X-Request-Id` a trusted hop sent. Every client-sent `X-Request-Id` is
//! taken off the request; the upstream builders write the chosen id (uwsgi `REQUEST_ID` and
//! `HTTP_X_REQUEST_ID`, HTTP `X-Request-Id`). No logging and no I/O here.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderName};

use crate::proxy_protocol::conn_id::is_id_text;
use crate::proxy_protocol::{ConnId, Policy};
use crate::spec::Forwarded;

/// The request header carrying the id.
pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether the sender of a request's headers may set its id. That sender is the HTTP hop:
/// the real client (a trusted PROXY header's source, else the TCP peer), never the L4
/// balancer in front, which does not write HTTP. Trusted: the hop's address is in the
/// frontend's `proxy_protocol.trusted` CIDRs, or in `[frontend.forwarded].trusted` (the HTTP
/// proxies whose forwarding headers the edge believes: a CDN or proxy in front that set an
/// id). The one place that decides.
pub(super) fn trusted_hop(policy: Option<&Policy>, forwarded: &Forwarded, hop: IpAddr) -> bool {
    let hop = hop.to_canonical();
    policy.is_some_and(|p| p.is_trusted(hop)) || forwarded.trusted.iter().any(|n| n.contains(&hop))
}

/// Removes every `X-Request-Id` from `headers` and returns the request's id: the removed
/// value when `trusted` sent exactly one that is id text ([`is_id_text`]), else
/// `<conn_id>-<number>`.
pub(crate) fn take(
    headers: &mut HeaderMap,
    conn_id: &ConnId,
    number: u64,
    trusted: bool,
) -> Arc<str> {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    let (first, second) = (sent.next(), sent.next());
    let kept = match (first, second) {
        (Some(v), None) if trusted && is_id_text(v.as_bytes()) => {
            Some(String::from_utf8_lossy(v.as_bytes()).into())
        }
        _ => None,
    };
    if first.is_some() {
        headers.remove(&X_REQUEST_ID);
    }
    kept.unwrap_or_else(|| derived(conn_id, number))
}

/// `<conn_id>-<number>` (written without `format!`: once per request).
pub(super) fn derived(conn_id: &ConnId, number: u64) -> Arc<str> {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = number;
    // u64::MAX has 20 digits.
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let (conn, n) = (conn_id.as_str(), &digits[at..]);
    // Built on the stack and copied once into the Arc (a String first was one allocation
    // more); a fresh connection id is 32 characters, a PROXY UNIQUE_ID at most 128.
    let mut buf = [0u8; 160];
    let len = conn.len() + 1 + n.len();
    if len <= buf.len() {
        buf[..conn.len()].copy_from_slice(conn.as_bytes());
        buf[conn.len()] = b'-';
        buf[conn.len() + 1..len].copy_from_slice(n);
        if let Ok(id) = std::str::from_utf8(&buf[..len]) {
            return id.into();
        }
    }
    let mut id = String::with_capacity(len);
    id.push_str(conn);
    id.push('-');
    id.extend(n.iter().map(|&d| char::from(d)));
    id.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn id() -> ConnId {
        ConnId::from_unique_id(b"abc").unwrap()
    }

    #[test]
    fn derived_ids_count_in_decimal() {
        for n in [0, 1, 9, 10, 4711, u64::MAX] {
            assert_eq!(&*derived(&id(), n), format!("abc-{n}"));
        }
    }

    #[test]
    fn untrusted_ids_are_replaced_and_removed() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("client-made"));
        assert_eq!(&*take(&mut h, &id(), 3, false), "abc-3");
        assert!(h.is_empty());
    }

    #[test]
    fn a_trusted_hops_valid_id_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("up-42"));
        assert_eq!(&*take(&mut h, &id(), 1, true), "up-42");
        assert!(h.is_empty());
        for bad in ["a b", "x\"y", ""] {
            let mut h = HeaderMap::new();
            h.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            assert_eq!(&*take(&mut h, &id(), 2, true), "abc-2", "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.append(&X_REQUEST_ID, HeaderValue::from_static("one"));
        h.append(&X_REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(&*take(&mut h, &id(), 5, true), "abc-5", "two ids: neither");
        assert!(h.is_empty());
    }

    #[test]
    fn trust_needs_a_policy_that_lists_the_hop() {
        let p = Policy {
            trusted: vec!["127.0.0.3/32".parse().unwrap()],
            timeout: std::time::Duration::from_secs(1),
            untrusted: crate::spec::Untrusted::Reject,
            max_v2_len: 1024,
        };
        let none = Forwarded::default();
        assert!(trusted_hop(Some(&p), &none, "127.0.0.3".parse().unwrap()));
        assert!(!trusted_hop(Some(&p), &none, "127.0.0.2".parse().unwrap()));
        assert!(!trusted_hop(None, &none, "127.0.0.3".parse().unwrap()));
    }

    #[test]
    fn a_hop_the_forwarding_policy_trusts_may_set_the_id() {
        let fwd = Forwarded {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            ..Forwarded::default()
        };
        assert!(trusted_hop(None, &fwd, "10.1.2.3".parse().unwrap()));
        assert!(trusted_hop(None, &fwd, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!trusted_hop(None, &fwd, "127.0.0.2".parse().unwrap()));
    }
}
