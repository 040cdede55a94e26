//! A client that goes away before its response (half-close after a complete request, reset,
//! HTTP/2 RST_STREAM) leaves exactly one access line with status 499 (nginx), and the edge
//! abandons the upstream request: the app sees its connection closed. A client leaving in
//! the middle of the body is logged once with the status it was sent and fewer bytes.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::edge::*;
use crate::support::*;

/// What the holding app saw on one connection.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The first bytes of a request arrived.
    Got,
    /// The edge closed the connection (EOF or reset).
    Closed,
}

/// An app that reads requests (uwsgi or HTTP alike) and never answers; it reports when a
/// connection brings bytes and when the edge closes it.
async fn holding_app() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 16 * 1024];
                let mut total = 0usize;
                let mut got = false;
                // Bounded: 1 MiB at most, then the test has gone wrong anyway.
                while total < 1 << 20 {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n;
                            if !got {
                                got = true;
                                let _ = tx.send(Seen::Got);
                            }
                        }
                    }
                }
                let _ = tx.send(Seen::Closed);
            });
        }
    });
    (addr, rx)
}

/// Closes `s` with a TCP reset (SO_LINGER 0).
fn reset(s: tokio::net::TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(s);
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    within("the app", rx.recv()).await.expect("app channel")
}

/// Frontends `uw` (uwsgi) and `ht` (HTTP) in front of holding apps, `big` in front of the
/// uwsgi test app; JSON access logs `<name>.log`.
fn config(dir: &Path, uw_hold: SocketAddr, ht_hold: SocketAddr, big: SocketAddr) -> String {
    let fe = |name: &str, backend: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\n\
             backend = \"{backend}\"\naccess_log = \"{d}/{name}.log\"\n\
             access_log_format = \"json\"\n\n",
            d = dir.display()
        )
    };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}\
         [[backend]]\nname = \"uw\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw_hold}\"\n\n\
         [[backend]]\nname = \"ht\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{ht_hold}\"\n\n\
         [[backend]]\nname = \"big\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{big}\"\n",
        fe("uw", "uw"),
        fe("ht", "ht"),
        fe("big", "big"),
    )
}

/// Every access line of `frontend` containing `marker`, once a later request's line is
/// in (so a second line for the same request would have been written by then). The later
/// request is a sentinel sent to the same holding app and abandoned the same way.
async fn lines_for(
    sl: &Sluice,
    dir: &Path,
    frontend: &str,
    marker: &str,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
) -> Vec<serde_json::Value> {
    let path = dir.join(format!("{frontend}.log"));
    wait_for_log_line(&path, &[marker]).await;
    let sentinel = format!("/sentinel{}", marker.trim());
    let mut s = client(sl.addr(frontend)).await;
    s.write_all(format!("GET {sentinel} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(next(seen).await, Seen::Got, "sentinel");
    drop(s);
    assert_eq!(next(seen).await, Seen::Closed, "sentinel");
    wait_for_log_line(&path, &[&format!("{sentinel} ")]).await;
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            let req = v["request"].as_str().unwrap_or("");
            req.split(' ').nth(1) == Some(marker.trim())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_before_the_response_is_logged_499_and_the_app_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let (uw_hold, mut uw_seen) = holding_app().await;
    let (ht_hold, mut ht_seen) = holding_app().await;
    let sl = Sluice::start(&config(dir.path(), uw_hold, ht_hold, uwsgi_app().await)).await;
    for (fe, seen) in [("uw", &mut uw_seen), ("ht", &mut ht_seen)] {
        for how in ["half-close", "reset"] {
            let marker = format!("/gone-{fe}-{how} ");
            let mut s = client(sl.addr(fe)).await;
            s.write_all(format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", marker.trim()).as_bytes())
                .await
                .unwrap();
            assert_eq!(
                next(seen).await,
                Seen::Got,
                "{fe} {how}: the app got the request"
            );
            if how == "half-close" {
                s.shutdown().await.unwrap();
                let answer = read_all(&mut s).await;
                assert_eq!(answer, "", "{fe}: answered after the client half-closed");
            } else {
                reset(s);
            }
            assert_eq!(
                next(seen).await,
                Seen::Closed,
                "{fe} {how}: upstream not abandoned"
            );
            let lines = lines_for(&sl, dir.path(), fe, &marker, seen).await;
            assert_eq!(lines.len(), 1, "{fe} {how}: {lines:?}");
            assert_eq!(lines[0]["status"], 499, "{fe} {how}: {}", lines[0]);
            assert_eq!(lines[0]["body_bytes_sent"], 0, "{}", lines[0]);
        }
    }
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_stream_reset_before_the_response_is_logged_499() {
    let dir = tempfile::tempdir().unwrap();
    let (uw_hold, mut uw_seen) = holding_app().await;
    let (ht_hold, mut ht_seen) = holding_app().await;
    let sl = Sluice::start(&config(dir.path(), uw_hold, ht_hold, uwsgi_app().await)).await;
    for (fe, seen) in [("uw", &mut uw_seen), ("ht", &mut ht_seen)] {
        // h2c by hand (prior knowledge): GET {path} on stream 1, then RST_STREAM(CANCEL)
        // once the app has the request; the connection stays open.
        let path = format!("/h2-reset-{fe}");
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"a.example");
        let mut s = client(sl.addr(fe)).await;
        let mut hello = super::PREFACE.to_vec();
        hello.extend(super::frame(4, 0, 0, &[]));
        hello.extend(super::frame(1, 0x5, 1, &block));
        s.write_all(&hello).await.unwrap();
        assert_eq!(next(seen).await, Seen::Got, "{fe}: the app got the request");
        s.write_all(&super::frame(3, 0, 1, &8u32.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(
            next(seen).await,
            Seen::Closed,
            "{fe}: upstream not abandoned"
        );
        // The connection is still usable: a PING is answered.
        s.write_all(&super::frame(6, 0, 0, b"pingpong"))
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut b = vec![0u8; 16 * 1024];
        while !got.windows(8).any(|w| w == b"pingpong") {
            let n = within("PING ack", s.read(&mut b)).await.unwrap();
            assert!(n > 0 && got.len() < 1 << 20, "the connection closed");
            got.extend_from_slice(&b[..n]);
        }
        let lines = lines_for(&sl, dir.path(), fe, &format!("{path} "), seen).await;
        assert_eq!(lines.len(), 1, "{fe}: {lines:?}");
        assert_eq!(lines[0]["status"], 499, "{}", lines[0]);
        assert_eq!(lines[0]["protocol"], "HTTP/2.0", "{}", lines[0]);
    }
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_is_logged_once_with_the_status_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (uw_hold, _uw_seen) = holding_app().await;
    let (ht_hold, _ht_seen) = holding_app().await;
    let sl = Sluice::start(&config(dir.path(), uw_hold, ht_hold, uwsgi_app().await)).await;
    let mut s = client(sl.addr("big")).await;
    s.write_all(b"GET /big?mb=32 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = within("response head", s.read(&mut head)).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", &head[..n]);
    reset(s);
    let path = dir.path().join("big.log");
    let line = wait_for_log_line(&path, &["/big?mb=32 "]).await;
    // The next request on a new connection is logged after it: nothing more for /big.
    let r = raw_request(
        sl.addr("big"),
        b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");
    wait_for_log_line(&path, &["/after "]).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("/big?mb=32 ").count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["body_bytes_sent"].as_u64().unwrap() < 32 << 20, "{v}");
    sl.shutdown().await;
}
