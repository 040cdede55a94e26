//! Parsing the raw HTTP/1.x response head a uwsgi server sends back, and deciding how its
//! body is framed. Pure functions over bytes (fuzzed by fuzz/fuzz_targets/uwsgi_response.rs):
//! they return errors for any input and never panic. Reading the socket is the client's job.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;

/// Most header fields accepted in one response head.
pub const MAX_HEADERS: usize = 128;

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Bytes of the buffer the head occupied (status line to the empty line included).
    pub len: usize,
}

/// Outcome of parsing a buffer that starts with a response head.
#[derive(Debug)]
pub enum HeadParse {
    Complete(ResponseHead),
    /// Need more bytes (and the buffer is still within the limit).
    Incomplete,
    Invalid(String),
}

/// Most interim (1xx other than 101) heads skipped before the final one.
pub(crate) const MAX_INTERIM: usize = 8;

/// Takes the final response head off the front of `buf` once all of it is there, dropping
/// interim heads (1xx other than 101) on the way; `interim` counts them across calls, and
/// past [`MAX_INTERIM`] the next one is returned as final. `Ok(None)`: more bytes needed.
pub(crate) fn take_final_head(
    buf: &mut bytes::BytesMut,
    max_len: usize,
    interim: &mut usize,
) -> Result<Option<ResponseHead>, String> {
    loop {
        match parse_response_head(buf, max_len) {
            HeadParse::Complete(h) => {
                let _ = buf.split_to(h.len);
                let s = h.status.as_u16();
                if (100..200).contains(&s) && s != 101 && *interim < MAX_INTERIM {
                    *interim += 1;
                    continue;
                }
                return Ok(Some(h));
            }
            HeadParse::Invalid(msg) => return Err(msg),
            HeadParse::Incomplete => return Ok(None),
        }
    }
}

/// Parses `buf` as an HTTP/1.0 or 1.1 response head of at most `max_len` bytes.
pub fn parse_response_head(buf: &[u8], max_len: usize) -> HeadParse {
    // uwsgi echoes SERVER_PROTOCOL in its status line: for an HTTP/2 request that is
    // "HTTP/2.0 200 OK", which nginx accepts (any HTTP/major.minor) and httparse does not.
    // Parse such a head with the version rewritten, then give back the original length.
    if let Some(ver_len) = non_http1_version(buf) {
        let mut copy = Vec::with_capacity(buf.len().min(max_len + 8) + 8);
        copy.extend_from_slice(b"HTTP/1.1");
        copy.extend_from_slice(&buf[ver_len..buf.len().min(max_len + ver_len)]);
        return match parse_http1_head(&copy, max_len + 8 - ver_len) {
            HeadParse::Complete(mut head) => {
                head.len = head.len + ver_len - 8;
                HeadParse::Complete(head)
            }
            HeadParse::Incomplete if buf.len() > max_len => {
                HeadParse::Invalid(format!("response head larger than {max_len} bytes"))
            }
            other => other,
        };
    }
    parse_http1_head(buf, max_len)
}

/// The length of a leading `HTTP/2`, `HTTP/2.0` or `HTTP/3` version followed by a space;
/// `None` for HTTP/1.x and anything else (left to httparse to judge).
fn non_http1_version(buf: &[u8]) -> Option<usize> {
    let rest = buf.strip_prefix(b"HTTP/")?;
    let major = *rest.first()?;
    if !matches!(major, b'2' | b'3') {
        return None;
    }
    match rest.get(1..) {
        Some([b' ', ..]) => Some(6),
        Some([b'.', b'0', b' ', ..]) => Some(8),
        _ => None,
    }
}

fn parse_http1_head(buf: &[u8], max_len: usize) -> HeadParse {
    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hdrs);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_len {
                HeadParse::Invalid(format!("response head larger than {max_len} bytes"))
            } else {
                HeadParse::Incomplete
            };
        }
        Err(e) => return HeadParse::Invalid(format!("response head: {e}")),
    };
    if len > max_len {
        return HeadParse::Invalid(format!("response head larger than {max_len} bytes"));
    }
    let Some(code) = resp.code else {
        return HeadParse::Invalid("response head: no status".into());
    };
    let Ok(status) = StatusCode::from_u16(code) else {
        return HeadParse::Invalid(format!("response head: bad status {code}"));
    };
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return HeadParse::Invalid(format!("bad header name {:?}", h.name));
        };
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return HeadParse::Invalid(format!("bad value for header {:?}", h.name));
        };
        headers.append(name, value);
    }
    HeadParse::Complete(ResponseHead {
        status,
        headers,
        len,
    })
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for HEAD, 1xx, 204, 304).
    Length(u64),
    /// Chunked transfer coding, decoded by the client.
    Chunked,
    /// Until the server closes the connection (uwsgi's usual way).
    Eof,
}

