//! One access record (`AccessRecord`): what the edge knows about a request, the values of the
//! http `$variables` (nginx's names, `$http_NAME` headers among them), rendered with a
//! `log_format` template or as a JSON object. Escaping is `log`'s; where lines go is
//! `access.rs`'s. No I/O.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::header::{self, HeaderMap};
use hyper::{Method, Uri, Version};

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::log::{json_str, push_var, time};
use crate::proxy_protocol::ConnId;
use crate::spec::{Escape, LineFormat, Piece, Template, Var};
use crate::upstream::ClientCert;

/// Everything one access log line says.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub client: ClientAddr,
    /// The TCP peer (the client itself unless a PROXY header named another).
    pub peer: PeerAddr,
    /// The source of an accepted PROXY header.
    pub proxy_protocol: Option<ClientAddr>,
    /// The address the client reached; None only in unit tests.
    pub local: Option<LocalAddr>,
    /// The connection's serial number, and this request's number on it (from 1).
    pub connection: u64,
    pub connection_requests: u64,
    /// The connection id shared with the balancer (`$connection_id`) and this request's id
    /// (`$request_id`, also sent to the app); None before a request was read.
    pub connection_id: Option<ConnId>,
    pub request_id: Option<Arc<str>>,
    pub time: SystemTime,
    /// `METHOD target PROTOCOL`, or "-" when no request could be parsed.
    pub request: String,
    pub protocol: &'static str,
    pub status: u16,
    pub body_bytes_sent: u64,
    /// Bytes the client sent through an upgraded connection (`$bytes_in`); None otherwise.
    pub bytes_in: Option<u64>,
    pub referer: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
    /// The request headers the format reads (`$http_NAME`), in its `headers` order: all
    /// values of each, joined with ", " ("; " for Cookie) as nginx does.
    pub headers: Vec<Option<Vec<u8>>>,
    /// "TLSv1.3", "TLSv1.2"; None on plain HTTP.
    pub tls_version: Option<&'static str>,
    pub tls_resumed: bool,
    /// The client certificate (mTLS frontends only): `$ssl_client_*`.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The connection's PROXY v2 TLVs (`$proxy_protocol_tlv_NAME`).
    pub proxy_tlvs: crate::upstream::ProxyTlvs,
    pub frontend: Arc<str>,
    /// The app server that answered (or the last one tried): its name and address.
    pub upstream: Option<Arc<str>>,
    pub upstream_addr: Option<Arc<str>>,
    /// From the request (once its body is read, when buffered) until the response head
    /// arrived from the app.
    pub upstream_time: Option<Duration>,
    /// From the request until the response body ended.
    pub request_time: Duration,
}

/// nginx's `$server_protocol` spelling.
fn protocol_name(v: Version) -> &'static str {
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
fn request_line(method: &Method, uri: &Uri, version: Version) -> String {
    if let (None, Some(a), None) = (uri.scheme(), uri.authority(), uri.path_and_query()) {
        return format!("{method} {a} {}", protocol_name(version));
    }
    let target = if version == Version::HTTP_2 || uri.scheme().is_none() {
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    } else {
        return format!("{method} {uri} {}", protocol_name(version));
    };
    // Once per request: pieces joined, not `format!`.
    let (m, proto) = (method.as_str(), protocol_name(version));
    let mut line = String::with_capacity(m.len() + target.len() + proto.len() + 2);
    for part in [m, " ", target, " ", proto] {
        line.push_str(part);
    }
    line
}

