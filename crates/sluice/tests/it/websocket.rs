//! WebSocket through both tiers (#16), real peers on loopback: a client at 127.0.0.2 → a
//! sluice balancer (PROXY v2) → the sluice edge (TLS) → the real uWSGI running
//! `uwsgi.websocket_*`, and → a Python `websockets` server (HTTP app). Over HTTP/1.1
//! `Upgrade` and HTTP/2 extended CONNECT (RFC 8441, the `h2` crate as client): 1 000 messages
//! of 1 B–64 KiB echoed byte-exact, ping/pong, the close handshake, the app sees the real
//! client address; one access line per tunnel with its bytes; the upgrade metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::support::edge::*;
use crate::support::ws::*;
use crate::support::*;

/// uWSGI's own WebSocket API: greets with REMOTE_ADDR, then echoes every message (binary).
/// A request without `Upgrade: websocket` gets 400.
const UWSGI_APP: &str = r#"
import uwsgi

def application(env, start_response):
    if env.get("HTTP_UPGRADE", "").lower() != "websocket":
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"not a websocket\n"]
    uwsgi.websocket_handshake(env["HTTP_SEC_WEBSOCKET_KEY"], env.get("HTTP_ORIGIN", ""))
    uwsgi.websocket_send(("addr=" + env["REMOTE_ADDR"]).encode())
    while True:
        msg = uwsgi.websocket_recv()
        uwsgi.websocket_send_binary(msg)
"#;

/// Python `websockets` (Debian's 10.4) on a unix socket: greets with X-Real-IP, echoes.
const HTTP_APP: &str = r#"
import asyncio, sys, websockets

async def handler(ws):
    await ws.send("addr=" + ws.request_headers.get("X-Real-IP", "-"))
    async for msg in ws:
        await ws.send(msg)

async def main():
    async with websockets.unix_serve(handler, sys.argv[1], max_size=2**20, compression=None):
        await asyncio.Future()

asyncio.run(main())
"#;

/// The `websockets` app on `<dir>/ws.sock`; None after a SKIP line without Debian's python3
/// or its websockets package.
async fn start_http_app(dir: &Path) -> Option<(ChildGuard, PathBuf)> {
    let py = tool("python3", &["/usr/bin/python3"])?;
    let ok = std::process::Command::new(&py)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("python3-websockets (import websockets)");
        return None;
    }
    let app = write_file(dir, "ws_app.py", HTTP_APP);
    let sock = dir.join("ws.sock");
    let (a, s) = (app.display().to_string(), sock.display().to_string());
    let mut child = spawn_peer(&py, &[&a, &s], &dir.join("ws_app.log"));
    wait_ready(
        "websockets app",
        &mut child,
        &dir.join("ws_app.log"),
        Probe::Unix(sock.clone()),
    )
    .await;
    Some((child, sock))
}

/// The edge frontends (TLS, PROXY from the balancer) and the balancers in front of them.
fn edges(dir: &Path, tls: &str, uw: &Path, ht: &Path) -> String {
    let edge = |name: &str, backend: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"{backend}\"\naccess_log = \"{d}/{name}.log\"\n\
             log_format = \"$remote_addr \\\"$request\\\" $status $body_bytes_sent $bytes_in $upstream_name\"\n\
             proxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n{tls}\n\n",
            d = dir.display()
        )
    };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}\
         [[backend]]\nname = \"ws_uw\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"unix:{}\"\n\n\
         [[backend]]\nname = \"ws_ht\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"unix:{}\"\n",
        edge("ws_edge_uw", "ws_uw"),
        edge("ws_edge_ht", "ws_ht"),
        uw.display(),
        ht.display()
    )
}

fn balancers(edges: &Sluice) -> String {
    let lb = |name: &str, to: SocketAddr| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}\"\n\n\
             [[backend]]\nname = \"{name}\"\nsend_proxy = \"v2\"\n[[backend.servers]]\naddr = \"{to}\"\n\n"
        )
    };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}",
        lb("ws_lb_uw", edges.addr("ws_edge_uw")),
        lb("ws_lb_ht", edges.addr("ws_edge_ht"))
    )
}

/// TLS from 127.0.0.2 to `to`, offering `alpn`.
async fn tls_from_client(
    to: SocketAddr,
    der: &[u8],
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    within("tls", tls_connector(der, &[alpn]).connect(name, tcp))
        .await
        .unwrap()
}

/// The RFC 6455 §1.3 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket over HTTP/1.1 (`Upgrade`) through TLS to `to`.
async fn ws_h1(to: SocketAddr, der: &[u8]) -> Ws {
    let mut tls = tls_from_client(to, der, b"http/1.1").await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(head.contains(ACCEPT), "{head}");
    Ws::new(Transport::Io(Box::new(tls)), &rest)
}

