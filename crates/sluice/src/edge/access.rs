//! The edge's access log: one record per request, written when the response body ends or is
//! dropped (499 when no response was started), as nginx's `combined` line or one JSON object,
//! to tracing and the frontend's file. Also the response body wrapper that counts bytes
//! sent. No request handling here.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Uri, Version};
use tokio::time::Instant;

use crate::addr::ClientAddr;
use crate::balance::Lease;
use crate::log::{json_str, nginx_escape_into, LogFile};
use crate::upstream::{Body, UpstreamError};

use super::conn::RequestGuard;

/// Where a frontend's access lines go, and in which format.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessLog {
    pub file: Option<Arc<LogFile>>,
    pub json: bool,
}

impl AccessLog {
    /// Writes `rec` to tracing (target `sluice::access`) and to the file when set.
    /// The line is only formatted when someone reads it (a file, or tracing at info for
    /// `sluice::access`): with `RUST_LOG=warn` and no file a request costs no formatting.
    pub(crate) fn emit(&self, rec: &AccessRecord) {
        crate::metrics::global().http_response(&rec.frontend, rec.status);
        let traced = tracing::enabled!(target: "sluice::access", tracing::Level::INFO);
        if !traced && self.file.is_none() {
            return;
        }
        let line = if self.json {
            rec.to_json()
        } else {
            rec.combined()
        };
        if traced {
            tracing::info!(target: "sluice::access", "{line}");
        }
        if let Some(file) = &self.file {
            if let Err(e) = file.write_line(&line) {
                tracing::warn!("cannot write to {}: {e}", file.path().display());
            }
        }
    }
}

/// Everything one access log line says.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub client: ClientAddr,
    pub time: SystemTime,
    /// `METHOD target PROTOCOL`, or "-" when no request could be parsed.
    pub request: String,
    pub protocol: &'static str,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
    /// "TLSv1.3", "TLSv1.2"; None on plain HTTP.
    pub tls_version: Option<&'static str>,
    pub tls_resumed: bool,
    pub frontend: Arc<str>,
    /// The app server that answered (or the last one tried).
    pub upstream: Option<String>,
    /// From the request (once its body is read, when buffered) until the response head
    /// arrived from the app.
    pub upstream_time: Option<Duration>,
    /// From the request until the response body ended.
    pub request_time: Duration,
}

/// nginx's `$server_protocol` spelling.
pub(super) fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// The request line as nginx logs it: origin-form target for HTTP/2 too; a CONNECT's
/// authority-form target as sent.
pub(super) fn request_line(method: &Method, uri: &Uri, version: Version) -> String {
    if let (None, Some(a), None) = (uri.scheme(), uri.authority(), uri.path_and_query()) {
        return format!("{method} {a} {}", protocol_name(version));
    }
    let target = if version == Version::HTTP_2 || uri.scheme().is_none() {
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    } else {
        return format!("{method} {uri} {}", protocol_name(version));
    };
    format!("{method} {target} {}", protocol_name(version))
}

impl AccessRecord {
    /// A record for a request about to be handled (status and sizes filled in later).
    pub(crate) fn for_request(
        client: ClientAddr,
        frontend: Arc<str>,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> AccessRecord {
        let field = |n: header::HeaderName| headers.get(n).map(|v| v.as_bytes().to_vec());
        // The target's authority wins over Host (RFC 9112 §3.2.2, RFC 9113 §8.3.1).
        let host = uri
            .authority()
            .map(|a| a.as_str().into())
            .or_else(|| field(header::HOST));
        AccessRecord {
            client,
            time: SystemTime::now(),
            request: request_line(method, uri, version),
            protocol: protocol_name(version),
            status: 0,
            body_bytes_sent: 0,
            referer: field(header::REFERER),
            user_agent: field(header::USER_AGENT),
            host,
            tls_version: None,
            tls_resumed: false,
            frontend,
            upstream: None,
            upstream_time: None,
            request_time: Duration::ZERO,
        }
    }

    /// nginx `combined`: `$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`, with `"`, `\`, control and
    /// non-ASCII bytes escaped as `\xHH` (as nginx does).
    pub(crate) fn combined(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{} - - [{}] \"",
            self.client.addr().ip(),
            time_local(self.time)
        );
        nginx_escape_into(&mut s, self.request.as_bytes());
        let _ = write!(s, "\" {} {} \"", self.status, self.body_bytes_sent);
        nginx_escape_into(&mut s, self.referer.as_deref().unwrap_or(b"-"));
        s.push_str("\" \"");
        nginx_escape_into(&mut s, self.user_agent.as_deref().unwrap_or(b"-"));
        s.push('"');
        s
    }