impl AccessRecord {
    /// A record for a request about to be handled (status and sizes filled in later);
    /// `wanted`: the header names the log format reads.
    pub(crate) fn for_request(
        client: ClientAddr,
        frontend: Arc<str>,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        wanted: &[String],
    ) -> AccessRecord {
        let field = |n: header::HeaderName| headers.get(n).map(|v| v.as_bytes().to_vec());
        // The target's authority wins over Host (RFC 9112 §3.2.2, RFC 9113 §8.3.1).
        let host = uri
            .authority()
            .map(|a| a.as_str().into())
            .or_else(|| field(header::HOST));
        AccessRecord {
            client,
            peer: PeerAddr(client.addr()),
            proxy_protocol: None,
            local: None,
            connection: 0,
            connection_requests: 1,
            connection_id: None,
            request_id: None,
            time: SystemTime::now(),
            request: request_line(method, uri, version),
            protocol: protocol_name(version),
            status: 0,
            body_bytes_sent: 0,
            bytes_in: None,
            referer: field(header::REFERER),
            user_agent: field(header::USER_AGENT),
            host,
            headers: wanted.iter().map(|n| joined(headers, n)).collect(),
            tls_version: None,
            tls_resumed: false,
            client_cert: None,
            proxy_tlvs: Default::default(),
            frontend,
            upstream: None,
            upstream_addr: None,
            upstream_time: None,
            request_time: Duration::ZERO,
        }
    }

    /// The line in `format`.
    pub(crate) fn line(&self, format: &LineFormat) -> String {
        match format {
            LineFormat::Json => self.to_json(),
            LineFormat::Template(t) => self.render(t),
        }
    }

    /// The line from a template (nginx `combined` by default: `$remote_addr - $remote_user
    /// [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`),
    /// each variable escaped as nginx does (`\xHH`) or for JSON (`escape=json`).
    pub(crate) fn render(&self, t: &Template) -> String {
        let json = t.escape == Escape::Json;
        let mut s = String::with_capacity(192);
        t.render(&mut s, |p, out| {
            let value = match p {
                Piece::Var(v) => self.var(*v),
                Piece::Header(i) => self
                    .headers
                    .get(*i)
                    .and_then(|h| h.as_deref())
                    .map(Cow::Borrowed),
                Piece::ProxyTlv(name) => self
                    .proxy_tlvs
                    .get(*name)
                    .map(|v| Cow::Borrowed(v.as_bytes())),
                Piece::Text(_) => None,
            };
            push_var(out, value.as_deref(), json)
        });
        s
    }

    /// `METHOD`, `target` of the request line; None for "-".
    fn request_parts(&self) -> Option<(&str, &str)> {
        let (method, rest) = self.request.split_once(' ')?;
        let (target, _) = rest.rsplit_once(' ')?;
        Some((method, target))
    }
}

/// Every value of header `name`, joined as nginx joins them; None when it is absent.
fn joined(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let sep: &[u8] = if name == "cookie" { b"; " } else { b", " };
    let mut out: Option<Vec<u8>> = None;
    for v in headers.get_all(name) {
        match &mut out {
            None => out = Some(v.as_bytes().to_vec()),
            Some(o) => {
                o.extend_from_slice(sep);
                o.extend_from_slice(v.as_bytes());
            }
        }
    }
    out
}

/// A borrowed value.
fn b(s: &str) -> Option<Cow<'_, [u8]>> {
    Some(Cow::Borrowed(s.as_bytes()))
}

