//! Access log settings as the runtime takes them: where lines go (`LogTarget`: a file or a
//! syslog server, nginx's `syslog:` syntax) and what they say (`LineFormat`: JSON, or an
//! nginx-style `$variable` template compiled once into text and variables). Parsing and
//! validation only: rendering values is the roles' (`l4::log`, `edge::access`), escaping `log`'s.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::Mode;

/// Where a frontend's access lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// A file path, appended to (reopened on SIGUSR1).
    File(String),
    Syslog(SyslogTarget),
}

/// `syslog:server=ADDR[,facility=F][,severity=S][,tag=T]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub server: SyslogServer,
    /// 0..=23 (`kern` .. `local7`); default `local7` (23) as nginx.
    pub facility: u8,
    /// 0..=7 (`emerg` .. `debug`); default `info` (6) as nginx.
    pub severity: u8,
    /// RFC 5424 APP-NAME; default "sluice".
    pub tag: String,
}

/// A syslog collector: UDP (`ip[:port]`, port 514 by default) or a unix datagram socket
/// (`unix:/dev/log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogServer {
    Udp(SocketAddr),
    Unix(PathBuf),
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
];

impl LogTarget {
    /// A file path, or `syslog:` followed by comma-separated `key=value` (nginx's syntax;
    /// `syslog:/path[,...]` for a unix socket too).
    pub fn parse(s: &str) -> Result<LogTarget, String> {
        let Some(rest) = s.strip_prefix("syslog:") else {
            if s.is_empty() {
                return Err("must not be empty".into());
            }
            return Ok(LogTarget::File(s.to_string()));
        };
        let mut server = None;
        let (mut facility, mut severity, mut tag) = (23u8, 6u8, "sluice".to_string());
        for (i, part) in rest.split(',').enumerate() {
            // `syslog:/dev/log` is short for `syslog:server=unix:/dev/log`.
            if i == 0 && part.starts_with('/') {
                server = Some(parse_server(&format!("unix:{part}"))?);
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("syslog: expected key=value, got {part:?}"))?;
            match k {
                "server" => server = Some(parse_server(v)?),
                "facility" => {
                    facility = FACILITIES
                        .iter()
                        .position(|f| *f == v)
                        .ok_or_else(|| format!("syslog: unknown facility {v:?}"))?
                        as u8
                }
                "severity" => {
                    severity = SEVERITIES
                        .iter()
                        .position(|f| *f == v)
                        .ok_or_else(|| format!("syslog: unknown severity {v:?}"))?
                        as u8
                }
                "tag" => {
                    let ok = !v.is_empty()
                        && v.len() <= 32
                        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        return Err(format!(
                            "syslog: tag {v:?} must be 1-32 letters, digits or _"
                        ));
                    }
                    tag = v.to_string();
                }
                _ => return Err(format!("syslog: unknown parameter {k:?}")),
            }
        }
        let server = server.ok_or("syslog: server=ADDRESS is required")?;
        Ok(LogTarget::Syslog(SyslogTarget {
            server,
            facility,
            severity,
            tag,
        }))
    }
}

fn parse_server(v: &str) -> Result<SyslogServer, String> {
    if let Some(path) = v.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!(
                "syslog: unix socket path {path:?} must be absolute"
            ));
        }
        return Ok(SyslogServer::Unix(PathBuf::from(path)));
    }
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(SyslogServer::Udp(a));
    }
    let ip = v.trim_start_matches('[').trim_end_matches(']');
    match ip.parse::<IpAddr>() {
        Ok(ip) => Ok(SyslogServer::Udp(SocketAddr::new(ip, 514))),
        Err(_) => Err(format!(
            "syslog: server {v:?} is not ip[:port], [ipv6][:port] or unix:/path"
        )),
    }
}

/// How template variables are escaped (nginx's `escape=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `"`, `\`, control and non-ASCII bytes as `\xHH`; an empty value as `-`.
    Default,
    /// JSON string content (for a template that writes its own quotes); empty stays empty.
    Json,
}

/// What an access line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFormat {
    /// The role's JSON record (fixed fields).
    Json,
    Template(Template),
}

/// A compiled `log_format`: literal text and variables, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub escape: Escape,
    pub pieces: Vec<Piece>,
    /// Request header names (lowercase, `-`) the `$http_NAME` variables read, each once.
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var(Var),
    /// `$http_NAME`: the request header `headers[i]`.
    Header(usize),
    /// `$proxy_protocol_tlv_NAME` (http): a TLV of the connection's PROXY v2 header.
    ProxyTlv(super::TlvName),
}

