//! The demo's built-in app: a tiny uwsgi-protocol server on a unix socket that answers every
//! request with plain text saying who the client is (REMOTE_ADDR:REMOTE_PORT), which edge
//! served it, the TLS version and whether the session was resumed, and prints one line per
//! request. It is not a general uwsgi server: no WSGI, no keep-alive, no chunked bodies.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The whole request (header + vars + body) must arrive within this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing the answer must finish within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body read (and thrown away); larger requests get 413.
pub const MAX_BODY: u64 = 8 << 20;
/// Requests served at once per app; more wait in the listen backlog.
pub const MAX_CONCURRENT: usize = 256;

/// Why a uwsgi packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("uwsgi header needs 4 bytes, got {0}")]
    ShortHeader(usize),
    #[error("uwsgi modifier1 {0} is not 0 (a WSGI/HTTP request)")]
    Modifier(u8),
    #[error("uwsgi vars block is {expected} bytes, got {got}")]
    Size { expected: usize, got: usize },
    #[error("uwsgi vars block ends inside a {0}")]
    Truncated(&'static str),
    #[error("uwsgi var {0:?} is not UTF-8")]
    NotUtf8(String),
}

/// The 4-byte uwsgi header: modifier1, the vars block size, modifier2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub modifier1: u8,
    pub size: u16,
    pub modifier2: u8,
}

/// Parses the 4-byte header (u8 modifier1, u16 LE size, u8 modifier2); only modifier1 0.
pub fn parse_header(b: &[u8]) -> Result<PacketHeader, PacketError> {
    let h: &[u8; 4] = b
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(PacketError::ShortHeader(b.len()))?;
    if h[0] != 0 {
        return Err(PacketError::Modifier(h[0]));
    }
    Ok(PacketHeader {
        modifier1: h[0],
        size: u16::from_le_bytes([h[1], h[2]]),
        modifier2: h[3],
    })
}

/// Parses a vars block of exactly `header.size` bytes: (u16 LE keylen, key, u16 LE vallen,
/// val)*. A repeated key keeps its last value. Keys and values must be UTF-8 (lossy would hide
/// bugs in the sender; the demo's values are all ASCII).
pub fn parse_vars(
    header: &PacketHeader,
    block: &[u8],
) -> Result<HashMap<String, String>, PacketError> {
    if block.len() != header.size as usize {
        return Err(PacketError::Size {
            expected: header.size as usize,
            got: block.len(),
        });
    }
    let mut vars = HashMap::new();
    let mut rest = block;
    while !rest.is_empty() {
        let key = take_string(&mut rest, "key")?;
        let val = take_string(&mut rest, "value")?;
        vars.insert(key, val);
    }
    Ok(vars)
}

fn take_string(rest: &mut &[u8], what: &'static str) -> Result<String, PacketError> {
    let len_bytes = rest.get(..2).ok_or(PacketError::Truncated(what))?;
    let len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let bytes = rest.get(2..2 + len).ok_or(PacketError::Truncated(what))?;
    *rest = &rest[2 + len..];
    String::from_utf8(bytes.to_vec())
        .map_err(|e| PacketError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Who this app instance is: the edge it sits behind.
#[derive(Debug, Clone)]
pub struct AppIdentity {
    /// "edge-a".
    pub name: String,
    /// "127.0.0.11:8443".
    pub edge_addr: String,
}

/// `ip:port` with brackets for IPv6, as clients print addresses.
fn host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn var<'a>(vars: &'a HashMap<String, String>, key: &str) -> &'a str {
    vars.get(key).map(String::as_str).unwrap_or("")
}

/// The answer body for one request.
pub fn render_body(id: &AppIdentity, vars: &HashMap<String, String>) -> String {
    let client = host_port(var(vars, "REMOTE_ADDR"), var(vars, "REMOTE_PORT"));
    let reached = host_port(var(vars, "SERVER_ADDR"), var(vars, "SERVER_PORT"));
    let tls = match vars.get("SSL_PROTOCOL").map(String::as_str) {
        Some(v) if !v.is_empty() => v,
        _ if var(vars, "HTTPS") == "on" => "unknown version",
        _ => "none",
    };
    let resumed = match var(vars, "SSL_SESSION_REUSED") {
        "r" => "yes",
        "." => "no",
        _ => "unknown",
    };
    format!(
        "hello from sluice demo\n\
         client:   {client}\n\
         edge:     {} ({})\n\
         tls:      {tls}, session resumed: {resumed}\n\
         request:  {} {} {}, addressed to {reached}\n",
        id.name,
        id.edge_addr,
        var(vars, "REQUEST_METHOD"),
        var(vars, "REQUEST_URI"),
        var(vars, "SERVER_PROTOCOL"),
    )
}

