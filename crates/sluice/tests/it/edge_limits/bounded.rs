//! Bounded upstream use: requests beyond a server's `max_connections` wait in the backend
//! queue for at most `timeouts.queue` and then get 503 (in the access log too), a queued
//! request takes the slot that frees, and HTTP/2 streams beyond the cap wait instead of
//! opening sockets, over uwsgi (one socket per request) and the HTTP keep-alive pool.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::apps::{self, edge_config, read_response};
use crate::support::*;

const QUEUE: Duration = Duration::from_secs(2);

async fn get(to: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut c = client(to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    c
}

#[tokio::test(start_paused = true)]
async fn beyond_the_cap_a_request_waits_for_the_queue_timeout_then_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let (app, counters) = apps::uwsgi().await;
    let log = dir.path().join("access.log");
    let be = "timeouts = { queue = \"2s\" }";
    let cfg = edge_config("uwsgi", app, "", be, ", max_connections = 1", &log);
    let sl = Sluice::start(&cfg).await;
    let (web, pool) = (sl.addr("web"), sl.pool("app"));

    // A holds the only slot.
    let mut a = get(web, "/hold?who=a").await;
    hold_until("A at the app", || counters.held() == 1).await;

    // B waits in the queue, then gets 503 once the queue timeout has passed.
    let start = Instant::now();
    let mut b = get(web, "/b").await;
    // Queued with the clock held, so the queue timeout runs from `start`.
    hold_until("B in the queue", || pool.queued() == 1).await;
    let (head, _) = read_response(&mut b).await;
    let waited = start.elapsed();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        waited >= QUEUE && waited < QUEUE + Duration::from_secs(1),
        "503 after {waited:?}, queue timeout {QUEUE:?}"
    );
    let line = wait_for_log_line(&log, &["\"GET /b HTTP/1.1\""]).await;
    assert!(line.contains("\" 503 "), "{line}");

    // C queues too; when A ends, C gets the slot and its answer.
    let mut c = get(web, "/c").await;
    hold_until("C in the queue", || pool.queued() == 1).await;
    counters.release(1);
    let (head, _) = read_response(&mut a).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "A: {head}");
    let (head, body) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "C: {head}");
    assert_eq!(body, b"ok");
    assert_eq!(counters.max_open(), 1, "never two requests at the app");
    let line = wait_for_log_line(&log, &["\"GET /c HTTP/1.1\""]).await;
    assert!(line.contains("\" 200 "), "{line}");
    sl.shutdown().await;
}

/// One HTTP/2 connection with `streams` concurrent `/hold` requests to an edge whose app
/// server is capped at `cap`: the streams beyond it wait in the queue, the app never sees
/// more than `cap` connections at once, and every stream is answered once released.
async fn h2_streams_wait_for_the_cap(protocol: &str, streams: usize, cap: usize) -> apps::Counters {
    let dir = tempfile::tempdir().unwrap();
    let (app, counters) = match protocol {
        "uwsgi" => apps::uwsgi().await,
        _ => apps::http().await,
    };
    let log = dir.path().join("access.log");
    let server = format!(", max_connections = {cap}");
    let cfg = edge_config(
        protocol,
        app,
        "",
        "timeouts = { queue = \"60s\" }",
        &server,
        &log,
    );
    let sl = Sluice::start(&cfg).await;
    let pool = sl.pool("app");
    let tcp = client(sl.addr("web")).await;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let mut send = send.clone();
        tasks.spawn(async move {
            let req = hyper::Request::get(format!("http://x/hold?i={i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.expect("h2 stream");
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            status
        });
    }
    wait_until("cap requests at the app, the rest queued", || {
        counters.held() == cap && pool.queued() == streams - cap
    })
    .await;
    assert_eq!(counters.open(), cap, "{protocol}: sockets beyond the cap");
    counters.release(streams);
    let statuses = within("all streams answered", tasks.join_all()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        counters.max_open(),
        cap,
        "{protocol}: at most {cap} sockets at once"
    );
    sl.shutdown().await;
    counters
}

#[tokio::test]
async fn http2_streams_beyond_the_cap_wait_instead_of_opening_uwsgi_sockets() {
    let c = h2_streams_wait_for_the_cap("uwsgi", 40, 3).await;
    assert_eq!(
        c.accepted(),
        40,
        "uwsgi: one connection per request, in turn"
    );
}

#[tokio::test]
async fn http2_streams_beyond_the_cap_wait_instead_of_opening_pool_sockets() {
    let c = h2_streams_wait_for_the_cap("http", 40, 3).await;
    assert_eq!(c.accepted(), 3, "http: the pool reuses its capped sockets");
}