impl AccessRecord {
    /// One variable's value (raw bytes, escaped by the caller); None when it has none.
    fn var(&self, v: Var) -> Option<Cow<'_, [u8]>> {
        let own = |s: String| Some(Cow::Owned(s.into_bytes()));
        let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
        match v {
            Var::RemoteAddr => own(self.client.addr().ip().to_string()),
            Var::RemotePort => own(self.client.addr().port().to_string()),
            Var::RemoteUser => None,
            Var::RealipRemoteAddr => own(self.peer.0.ip().to_string()),
            Var::RealipRemotePort => own(self.peer.0.port().to_string()),
            Var::ProxyProtocolAddr => self
                .proxy_protocol
                .and_then(|c| own(c.addr().ip().to_string())),
            Var::ProxyProtocolPort => self
                .proxy_protocol
                .and_then(|c| own(c.addr().port().to_string())),
            Var::ServerAddr => self.local.and_then(|l| own(l.0.ip().to_string())),
            Var::ServerPort => self.local.and_then(|l| own(l.0.port().to_string())),
            Var::Connection => own(self.connection.to_string()),
            Var::ConnectionRequests => own(self.connection_requests.to_string()),
            Var::ConnectionId => self.connection_id.as_ref().and_then(|c| b(c.as_str())),
            Var::RequestId => self.request_id.as_deref().and_then(b),
            Var::TimeLocal => own(time::time_local(self.time)),
            Var::TimeIso8601 => own(time::iso8601(self.time)),
            Var::Msec => own(time::msec(self.time)),
            Var::Request => b(&self.request),
            Var::RequestMethod => self.request_parts().and_then(|p| b(p.0)),
            Var::RequestUri => self.request_parts().and_then(|p| b(p.1)),
            Var::ServerProtocol => b(self.protocol),
            Var::Scheme => b(if self.tls_version.is_some() {
                "https"
            } else {
                "http"
            }),
            Var::Status => own(self.status.to_string()),
            Var::BodyBytesSent => own(self.body_bytes_sent.to_string()),
            Var::BytesIn => self.bytes_in.and_then(|n| own(n.to_string())),
            Var::RequestTime => own(secs(self.request_time)),
            Var::UpstreamAddr => self.upstream_addr.as_deref().and_then(b),
            Var::UpstreamName => self.upstream.as_deref().and_then(b),
            Var::UpstreamResponseTime => self.upstream_time.map(secs).and_then(own),
            Var::SslProtocol => self.tls_version.and_then(b),
            Var::SslSessionReused => self
                .tls_version
                .and_then(|_| b(if self.tls_resumed { "r" } else { "." })),
            Var::SslClientVerify
            | Var::SslClientSDn
            | Var::SslClientIDn
            | Var::SslClientSerial
            | Var::SslClientFingerprint => {
                let tls = self.tls_version.is_some();
                super::client_cert::log_var(v, self.client_cert.as_deref(), tls).and_then(b)
            }
            Var::Host => self.host.as_deref().map(Cow::Borrowed),
            Var::HttpUserAgent => self.user_agent.as_deref().map(Cow::Borrowed),
            Var::HttpReferer => self.referer.as_deref().map(Cow::Borrowed),
            Var::Frontend | Var::FrontendName => b(&self.frontend),
            // tcp-only variables are refused for http frontends at config load.
            _ => None,
        }
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
            "{{\"remote_addr\":\"{}\",\"remote_port\":{},\"remote_user\":null,\"time_local\":\"{}\",\"time_iso8601\":\"{}\",\
             \"request\":{},\"status\":{},\"body_bytes_sent\":{},\"http_referer\":{},\
             \"http_user_agent\":{},\"host\":{},\"protocol\":\"{}\",\"tls_version\":{},\
             \"tls_resumed\":{},\"frontend\":{},\"upstream\":{},\"upstream_addr\":{},\
             \"upstream_response_time\":{},\"request_time\":{},\"realip_remote_addr\":\"{}\",\
             \"proxy_protocol_addr\":{},\"connection\":{},\"connection_requests\":{},\
             \"connection_id\":{},\"request_id\":{}}}",
            self.client.addr().ip(),
            self.client.addr().port(),
            time::time_local(self.time),
            time::iso8601(self.time),
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
            self.upstream_addr
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into()),
            self.upstream_time
                .map(secs)
                .unwrap_or_else(|| "null".into()),
            secs(self.request_time),
            self.peer.0.ip(),
            self.proxy_protocol
                .map(|c| format!("\"{}\"", c.addr().ip()))
                .unwrap_or_else(|| "null".into()),
            self.connection,
            self.connection_requests,
            self.connection_id
                .as_ref()
                .map(|c| json_str(c.as_str()))
                .unwrap_or_else(|| "null".into()),
            self.request_id
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into()),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PeerAddr;
    use crate::spec::{Mode, COMBINED};
    use std::time::UNIX_EPOCH;

    fn fmt(t: &str) -> LineFormat {
        LineFormat::parse(t, Mode::Http).unwrap()
    }

    fn rec() -> AccessRecord {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, "curl/8 \"x\"".parse().unwrap());
        h.insert(header::HOST, "app.test".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "b=\"".parse().unwrap());
        let mut r = AccessRecord::for_request(
            ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
            "web".into(),
            &Method::GET,
            &"/a?b=1".parse().unwrap(),
            Version::HTTP_11,
            &h,
            &["x-forwarded-for".to_string(), "cookie".to_string()],
        );
        r.time = UNIX_EPOCH + Duration::from_secs(1_795_613_302); // 2026-11-25 13:28:22 UTC
        r.status = 200;
        r.body_bytes_sent = 12;
        r
    }

    #[test]
    fn combined_matches_nginx_and_escapes() {
        assert_eq!(
            rec().line(&fmt(COMBINED)),
            "127.0.0.2 - - [25/Nov/2026:13:28:22 +0000] \"GET /a?b=1 HTTP/1.1\" 200 12 \"-\" \
             \"curl/8 \\x22x\\x22\""
        );
        let mut r = rec();
        r.request = "GET /\u{1}\n HTTP/1.1".into();
        assert!(r
            .line(&fmt(COMBINED))
            .contains("\"GET /\\x01\\x0A HTTP/1.1\""));
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
            "\"time_iso8601\":\"2026-11-25T13:28:22+00:00\"",
            "\"request\":\"GET /a?b=1 HTTP/1.1\"",
            "\"status\":200",
            "\"body_bytes_sent\":12",
            "\"http_user_agent\":\"curl/8 \\\"x\\\"\"",
            "\"http_referer\":null",
            "\"protocol\":\"HTTP/1.1\"",
            "\"tls_version\":\"TLSv1.3\"",
            "\"tls_resumed\":false",
            "\"upstream\":\"app1\"",
            "\"realip_remote_addr\":\"127.0.0.2\"",
            "\"proxy_protocol_addr\":null",
            "\"connection_requests\":1",
        ] {
            assert!(j.contains(part), "{part} missing in {j}");
        }
    }

    #[test]
    fn templates_take_nginx_variables() {
        let mut r = rec();
        r.tls_version = Some("TLSv1.3");
        r.tls_resumed = true;
        r.upstream = Some("app1".into());
        r.upstream_addr = Some("127.0.0.1:9000".into());
        r.upstream_time = Some(Duration::from_millis(5));
        r.request_time = Duration::from_millis(7);
        assert_eq!(
            r.line(&fmt(
                "$remote_addr:$remote_port $time_iso8601 $msec $request_method $request_uri \
                 $server_protocol $scheme $host $ssl_protocol/$ssl_session_reused \
                 $upstream_name=$upstream_addr $upstream_response_time $request_time \
                 $http_referer ${frontend}"
            )),
            "127.0.0.2:40000 2026-11-25T13:28:22+00:00 1795613302.000 GET /a?b=1 HTTP/1.1 \
             https app.test TLSv1.3/r app1=127.0.0.1:9000 0.005 0.007 - web"
        );
        assert_eq!(
            r.line(&fmt("$http_x_forwarded_for|$http_cookie")),
            "10.0.0.1, 10.0.0.2|a=1; b=\\x22"
        );
        let line = r.line(&fmt(
            "escape=json {\"ua\":\"$http_user_agent\",\"ref\":\"$http_referer\"}",
        ));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ua"], "curl/8 \"x\"");
        assert_eq!(v["ref"], "");
    }

    #[test]
    fn request_lines() {
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