macro_rules! vars {
    ($($v:ident = $name:literal: $http:literal $tcp:literal,)*) => {
        /// A log variable (nginx and HAProxy tcplog names); which mode has it is in `VARS`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Var { $($v,)* }
        /// (name, variable, in http mode, in tcp mode).
        const VARS: &[(&str, Var, bool, bool)] = &[$(($name, Var::$v, $http, $tcp),)*];
    };
}

vars! {
    RemoteAddr = "remote_addr": true true,
    RemotePort = "remote_port": true true,
    RemoteUser = "remote_user": true false,
    RealipRemoteAddr = "realip_remote_addr": true false,
    RealipRemotePort = "realip_remote_port": true false,
    ProxyProtocolAddr = "proxy_protocol_addr": true false,
    ProxyProtocolPort = "proxy_protocol_port": true false,
    ServerAddr = "server_addr": true false,
    ServerPort = "server_port": true false,
    Connection = "connection": true false,
    ConnectionRequests = "connection_requests": true false,
    TimeLocal = "time_local": true true,
    TimeIso8601 = "time_iso8601": true true,
    Msec = "msec": true true,
    Request = "request": true false,
    RequestMethod = "request_method": true false,
    RequestUri = "request_uri": true false,
    ServerProtocol = "server_protocol": true false,
    Scheme = "scheme": true false,
    Status = "status": true false,
    BodyBytesSent = "body_bytes_sent": true false,
    RequestTime = "request_time": true false,
    UpstreamAddr = "upstream_addr": true false,
    UpstreamName = "upstream_name": true false,
    UpstreamResponseTime = "upstream_response_time": true false,
    SslProtocol = "ssl_protocol": true false,
    SslSessionReused = "ssl_session_reused": true false,
    SslClientVerify = "ssl_client_verify": true false,
    SslClientSDn = "ssl_client_s_dn": true false,
    SslClientIDn = "ssl_client_i_dn": true false,
    SslClientSerial = "ssl_client_serial": true false,
    SslClientFingerprint = "ssl_client_fingerprint": true false,
    Host = "host": true false,
    HttpUserAgent = "http_user_agent": true false,
    HttpReferer = "http_referer": true false,
    ConnectionId = "connection_id": true true,
    RequestId = "request_id": true false,
    Frontend = "frontend": true true,
    FrontendName = "frontend_name": true true,
    Client = "client": false true,
    ClientIp = "client_ip": false true,
    ClientPort = "client_port": false true,
    Peer = "peer": false true,
    Local = "local": false true,
    AcceptDate = "accept_date": false true,
    Backend = "backend": false true,
    BackendName = "backend_name": false true,
    Server = "server": false true,
    ServerName = "server_name": false true,
    Tw = "Tw": false true,
    Tc = "Tc": false true,
    Tt = "Tt": false true,
    ConnectMs = "connect_ms": false true,
    DurationMs = "duration_ms": false true,
    BytesIn = "bytes_in": true true,
    BytesOut = "bytes_out": false true,
    BytesRead = "bytes_read": false true,
    Retries = "retries": false true,
    Actconn = "actconn": false true,
    Feconn = "feconn": false true,
    Beconn = "beconn": false true,
    SrvConn = "srv_conn": false true,
    SrvQueue = "srv_queue": false true,
    BackendQueue = "backend_queue": false true,
    TerminationState = "termination_state": false true,
    End = "end": false true,
    Reason = "reason": false true,
    SslPrereadServerName = "ssl_preread_server_name": false true,
    SslPrereadAlpnProtocols = "ssl_preread_alpn_protocols": false true,
}

impl Var {
    pub fn name(self) -> &'static str {
        VARS.iter()
            .find(|v| v.1 == self)
            .map(|v| v.0)
            .unwrap_or("?")
    }
}

/// nginx's `combined`, the http default.
pub const COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
/// The tcp default: sluice's key=value connection line (real client and the peer it came
/// through first, as before timestamps were added; then the time).
pub const CONN: &str = "$client peer=$peer time=$time_iso8601 local=$local frontend=$frontend backend=$backend server=$server connect_ms=$connect_ms duration_ms=$duration_ms bytes_in=$bytes_in bytes_out=$bytes_out retries=$retries end=$end reason=\"$reason\" id=$connection_id";
/// HAProxy's `option tcplog`.
pub const TCPLOG: &str = "$client_ip:$client_port [$accept_date] $frontend_name $backend_name/$server_name $Tw/$Tc/$Tt $bytes_read $termination_state $actconn/$feconn/$beconn/$srv_conn/$retries $srv_queue/$backend_queue";

