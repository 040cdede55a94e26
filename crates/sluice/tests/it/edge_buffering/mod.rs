//! Request and response buffering end to end (issue #12), against counting uwsgi and HTTP
//! apps on loopback: spilled uploads arrive intact (also replayed to a second server, also
//! over h2), a declared length above max_body is refused before the app is contacted, a slow
//! body is complete before the app is, `request_buffering = false` streams, and a big
//! response lets the app go while a slow client is still reading.

mod apps;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::edge::{curl, dead_addr, raw_request, status_of};
use crate::support::*;
use apps::{checksum, pattern, App, Fnv};

/// Frontends `{name}_uw` (uwsgi app) and `{name}_ht` (HTTP app) with `keys`, and
/// `{name}_retry`: uwsgi behind a dead server first.
fn config(name: &str, uw: &App, ht: &App, keys: &str) -> String {
    let fe = |suffix: &str, backend: &str| {
        format!(
            "[[frontend]]\nname = \"{name}_{suffix}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"{backend}\"\n{keys}\n\n"
        )
    };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}\
         [[backend]]\nname = \"uw\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{}\"\n\n\
         [[backend]]\nname = \"ht\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{}\"\n\n\
         [[backend]]\nname = \"retry\"\nprotocol = \"uwsgi\"\nretries = 1\nbalance = \"roundrobin\"\n\
         [[backend.servers]]\naddr = \"{}\"\n[[backend.servers]]\naddr = \"{}\"\n",
        fe("uw", "uw"),
        fe("ht", "ht"),
        fe("retry", "retry"),
        uw.addr,
        ht.addr,
        dead_addr(),
        uw.addr,
    )
}

fn body(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sum_line(data: &[u8]) -> String {
    let mut f = Fnv::default();
    f.add(data);
    format!("len={} fnv={:016x}\n", data.len(), f.0)
}

fn post_head(path: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
}

fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = b"POST /sum HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for c in data.chunks(10_000) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The value of a counter series in the process's metrics ("" when absent).
fn metric(series: &str) -> String {
    let text = sluice::metrics::global().encode(&[]);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn spilled(frontend: &str, direction: &str) -> u64 {
    metric(&format!(
        "sluice_spilled_bodies_total{{frontend=\"{frontend}\",direction=\"{direction}\"}}"
    ))
    .parse()
    .unwrap_or(0)
}

#[tokio::test]
async fn spilled_uploads_arrive_intact_and_replay_to_another_server() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (uw, ht) = (App::uwsgi().await, App::http().await);
    let keys = format!(
        "max_body = 4194304\nbody_buffer_size = 4096\ntemp_dir = \"{}\"",
        tmp.display()
    );
    let sl = Sluice::start(&config("up", &uw, &ht, &keys)).await;
    let data = body((1 << 20) + 123);
    let want = sum_line(&data);
    let mut with_length = post_head("/sum", data.len()).into_bytes();
    with_length.extend_from_slice(&data);
    for fe in ["up_uw", "up_ht", "up_retry", "up_retry"] {
        for req in [&with_length, &chunked(&data)] {
            let r = raw_request(sl.addr(fe), req).await;
            assert_eq!(status_of(&r), "200", "{fe}: {r}");
            assert!(r.ends_with(&want), "{fe}: {r}");
        }
    }
    assert_eq!(ht.chunked(), 0, "the HTTP app gets a Content-Length");
    assert!(spilled("up_uw", "request") >= 2);
    assert!(spilled("up_ht", "request") >= 2);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files are unlinked"
    );

    // HTTP/2 (content-length from curl) takes the same way.
    if let Some(curl_bin) = tool("curl", &["/usr/bin/curl", "curl"]) {
        let file = dir.path().join("upload.bin");
        std::fs::write(&file, &data).unwrap();
        for fe in ["up_uw", "up_ht"] {
            let url = format!("http://{}/sum", sl.addr(fe));
            let at = format!("@{}", file.display());
            let bin = curl_bin.clone();
            // curl blocks: off the runtime that serves sluice.
            let out = tokio::task::spawn_blocking(move || {
                curl(
                    &bin,
                    &["--http2-prior-knowledge", "--data-binary", &at, &url],
                )
            })
            .await
            .unwrap();
            assert_eq!(out, want, "{fe} over h2");
        }
    }
    sl.shutdown().await;
}

#[tokio::test]
async fn a_declared_length_above_max_body_never_reaches_the_app() {
    let (uw, ht) = (App::uwsgi().await, App::http().await);
    for (name, keys) in [("cl", ""), ("cl_stream", "request_buffering = false")] {
        let sl = Sluice::start(&config(name, &uw, &ht, keys)).await;
        for fe in ["uw", "ht"] {
            let req = "POST /sum HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000000000\r\n\
                       Expect: 100-continue\r\nConnection: close\r\n\r\n";
            let r = raw_request(sl.addr(&format!("{name}_{fe}")), req.as_bytes()).await;
            assert_eq!(status_of(&r), "413", "{name}_{fe}: {r}");
            assert!(!r.contains("100 Continue"), "no 100 before the 413: {r}");
            // One byte over the default 1 MiB, body included.
            let mut req = post_head("/sum", (1 << 20) + 1).into_bytes();
            req.extend_from_slice(&body(1 << 16));
            let r = raw_request(sl.addr(&format!("{name}_{fe}")), &req).await;
            assert_eq!(status_of(&r), "413", "{name}_{fe}: {r}");
        }
        sl.shutdown().await;
    }
    assert_eq!(
        (uw.accepts(), ht.accepts()),
        (0, 0),
        "the apps never saw a connection"
    );
}

