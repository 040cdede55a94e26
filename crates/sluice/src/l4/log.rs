//! The balancer's connection log: one line per connection, rendered with the frontend's
//! `log_format` (default `conn`: real client first, a timestamp, key=value fields; `tcplog`
//! as HAProxy's, with its connection counters; `json`), to the frontend's `access_log` (file or syslog) and, when
//! `access_log_stderr`, to the process log (target `sluice::conn`). Opening files is `log`'s.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::log::{json_records, json_str, push_var, time, LogSink};
use crate::proxy_protocol::ConnId;
use crate::spec::{Escape, LineFormat, Piece, Template, Var};
/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    ClientClosed,
    ServerClosed,
    IdleTimeout,
    ClientError(String),
    ServerError(String),
    /// Every server down (or full until the connect timeout).
    NoServer,
    /// Every attempt to connect failed; the last error.
    ConnectFailed(String),
    /// The PROXY header policy closed the connection: code and detail.
    ProxyRejected {
        code: &'static str,
        reason: String,
    },
    /// Forced closed at the end of the shutdown grace period.
    Shutdown,
    /// Routes by ClientHello: none complete within `preread_timeout`.
    PrereadTimeout,
    /// Routes by ClientHello with `no_hello = "reject"`: why there was none.
    NoHello(String),
}

impl End {
    /// Short stable code for the log's `end=` field.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            End::ClientClosed => "client_close",
            End::ServerClosed => "server_close",
            End::IdleTimeout => "timeout",
            End::ClientError(_) => "client_error",
            End::ServerError(_) => "server_error",
            End::NoServer => "no_server",
            End::ConnectFailed(_) => "connect_failed",
            End::ProxyRejected { .. } => "proxy_rejected",
            End::Shutdown => "shutdown",
            End::PrereadTimeout => "preread_timeout",
            End::NoHello(_) => "no_hello",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            End::ClientError(s) | End::ServerError(s) | End::ConnectFailed(s) | End::NoHello(s) => {
                Some(s.clone())
            }
            End::ProxyRejected { code, reason } => Some(format!("{code}: {reason}")),
            _ => None,
        }
    }
}

/// Everything the connection log line says about one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnRecord {
    /// The connection id (`$connection_id`): a trusted incoming header's UNIQUE_ID, else a
    /// fresh one; the UNIQUE_ID sent to the server when the backend sends one.
    pub conn_id: ConnId,
    pub client: ClientAddr,
    pub peer: PeerAddr,
    pub local: LocalAddr,
    /// When the connection was accepted.
    pub accepted: SystemTime,
    pub frontend: Arc<str>,
    pub backend: Arc<str>,
    pub server: Option<String>,
    /// Time spent waiting for a server slot (`Pool::acquire`), all attempts; None when no
    /// server was asked for.
    pub queue_time: Option<Duration>,
    /// Time from accept until the server connection was established.
    pub connect_time: Option<Duration>,
    pub duration: Duration,
    /// Client bytes delivered to the server (not counting a PROXY header we added).
    pub to_server: u64,
    pub to_client: u64,
    /// Connect attempts that failed before the one that worked (or all of them).
    pub retries: u32,
    /// The SNI of the client's TLS ClientHello, when the backend reads it
    /// (`$ssl_preread_server_name`).
    pub sni: Option<String>,
    /// The ClientHello's offered protocols, comma-separated (`$ssl_preread_alpn_protocols`).
    pub alpn: Option<String>,
    pub end: End,
    /// HAProxy's counters at log time; only taken when the format uses them.
    pub counters: Option<Counters>,
}

/// Connection counts when a line is logged, as HAProxy's tcplog has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Connections open on the whole process (this one included).
    pub actconn: u64,
    /// Connections open on the frontend (this one included).
    pub feconn: u64,
    /// Connections on the backend's servers plus those queued for one.
    pub beconn: u64,
    /// Connections on the server this one used (this one included); 0 without a server.
    pub srv_conn: u64,
    /// Connections waiting in the backend's queue.
    pub backend_queue: u64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Whole milliseconds as HAProxy's timers, -1 when not reached.
fn haproxy_ms(d: Option<Duration>) -> String {
    d.map(|d| d.as_millis().to_string())
        .unwrap_or_else(|| "-1".into())
}

impl End {
    /// HAProxy's two-letter termination state: who ended it (C client, S server, P proxy,
    /// K killed at shutdown, c/s a client/server-side timeout, - normal), in which phase
    /// (C connecting, Q queued, R before the server was chosen, D data).
    fn termination_state(&self) -> &'static str {
        match self {
            End::ClientClosed | End::ServerClosed => "--",
            End::IdleTimeout => "cD",
            End::ClientError(_) => "CD",
            End::ServerError(_) => "SD",
            End::NoServer => "sQ",
            End::ConnectFailed(_) => "SC",
            End::ProxyRejected { .. } => "PR",
            End::Shutdown => "KD",
            End::PrereadTimeout => "cR",
            End::NoHello(_) => "PR",
        }
    }
}