/// The body framing of `head` (RFC 9112 §6.3) for a request that was HEAD or not.
pub fn framing(head: &ResponseHead, is_head: bool) -> Result<Framing, String> {
    let s = head.status.as_u16();
    if is_head || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok(Framing::Length(0));
    }
    if head.headers.contains_key(header::TRANSFER_ENCODING) {
        let last = head
            .headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .unwrap_or("");
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Eof
        });
    }
    let mut len: Option<u64> = None;
    for v in head.headers.get_all(header::CONTENT_LENGTH) {
        let s = v.to_str().map_err(|_| "bad Content-Length".to_string())?;
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad Content-Length {s:?}"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| format!("bad Content-Length {s:?}"))?;
            if len.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values".into());
            }
            len = Some(n);
        }
    }
    Ok(len.map_or(Framing::Eof, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(b: &[u8]) -> ResponseHead {
        match parse_response_head(b, 65536) {
            HeadParse::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_uwsgi_style_head() {
        let b = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let h = complete(b);
        assert_eq!(h.status, 200);
        assert_eq!(h.len, b.len() - 5);
        assert_eq!(h.headers["content-type"], "text/plain");
        assert_eq!(framing(&h, false), Ok(Framing::Length(5)));
        assert_eq!(framing(&h, true), Ok(Framing::Length(0)));
    }

    #[test]
    fn http2_status_line_from_uwsgi_is_accepted_with_its_own_length() {
        // uwsgi echoes SERVER_PROTOCOL=HTTP/2.0 back as the status line's version.
        for b in [
            &b"HTTP/2.0 201 Created\r\nContent-Length: 2\r\n\r\nok"[..],
            &b"HTTP/2 201 Created\r\nContent-Length: 2\r\n\r\nok"[..],
        ] {
            let h = complete(b);
            assert_eq!(h.status, 201);
            assert_eq!(h.len, b.len() - 2, "{:?}", String::from_utf8_lossy(b));
        }
        assert!(matches!(
            parse_response_head(b"HTTP/2.0 200 OK\r\nA: b", 100),
            HeadParse::Incomplete
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/2 200 OK\r\nA: bbbbbbbbbbbbbbbbbbbbbbbb", 20),
            HeadParse::Invalid(_)
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/4.0 200 OK\r\n\r\n", 100),
            HeadParse::Invalid(_)
        ));
    }

    #[test]
    fn incomplete_invalid_and_limits() {
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nA: b", 100),
            HeadParse::Incomplete
        ));
        assert!(matches!(
            parse_response_head(b"", 100),
            HeadParse::Incomplete
        ));
        assert!(matches!(
            parse_response_head(b"garbage\r\n\r\n", 100),
            HeadParse::Invalid(_)
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 000 X\r\n\r\n", 100),
            HeadParse::Invalid(_)
        ));
        let big = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(200));
        assert!(matches!(
            parse_response_head(big.as_bytes(), 100),
            HeadParse::Invalid(_)
        ));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        let b = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(matches!(
            parse_response_head(b.as_bytes(), 1 << 20),
            HeadParse::Invalid(_)
        ));
    }

    #[test]
    fn framing_rules() {
        let f = |s: &str| framing(&complete(s.as_bytes()), false);
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Eof));
        assert_eq!(
            f("HTTP/1.1 204 No\r\nContent-Length: 9\r\n\r\n"),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok(Framing::Eof)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
            Ok(Framing::Length(3))
        );
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n").is_err());
    }

    #[test]
    fn every_prefix_and_byte_flip_is_handled_without_panic() {
        let good = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc";
        let head_len = good.len() - 3;
        for n in 0..good.len() {
            match parse_response_head(&good[..n], 1024) {
                HeadParse::Incomplete => assert!(n < head_len, "prefix {n}"),
                HeadParse::Complete(h) => assert_eq!(h.len, head_len),
                HeadParse::Invalid(e) => panic!("prefix {n}: {e}"),
            }
        }
        // 256 values at each position: bounded (~20k parses).
        for pos in 0..head_len {
            for b in 0..=255u8 {
                let mut m = good.to_vec();
                m[pos] = b;
                if let HeadParse::Complete(h) = parse_response_head(&m, 1024) {
                    assert!(h.len <= m.len());
                    let _ = framing(&h, false);
                }
            }
        }
    }
}
