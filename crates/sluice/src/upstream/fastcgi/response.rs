//! The CGI response head at the start of a FastCGI app's STDOUT: header lines up to an empty
//! line, `Status: NNN reason` giving the status (else 302 with `Location`, else 200, as
//! nginx does). Pure and bounded (fuzzed by fuzz/fuzz_targets/fastcgi_head.rs): errors for
//! any input, never a panic. Gathering STDOUT records is the client's job.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;

use crate::upstream::uwsgi::response::MAX_HEADERS;
use crate::upstream::uwsgi::{HeadParse, ResponseHead};

/// Parses `buf` (STDOUT bytes so far) as a CGI response head of at most `max_len` bytes.
pub fn parse_cgi_head(buf: &[u8], max_len: usize) -> HeadParse {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, fields) = match httparse::parse_headers(buf, &mut hdrs) {
        Ok(httparse::Status::Complete((n, fields))) => (n, fields),
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_len {
                HeadParse::Invalid(format!("CGI response head larger than {max_len} bytes"))
            } else {
                HeadParse::Incomplete
            };
        }
        Err(e) => return HeadParse::Invalid(format!("CGI response head: {e}")),
    };
    if len > max_len {
        return HeadParse::Invalid(format!("CGI response head larger than {max_len} bytes"));
    }
    let mut status = None;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for h in fields.iter() {
        if h.name.eq_ignore_ascii_case("status") {
            if status.is_some() {
                return HeadParse::Invalid("more than one Status header".into());
            }
            match parse_status(h.value) {
                Some(s) => status = Some(s),
                None => {
                    return HeadParse::Invalid(format!(
                        "bad Status header {:?}",
                        String::from_utf8_lossy(h.value)
                    ))
                }
            }
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return HeadParse::Invalid(format!("bad header name {:?}", h.name));
        };
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return HeadParse::Invalid(format!("bad value for header {:?}", h.name));
        };
        headers.append(name, value);
    }
    let status = status.unwrap_or(if headers.contains_key(header::LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    HeadParse::Complete(ResponseHead {
        status,
        headers,
        len,
    })
}

/// `NNN` or `NNN reason`, a final status (200..=599).
fn parse_status(v: &[u8]) -> Option<StatusCode> {
    let code = v.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || v.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let n = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..=599).contains(&n) {
        return None;
    }
    StatusCode::from_u16(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(b: &[u8]) -> ResponseHead {
        match parse_cgi_head(b, 65536) {
            HeadParse::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_location_and_default() {
        let h = complete(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nbody");
        assert_eq!(h.status, 404);
        assert_eq!(h.len, 50);
        assert!(!h.headers.contains_key("status"));
        assert_eq!(h.headers["content-type"], "text/html");
        let h = complete(b"Location: /there\r\n\r\n");
        assert_eq!(h.status, 302);
        let h = complete(b"Status: 301\r\nLocation: /there\r\n\r\n");
        assert_eq!(h.status, 301);
        let h = complete(b"X-Powered-By: PHP\nContent-Type: text/plain\n\n");
        assert_eq!(h.status, 200);
        assert_eq!(complete(b"\r\n").len, 2);
    }

    #[test]
    fn incomplete_invalid_and_limits() {
        assert!(matches!(
            parse_cgi_head(b"Content-Type: text/plain\r\n", 100),
            HeadParse::Incomplete
        ));
        assert!(matches!(parse_cgi_head(b"", 100), HeadParse::Incomplete));
        for bad in [
            &b"Status: abc\r\n\r\n"[..],
            b"Status: 99\r\n\r\n",
            b"Status: 100 Continue\r\n\r\n",
            b"Status: 2000\r\n\r\n",
            b"Status: 200\r\nStatus: 200\r\n\r\n",
            b"no colon here\r\n\r\n",
        ] {
            assert!(
                matches!(parse_cgi_head(bad, 100), HeadParse::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!("X: {}", "a".repeat(200));
        assert!(matches!(
            parse_cgi_head(big.as_bytes(), 100),
            HeadParse::Invalid(_)
        ));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        assert!(matches!(
            parse_cgi_head(format!("{many}\r\n").as_bytes(), 1 << 20),
            HeadParse::Invalid(_)
        ));
    }
}