impl ConnRecord {
    /// When the line is written: the end of the connection.
    fn ended(&self) -> SystemTime {
        self.accepted + self.duration
    }

    /// The line in `format`.
    pub(crate) fn line(&self, format: &LineFormat) -> String {
        match format {
            LineFormat::Json => self.to_json(),
            LineFormat::Template(t) => self.render(t),
        }
    }

    /// The line from a template, each variable escaped per the template's `escape`.
    pub(crate) fn render(&self, t: &Template) -> String {
        let json = t.escape == Escape::Json;
        let mut s = String::with_capacity(256);
        t.render(&mut s, |p, out| {
            // Header variables are refused for tcp frontends at config load.
            let value = match p {
                Piece::Var(v) => self.var(*v),
                _ => None,
            };
            push_var(out, value.as_deref().map(str::as_bytes), json)
        });
        s
    }

    /// One variable's value; None when it has none (`-` in text lines).
    fn var(&self, v: Var) -> Option<Cow<'_, str>> {
        let own = |s: String| Some(Cow::Owned(s));
        match v {
            Var::RemoteAddr | Var::ClientIp => own(self.client.addr().ip().to_string()),
            Var::RemotePort | Var::ClientPort => own(self.client.addr().port().to_string()),
            Var::Client => own(self.client.to_string()),
            Var::Peer => own(self.peer.to_string()),
            Var::Local => own(self.local.to_string()),
            Var::TimeLocal => own(time::time_local(self.ended())),
            Var::TimeIso8601 => own(time::iso8601(self.ended())),
            Var::Msec => own(time::msec(self.ended())),
            Var::AcceptDate => own(time::accept_date(self.accepted)),
            Var::Frontend | Var::FrontendName => Some(Cow::Borrowed(&*self.frontend)),
            Var::Backend | Var::BackendName => Some(Cow::Borrowed(&*self.backend)),
            Var::Server => self.server.as_deref().map(Cow::Borrowed),
            Var::ServerName => Some(Cow::Borrowed(self.server.as_deref().unwrap_or("<NOSRV>"))),
            Var::Tw => own(haproxy_ms(self.queue_time)),
            Var::Tc => {
                own(haproxy_ms(self.connect_time.map(|c| {
                    c.saturating_sub(self.queue_time.unwrap_or_default())
                })))
            }
            Var::Tt => own(haproxy_ms(Some(self.duration))),
            Var::ConnectMs => self.connect_time.and_then(|t| own(ms(t).to_string())),
            Var::DurationMs => own(ms(self.duration).to_string()),
            Var::BytesIn => own(self.to_server.to_string()),
            Var::BytesOut | Var::BytesRead => own(self.to_client.to_string()),
            Var::Retries => own(self.retries.to_string()),
            Var::Actconn => self.counters.and_then(|c| own(c.actconn.to_string())),
            Var::Feconn => self.counters.and_then(|c| own(c.feconn.to_string())),
            Var::Beconn => self.counters.and_then(|c| own(c.beconn.to_string())),
            Var::SrvConn => self.counters.and_then(|c| own(c.srv_conn.to_string())),
            // sluice queues per backend, never per server.
            Var::SrvQueue => Some(Cow::Borrowed("0")),
            Var::BackendQueue => self.counters.and_then(|c| own(c.backend_queue.to_string())),
            Var::TerminationState => Some(Cow::Borrowed(self.end.termination_state())),
            Var::End => Some(Cow::Borrowed(self.end.code())),
            Var::Reason => self.end.detail().map(Cow::Owned),
            Var::ConnectionId => Some(Cow::Borrowed(self.conn_id.as_str())),
            Var::SslPrereadServerName => self.sni.as_deref().map(Cow::Borrowed),
            Var::SslPrereadAlpnProtocols => self.alpn.as_deref().map(Cow::Borrowed),
            // http-only variables are refused for tcp frontends at config load.
            _ => None,
        }
    }

    /// The record as one JSON object (`log_format = "json"`, and the process log's JSON
    /// format).
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::with_capacity(320);
        let t = self
            .ended()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let _ = write!(
            s,
            "{{\"client\":\"{}\",\"peer\":\"{}\",\"local\":\"{}\",\"time\":{:.3},\"time_iso8601\":\"{}\",\"accept_date\":\"{}\",\"frontend\":{},\"backend\":{},\"server\":{},",
            self.client,
            self.peer,
            self.local,
            t,
            time::iso8601(self.ended()),
            time::accept_date(self.accepted),
            json_str(&self.frontend),
            json_str(&self.backend),
            self.server.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
        );
        match self.connect_time {
            Some(t) => {
                let _ = write!(s, "\"connect_ms\":{},", ms(t));
            }
            None => s.push_str("\"connect_ms\":null,"),
        }
        let _ = write!(
            s,
            "\"duration_ms\":{},\"bytes_in\":{},\"bytes_out\":{},\"retries\":{},\"end\":\"{}\",\"termination_state\":\"{}\"",
            ms(self.duration),
            self.to_server,
            self.to_client,
            self.retries,
            self.end.code(),
            self.end.termination_state(),
        );
        if let Some(d) = self.end.detail() {
            let _ = write!(s, ",\"reason\":{}", json_str(&d));
        }
        let _ = write!(
            s,
            ",\"connection_id\":{}}}",
            json_str(self.conn_id.as_str())
        );
        s
    }
}

