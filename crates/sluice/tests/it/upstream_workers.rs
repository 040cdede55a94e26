//! Upstream pools per worker thread (`sluice run` with `threads = 2`): a keep-alive
//! connection is reused only by requests on the worker that opened it (one connection per
//! worker for sequential requests); a server's `max_connections` holds across both workers,
//! and below 2 the one idle socket serves either worker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Client connections to the edge: enough that the kernel's SO_REUSEPORT hash puts some
/// on each of the two workers (all on one: probability 2^-15).
const CLIENTS: usize = 16;

/// Connections a keep-alive app accepted, has open now, and had open at most at once.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
    requests: AtomicUsize,
}

/// A loopback HTTP/1.1 app that keeps connections alive and answers every request `ok`.
async fn keepalive_app() -> (SocketAddr, Arc<Counts>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            c.most_open.fetch_max(now, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                // Bounded by the peer: each pass reads or ends the connection.
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        c.requests.fetch_add(1, Ordering::SeqCst);
                        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(r).await.is_err() {
                            break;
                        }
                    }
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) if buf.len() + n <= 64 * 1024 => buf.extend_from_slice(&b[..n]),
                        Ok(_) => break,
                    }
                }
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

fn config(app: SocketAddr, server_extra: &str) -> String {
    format!(
        "[global]\nthreads = 2\nmax_connections = 500\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\n\
         servers = [ {{ name = \"a\", addr = \"{app}\"{server_extra} }} ]\n"
    )
}

/// One GET on keep-alive connection `c`; the status code.
async fn get(c: &mut TcpStream) -> u16 {
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "response head too long");
        assert_eq!(c.read(&mut b).await.unwrap(), 1, "edge closed mid-head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = content_length(&head).expect("content-length");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

/// `rounds` requests on each of `CLIENTS` connections, one at a time, round robin.
async fn sequential(edge: SocketAddr, rounds: usize) -> Vec<u16> {
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(TcpStream::connect(edge).await.unwrap());
    }
    let mut out = Vec::new();
    for _ in 0..rounds {
        for c in &mut conns {
            out.push(within("a request through the edge", get(c)).await);
        }
    }
    out
}

#[tokio::test]
async fn each_worker_reuses_its_own_keepalive_connection() {
    let (app, counts) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "edge.toml", &config(app, ""));
    let sl = SluiceProcess::start(&path, 1);
    let statuses = sequential(sl.addr("web"), 4).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(counts.requests.load(Ordering::SeqCst), 4 * CLIENTS);
    // One request at a time: each worker needs one connection and keeps reusing it. One
    // pool for both would need one in all; a pool per request, 64.
    assert_eq!(
        counts.accepted.load(Ordering::SeqCst),
        2,
        "one upstream connection per worker"
    );
}

#[tokio::test]
async fn a_server_capped_below_the_workers_shares_one_socket_across_workers() {
    let (app, counts) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "edge.toml",
        &config(app, ", max_connections = 1"),
    );
    let sl = SluiceProcess::start(&path, 1);
    let edge = sl.addr("web");
    // Sequential requests from both workers: the one idle socket serves each in turn (a
    // worker never waits for a slot another worker's idle socket holds).
    let statuses = sequential(edge, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
    // Concurrent clients on both workers: queued, never two sockets to the app at once.
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(edge).await.unwrap();
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(get(&mut c).await);
            }
            out
        }));
    }
    for t in tasks {
        let statuses = within("concurrent clients", t).await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert_eq!(counts.most_open.load(Ordering::SeqCst), 1, "the cap held");
    assert_eq!(counts.requests.load(Ordering::SeqCst), 6 * CLIENTS);
}

#[tokio::test]
async fn a_cap_of_two_holds_across_two_worker_pools() {
    let (app, counts) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "edge.toml",
        &config(app, ", max_connections = 2"),
    );
    let sl = SluiceProcess::start(&path, 1);
    let edge = sl.addr("web");
    // Each worker keeps one idle socket (2 / 2): sequential requests never wait for a slot.
    let statuses = sequential(edge, 3).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(edge).await.unwrap();
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(get(&mut c).await);
            }
            out
        }));
    }
    for t in tasks {
        let statuses = within("concurrent clients", t).await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert!(counts.most_open.load(Ordering::SeqCst) <= 2, "the cap held");
    assert_eq!(counts.requests.load(Ordering::SeqCst), 6 * CLIENTS);
}
