//! Edge timers under paused tokio time: a client that never finishes its request head
//! (slowloris) is cut off after the header read timeout, while one that finishes in time is
//! answered. Real loopback sockets; no wall-clock waiting. The modules under `edge_limits/`
//! cover the other settable limits and bounded upstream use.

#[path = "edge_limits/apps.rs"]
mod apps;
#[path = "edge_limits/bounded.rs"]
mod bounded;
#[path = "edge_limits/client.rs"]
mod client_limits;

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `[frontend.timeouts] header` in this test's config (nginx's default is 60s).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn config() -> String {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!(
        "[global]\nmax_connections = 10\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         timeouts = {{ header = \"30s\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\nretries = 0\n\
         [[backend.servers]]\naddr = \"{dead}\"\n"
    )
}

/// Reads until EOF within `limit` of (paused) time; returns what was read.
async fn read_to_close(s: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    while out.len() < 64 * 1024 {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn slowloris_is_cut_off_after_the_header_timeout() {
    let sl = Sluice::start(&config()).await;
    let fe = sl.addr("web");

    let mut slow = connect_from(CLIENT_IP, fe).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    // With the clock held, a full request on a second connection is answered: the edge has
    // taken the slow connection (accepted first) and started its header timer at `start`.
    // Without it, an auto-advance could jump before the edge even accepted it.
    let mut probe = connect_from(CLIENT_IP, fe).await.unwrap();
    let got = hold_clock("the probe's answer", async {
        probe
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_to_close(&mut probe, Duration::from_secs(10)).await
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 502 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the clock moved while held"
    );
    let got = read_to_close(&mut slow, HEADER_READ_TIMEOUT * 2).await;
    let waited = start.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "closed after {waited:?}"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // Finishing the head in time gets an answer (502: nothing listens behind it).
    let mut ok = connect_from(CLIENT_IP, fe).await.unwrap();
    ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(HEADER_READ_TIMEOUT / 2).await;
    let got = hold_clock("the answer to a head finished in time", async {
        ok.write_all(b"Connection: close\r\n\r\n").await.unwrap();
        read_to_close(&mut ok, Duration::from_secs(10)).await
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 502 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    sl.shutdown().await;
}