impl LineFormat {
    /// The format a frontend of `mode` gets when it sets nothing.
    pub fn default_for(mode: Mode) -> LineFormat {
        let text = match mode {
            Mode::Http => COMBINED,
            Mode::Tcp => CONN,
        };
        LineFormat::Template(Template::compile(text, mode).expect("built-in format compiles"))
    }

    /// A named format (`combined` for http, `conn` or `tcplog` for tcp, `json` for both) or a
    /// template, optionally starting with `escape=default ` or `escape=json `.
    pub fn parse(s: &str, mode: Mode) -> Result<LineFormat, String> {
        let named = match (s, mode) {
            ("json", _) => return Ok(LineFormat::Json),
            ("combined", Mode::Http) => COMBINED,
            ("conn", Mode::Tcp) => CONN,
            ("tcplog", Mode::Tcp) => TCPLOG,
            _ if !s.contains('$') => {
                return Err(format!(
                    "{s:?} is neither a named format ({}) nor a template with $variables",
                    match mode {
                        Mode::Http => "combined, json",
                        Mode::Tcp => "conn, tcplog, json",
                    }
                ))
            }
            _ => s,
        };
        Template::compile(named, mode).map(LineFormat::Template)
    }
}

impl LineFormat {
    /// The request headers the line reads (`$http_NAME`).
    pub fn headers(&self) -> &[String] {
        match self {
            LineFormat::Template(t) => &t.headers,
            LineFormat::Json => &[],
        }
    }

    /// Whether the line needs HAProxy's connection counters (`$actconn` .. `$backend_queue`).
    pub fn uses_counters(&self) -> bool {
        matches!(self, LineFormat::Template(t) if t.pieces.iter().any(|p| matches!(
            p,
            Piece::Var(Var::Actconn | Var::Feconn | Var::Beconn | Var::SrvConn | Var::BackendQueue)
        )))
    }
}

impl Template {
    /// Parses `$name` and `${name}` (names: letters, digits, `_`), literal text between;
    /// `$$` is a literal `$`. An unknown variable, or one the mode does not have, is an error
    /// naming it.
    pub fn compile(s: &str, mode: Mode) -> Result<Template, String> {
        let (escape, s) = if let Some(r) = s.strip_prefix("escape=json ") {
            (Escape::Json, r)
        } else if let Some(r) = s.strip_prefix("escape=default ") {
            (Escape::Default, r)
        } else {
            (Escape::Default, s)
        };
        let mut pieces = Vec::new();
        let mut headers: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, tail) = if let Some(b) = after.strip_prefix('{') {
                let end = b
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ at byte {}", s.len() - rest.len() + i))?;
                (&b[..end], &b[end + 1..])
            } else if let Some(t) = after.strip_prefix('$') {
                text.push('$');
                rest = t;
                continue;
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                return Err("a $ without a variable name (write $$ for a literal $)".into());
            }
            let piece = match header_name(name, mode) {
                Some(h) => {
                    let i = headers.iter().position(|x| *x == h).unwrap_or_else(|| {
                        headers.push(h);
                        headers.len() - 1
                    });
                    Piece::Header(i)
                }
                None => match tlv_name(name, mode)? {
                    Some(t) => Piece::ProxyTlv(t),
                    None => Piece::Var(lookup(name, mode)?),
                },
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            escape,
            pieces,
            headers,
        })
    }

    /// Appends the line: text as is, each variable or header through `value`.
    pub fn render(&self, out: &mut String, mut value: impl FnMut(&Piece, &mut String)) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                p => value(p, out),
            }
        }
    }
}

/// `$http_NAME` in http mode, other than the named `$http_user_agent`/`$http_referer`: the
/// header `NAME` in lowercase with `_` as `-` (nginx's rule).
fn header_name(name: &str, mode: Mode) -> Option<String> {
    let h = name.strip_prefix("http_")?;
    let named = VARS.iter().any(|v| v.0 == name);
    (mode == Mode::Http && !named && !h.is_empty())
        .then(|| h.to_ascii_lowercase().replace('_', "-"))
}

