//! The uwsgi request packet (modifier1 = 0): a 4-byte header (modifier1, datasize u16 LE,
//! modifier2) and the CGI variables of nginx's `uwsgi_params` plus SERVER_ADDR and HTTP_*
//! (the forwarding fields as the edge decided them, never the client's copies).
//! Pure: builds bytes from request parts and context; the body is sent by the caller.

use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::{Method, Version};

use crate::upstream::forwarding::is_forwarding;
use crate::upstream::headers::{has_underscore, hop_by_hop_names, joined};
use crate::upstream::{RequestContext, Scheme, UpstreamError};

/// Largest variable block a uwsgi packet can carry (datasize is a u16).
pub const MAX_DATASIZE: usize = u16::MAX as usize;

/// Encoded uwsgi variables, length-checked as they are added.
struct Vars {
    buf: Vec<u8>,
}

impl Vars {
    fn push(&mut self, key: &[u8], val: &[u8]) -> Result<(), UpstreamError> {
        let (Ok(kl), Ok(vl)) = (u16::try_from(key.len()), u16::try_from(val.len())) else {
            return Err(UpstreamError::HeadersTooLarge);
        };
        if self.buf.len() - 4 + 4 + key.len() + val.len() > MAX_DATASIZE {
            return Err(UpstreamError::HeadersTooLarge);
        }
        self.buf.extend_from_slice(&kl.to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&vl.to_le_bytes());
        self.buf.extend_from_slice(val);
        Ok(())
    }
}

/// Builds the whole packet (header + vars) for a request whose body is `content_length`
/// bytes. Header fields become HTTP_<NAME> (repeated fields joined, cookies with "; ");
/// skipped: hop-by-hop fields, Content-Type/Content-Length (they are CONTENT_*), `Proxy`
/// (httpoxy), the forwarding fields (the edge's come from `ctx.forwarding`), a client's
/// `X-SSL-Client-*` (they would pass for ours in WSGI's headers) and, unless `underscores`,
/// names containing '_' (they would alias a dashed name; nginx drops them by default).
/// HTTP_HOST is the target's authority when there is one.
pub fn build(
    parts: &Parts,
    ctx: &RequestContext,
    content_length: u64,
    document_root: &str,
    underscores: bool,
) -> Result<Vec<u8>, UpstreamError> {
    let mut v = Vars {
        buf: Vec::with_capacity(1024),
    };
    v.buf.extend_from_slice(&[0, 0, 0, 0]);
    let uri = &parts.uri;
    let path = uri.path();
    let request_uri = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(path);
    v.push(b"QUERY_STRING", uri.query().unwrap_or("").as_bytes())?;
    v.push(b"REQUEST_METHOD", parts.method.as_str().as_bytes())?;
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|h| h.as_bytes())
        .unwrap_or(b"");
    v.push(b"CONTENT_TYPE", ctype)?;
    // nginx sends "" for a request without a body; so do we unless the method has one.
    let clen = if content_length == 0 && !has_body_semantics(&parts.method, &parts.headers) {
        String::new()
    } else {
        content_length.to_string()
    };
    v.push(b"CONTENT_LENGTH", clen.as_bytes())?;
    v.push(b"REQUEST_URI", request_uri.as_bytes())?;
    v.push(b"PATH_INFO", &document_uri(path)?)?;
    v.push(b"DOCUMENT_ROOT", document_root.as_bytes())?;
    v.push(b"SERVER_PROTOCOL", protocol(parts.version).as_bytes())?;
    v.push(b"REQUEST_SCHEME", ctx.scheme.as_str().as_bytes())?;
    if ctx.scheme == Scheme::Https {
        v.push(b"HTTPS", b"on")?;
    }
    if let Some(version) = ctx.tls_version {
        v.push(b"SSL_PROTOCOL", version.as_bytes())?;
        v.push(
            b"SSL_SESSION_REUSED",
            if ctx.tls_resumed { b"r" } else { b"." },
        )?;
    }
    for (key, val) in ctx.client_cert.iter().flat_map(|c| c.uwsgi_vars()) {
        v.push(key, val)?;
    }
    v.push(
        b"REMOTE_ADDR",
        ctx.client.addr().ip().to_string().as_bytes(),
    )?;
    v.push(
        b"REMOTE_PORT",
        ctx.client.addr().port().to_string().as_bytes(),
    )?;
    v.push(b"SERVER_ADDR", ctx.local.0.ip().to_string().as_bytes())?;
    v.push(b"SERVER_PORT", ctx.server_port.to_string().as_bytes())?;
    v.push(b"SERVER_NAME", ctx.server_name.as_bytes())?;
    if let Some(id) = &ctx.request_id {
        // The edge took any client X-Request-Id off the request: these are the only ones.
        v.push(b"REQUEST_ID", id.as_bytes())?;
        v.push(b"HTTP_X_REQUEST_ID", id.as_bytes())?;
    }
    for (name, value) in ctx.proxy_tlvs.uwsgi_vars() {
        v.push(name.as_bytes(), value.as_bytes())?;
    }

    let hop = hop_by_hop_names(&parts.headers);
    // The target's authority (HTTP/2 :authority, HTTP/1 absolute-form) wins over a Host
    // field (RFC 9113 §8.3.1, RFC 9112 §3.2.2).
    let authority = uri.authority();
    if let Some(auth) = authority {
        v.push(b"HTTP_HOST", auth.as_str().as_bytes())?;
    }
    for name in parts.headers.keys() {
        let n = name.as_str();
        if hop.contains(name)
            || (authority.is_some() && name == header::HOST)
            || name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || n == "proxy"
            || is_forwarding(name)
            || (!underscores && has_underscore(name))
            || crate::upstream::client_cert::HEADERS.contains(&n)
        {
            continue;
        }
        let val = joined(&parts.headers, name).unwrap_or_default();
        v.push(&http_key(n), &val)?;
    }
    for (name, val) in &ctx.forwarding.fields {
        v.push(&http_key(name.as_str()), val.as_bytes())?;
    }
    let size = (v.buf.len() - 4) as u16; // push() keeps it <= MAX_DATASIZE
    v.buf[1..3].copy_from_slice(&size.to_le_bytes());
    Ok(v.buf)
}

