//! The balancer's connection log: one line per connection (first field: the real client
//! address) to tracing at info and, when the frontend sets `access_log`, to that file, as
//! text or JSON. Opening and reopening files is `crate::log`'s.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::log::{json_str, LogFile};

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
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            End::ClientError(s) | End::ServerError(s) | End::ConnectFailed(s) => Some(s.clone()),
            End::ProxyRejected { code, reason } => Some(format!("{code}: {reason}")),
            _ => None,
        }
    }
}

/// Everything the connection log line says about one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnRecord {
    pub client: ClientAddr,
    pub peer: PeerAddr,
    pub local: LocalAddr,
    pub frontend: Arc<str>,
    pub backend: Arc<str>,
    pub server: Option<String>,
    /// Time from accept until the server connection was established.
    pub connect_time: Option<Duration>,
    pub duration: Duration,
    /// Client bytes delivered to the server (not counting a PROXY header we added).
    pub to_server: u64,
    pub to_client: u64,
    /// Connect attempts that failed before the one that worked (or all of them).
    pub retries: u32,
    pub end: End,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl fmt::Display for ConnRecord {
    /// `CLIENT peer=.. frontend=.. backend=.. server=.. connect_ms=.. duration_ms=..
    /// bytes_in=.. bytes_out=.. retries=.. end=CODE [reason="..."]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} peer={} local={} frontend={} backend={} server={}",
            self.client,
            self.peer,
            self.local,
            self.frontend,
            self.backend,
            self.server.as_deref().unwrap_or("-")
        )?;
        match self.connect_time {
            Some(t) => write!(f, " connect_ms={}", ms(t))?,
            None => f.write_str(" connect_ms=-")?,
        }
        write!(
            f,
            " duration_ms={} bytes_in={} bytes_out={} retries={} end={}",
            ms(self.duration),
            self.to_server,
            self.to_client,
            self.retries,
            self.end.code()
        )?;
        if let Some(d) = self.end.detail() {
            write!(f, " reason={d:?}")?;
        }
        Ok(())
    }
}

impl ConnRecord {
    /// The same record as one JSON object (for `access_log_format = "json"`).
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "{{\"client\":\"{}\",\"peer\":\"{}\",\"local\":\"{}\",\"time\":{:.3},\"frontend\":{},\"backend\":{},\"server\":{},",
            self.client,
            self.peer,
            self.local,
            epoch(),
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
            "\"duration_ms\":{},\"bytes_in\":{},\"bytes_out\":{},\"retries\":{},\"end\":\"{}\"",
            ms(self.duration),
            self.to_server,
            self.to_client,
            self.retries,
            self.end.code()
        );
        if let Some(d) = self.end.detail() {
            let _ = write!(s, ",\"reason\":{}", json_str(&d));
        }
        s.push('}');
        s
    }
}

/// Where a frontend's connection lines go.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnLog {
    pub file: Option<Arc<LogFile>>,
    pub json: bool,
}

impl ConnLog {
    /// Emits the record to tracing (target `sluice::conn`) and to the file when set.
    pub(crate) fn emit(&self, rec: &ConnRecord) {
        tracing::info!(target: "sluice::conn", "{rec}");
        if let Some(file) = &self.file {
            let line = if self.json {
                rec.to_json()
            } else {
                rec.to_string()
            };
            if let Err(e) = file.write_line(&line) {
                tracing::warn!("cannot write to {}: {e}", file.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(end: End) -> ConnRecord {
        ConnRecord {
            client: ClientAddr::direct(PeerAddr("127.0.0.2:5000".parse().unwrap())),
            peer: PeerAddr("127.0.0.1:6000".parse().unwrap()),
            local: LocalAddr("127.0.0.1:443".parse().unwrap()),
            frontend: "fe".into(),
            backend: "be".into(),
            server: Some("s1".into()),
            connect_time: Some(Duration::from_micros(1500)),
            duration: Duration::from_millis(20),
            to_server: 10,
            to_client: 20,
            retries: 0,
            end,
        }
    }

    #[test]
    fn line_starts_with_client_and_names_the_end() {
        let line = record(End::ClientClosed).to_string();
        assert!(line.starts_with("127.0.0.2:5000 "), "{line}");
        for part in [
            "frontend=fe",
            "backend=be",
            "server=s1",
            "connect_ms=1.5",
            "duration_ms=20",
            "bytes_in=10",
            "bytes_out=20",
            "end=client_close",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
        let rej = record(End::ProxyRejected {
            code: "timeout",
            reason: "no header \"x\"".into(),
        });
        let line = rej.to_string();
        assert!(
            line.contains("end=proxy_rejected reason=\"timeout: no header \\\"x\\\"\""),
            "{line}"
        );
        let json = rej.to_json();
        assert!(json.starts_with("{\"client\":\"127.0.0.2:5000\""), "{json}");
        assert!(
            json.contains("\"reason\":\"timeout: no header \\\"x\\\"\""),
            "{json}"
        );
    }
}