/// `$proxy_protocol_tlv_NAME`: http mode only, NAME one nginx knows (`super::TlvName`).
fn tlv_name(name: &str, mode: Mode) -> Result<Option<super::TlvName>, String> {
    let Some(t) = name.strip_prefix("proxy_protocol_tlv_") else {
        return Ok(None);
    };
    if mode != Mode::Http {
        return Err(format!("variable ${name} is not available in tcp mode"));
    }
    super::TlvName::parse(t)
        .map(Some)
        .ok_or_else(|| format!("unknown PROXY TLV name in ${name} (alpn, authority, unique_id, netns, ssl_version, ssl_cn, ssl_cipher, ssl_sig_alg, ssl_key_alg, ssl_verify, aws_vpce_id, 0xNN, ssl_0xNN)"))
}

fn lookup(name: &str, mode: Mode) -> Result<Var, String> {
    match VARS.iter().find(|v| v.0 == name) {
        Some(&(_, var, http, tcp))
            if (mode == Mode::Http && http) || (mode == Mode::Tcp && tcp) =>
        {
            Ok(var)
        }
        Some(_) => Err(format!(
            "variable ${name} is not available in {} mode",
            match mode {
                Mode::Http => "http",
                Mode::Tcp => "tcp",
            }
        )),
        None => Err(format!("unknown variable ${name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_once_and_name_bad_variables() {
        let t =
            Template::compile("$remote_addr [${time_local}] $$x \"$request\"", Mode::Http).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Var(Var::RemoteAddr),
                Piece::Text(" [".into()),
                Piece::Var(Var::TimeLocal),
                Piece::Text("] $x \"".into()),
                Piece::Var(Var::Request),
                Piece::Text("\"".into()),
            ]
        );
        let t = Template::compile(
            "$http_x_forwarded_for|$http_x_forwarded_for|$http_referer",
            Mode::Http,
        )
        .unwrap();
        assert_eq!(t.headers, ["x-forwarded-for"]);
        assert_eq!(t.pieces[0], Piece::Header(0));
        assert_eq!(t.pieces[4], Piece::Var(Var::HttpReferer));
        let e = Template::compile("$http_x_real_ip", Mode::Tcp).unwrap_err();
        assert!(e.contains("unknown variable $http_x_real_ip"), "{e}");
        let e = Template::compile("$remote_addr $nope", Mode::Http).unwrap_err();
        assert!(e.contains("unknown variable $nope"), "{e}");
        let e = Template::compile("$status", Mode::Tcp).unwrap_err();
        assert!(e.contains("$status is not available in tcp mode"), "{e}");
        assert!(Template::compile("${status", Mode::Http).is_err());
        assert_eq!(
            Template::compile("escape=json {\"s\":\"$status\"}", Mode::Http)
                .unwrap()
                .escape,
            Escape::Json
        );
        for (m, f) in [
            (Mode::Http, COMBINED),
            (Mode::Tcp, CONN),
            (Mode::Tcp, TCPLOG),
        ] {
            Template::compile(f, m).unwrap();
        }
        assert!(LineFormat::parse("tcplog", Mode::Http).is_err());
        assert_eq!(
            LineFormat::parse("json", Mode::Tcp).unwrap(),
            LineFormat::Json
        );
    }

    #[test]
    fn targets_parse_nginx_syslog_syntax() {
        assert_eq!(
            LogTarget::parse("/var/log/a.log").unwrap(),
            LogTarget::File("/var/log/a.log".into())
        );
        assert_eq!(
            LogTarget::parse("syslog:server=127.0.0.1:5514,facility=local0,tag=edge").unwrap(),
            LogTarget::Syslog(SyslogTarget {
                server: SyslogServer::Udp("127.0.0.1:5514".parse().unwrap()),
                facility: 16,
                severity: 6,
                tag: "edge".into()
            })
        );
        assert!(matches!(
            LogTarget::parse("syslog:server=unix:/dev/log").unwrap(),
            LogTarget::Syslog(SyslogTarget {
                server: SyslogServer::Unix(_),
                facility: 23,
                ..
            })
        ));
        assert_eq!(
            LogTarget::parse("syslog:/dev/log,tag=edge").unwrap(),
            LogTarget::Syslog(SyslogTarget {
                server: SyslogServer::Unix("/dev/log".into()),
                facility: 23,
                severity: 6,
                tag: "edge".into()
            })
        );
        assert!(matches!(
            LogTarget::parse("syslog:server=[::1]").unwrap(),
            LogTarget::Syslog(SyslogTarget { server: SyslogServer::Udp(a), .. }) if a.port() == 514
        ));
        for bad in [
            "syslog:",
            "syslog:server=logs.example",
            "syslog:server=127.0.0.1,facility=nope",
            "syslog:server=127.0.0.1,tag=a-b",
            "syslog:server=unix:dev/log",
            "syslog:server=127.0.0.1,x=1",
        ] {
            assert!(LogTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
