//! Header rules shared by the upstream clients: hop-by-hop removal (RFC 9110 §7.6.1 plus
//! the legacy Keep-Alive/Proxy-Connection), names with `_` (nginx `underscores_in_headers`),
//! the request id (X-Request-Id) and joining repeated fields. Pure functions over HeaderMap;
//! no I/O, no choice of server. The forwarding fields are `forwarding.rs`'s.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::RequestContext;

/// Fixed hop-by-hop fields, removed in both directions.
pub(super) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as ready names: removing by `&str` parses and validates the name on
/// every call (twice per proxied request, seven names each).
static HOP_BY_HOP_NAMES: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Names listed in Connection headers (lowercased, valid names only).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        let Ok(s) = v.to_str() else { continue };
        for tok in s.split(',') {
            if let Ok(name) = HeaderName::from_bytes(tok.trim().as_bytes()) {
                out.push(name);
            }
        }
    }
    out
}

/// True when `name` is hop-by-hop for this message (fixed list or named by Connection).
pub(super) fn is_hop_by_hop(name: &HeaderName, listed: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || listed.contains(name)
}

/// Removes Connection, every header it lists, and the fixed hop-by-hop fields. One look at
/// the names first, then only the fixed names present are removed (a gRPC request has just
/// `te`), instead of seven removals by hash on every message.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut found = [false; 7];
    for n in headers.keys() {
        if let Some(i) = fixed_index(n.as_str()) {
            found[i] = true;
        }
    }
    // Usually Connection lists only names the message does not have ("keep-alive" without
    // a Keep-Alive field, "close"): one lookup each then, nothing parsed into names.
    if found[0] && lists_present(headers) {
        for name in connection_listed(headers) {
            headers.remove(&name);
        }
    }
    for (name, _) in HOP_BY_HOP_NAMES.iter().zip(found).filter(|(_, f)| *f) {
        headers.remove(name);
    }
}

/// True when a name listed in a Connection header is a field of `headers` (an invalid name
/// is none: lookups by `&str` take it as absent).
fn lists_present(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|tok| headers.contains_key(tok.trim()))
}

/// The position of `name` in [`HOP_BY_HOP`].
fn fixed_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        _ => return None,
    })
}

/// Names of hop-by-hop headers in `headers` (for callers that copy rather than mutate).
pub(super) fn hop_by_hop_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let listed = connection_listed(headers);
    headers
        .keys()
        .filter(|n| is_hop_by_hop(n, &listed))
        .cloned()
        .collect()
}

/// True for a field name containing `_`. Such names are dropped on the way to any app
/// unless `underscores_in_headers = true` (nginx's default): `X-Forwarded_For` would
/// otherwise alias `X-Forwarded-For` in CGI/WSGI variables (both become
/// HTTP_X_FORWARDED_FOR) and in frameworks that normalise names.
pub(super) fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().contains('_')
}

/// Removes every field whose name contains `_` (see [`has_underscore`]).
pub(super) fn drop_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(has_underscore) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for n in names {
        headers.remove(&n);
    }
}

/// All values of `name` joined into one: "; " for Cookie (HTTP/2 splits cookies, RFC 9113
/// §8.2.3), ", " otherwise (RFC 9110 §5.3). None when absent.
pub(super) fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let sep: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
    let mut out: Option<Vec<u8>> = None;
    for v in headers.get_all(name) {
        match out.as_mut() {
            None => out = Some(v.as_bytes().to_vec()),
            Some(o) => {
                o.extend_from_slice(sep);
                o.extend_from_slice(v.as_bytes());
            }
        }
    }
    out
}

/// Replaces repeated Cookie headers (HTTP/2 style) with one "; "-joined header (HTTP/1.1).
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().count() > 1 {
        if let Some(v) = joined(headers, &header::COOKIE) {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(header::COOKIE, v);
            }
        }
    }
}

/// Sets `X-Request-Id` to the request's id (`ctx.request_id`), replacing any other; after
/// the hop-by-hop removal, so a client's `Connection: X-Request-Id` cannot remove it. The
/// value is marked sensitive: an HTTP/2 client then sends it as a never-indexed literal
/// rather than filling the HPACK table with one-off ids (each new one a search through
/// every id before it).
pub(super) fn add_request_id(headers: &mut HeaderMap, ctx: &RequestContext) {
    if let Some(mut v) = ctx
        .request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        v.set_sensitive(true);
        headers.insert(X_REQUEST_ID.clone(), v);
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_match_the_list() {
        let names: Vec<&str> = HOP_BY_HOP_NAMES.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, HOP_BY_HOP);
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(fixed_index(n), Some(i));
        }
        assert_eq!(fixed_index("x-te"), None);
    }
    #[test]
    fn strips_fixed_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded_for", HeaderValue::from_static("9.9.9.9"));
        h.append("x-forwarded_for", HeaderValue::from_static("8.8.8.8"));
        h.append("a_b", HeaderValue::from_static("1"));
        h.append("x-keep", HeaderValue::from_static("yes"));
        drop_underscored(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn cookies_join_with_semicolon() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("cookie", HeaderValue::from_static("b=2"));
        h.append("accept", HeaderValue::from_static("x"));
        h.append("accept", HeaderValue::from_static("y"));
        assert_eq!(joined(&h, &header::ACCEPT).unwrap(), b"x, y");
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
