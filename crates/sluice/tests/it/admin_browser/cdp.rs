//! Just enough of the Chrome DevTools Protocol to click the stats page's real buttons: start
//! headless chromium with `--remote-debugging-port=0`, find the page target, and evaluate one
//! script over a minimal WebSocket client (masked text frames out, whole messages in, size-
//! and time-limited). No other CDP domain, no events; the browser is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{within, ChildGuard};

/// Largest CDP message read (the page's DOM comes back in one).
const MAX_MESSAGE: usize = 8 << 20;

/// A headless chromium showing one page, with its DevTools endpoint.
pub struct Browser {
    _child: ChildGuard,
    _profile: tempfile::TempDir,
    devtools: SocketAddr,
}

impl Browser {
    /// Starts chromium on `url`; returns once DevTools listens.
    pub async fn open(bin: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args(super::HEADLESS)
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        let stderr = child.stderr.take().unwrap();
        let guard = ChildGuard(child);
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let find = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let addr = lines.by_ref().map_while(Result::ok).find_map(|l| {
                let rest = l.split("DevTools listening on ws://").nth(1)?;
                rest.split('/').next()?.parse::<SocketAddr>().ok()
            });
            // Keep draining so chromium never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            addr
        });
        let devtools = within("chromium DevTools line", find)
            .await
            .unwrap()
            .expect("chromium printed no DevTools address");
        Browser {
            _child: guard,
            _profile: profile,
            devtools,
        }
    }

    /// Evaluates `expression` (a promise is awaited) in the first page whose URL starts with
    /// `url_prefix`, waiting for that page to exist; returns the result's value, asking again
    /// while it is null.
    pub async fn eval(&self, url_prefix: &str, expression: &str) -> serde_json::Value {
        let ws_path = within("page target", async {
            loop {
                let list = get_json(self.devtools, "/json/list").await;
                let page = list.as_array().and_then(|ts| {
                    ts.iter().find(|t| {
                        t["type"] == "page"
                            && t["url"].as_str().is_some_and(|u| u.starts_with(url_prefix))
                    })
                });
                if let Some(ws) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                    let path = ws.split_once("//").unwrap().1;
                    break path[path.find('/').unwrap()..].to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        let mut ws = connect_ws(self.devtools, &ws_path).await;
        // The target may still show its first blank document: the script returns null there
        // (or the navigation destroys its context); ask again until the page answers.
        let end = tokio::time::Instant::now() + crate::support::DEADLINE;
        for id in 1u64.. {
            let msg = serde_json::json!({
                "id": id,
                "method": "Runtime.evaluate",
                "params": { "expression": expression, "awaitPromise": true, "returnByValue": true },
            });
            send_text(&mut ws, msg.to_string().as_bytes()).await;
            let reply = loop {
                let reply: serde_json::Value =
                    serde_json::from_slice(&read_message(&mut ws).await).expect("CDP JSON");
                if reply["id"] == id {
                    break reply;
                }
            };
            assert!(
                reply["result"]["exceptionDetails"].is_null(),
                "script failed: {reply}"
            );
            let value = &reply["result"]["result"]["value"];
            if !value.is_null() {
                return value.clone();
            }
            assert!(
                tokio::time::Instant::now() < end,
                "no value from the script: {reply}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        unreachable!()
    }
}

async fn get_json(to: SocketAddr, path: &str) -> serde_json::Value {
    let mut s = within("connect DevTools", TcpStream::connect(to))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // DevTools keeps the connection open: read the head, then Content-Length bytes.
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = within("read DevTools", s.read(&mut buf)).await.unwrap();
        assert!(
            n > 0 && out.len() < MAX_MESSAGE,
            "DevTools answer cut or too large"
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = crate::support::content_length(head).expect("DevTools Content-Length");
        if body.len() >= len {
            return serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        }
    }
}

async fn connect_ws(to: SocketAddr, path: &str) -> TcpStream {
    let mut s = within("connect DevTools", TcpStream::connect(to))
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the 101 head byte by byte so no frame byte is consumed with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "DevTools handshake head too long");
        head.push(within("DevTools handshake", s.read_u8()).await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "DevTools refused the WebSocket: {}",
        String::from_utf8_lossy(&head)
    );
    s
}

async fn send_text(s: &mut TcpStream, payload: &[u8]) {
    let mut f = vec![0x81u8];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x5a, 0x17, 0xc3, 0x2e];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).await.unwrap();
}

/// One whole message (continuation frames joined); control frames are skipped.
async fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut msg = Vec::new();
    loop {
        let mut h = [0u8; 2];
        within("DevTools frame", s.read_exact(&mut h))
            .await
            .unwrap();
        let len = match h[1] & 0x7f {
            126 => within("frame length", s.read_u16()).await.unwrap() as u64,
            127 => within("frame length", s.read_u64()).await.unwrap(),
            n => n as u64,
        };
        assert!(h[1] & 0x80 == 0, "server frames are not masked");
        assert!(
            msg.len() as u64 + len <= MAX_MESSAGE as u64,
            "CDP message too large"
        );
        let mut payload = vec![0u8; len as usize];
        within("frame payload", s.read_exact(&mut payload))
            .await
            .unwrap();
        let opcode = h[0] & 0x0f;
        if opcode >= 0x8 {
            assert!(opcode != 0x8, "DevTools closed the WebSocket");
            continue;
        }
        msg.extend_from_slice(&payload);
        if h[0] & 0x80 != 0 {
            return msg;
        }
    }
}