/// One log line for one request (printed on stdout by the demo).
pub fn log_line(id: &AppIdentity, vars: &HashMap<String, String>) -> String {
    format!(
        "{}: {} {} client={} tls={} resumed={}",
        id.name,
        var(vars, "REQUEST_METHOD"),
        var(vars, "REQUEST_URI"),
        host_port(var(vars, "REMOTE_ADDR"), var(vars, "REMOTE_PORT")),
        vars.get("SSL_PROTOCOL").map_or("-", String::as_str),
        vars.get("SSL_SESSION_REUSED").map_or("-", String::as_str),
    )
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request from `io` and answers it. `Ok(Ok(line))`: served, `line` is its log
/// line; `Ok(Err(why))`: refused (answered 400 or 413) or timed out reading (not answered);
/// `Err`: the socket failed (closed early, reset, write timeout).
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    id: &AppIdentity,
) -> io::Result<Result<String, String>> {
    let read = tokio::time::timeout(READ_TIMEOUT, read_request(io)).await;
    let (status, body, outcome) = match read {
        Err(_) => return Ok(Err("request read timed out".into())),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(Refused::Bad(why)))) => ("400 Bad Request", format!("{why}\n"), Err(why)),
        Ok(Ok(Err(Refused::TooLarge(n)))) => (
            "413 Payload Too Large",
            format!("body of {n} bytes is over the demo's {MAX_BODY}\n"),
            Err(format!("body of {n} bytes refused")),
        ),
        Ok(Ok(Ok(vars))) => ("200 OK", render_body(id, &vars), Ok(log_line(id, &vars))),
    };
    let bytes = response(status, &body);
    tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the answer timed out"))??;
    Ok(outcome)
}

enum Refused {
    Bad(String),
    TooLarge(u64),
}

async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
) -> io::Result<Result<HashMap<String, String>, Refused>> {
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await?;
    let header = match parse_header(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(Refused::Bad(e.to_string()))),
    };
    // The size is a u16: the block is at most 64 KiB, the protocol's own limit.
    let mut block = vec![0u8; header.size as usize];
    io.read_exact(&mut block).await?;
    let vars = match parse_vars(&header, &block) {
        Ok(v) => v,
        Err(e) => return Ok(Err(Refused::Bad(e.to_string()))),
    };
    let len = match var(&vars, "CONTENT_LENGTH") {
        "" => 0,
        s => match s.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return Ok(Err(Refused::Bad(format!("bad CONTENT_LENGTH {s:?}")))),
        },
    };
    if len > MAX_BODY {
        return Ok(Err(Refused::TooLarge(len)));
    }
    let discarded = tokio::io::copy(&mut (&mut *io).take(len), &mut tokio::io::sink()).await?;
    if discarded != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended after {discarded} of {len} bytes"),
        ));
    }
    Ok(Ok(vars))
}

