//! Request checks of the admin endpoint made before routing: the `Host` header (DNS
//! rebinding), a same-origin `Origin` / `Sec-Fetch-Site` on state-changing requests (CSRF,
//! with or without a token), the bearer token's parsing, and the headers every answer carries
//! (no framing, strict CSP). It does not route, read bodies or change any state.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};

/// Framing refused, nothing loaded from elsewhere, forms post nowhere; the stats page's own
/// script and style sheet (served by this endpoint) are the only code, and nothing inline runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Why a request was refused before routing: a status and a message for the JSON error.
pub(crate) struct Refused(pub StatusCode, pub String);

/// Checks `Host` for every request, and the request's origin for anything but GET/HEAD.
/// `names` are the configured `server_names` (lowercase).
pub(crate) fn check(method: &Method, headers: &HeaderMap, names: &[String]) -> Result<(), Refused> {
    let host = match headers.get(header::HOST).map(|v| v.to_str()) {
        // HTTP/1.0 clients without Host are not browsers: nothing to rebind.
        None => None,
        Some(Ok(h)) => Some(h.trim()),
        Some(Err(_)) => return Err(Refused(StatusCode::BAD_REQUEST, "bad Host header".into())),
    };
    if let Some(h) = host {
        if !host_allowed(h, names) {
            return Err(Refused(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {h:?} is not this admin endpoint: use its IP address, localhost, \
                     or a name listed in admin.server_names"
                ),
            ));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    same_origin(headers, host)
}

/// An IP literal (a rebinding page cannot have one as its origin and reach us under a name),
/// `localhost`, or a configured name; the port is not compared (tunnels change it).
fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = strip_port(host);
    if name.is_empty() {
        return false;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || names.contains(&name)
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => "",
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => "",
        None => host,
    }
}

/// A state change must come from the admin's own page: an `Origin` naming this very host
/// (`http://HOST`), or, without `Origin`, no `Sec-Fetch-Site` other than `same-origin`/`none`.
/// Neither header (curl, scripts): not a browser, allowed (the token, when set, still applies).
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refused> {
    let refuse = |why: String| Err(Refused(StatusCode::FORBIDDEN, why));
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let Some(host) = host else {
            return refuse("a request with Origin must have a Host".into());
        };
        let ok = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !ok {
            return refuse(format!(
                "cross-origin request refused: Origin {origin:?} is not http://{host}"
            ));
        }
        return Ok(());
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(other) => refuse(format!(
            "cross-site request refused (Sec-Fetch-Site: {})",
            String::from_utf8_lossy(other)
        )),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive
/// (RFC 9110 11.1) and any run of spaces may separate it from the token.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Headers on every admin answer: no framing (clickjacking), no sniffing, no caching, and a
/// CSP that allows the stats page's inline code and same-origin fetches only.
pub(crate) fn harden(headers: &mut HeaderMap) {
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hosts() {
        let names = vec!["stats.example".to_string()];
        for ok in [
            "127.0.0.1:9100",
            "127.0.0.1",
            "[::1]:9100",
            "localhost:1",
            "LOCALHOST",
            "stats.example:9100",
            "Stats.Example.",
            "10.1.2.3:80",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for bad in [
            "evil.example:9100",
            "",
            ":9100",
            "[::1",
            "127.0.0.1:x",
            "[zz]:1",
        ] {
            assert!(!host_allowed(bad, &names), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:9100");
        assert!(same_origin(&h(&[("origin", "http://127.0.0.1:9100")]), host).is_ok());
        assert!(same_origin(&h(&[("origin", "http://127.0.0.2:9100")]), host).is_err());
        assert!(same_origin(&h(&[("origin", "null")]), host).is_err());
        assert!(same_origin(&h(&[("sec-fetch-site", "cross-site")]), host).is_err());
        assert!(same_origin(&h(&[("sec-fetch-site", "same-site")]), host).is_err());
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")]), host).is_ok());
        assert!(same_origin(&h(&[]), host).is_ok());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(&h(&[("authorization", "Bearer t")])), Some("t"));
        assert_eq!(bearer(&h(&[("authorization", "bearer t")])), Some("t"));
        assert_eq!(bearer(&h(&[("authorization", "BEARER   t")])), Some("t"));
        assert_eq!(bearer(&h(&[("authorization", "Basic t")])), None);
        assert_eq!(bearer(&h(&[("authorization", "Bearer")])), None);
    }
}