/// `HTTP_` and the field name uppercased with `-` as `_` (CGI).
fn http_key(n: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + n.len());
    key.extend_from_slice(b"HTTP_");
    key.extend(n.bytes().map(|b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
    key
}

/// Methods that carry a body, or any request that announced one.
fn has_body_semantics(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        || headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The path as nginx's `$document_uri`: percent-decoded, "//" merged, "." and ".."
/// resolved. A decoded NUL or a ".." above the root is a bad request (nginx: 400).
/// Invalid escapes ("%zz") are kept literally.
pub fn document_uri(path: &str) -> Result<Vec<u8>, UpstreamError> {
    let raw = path.as_bytes();
    let mut dec = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                let b = h << 4 | l;
                if b == 0 {
                    return Err(UpstreamError::BadRequest("NUL byte in path".into()));
                }
                dec.push(b);
                i += 3;
                continue;
            }
        }
        dec.push(raw[i]);
        i += 1;
    }
    let mut segs: Vec<&[u8]> = Vec::new();
    let trailing = dec.ends_with(b"/") || dec.ends_with(b"/.") || dec.ends_with(b"/..");
    for seg in dec.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() {
                    return Err(UpstreamError::BadRequest("path escapes the root".into()));
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(dec.len() + 1);
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || segs.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables of a packet, in order.
    fn vars_of(packet: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut i = 4;
        while i < packet.len() {
            let kl = u16::from_le_bytes([packet[i], packet[i + 1]]) as usize;
            let k = String::from_utf8_lossy(&packet[i + 2..i + 2 + kl]).into_owned();
            i += 2 + kl;
            let vl = u16::from_le_bytes([packet[i], packet[i + 1]]) as usize;
            let v = String::from_utf8_lossy(&packet[i + 2..i + 2 + vl]).into_owned();
            i += 2 + vl;
            out.push((k, v));
        }
        out
    }

    #[test]
    fn forwarding_vars_are_the_contexts_even_with_underscores() {
        let req = hyper::Request::get("/")
            .header("host", "app.test")
            .header("x-forwarded-for", "8.8.8.8")
            .header("x-forwarded_for", "8.8.8.8")
            .header("forwarded", "for=8.8.8.8")
            .header("x_real_ip", "8.8.8.8")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let ctx = crate::upstream::uwsgi_tests::ctx();
        let vars = vars_of(&build(&parts, &ctx, 0, "", true).unwrap());
        let fwd: Vec<_> = vars
            .iter()
            .filter(|(k, _)| k.contains("FORWARDED") || k.contains("REAL_IP"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            fwd,
            [
                ("HTTP_X_FORWARDED_FOR", "127.0.0.2"),
                ("HTTP_X_REAL_IP", "127.0.0.2"),
                ("HTTP_X_FORWARDED_PROTO", "https"),
            ]
        );
    }

    fn du(p: &str) -> String {
        String::from_utf8(document_uri(p).unwrap()).unwrap()
    }

    #[test]
    fn document_uri_decodes_and_normalizes() {
        assert_eq!(du("/"), "/");
        assert_eq!(du("/a%20b/c"), "/a b/c");
        assert_eq!(du("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(du("/a/%2e%2e/b"), "/b");
        assert_eq!(du("/x%zz%4"), "/x%zz%4");
        assert_eq!(du("/caf%C3%A9"), "/café");
        assert!(document_uri("/../etc").is_err());
        assert!(document_uri("/a%00b").is_err());
    }
}
