//! One admin connection served over an in-memory pipe with tokio's clock paused: a client
//! that asks for a large answer and stops reading is closed after `SEND_TIMEOUT`, not kept
//! until `CONNECTION_LIFETIME`. Routes and guards are tested on the real binary (tests/it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{conns, page, serve_conn, State, View, CONNECTION_LIFETIME, SEND_TIMEOUT};
use crate::balance::Pool;
use crate::spec::Spec;

struct Nothing;

impl View for Nothing {
    fn pools(&self) -> Vec<Arc<Pool>> {
        Vec::new()
    }
    fn spec(&self) -> Arc<Spec> {
        Arc::default()
    }
    fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        Vec::new()
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    assert!(page::JS.len() > 4096, "the answer must not fit the pipe");
    let (server, mut client) = tokio::io::duplex(1024);
    let state = Arc::new(State {
        view: Arc::new(Nothing),
        token: None,
        server_names: Vec::new(),
    });
    let me = Arc::new(conns::Conns::default()).register();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let conn = tokio::spawn(serve_conn(
        server,
        peer,
        state,
        me,
        CancellationToken::new(),
    ));
    client
        .write_all(b"GET /stats.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // Read the start of the answer, then stop reading.
    let mut head = [0u8; 512];
    let n = client.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    let took = tokio::time::Instant::now();
    tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(1), conn)
        .await
        .expect("the stalled connection must end after the send timeout")
        .unwrap();
    assert!(took.elapsed() >= SEND_TIMEOUT && took.elapsed() < CONNECTION_LIFETIME);
}
