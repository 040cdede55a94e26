//! Helpers for the admin endpoint tests: run the sluice binary with an `[admin]` table and
//! learn the admin address from its log, a tiny HTTP/1.1 client for the admin API, and a
//! reader for one series of the Prometheus text. No assertions live here.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{wait_until, within, write_file, SluiceProcess};

/// Largest admin response the tests read.
const MAX_RESPONSE: usize = 4 << 20;

/// Prepended to every test config: small enough for any fd limit, quick shutdown.
pub const GLOBAL: &str = "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n";

/// `sluice run` on `toml` (which must have an `[admin]` table and no `[global]`) with
/// `listeners` frontend binds; returns the process and the admin address from its log.
pub async fn start(dir: &Path, toml: &str, listeners: usize) -> (SluiceProcess, SocketAddr) {
    let cfg = write_file(dir, "sluice.toml", &format!("{GLOBAL}{toml}"));
    let sl = SluiceProcess::start(&cfg, listeners);
    let lines = sl.stderr.clone();
    let find = move || {
        lines.lock().unwrap().iter().find_map(|l| {
            let rest = &l[l.find("listening admin addr=")? + "listening admin addr=".len()..];
            rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
        })
    };
    let f = find.clone();
    wait_until("admin listening line", move || f().is_some()).await;
    let admin = find().expect("admin address");
    (sl, admin)
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub async fn http(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let host = to.to_string();
    let (status, _, body) = http_full(to, Some(&host), method, path, headers, body).await;
    (status, body)
}

/// The value of response header `name` (case-insensitive) in a response head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// As [`http`], also returning the response head (status line and headers).
pub async fn http_with_head(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let host = to.to_string();
    http_full(to, Some(&host), method, path, headers, body).await
}

/// One HTTP/1.1 request with `Connection: close` and the given `Host` (none when None);
/// returns (status, response head, body).
pub async fn http_full(
    to: SocketAddr,
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = within("connect admin", TcpStream::connect(to))
        .await
        .expect("connect admin");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < MAX_RESPONSE {
        match within("read admin response", s.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Opens a keep-alive connection, makes one `GET path` on it and reads the whole answer
/// (by Content-Length); returns the still-open connection.
pub async fn keep_alive_after_get(to: SocketAddr, path: &str) -> TcpStream {
    let mut s = within("connect admin", TcpStream::connect(to))
        .await
        .expect("connect admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = within("read admin response", s.read(&mut buf))
            .await
            .expect("read");
        assert!(n > 0, "closed before the answer");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = super::content_length(head).expect("content-length");
            if body.len() >= len {
                return s;
            }
        }
        assert!(out.len() < MAX_RESPONSE, "answer too large");
    }
}

/// `GET /api/backends` as JSON.
pub async fn backends(admin: SocketAddr) -> serde_json::Value {
    let (status, body) = http(admin, "GET", "/api/backends", &[], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("backends JSON")
}

/// The admin state shown for `backend`/`server` ("up", "down", "drain", "maint").
pub fn state_of(v: &serde_json::Value, backend: &str, server: &str) -> String {
    v["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == backend))
        .and_then(|b| b["servers"].as_array())
        .and_then(|ss| ss.iter().find(|s| s["name"] == server))
        .and_then(|s| s["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// POST a JSON body to `/api/backends/{b}/servers/{s}`.
pub async fn set(
    admin: SocketAddr,
    backend: &str,
    server: &str,
    json: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let path = format!("/api/backends/{backend}/servers/{server}");
    http(admin, "POST", &path, &headers, json).await
}

/// The value of the series `series` (name plus labels exactly as printed), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Scrapes until `series` satisfies `ok` (bounded by the support deadline); returns the text.
pub async fn scrape_until(admin: SocketAddr, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let end = tokio::time::Instant::now() + super::DEADLINE;
    loop {
        let (status, text) = http(admin, "GET", "/metrics", &[], "").await;
        assert_eq!(status, 200);
        if metric(&text, series).is_some_and(&ok) {
            return text;
        }
        if tokio::time::Instant::now() > end {
            panic!("{series} never reached the expected value:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
