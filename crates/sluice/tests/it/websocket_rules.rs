//! What the edge upgrades and what it does not (#16), on loopback with small in-process apps:
//! only listed protocols reach the app with `Upgrade` (h2c and unknown ones stripped, none
//! with `upgrade_protocols = []`); an app that does not answer 101 is an ordinary response;
//! HTTP/2 plain CONNECT and extended CONNECT of an unlisted protocol get 405, no
//! SETTINGS_ENABLE_CONNECT_PROTOCOL without protocols; a tunnel passes a half-close on, ends
//! on its idle timeout (one access line) and at shutdown's grace.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::edge::*;
use crate::support::ws::read_head;
use crate::support::*;

const WS_REQ: &str = "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n";

/// An app that answers a WebSocket upgrade with 101 (anything else with 200) and then echoes bytes until EOF, then writes
/// "bye" and closes (so a half-close must pass through both ways).
async fn switching_echo_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (head, rest) = read_head(&mut s).await;
                if !head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                    return s.write_all(ok.as_bytes()).await;
                }
                let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                            Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
                s.write_all(head.as_bytes()).await?;
                s.write_all(&rest).await?;
                let mut b = vec![0u8; 16 * 1024];
                // Ends at the client's EOF (or a reset).
                loop {
                    let n = s.read(&mut b).await?;
                    if n == 0 {
                        break;
                    }
                    s.write_all(&b[..n]).await?;
                }
                s.write_all(b"bye").await?;
                s.shutdown().await
            });
        }
    });
    addr
}

fn frontend(dir: &std::path::Path, name: &str, backend: &str, extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"{backend}\"\naccess_log = \"{d}/{name}.log\"\n\
         log_format = \"$remote_addr \\\"$request\\\" $status $body_bytes_sent $bytes_in\"\n{extra}\n\n",
        d = dir.display()
    )
}

fn backend(name: &str, addr: SocketAddr) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{addr}\"\n\n"
    )
}

/// The lowercased request head the echo app saw, from its answer's body.
fn seen(resp: &str) -> String {
    resp.split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_ascii_lowercase()
}

#[tokio::test]
async fn only_listed_protocols_are_upgraded_and_refusals_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let echo = http_echo_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}",
        frontend(dir.path(), "wsr_on", "wsr_echo", ""),
        frontend(dir.path(), "wsr_off", "wsr_echo", "upgrade_protocols = []"),
        backend("wsr_echo", echo)
    );
    let sl = Sluice::start(&cfg).await;
    let close = |r: &str| r.replacen("Connection: Upgrade", "Connection: Upgrade, close", 1);

    // Listed: the app gets the upgrade; it answers 200 (no switch), which the client gets.
    let resp = raw_request(sl.addr("wsr_on"), close(WS_REQ).as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    let app = seen(&resp);
    assert!(app.contains("upgrade: websocket\r\n"), "{app}");
    assert!(app.contains("connection: upgrade\r\n"), "{app}");
    assert!(
        app.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
        "{app}"
    );
    assert!(app.contains("x-forwarded-for: 127.0.0.2\r\n"), "{app}");
    // Not listed (h2c, anything else), or nothing listed: Upgrade never reaches the app.
    for (fe, proto) in [
        ("wsr_on", "h2c"),
        ("wsr_on", "foo"),
        ("wsr_off", "websocket"),
    ] {
        let req = close(WS_REQ).replace("Upgrade: websocket", &format!("Upgrade: {proto}"));
        let resp = raw_request(sl.addr(fe), req.as_bytes()).await;
        assert_eq!(status_of(&resp), "200", "{fe} {proto}: {resp}");
        let app = seen(&resp);
        assert!(!app.contains("upgrade:"), "{fe} {proto}: {app}");
        assert!(!app.contains("connection:"), "{fe} {proto}: {app}");
    }
    sl.shutdown().await;
}

/// An HTTP/2 (prior knowledge) connection to `to`, its SETTINGS received.
async fn h2_client(to: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    let (client, conn) = within("h2 handshake", h2::client::handshake(tcp))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = within("h2 ready", client.ready()).await.unwrap();
    // One request answered: the server's SETTINGS came before it.
    let req = hyper::Request::get("http://app.test/").body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    within("h2 GET", resp).await.unwrap();
    client
}

async fn connect_status(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    protocol: Option<&'static str>,
) -> u16 {
    let mut req = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(if protocol.is_some() {
            "http://app.test/ws"
        } else {
            "app.test:443"
        })
        .body(())
        .unwrap();
    if let Some(p) = protocol {
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static(p));
    }
    let (resp, _) = client.send_request(req, true).unwrap();
    within("h2 CONNECT", resp).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn http2_connect_stays_refused_unless_extended_with_a_listed_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let app = switching_echo_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}",
        frontend(dir.path(), "wsr2_on", "wsr2_app", ""),
        frontend(dir.path(), "wsr2_off", "wsr2_app", "upgrade_protocols = []"),
        backend("wsr2_app", app)
    );
    let sl = Sluice::start(&cfg).await;
    let mut on = h2_client(sl.addr("wsr2_on")).await;
    assert!(on.is_extended_connect_protocol_enabled());
    assert_eq!(connect_status(&mut on, None).await, 405);
    assert_eq!(connect_status(&mut on, Some("foo")).await, 405);
    let off = h2_client(sl.addr("wsr2_off")).await;
    assert!(!off.is_extended_connect_protocol_enabled());
    sl.shutdown().await;
}

/// Upgrades over plain HTTP/1.1 to `to`; returns the stream after the 101.
async fn upgraded(to: SocketAddr) -> tokio::net::TcpStream {
    let mut s = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    s.write_all(WS_REQ.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(rest.is_empty());
    s
}

#[tokio::test]
async fn tunnels_pass_half_close_end_when_idle_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = switching_echo_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}",
        frontend(dir.path(), "wsr3_long", "wsr3_app", ""),
        frontend(
            dir.path(),
            "wsr3_idle",
            "wsr3_app",
            "[frontend.timeouts]\ntunnel = \"1s\""
        ),
        backend("wsr3_app", app)
    );
    let sl = Sluice::start(&cfg).await;

    // Half-close: the client's EOF reaches the app, whose last bytes still come back.
    let mut s = upgraded(sl.addr("wsr3_long")).await;
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("echo and EOF", s.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"hellobye");
    let log = dir.path().join("wsr3_long.log");
    let line = wait_for_log_line(&log, &["GET /ws HTTP/1.1", " 101 "]).await;
    assert!(line.ends_with(" 101 8 5"), "{line}");

    // Idle: nothing either way for `tunnel` ends it, with its access line.
    let mut s = upgraded(sl.addr("wsr3_idle")).await;
    let mut got = Vec::new();
    within("idle close", s.read_to_end(&mut got)).await.unwrap();
    assert!(got.is_empty());
    let log = dir.path().join("wsr3_idle.log");
    let line = wait_for_log_line(&log, &[" 101 "]).await;
    assert!(line.ends_with(" 101 0 0"), "{line}");

    // Shutdown: an open tunnel holds the drain until the grace period, then closes.
    let mut s = upgraded(sl.addr("wsr3_long")).await;
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    within("echo", s.read_exact(&mut b)).await.unwrap();
    sl.shutdown().await;
    let mut rest = Vec::new();
    let _ = within("closed at shutdown", s.read_to_end(&mut rest)).await;
}