    /// The same fields as one JSON object, plus protocol, TLS, upstream and times.
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::with_capacity(384);
        let opt = |v: &Option<Vec<u8>>| match v {
            Some(b) => json_str(&String::from_utf8_lossy(b)),
            None => "null".into(),
        };
        let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
        let _ = write!(
            s,
            "{{\"remote_addr\":\"{}\",\"remote_port\":{},\"remote_user\":null,\"time_local\":\"{}\",\
             \"request\":{},\"status\":{},\"body_bytes_sent\":{},\"http_referer\":{},\
             \"http_user_agent\":{},\"host\":{},\"protocol\":\"{}\",\"tls_version\":{},\
             \"tls_resumed\":{},\"frontend\":{},\"upstream\":{},\"upstream_response_time\":{},\
             \"request_time\":{}}}",
            self.client.addr().ip(),
            self.client.addr().port(),
            time_local(self.time),
            json_str(&self.request),
            self.status,
            self.body_bytes_sent,
            opt(&self.referer),
            opt(&self.user_agent),
            opt(&self.host),
            self.protocol,
            self.tls_version
                .map(|v| format!("\"{v}\""))
                .unwrap_or_else(|| "null".into()),
            self.tls_resumed,
            json_str(&self.frontend),
            self.upstream
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into()),
            self.upstream_time
                .map(secs)
                .unwrap_or_else(|| "null".into()),
            secs(self.request_time),
        );
        s
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// nginx's `$time_local` in UTC: `25/Nov/2026:13:55:02 +0000`.
pub(super) fn time_local(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// nginx's status for a client that closed the connection before the response.
pub(super) const CLIENT_CLOSED: u16 = 499;

/// One request's access line, written exactly once: when it is dropped. It says 499 until
/// the handler sets the response status, so a request whose service future hyper dropped
/// (the client closed, reset or half-closed before the response) is logged as nginx does.
pub(super) struct RequestLog {
    rec: AccessRecord,
    log: AccessLog,
    start: Instant,
}

impl RequestLog {
    pub(super) fn new(mut rec: AccessRecord, log: AccessLog, start: Instant) -> RequestLog {
        rec.status = CLIENT_CLOSED;
        RequestLog { rec, log, start }
    }

    /// The record, to fill in (server, status) before it is written.
    pub(super) fn rec(&mut self) -> &mut AccessRecord {
        &mut self.rec
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.rec.request_time = self.start.elapsed();
        self.log.emit(&self.rec);
    }
}

/// The response body as sent to the client: counts data bytes, keeps the app server's
/// lease and the connection's request count until it ends, then logs the request once
/// (at the end of the body, on an error, or when hyper drops it early: then with the
/// status already sent and fewer bytes, as nginx does).
pub(super) struct LogBody {
    inner: Body,
    pending: Option<Pending>,
}

struct Pending {
    // Dropped in this order: the line is written before the lease and the guard end.
    line: RequestLog,
    _lease: Option<Lease>,
    _guard: RequestGuard,
}

impl LogBody {
    pub(super) fn new(
        inner: Body,
        line: RequestLog,
        lease: Option<Lease>,
        guard: RequestGuard,
    ) -> LogBody {
        LogBody {
            inner,
            pending: Some(Pending {
                line,
                _lease: lease,
                _guard: guard,
            }),
        }
    }

    fn finish(&mut self) {
        self.pending = None;
    }
}

impl HttpBody for LogBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(p)) = (frame.data_ref(), this.pending.as_mut()) {
                    p.line.rec.body_bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::info!("response body from upstream failed: {e}");
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PeerAddr;

    fn rec() -> AccessRecord {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, "curl/8 \"x\"".parse().unwrap());
        h.insert(header::HOST, "app.test".parse().unwrap());
        let mut r = AccessRecord::for_request(
            ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
            "web".into(),
            &Method::GET,
            &"/a?b=1".parse().unwrap(),
            Version::HTTP_11,
            &h,
        );
        r.time = UNIX_EPOCH + Duration::from_secs(1_795_613_302); // 2026-11-25 13:28:22 UTC
        r.status = 200;
        r.body_bytes_sent = 12;
        r
    }

    #[test]
    fn combined_matches_nginx_and_escapes() {
        assert_eq!(
            rec().combined(),
            "127.0.0.2 - - [25/Nov/2026:13:28:22 +0000] \"GET /a?b=1 HTTP/1.1\" 200 12 \"-\" \
             \"curl/8 \\x22x\\x22\""
        );
        let mut r = rec();
        r.request = "GET /\u{1}\n HTTP/1.1".into();
        assert!(r.combined().contains("\"GET /\\x01\\x0A HTTP/1.1\""));
    }

    #[test]
    fn json_has_the_same_fields_and_more() {
        let mut r = rec();
        r.tls_version = Some("TLSv1.3");
        r.upstream = Some("app1".into());
        let j = r.to_json();
        for part in [
            "\"remote_addr\":\"127.0.0.2\"",
            "\"time_local\":\"25/Nov/2026:13:28:22 +0000\"",
            "\"request\":\"GET /a?b=1 HTTP/1.1\"",
            "\"status\":200",
            "\"body_bytes_sent\":12",
            "\"http_user_agent\":\"curl/8 \\\"x\\\"\"",
            "\"http_referer\":null",
            "\"protocol\":\"HTTP/1.1\"",
            "\"tls_version\":\"TLSv1.3\"",
            "\"tls_resumed\":false",
            "\"upstream\":\"app1\"",
        ] {
            assert!(j.contains(part), "{part} missing in {j}");
        }
    }

    #[test]
    fn dates_convert() {
        assert_eq!(time_local(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2024-02-29 23:59:59 UTC (leap day).
        assert_eq!(
            time_local(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "29/Feb/2024:23:59:59 +0000"
        );
        assert_eq!(
            request_line(
                &Method::GET,
                &"https://h/x?y".parse().unwrap(),
                Version::HTTP_2
            ),
            "GET /x?y HTTP/2.0"
        );
        assert_eq!(
            request_line(
                &Method::CONNECT,
                &"a.example:443".parse().unwrap(),
                Version::HTTP_11
            ),
            "CONNECT a.example:443 HTTP/1.1"
        );
    }
}