/// Sends `head` and `data` in four parts with pauses; returns the stream and the accepts
/// the app had counted just before the last byte went.
async fn send_slowly(to: SocketAddr, head: &str, data: &[u8], app: &App) -> (TcpStream, usize) {
    let mut s = client(to).await;
    s.write_all(head.as_bytes()).await.unwrap();
    let (most, last) = data.split_at(data.len() - 1);
    for part in most.chunks(most.len().div_ceil(3)) {
        s.write_all(part).await.unwrap();
        // Pacing the client, not waiting for readiness.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = app.accepts();
    s.write_all(last).await.unwrap();
    (s, before)
}

async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    within("response", s.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slow_body_is_complete_before_the_app_is_contacted() {
    let (uw, ht) = (App::uwsgi().await, App::http().await);
    let sl = Sluice::start(&config("slow", &uw, &ht, "")).await;
    let data = body(3000);
    for (fe, app) in [("slow_uw", &uw), ("slow_ht", &ht)] {
        let (mut s, before) = send_slowly(sl.addr(fe), &post_head("/sum", 3000), &data, app).await;
        assert_eq!(
            before, 0,
            "{fe}: the app was contacted before the last byte"
        );
        let r = read_response(&mut s).await;
        assert!(r.ends_with(&sum_line(&data)), "{fe}: {r}");
        assert_eq!(app.accepts(), 1);
    }
    sl.shutdown().await;
}

#[tokio::test]
async fn without_request_buffering_the_body_streams() {
    let (uw, ht) = (App::uwsgi().await, App::http().await);
    let sl = Sluice::start(&config("stream", &uw, &ht, "request_buffering = false")).await;
    let data = body(2000);
    for (fe, app) in [("stream_uw", &uw), ("stream_ht", &ht)] {
        let mut s = client(sl.addr(fe)).await;
        s.write_all(post_head("/sum", 2000).as_bytes())
            .await
            .unwrap();
        s.write_all(&data[..1000]).await.unwrap();
        wait_until(&format!("{fe}: the app contacted mid-body"), || {
            app.accepts() == 1
        })
        .await;
        s.write_all(&data[1000..]).await.unwrap();
        let r = read_response(&mut s).await;
        assert!(r.ends_with(&sum_line(&data)), "{fe}: {r}");
    }
    sl.shutdown().await;
}

/// A client with a small receive buffer, from 127.0.0.2.
async fn slow_client(to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.bind(SocketAddr::new(CLIENT_IP, 0)).unwrap();
    within("connect", sock.connect(to)).await.unwrap()
}

/// Reads a response head byte by byte (bounded).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        assert_eq!(
            within("head", s.read(&mut b)).await.unwrap(),
            1,
            "EOF in head"
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_big_response_lets_the_app_go_while_a_slow_client_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (uw, ht) = (App::uwsgi().await, App::http().await);
    let keys = format!(
        "response_buffer_size = 16384\ntemp_dir = \"{}\"",
        dir.path().display()
    );
    let sl = Sluice::start(&config("big", &uw, &ht, &keys)).await;
    const N: u64 = 16 << 20;
    let mut expect = Fnv::default();
    expect.add(&(0..N).map(pattern).collect::<Vec<u8>>());
    for (fe, backend, app) in [("big_uw", "uw", &uw), ("big_ht", "ht", &ht)] {
        let mut s = slow_client(sl.addr(fe)).await;
        let req = format!("GET /big?n={N} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut first = vec![0u8; 1000];
        within("first bytes", s.read_exact(&mut first))
            .await
            .unwrap();
        // The client stops reading; the edge still takes everything from the app.
        let pool = sl.pool(backend);
        wait_until(&format!("{fe}: the app released"), || {
            app.closed() == 1 && pool.servers().iter().all(|s| s.active == 0)
        })
        .await;
        assert_eq!(first, (0..1000).map(pattern).collect::<Vec<u8>>(), "{fe}");
        let mut sum = Fnv::default();
        sum.add(&first);
        let (sum, got) = within("the rest", checksum(&mut s, N - 1000, sum))
            .await
            .unwrap();
        assert_eq!((got, sum), (N - 1000, expect), "{fe}: every byte, in order");
        assert!(
            spilled(fe, "response") >= 1,
            "{fe}: the response went to a temp file"
        );
    }
    sl.shutdown().await;
}
