//! Client-side limits of `[frontend.timeouts]`/`[frontend.limits]`: a client that stops
//! reading a large response is closed after `send` (paused time), and a connection is closed
//! gracefully after `keepalive_requests` requests, over HTTP/1.1 (the last response says
//! `Connection: close`) and HTTP/2 (GOAWAY, then the connection ends).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::apps::{self, edge_config, read_response, BIG};
use crate::support::*;

const SEND: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = apps::uwsgi().await;
    let log = dir.path().join("access.log");
    // Without response buffering the app's response waits on the client, so the lease shows
    // when the edge gives up (buffered, the app would be let go at once).
    let fe = "timeouts = { send = \"10s\" }\nresponse_buffering = false";
    let sl = Sluice::start(&edge_config("uwsgi", app, fe, "", "", &log)).await;
    let pool = sl.pool("app");
    let mut c = connect_from(CLIENT_IP, sl.addr("web")).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response is in flight (its lease is held) and the client reads nothing.
    hold_until("the request reached the app", || {
        pool.servers()[0].active == 1
    })
    .await;
    let start = Instant::now();
    let end = start + SEND * 3;
    while pool.servers()[0].active == 1 {
        assert!(Instant::now() < end, "still sending after {:?}", SEND * 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = start.elapsed();
    assert!(
        waited >= SEND && waited < SEND * 2,
        "the edge gave up after {waited:?}, send timeout {SEND:?}"
    );
    // What was already on its way arrives, then the connection ends short of the body.
    let mut got = 0usize;
    let mut b = vec![0u8; 1 << 16];
    loop {
        match within("drain", c.read(&mut b)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got > 0 && got < BIG, "read {got} of {BIG} bytes");
    sl.shutdown().await;
}

#[tokio::test]
async fn http1_connection_closes_after_keepalive_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = apps::uwsgi().await;
    let log = dir.path().join("access.log");
    let fe = "limits = { keepalive_requests = 3 }";
    let sl = Sluice::start(&edge_config("uwsgi", app, fe, "", "", &log)).await;
    let mut c = client(sl.addr("web")).await;
    for i in 1..=3 {
        c.write_all(format!("GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, b"ok");
        let close = head
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n");
        assert_eq!(close, i == 3, "request {i}: {head}");
    }
    // A fourth request on the same connection is never served: the edge closed it.
    let _ = c.write_all(b"GET /r4 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_without_data(&mut c).await, "served a 4th request");
    // A new connection starts a new count.
    let mut c = client(sl.addr("web")).await;
    c.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    sl.shutdown().await;
}

#[tokio::test]
async fn http2_connection_gets_goaway_after_keepalive_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = apps::uwsgi().await;
    let log = dir.path().join("access.log");
    let fe = "limits = { keepalive_requests = 3 }";
    let sl = Sluice::start(&edge_config("uwsgi", app, fe, "", "", &log)).await;
    // h2c with prior knowledge: the edge recognises the HTTP/2 preface on plain TCP.
    let tcp = client(sl.addr("web")).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    for i in 1..=3 {
        let req = hyper::Request::get(format!("http://x/s{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = within("h2 response", send.send_request(req))
            .await
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(resp.status(), 200, "stream {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    // GOAWAY: the connection ends cleanly, and no fourth stream is served.
    within("the connection to end after GOAWAY", conn)
        .await
        .expect("connection task")
        .expect("a graceful end, not an error");
    let req = hyper::Request::get("http://x/s4")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(send.send_request(req).await.is_err(), "served a 4th stream");
    sl.shutdown().await;
}
