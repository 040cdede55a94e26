//! The syslog log target: RFC 5424 lines (`<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID - MSG`)
//! sent as datagrams over UDP or a unix socket (`/dev/log`), never blocking: a full or absent
//! collector drops the line and counts it. No TCP/TLS syslog, no RFC 3164 framing.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use std::time::{Instant, SystemTime};

/// Longest MSG part sent; a longer line is cut at a character boundary.
const MAX_MSG: usize = 8 * 1024;
/// At most one warning about dropped lines per this many seconds.
const WARN_EVERY_SECS: u64 = 10;

/// Where datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyslogDest {
    Udp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug)]
enum Socket {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram, PathBuf),
}

/// One syslog target; lines are sent from the thread that logs them, without waiting.
#[derive(Debug)]
pub(crate) struct Syslog {
    socket: Socket,
    /// `<PRI>1 `.
    pri: String,
    /// ` HOST APP-NAME PROCID `.
    ids: String,
    dropped: AtomicU64,
    /// `sluice_log_dropped_lines_total` of the frontend.
    metric: Counter,
    /// When the last warning about drops was logged, and the count then.
    warned: Mutex<(Option<Instant>, u64)>,
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim().to_string();
    // PRINTUSASCII without spaces, at most 255 (RFC 5424 §6.2.4); else NILVALUE.
    let ok = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        name
    } else {
        "-".into()
    }
}

impl Syslog {
    /// A non-blocking socket for `dest`; `facility` 0..=23, `severity` 0..=7, `tag` the
    /// APP-NAME (already checked by the config); each drop also increments `dropped_metric`.
    pub(crate) fn open(
        dest: &SyslogDest,
        facility: u8,
        severity: u8,
        tag: &str,
        dropped_metric: Counter,
    ) -> io::Result<Syslog> {
        let socket = match dest {
            SyslogDest::Udp(addr) => {
                let any: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("address")
                } else {
                    "[::]:0".parse().expect("address")
                };
                let s = UdpSocket::bind(any)?;
                s.set_nonblocking(true)?;
                Socket::Udp(s, *addr)
            }
            SyslogDest::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.set_nonblocking(true)?;
                Socket::Unix(s, path.clone())
            }
        };
        Ok(Syslog {
            socket,
            pri: format!("<{}>1 ", u32::from(facility) * 8 + u32::from(severity)),
            ids: format!(" {} {tag} {} ", hostname(), std::process::id()),
            dropped: AtomicU64::new(0),
            metric: dropped_metric,
            warned: Mutex::new((None, 0)),
        })
    }

    /// Where the lines go, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.socket {
            Socket::Udp(_, a) => format!("syslog udp {a}"),
            Socket::Unix(_, p) => format!("syslog unix {}", p.display()),
        }
    }

    /// The datagram for `line` (MSGID `msgid`, no structured data).
    pub(crate) fn frame(&self, msgid: &str, line: &str, now: SystemTime) -> String {
        let mut cut = line.len().min(MAX_MSG);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut d = String::with_capacity(self.pri.len() + self.ids.len() + cut + 48);
        d.push_str(&self.pri);
        d.push_str(&super::time::rfc3339_micros(now));
        d.push_str(&self.ids);
        d.push_str(msgid);
        d.push_str(" - ");
        d.push_str(&line[..cut]);
        d
    }

    /// Sends one line without blocking; a failure (collector absent, buffer full) drops it.
    pub(crate) fn send(&self, msgid: &str, line: &str) {
        let d = self.frame(msgid, line, SystemTime::now());
        let r = match &self.socket {
            Socket::Udp(s, a) => s.send_to(d.as_bytes(), a),
            Socket::Unix(s, p) => s.send_to(d.as_bytes(), p),
        };
        if let Err(e) = r {
            self.dropped_one(&e);
        }
    }

    /// Lines dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn dropped_one(&self, e: &io::Error) {
        self.metric.inc();
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let due = w.0.is_none_or(|t| t.elapsed().as_secs() >= WARN_EVERY_SECS);
        if due {
            tracing::warn!(
                "{}: {} access line(s) dropped ({e}); {n} in all",
                self.describe(),
                n - w.1
            );
            *w = (Some(Instant::now()), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn frames_rfc5424_and_counts_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let metric = Counter::default();
        let s = Syslog::open(
            &SyslogDest::Unix(path.clone()),
            23,
            6,
            "sluice",
            metric.clone(),
        )
        .unwrap();
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_250);
        let d = s.frame("access", &"é".repeat(MAX_MSG), t);
        let head = format!(
            "<190>1 2024-02-29T23:59:59.250000Z {} sluice {} access - ",
            hostname(),
            std::process::id()
        );
        assert!(d.starts_with(&head), "{d}");
        assert_eq!(d.len(), head.len() + MAX_MSG);
        // Nobody listens yet: dropped, not blocked.
        s.send("access", "one");
        assert_eq!(s.dropped(), 1);
        assert_eq!(metric.get(), 1);
        let rx = UnixDatagram::bind(&path).unwrap();
        s.send("access", "two");
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with(" access - two"));
        assert_eq!(s.dropped(), 1);
    }
}
