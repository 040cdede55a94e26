//! Strict HTTP at the edge, before anything goes upstream: Host once on HTTP/1.1 (RFC 9112
//! §3.2), a valid authority without userinfo (RFC 9113 §8.3.1), 405 for CONNECT and TRACE
//! (nginx). Pure: it reads the request head; answering and logging are `service`'s, and the
//! target's authority winning over Host is the log's and the upstreams' (pub for fuzzing).

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::upstream::Body;

/// Why a request is refused: the status the client gets and a reason for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

/// Checks `req`'s head: Host problems (400) come before the method (405), like nginx. Both
/// the Host field and the target's authority (absolute-form, HTTP/2 `:authority`) must be
/// valid: the authority is what the log and the upstreams use when there is one (RFC 9112
/// §3.2.2), but a Host field with userinfo is refused all the same.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host field"));
    }
    // HTTP/1.0 without Host stays allowed (nginx); HTTP/2 carries :authority instead.
    if host.is_none() && req.version() == Version::HTTP_11 {
        return Err(bad("HTTP/1.1 request without Host"));
    }
    if let Some(h) = host {
        valid_authority(h.as_bytes()).map_err(bad)?;
    }
    if let Some(a) = req.uri().authority() {
        // Parsed by the `http` crate already: the rules without parsing it again.
        valid_reg_authority(a.as_str().as_bytes()).map_err(bad)?;
    }
    // An extended CONNECT (RFC 8441, `:protocol`) is `upgrade`'s to judge.
    let extended = req.extensions().get::<hyper::ext::Protocol>().is_some();
    if (req.method() == Method::CONNECT && !extended) || req.method() == Method::TRACE {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            reason: "CONNECT and TRACE are not served",
        });
    }
    Ok(())
}

/// The answer to a refused request. After a 400 an HTTP/1 connection closes (nginx does:
/// the rest of the stream may be out of step); after a 405 it stays open.
pub(crate) fn refuse(refusal: Refusal, version: Version) -> Response<Body> {
    let mut resp = super::service::error_response(refusal.status);
    if refusal.status == StatusCode::BAD_REQUEST && version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A Host value or request authority: `host[:port]` where host is a reg-name (RFC 3986
/// unreserved and sub-delims; no `..`) or a bracketed IP literal and the port is digits, and
/// the `http` crate parses it as an authority too (so later steps see the same host).
/// Userinfo (`user@`), paths, spaces, `%` and non-ASCII bytes are refused; so is an empty
/// value (nginx: "client sent invalid host header"). Never panics (fuzzed: `host_authority`).
pub(crate) fn valid_authority(b: &[u8]) -> Result<(), &'static str> {
    valid_reg_authority(b)?;
    hyper::http::uri::Authority::try_from(b).map_err(|_| "not an authority")?;
    Ok(())
}

/// [`valid_authority`]'s own rules, without the `http` crate's parse: for a target's
/// authority, which that crate parsed when the request was read (it copies and allocates).
fn valid_reg_authority(b: &[u8]) -> Result<(), &'static str> {
    if b.is_empty() {
        return Err("empty Host");
    }
    if b.contains(&b'@') {
        return Err("userinfo in the authority");
    }
    let (host, port) = if b[0] == b'[' {
        let end = b
            .iter()
            .position(|&c| c == b']')
            .ok_or("unclosed IP literal")?;
        let lit = &b[1..end];
        let ok = !lit.is_empty()
            && lit
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        if !ok {
            return Err("bad IP literal");
        }
        match &b[end + 1..] {
            [] => (&b[..=end], None),
            [b':', port @ ..] => (&b[..=end], Some(port)),
            _ => return Err("bytes after the IP literal"),
        }
    } else {
        match b.iter().position(|&c| c == b':') {
            Some(i) => (&b[..i], Some(&b[i + 1..])),
            None => (b, None),
        }
    };
    if let Some(port) = port {
        if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return Err("bad port");
        }
    }
    if host.first() != Some(&b'[') {
        if host.is_empty() {
            return Err("empty host");
        }
        if host.windows(2).any(|w| w == b"..") {
            return Err("'..' in the host");
        }
        let reg_name = |c: &u8| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(c);
        if !host.iter().all(reg_name) {
            return Err("bad character in the host");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw_target: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().uri(raw_target).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn status(r: &Request<()>) -> u16 {
        match check(r) {
            Ok(()) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn host_rules_by_version() {
        let v11 = Version::HTTP_11;
        assert_eq!(status(&req("/", v11, &["a.example"])), 200);
        assert_eq!(status(&req("/", v11, &[])), 400);
        assert_eq!(status(&req("/", v11, &["a", "a"])), 400);
        assert_eq!(status(&req("/", Version::HTTP_10, &[])), 200);
        assert_eq!(status(&req("/", Version::HTTP_10, &["a", "b"])), 400);
        assert_eq!(status(&req("/", v11, &["u:p@evil.example"])), 400);
        assert_eq!(status(&req("/", v11, &[""])), 400);
        // HTTP/2 without :authority nor Host: allowed (nginx).
        assert_eq!(status(&req("/", Version::HTTP_2, &[])), 200);
        let r = req("https://u:p@evil.example/", Version::HTTP_2, &[]);
        assert_eq!(status(&r), 400);
        let r = req("http://u@a.example/x", v11, &["a.example"]);
        assert_eq!(status(&r), 400);
    }

    #[test]
    fn connect_and_trace_are_405_after_host_checks() {
        for m in [Method::CONNECT, Method::TRACE] {
            let mut r = req("/", Version::HTTP_11, &["a.example"]);
            *r.method_mut() = m.clone();
            assert_eq!(status(&r), 405, "{m}");
            let mut r = req("/", Version::HTTP_11, &[]);
            *r.method_mut() = m;
            assert_eq!(status(&r), 400);
        }
        let r = Request::builder()
            .method(Method::CONNECT)
            .uri("a.example:443")
            .header(header::HOST, "a.example:443")
            .body(())
            .unwrap();
        assert_eq!(status(&r), 405);
    }

    #[test]
    fn authority_grammar() {
        for ok in [
            "a",
            "a.example",
            "a.example.",
            "a-b_c~d.example:443",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "[2001:db8::127.0.0.1]",
            "host:",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(valid_authority(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "u@a",
            "u:p@a:1",
            ":80",
            "a:b",
            "a:123456",
            "a:1:2",
            "a/b",
            "a b",
            "a..b",
            "a%41",
            "[::1",
            "[]",
            "[zz]",
            "[::1]x",
            "a\\b",
            "caf\u{e9}",
            "a\tb",
        ] {
            assert!(valid_authority(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
