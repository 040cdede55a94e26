//! The CGI variables of a request, built once for every CGI-style protocol: uwsgi (nginx's
//! `uwsgi_params`) and FastCGI (nginx's `fastcgi_params` with SCRIPT_FILENAME), including the
//! client-identity facts of the `RequestContext` (REMOTE_ADDR, TLS, forwarding, request id,
//! TLVs, client certificate). Pure: hands (name, value) pairs to a [`VarSink`]; encoding them
//! (uwsgi's u16 lengths, FastCGI's name-value pairs) is the protocol's job.

use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::{Method, Version};

use crate::upstream::forwarding::is_forwarding;
use crate::upstream::headers::{has_underscore, hop_by_hop_names, joined};
use crate::upstream::{RequestContext, Scheme, UpstreamError};

/// Where the variables go, in order; a sink refuses what its protocol cannot carry.
pub(crate) trait VarSink {
    fn push(&mut self, key: &[u8], val: &[u8]) -> Result<(), UpstreamError>;
}

/// Which path variables the protocol gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flavor<'a> {
    /// uwsgi: PATH_INFO = `$document_uri` (nginx's `uwsgi_params`).
    Uwsgi,
    /// FastCGI (nginx's `fastcgi_params`): SCRIPT_NAME = `$fastcgi_script_name` (the
    /// document URI, with `index` appended when it ends in `/`), SCRIPT_FILENAME =
    /// DOCUMENT_ROOT + SCRIPT_NAME, DOCUMENT_URI, GATEWAY_INTERFACE, SERVER_SOFTWARE and
    /// REDIRECT_STATUS=200 (php-cgi's force-cgi-redirect check).
    FastCgi { index: &'a str },
}

/// The request facts besides the request and its context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgiOpts<'a> {
    /// DOCUMENT_ROOT (nginx's `$document_root`); "" when the backend has no `root`.
    pub(crate) document_root: &'a str,
    /// Pass header names containing `_` as HTTP_* (nginx `underscores_in_headers`).
    pub(crate) underscores: bool,
    pub(crate) flavor: Flavor<'a>,
}

/// SERVER_SOFTWARE for FastCGI (nginx sends `nginx/$nginx_version`).
const SERVER_SOFTWARE: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// Pushes every variable of a request whose body is `content_length` bytes. Header fields
/// become HTTP_<NAME> (repeated fields joined, cookies with "; "); skipped: hop-by-hop
/// fields, Content-Type/Content-Length (they are CONTENT_*), `Proxy` (httpoxy), the
/// forwarding fields (the edge's come from `ctx.forwarding`), a client's `X-SSL-Client-*`
/// (they would pass for ours in WSGI's headers) and, unless `underscores`, names containing
/// '_' (they would alias a dashed name; nginx drops them by default). HTTP_HOST is the
/// target's authority when there is one.
pub(crate) fn build(
    parts: &Parts,
    ctx: &RequestContext,
    content_length: u64,
    opts: &CgiOpts<'_>,
    v: &mut impl VarSink,
) -> Result<(), UpstreamError> {
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
    let doc_uri = document_uri(path)?;
    match opts.flavor {
        Flavor::Uwsgi => v.push(b"PATH_INFO", &doc_uri)?,
        Flavor::FastCgi { index } => {
            let mut script = doc_uri.clone();
            if script.ends_with(b"/") {
                script.extend_from_slice(index.as_bytes());
            }
            let root = opts.document_root.trim_end_matches('/');
            let mut filename = Vec::with_capacity(root.len() + script.len());
            filename.extend_from_slice(root.as_bytes());
            filename.extend_from_slice(&script);
            v.push(b"SCRIPT_NAME", &script)?;
            v.push(b"SCRIPT_FILENAME", &filename)?;
            v.push(b"DOCUMENT_URI", &doc_uri)?;
        }
    }
    v.push(b"DOCUMENT_ROOT", opts.document_root.as_bytes())?;
    v.push(b"SERVER_PROTOCOL", protocol(parts.version).as_bytes())?;
    v.push(b"REQUEST_SCHEME", ctx.scheme.as_str().as_bytes())?;
    if ctx.scheme == Scheme::Https {
        v.push(b"HTTPS", b"on")?;
    }
    if let Flavor::FastCgi { .. } = opts.flavor {
        v.push(b"GATEWAY_INTERFACE", b"CGI/1.1")?;
        v.push(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes())?;
        v.push(b"REDIRECT_STATUS", b"200")?;
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
            || (!opts.underscores && has_underscore(name))
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
    Ok(())
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

    struct Pairs(Vec<(String, String)>);

    impl VarSink for Pairs {
        fn push(&mut self, key: &[u8], val: &[u8]) -> Result<(), UpstreamError> {
            self.0.push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
            ));
            Ok(())
        }
    }

    fn vars(path: &str, flavor: Flavor<'_>) -> Vec<(String, String)> {
        let req = hyper::Request::get(path)
            .header("host", "app.test")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let ctx = crate::upstream::uwsgi_tests::ctx();
        let opts = CgiOpts {
            document_root: "/srv/www/",
            underscores: false,
            flavor,
        };
        let mut out = Pairs(Vec::new());
        build(&parts, &ctx, 0, &opts, &mut out).unwrap();
        out.0
    }

    fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn fastcgi_gets_script_vars_and_uwsgi_path_info() {
        let f = vars(
            "/a/../b%20c.php?x=1",
            Flavor::FastCgi { index: "index.php" },
        );
        assert_eq!(get(&f, "SCRIPT_NAME"), Some("/b c.php"));
        assert_eq!(get(&f, "SCRIPT_FILENAME"), Some("/srv/www/b c.php"));
        assert_eq!(get(&f, "DOCUMENT_URI"), Some("/b c.php"));
        assert_eq!(get(&f, "REQUEST_URI"), Some("/a/../b%20c.php?x=1"));
        assert_eq!(get(&f, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get(&f, "REDIRECT_STATUS"), Some("200"));
        assert_eq!(get(&f, "REMOTE_ADDR"), Some("127.0.0.2"));
        assert!(get(&f, "SERVER_SOFTWARE").unwrap().starts_with("sluice/"));
        assert_eq!(get(&f, "PATH_INFO"), None);
        let dir = vars("/blog/", Flavor::FastCgi { index: "index.php" });
        assert_eq!(
            get(&dir, "SCRIPT_FILENAME"),
            Some("/srv/www/blog/index.php")
        );
        assert_eq!(get(&dir, "DOCUMENT_URI"), Some("/blog/"));
        let u = vars("/x/", Flavor::Uwsgi);
        assert_eq!(get(&u, "PATH_INFO"), Some("/x/"));
        assert_eq!(get(&u, "SCRIPT_FILENAME"), None);
        assert_eq!(get(&u, "REDIRECT_STATUS"), None);
    }
}