/// Serves `listener` until `stop` is cancelled, printing one line per request on stdout.
/// Connections in progress when `stop` fires are waited for (each is bounded by the read and
/// write timeouts).
pub async fn serve(listener: UnixListener, id: AppIdentity, stop: CancellationToken) {
    let id = Arc::new(id);
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let mut stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(app = %id.name, "accept failed: {e}");
                // Out of descriptors and the like: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = id.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match handle(&mut stream, &id).await {
                Ok(Ok(line)) => println!("{line}"),
                Ok(Err(why)) => println!("{}: refused a request: {why}", id.name),
                Err(e) => tracing::debug!(app = %id.name, "request failed: {e}"),
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a uwsgi packet the way `upstream::uwsgi` does.
    fn packet(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (k, v) in vars {
            block.extend_from_slice(&(k.len() as u16).to_le_bytes());
            block.extend_from_slice(k.as_bytes());
            block.extend_from_slice(&(v.len() as u16).to_le_bytes());
            block.extend_from_slice(v.as_bytes());
        }
        let mut out = vec![0];
        out.extend_from_slice(&(block.len() as u16).to_le_bytes());
        out.push(0);
        out.extend_from_slice(&block);
        out
    }

    fn id() -> AppIdentity {
        AppIdentity {
            name: "edge-a".into(),
            edge_addr: "127.0.0.11:8443".into(),
        }
    }

    fn parse(p: &[u8]) -> Result<HashMap<String, String>, PacketError> {
        let h = parse_header(p)?;
        parse_vars(&h, &p[4..])
    }

    #[test]
    fn parses_vars_and_renders_the_answer() {
        let p = packet(&[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/x?y=1"),
            ("SERVER_PROTOCOL", "HTTP/2.0"),
            ("REMOTE_ADDR", "127.0.0.2"),
            ("REMOTE_PORT", "51234"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "8443"),
            ("HTTPS", "on"),
            ("SSL_PROTOCOL", "TLSv1.3"),
            ("SSL_SESSION_REUSED", "r"),
            ("EMPTY", ""),
        ]);
        let vars = parse(&p).unwrap();
        assert_eq!(vars["REMOTE_ADDR"], "127.0.0.2");
        assert_eq!(vars["EMPTY"], "");
        let body = render_body(&id(), &vars);
        assert_eq!(
            body,
            "hello from sluice demo\n\
             client:   127.0.0.2:51234\n\
             edge:     edge-a (127.0.0.11:8443)\n\
             tls:      TLSv1.3, session resumed: yes\n\
             request:  GET /x?y=1 HTTP/2.0, addressed to 127.0.0.1:8443\n"
        );
        assert_eq!(
            log_line(&id(), &vars),
            "edge-a: GET /x?y=1 client=127.0.0.2:51234 tls=TLSv1.3 resumed=r"
        );
    }

    #[test]
    fn ipv6_client_and_missing_tls_vars() {
        let p = packet(&[("REMOTE_ADDR", "::1"), ("REMOTE_PORT", "4000")]);
        let body = render_body(&id(), &parse(&p).unwrap());
        assert!(body.contains("client:   [::1]:4000\n"), "{body}");
        assert!(
            body.contains("tls:      none, session resumed: unknown\n"),
            "{body}"
        );
        let p = packet(&[("HTTPS", "on"), ("SSL_SESSION_REUSED", ".")]);
        let body = render_body(&id(), &parse(&p).unwrap());
        assert!(
            body.contains("tls:      unknown version, session resumed: no\n"),
            "{body}"
        );
    }

    #[test]
    fn bad_packets_are_errors() {
        assert_eq!(parse(&[0, 1]), Err(PacketError::ShortHeader(2)));
        assert_eq!(parse(&[5, 0, 0, 0]), Err(PacketError::Modifier(5)));
        assert_eq!(
            parse(&[0, 3, 0, 0, 1]),
            Err(PacketError::Size {
                expected: 3,
                got: 1
            })
        );
        // Key length says 5, only 1 byte follows.
        assert_eq!(
            parse(&[0, 3, 0, 0, 5, 0, b'a']),
            Err(PacketError::Truncated("key"))
        );
        // Key "a" then a value length with one byte missing.
        assert_eq!(
            parse(&[0, 4, 0, 0, 1, 0, b'a', 9]),
            Err(PacketError::Truncated("value"))
        );
        assert!(matches!(
            parse(&[0, 6, 0, 0, 1, 0, 0xff, 1, 0, b'v']),
            Err(PacketError::NotUtf8(_))
        ));
    }

    #[test]
    fn every_prefix_and_byte_flip_is_handled_without_panic() {
        let p = packet(&[("REMOTE_ADDR", "127.0.0.2"), ("REMOTE_PORT", "1")]);
        for cut in 0..=p.len() {
            let prefix = &p[..cut];
            if let Ok(h) = parse_header(prefix) {
                let _ = parse_vars(&h, &prefix[4..]);
            }
        }
        for i in 0..p.len() {
            for bit in 0..8 {
                let mut q = p.clone();
                q[i] ^= 1 << bit;
                if let Ok(h) = parse_header(&q) {
                    let end = (4 + h.size as usize).min(q.len());
                    let _ = parse_vars(&h, &q[4..end]);
                }
            }
        }
    }

    #[tokio::test]
    async fn answers_over_a_socket_and_discards_the_body() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut req = packet(&[
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/"),
            ("CONTENT_LENGTH", "5"),
            ("REMOTE_ADDR", "127.0.0.2"),
            ("REMOTE_PORT", "7"),
        ]);
        req.extend_from_slice(b"hello");
        client.write_all(&req).await.unwrap();
        let logged = handle(&mut server, &id()).await.unwrap().unwrap();
        assert_eq!(logged, "edge-a: POST / client=127.0.0.2:7 tls=- resumed=-");
        drop(server);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("client:   127.0.0.2:7\n"));
    }

    #[tokio::test]
    async fn refuses_bad_packets_and_huge_bodies_with_an_answer() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&[9, 0, 0, 0]).await.unwrap();
        let why = handle(&mut server, &id()).await.unwrap().unwrap_err();
        assert!(why.contains("modifier1 9"), "{why}");
        drop(server);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");

        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let big = (MAX_BODY + 1).to_string();
        client
            .write_all(&packet(&[("CONTENT_LENGTH", &big)]))
            .await
            .unwrap();
        handle(&mut server, &id()).await.unwrap().unwrap_err();
        drop(server);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let got = handle(&mut server, &id()).await.unwrap();
        assert_eq!(got, Err("request read timed out".into()));
    }
}