/// Where a frontend's connection lines go, and what they say.
#[derive(Debug, Clone)]
pub(crate) struct ConnLog {
    pub sink: Option<LogSink>,
    pub format: Arc<LineFormat>,
    /// Also to the process log (target `sluice::conn`, at info).
    pub stderr: bool,
}

impl ConnLog {
    /// Emits the record to the process log (when `stderr` and `sluice::conn` is enabled at
    /// info; as a flat JSON record with `--log-format json`) and to the sink when set. Nothing
    /// is formatted when nobody reads it.
    pub(crate) fn emit(&self, rec: &ConnRecord) {
        let traced = self.stderr && tracing::enabled!(target: "sluice::conn", tracing::Level::INFO);
        if !traced && self.sink.is_none() {
            return;
        }
        if traced && json_records() {
            tracing::info!(target: "sluice::conn", json_record = %rec.to_json());
            if self.sink.is_none() {
                return;
            }
        }
        let line = rec.line(&self.format);
        if traced && !json_records() {
            tracing::info!(target: "sluice::conn", "{line}");
        }
        if let Some(sink) = &self.sink {
            sink.write_line("conn", &line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Mode, CONN, TCPLOG};

    fn record(end: End) -> ConnRecord {
        ConnRecord {
            conn_id: ConnId::from_unique_id(b"c0ffee").unwrap(),
            client: ClientAddr::direct(PeerAddr("127.0.0.2:5000".parse().unwrap())),
            peer: PeerAddr("127.0.0.1:6000".parse().unwrap()),
            local: LocalAddr("127.0.0.1:443".parse().unwrap()),
            // 2026-11-25 13:28:22.250 UTC
            accepted: UNIX_EPOCH + Duration::from_millis(1_795_613_302_250),
            frontend: "fe".into(),
            backend: "be".into(),
            server: Some("s1".into()),
            queue_time: Some(Duration::from_micros(200)),
            connect_time: Some(Duration::from_micros(1500)),
            duration: Duration::from_millis(20),
            to_server: 10,
            to_client: 20,
            retries: 0,
            sni: Some("app.example".into()),
            alpn: None,
            end,
            counters: Some(Counters {
                actconn: 7,
                feconn: 3,
                beconn: 2,
                srv_conn: 1,
                backend_queue: 0,
            }),
        }
    }

    fn fmt(t: &str) -> LineFormat {
        LineFormat::parse(t, Mode::Tcp).unwrap()
    }

    #[test]
    fn line_starts_with_client_has_a_time_and_names_the_end() {
        let line = record(End::ClientClosed).line(&fmt(CONN));
        assert!(
            line.starts_with("127.0.0.2:5000 peer=127.0.0.1:6000 time=2026-11-25T13:28:22+00:00 "),
            "{line}"
        );
        for part in [
            "frontend=fe",
            "backend=be",
            "server=s1",
            "connect_ms=1.5",
            "duration_ms=20",
            "bytes_in=10",
            "bytes_out=20",
            "end=client_close reason=\"-\" id=c0ffee",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
        let rej = record(End::ProxyRejected {
            code: "timeout",
            reason: "no header \"x\"".into(),
        });
        let line = rej.line(&fmt(CONN));
        assert!(
            line.contains("end=proxy_rejected reason=\"timeout: no header \\x22x\\x22\""),
            "{line}"
        );
        let json = rej.to_json();
        assert!(json.starts_with("{\"client\":\"127.0.0.2:5000\""), "{json}");
        assert!(
            json.contains("\"reason\":\"timeout: no header \\\"x\\\"\""),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["accept_date"], "25/Nov/2026:13:28:22.250");
        assert_eq!(v["termination_state"], "PR");
        assert_eq!(v["connection_id"], "c0ffee");
    }

    #[test]
    fn tcplog_is_haproxys_and_templates_take_any_variable() {
        assert_eq!(
            record(End::ServerClosed).line(&fmt(TCPLOG)),
            "127.0.0.2:5000 [25/Nov/2026:13:28:22.250] fe be/s1 0/1/20 20 -- 7/3/2/1/0 0/0"
        );
        let mut r = record(End::NoServer);
        (r.server, r.connect_time) = (None, None);
        assert_eq!(
            r.line(&fmt(TCPLOG)),
            "127.0.0.2:5000 [25/Nov/2026:13:28:22.250] fe be/<NOSRV> 0/-1/20 20 sQ 7/3/2/1/0 0/0"
        );
        assert_eq!(
            r.line(&fmt(
                "escape=json {\"s\":\"$server\",\"t\":\"$termination_state\",\"ms\":$msec}"
            )),
            "{\"s\":\"\",\"t\":\"sQ\",\"ms\":1795613302.270}"
        );
    }
}