/// A WebSocket over HTTP/2 extended CONNECT (RFC 8441) through TLS to `to`.
async fn ws_h2(to: SocketAddr, der: &[u8]) -> Ws {
    let tls = tls_from_client(to, der, b"h2").await;
    let (client, conn) = within("h2 handshake", h2::client::handshake(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = within("h2 ready", client.ready()).await.unwrap();
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive with its preface.
    let probe = client.clone();
    wait_until("SETTINGS_ENABLE_CONNECT_PROTOCOL", move || {
        probe.is_extended_connect_protocol_enabled()
    })
    .await;
    let mut req = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(format!("https://{HOST}/ws"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (resp, tx) = client.send_request(req, false).unwrap();
    let resp = within("h2 CONNECT answer", resp).await.unwrap();
    assert_eq!(resp.status(), 200, "{resp:?}");
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    Ws::new(Transport::H2(tx, resp.into_body()), &[])
}

/// The size of message `i`: 1 B, 64 KiB, and between them spread evenly over the powers of
/// two (log-uniform: as many messages under 100 B as over 10 KiB; ~6 KiB on average).
fn size(i: usize) -> usize {
    match i {
        0 => 1,
        1 => 64 * 1024,
        _ => {
            let u = ((i * 617) % 1000) as f64 / 999.0;
            (2f64.powf(16.0 * u) as usize).clamp(1, 64 * 1024)
        }
    }
}

fn message(i: usize) -> Vec<u8> {
    let mut x = (i as u32).wrapping_mul(2_654_435_761) | 1;
    (0..size(i))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The next data message, answering (and skipping) the app's pings.
async fn recv_data(ws: &mut Ws) -> Option<(u8, Vec<u8>)> {
    loop {
        match ws.recv().await? {
            (PING, p) => ws.send(PONG, &p).await,
            (PONG, _) => {}
            m => return Some(m),
        }
    }
}

/// Greeting (the client address), ping/pong, 1 000 echoes, the close handshake. `uwsgi`:
/// uWSGI 2.0 answers a ping with an empty pong and a CLOSE with a CLOSE without status (or
/// only ends the connection); Python websockets echoes both payloads (RFC 6455 §5.5).
async fn session(mut ws: Ws, what: &str, uwsgi: bool) {
    let (op, greeting) = recv_data(&mut ws).await.expect("greeting");
    assert_eq!(op, TEXT, "{what}");
    assert_eq!(
        String::from_utf8_lossy(&greeting),
        "addr=127.0.0.2",
        "{what}"
    );
    ws.send(PING, b"are you there").await;
    let pong = if uwsgi { &b""[..] } else { b"are you there" };
    assert_eq!(ws.recv().await, Some((PONG, pong.to_vec())), "{what}");
    for i in 0..1000 {
        let m = message(i);
        ws.send(BINARY, &m).await;
        let (op, got) = recv_data(&mut ws).await.expect("echo");
        assert_eq!(op, BINARY, "{what} message {i}");
        assert!(
            got == m,
            "{what} message {i}: {} bytes back for {}",
            got.len(),
            m.len()
        );
    }
    ws.send(CLOSE, &1000u16.to_be_bytes()).await;
    match recv_data(&mut ws).await {
        // A CLOSE may carry no status (RFC 6455 §5.5.1): uWSGI's does not.
        Some((CLOSE, p)) if p.is_empty() => assert!(uwsgi, "{what}: CLOSE without status"),
        Some((CLOSE, p)) => assert_eq!(p.get(..2), Some(&1000u16.to_be_bytes()[..]), "{what}"),
        None => assert!(uwsgi, "{what}: no CLOSE back"),
        Some(m) => panic!("{what}: {m:?} after CLOSE"),
    }
    ws.finish().await;
    assert_eq!(recv_data(&mut ws).await, None, "{what}: the tunnel ends");
}

fn upgraded_total(frontend: &str) -> u64 {
    let text = sluice::metrics::global().encode(&[]);
    let series = format!(
        "sluice_upgraded_connections_total{{frontend=\"{frontend}\",protocol=\"websocket\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn websocket_echo_through_balancer_and_tls_edge_to_uwsgi_and_http_apps() {
    let dir = tempfile::tempdir().unwrap();
    let uw = start_uwsgi_wsgi(dir.path(), UWSGI_APP, &[]).await;
    let ht = start_http_app(dir.path()).await;
    if uw.is_none() && ht.is_none() {
        return;
    }
    let (tls, der) = tls_table(dir.path());
    let dead = dir.path().join("nobody.sock");
    let uw_sock = uw.as_ref().map_or(dead.clone(), |u| u.1.clone());
    let ht_sock = ht.as_ref().map_or(dead, |h| h.1.clone());
    let edges = Sluice::start(&edges(dir.path(), &tls, &uw_sock, &ht_sock)).await;
    let lbs = Sluice::start(&balancers(&edges)).await;

    for (name, present, uwsgi) in [("uw", uw.is_some(), true), ("ht", ht.is_some(), false)] {
        if !present {
            continue;
        }
        let (lb, fe) = (
            lbs.addr(&format!("ws_lb_{name}")),
            format!("ws_edge_{name}"),
        );
        let before = upgraded_total(&fe);
        session(ws_h1(lb, &der).await, &format!("{name} HTTP/1.1"), uwsgi).await;
        let log = dir.path().join(format!("{fe}.log"));
        let line = wait_for_log_line(&log, &["GET /ws HTTP/1.1", " 101 "]).await;
        assert!(line.starts_with("127.0.0.2 "), "{line}");
        // Both ways: at least the 1 000 echoes (frames and the greeting included).
        let total: u64 = (0..1000).map(|i| size(i) as u64).sum();
        let f: Vec<&str> = line.split(' ').collect();
        let (down, up): (u64, u64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
        assert!(down > total && up > total, "{line}");
        session(ws_h2(lb, &der).await, &format!("{name} HTTP/2"), uwsgi).await;
        let line = wait_for_log_line(&log, &["CONNECT", " 200 "]).await;
        assert!(line.starts_with("127.0.0.2 "), "{line}");
        assert!(upgraded_total(&fe) >= before + 2);
    }
    lbs.shutdown().await;
    edges.shutdown().await;
}
