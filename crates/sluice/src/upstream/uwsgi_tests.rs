//! Tests of the uwsgi client against a tiny uwsgi server written here (TCP on 127.0.0.1:0
//! and a unix socket in a temp dir) that decodes the packet and echoes the variables.
//! Covers variables, body streaming/buffering, limits, framing, errors and timeouts.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::*;
use crate::addr::{ClientAddr, LocalAddr, PeerAddr};

pub(super) fn ctx() -> RequestContext {
    RequestContext {
        client: ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
        forwarding: Forwarding::direct(
            ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
            Scheme::Https,
        ),
        local: LocalAddr("127.0.0.1:8443".parse().unwrap()),
        scheme: Scheme::Https,
        server_name: "app.test".into(),
        server_port: 8443,
        tls_version: None,
        tls_resumed: false,
        request_id: None,
        client_cert: None,
        proxy_tlvs: Default::default(),
    }
}

/// A request body made of fixed chunks, with an exact length or none (like chunked/h2).
pub(super) struct Chunks {
    pub chunks: VecDeque<Bytes>,
    pub exact: Option<u64>,
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn size_hint(&self) -> SizeHint {
        self.exact.map(SizeHint::with_exact).unwrap_or_default()
    }
}

#[derive(Clone)]
enum Mode {
    Echo,
    /// N bytes until EOF; the counter tracks bytes written so far.
    Big(u64, Arc<AtomicU64>),
    Garbage,
    Silent,
    HugeHead,
    Chunked,
}

struct Server {
    addr: ServerAddr,
    accepted: Arc<AtomicUsize>,
    _dir: Option<tempfile::TempDir>,
}

async fn tcp_server(mode: Mode) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Inet(l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(s, mode.clone()));
        }
    });
    Server {
        addr,
        accepted,
        _dir: None,
    }
}

async fn unix_server(mode: Mode) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let l = UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(s, mode.clone()));
        }
    });
    Server {
        addr: ServerAddr::Unix(path),
        accepted,
        _dir: Some(dir),
    }
}

/// Reads one uwsgi packet: returns the variables in order.
async fn read_packet<S: AsyncRead + Unpin>(s: &mut S) -> Vec<(String, String)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!((h[0], h[3]), (0, 0), "modifiers");
    let size = u16::from_le_bytes([h[1], h[2]]) as usize;
    let mut data = vec![0u8; size];
    s.read_exact(&mut data).await.unwrap();
    let mut vars = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let kl = u16::from_le_bytes([data[i], data[i + 1]]) as usize;
        let k = String::from_utf8_lossy(&data[i + 2..i + 2 + kl]).into_owned();
        i += 2 + kl;
        let vl = u16::from_le_bytes([data[i], data[i + 1]]) as usize;
        let v = String::from_utf8_lossy(&data[i + 2..i + 2 + vl]).into_owned();
        i += 2 + vl;
        vars.push((k, v));
    }
    vars
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, mode: Mode) {
    let vars = read_packet(&mut s).await;
    let clen: usize = vars
        .iter()
        .find(|(k, _)| k == "CONTENT_LENGTH")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; clen];
    s.read_exact(&mut body).await.unwrap();
    match mode {
        Mode::Echo => {
            let mut out = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            );
            for (k, v) in &vars {
                out.push_str(&format!("{k}={v}\n"));
            }
            let sum: u64 = body.iter().map(|&b| b as u64).sum();
            out.push_str(&format!("BODY-LEN={}\nBODY-SUM={sum}\n", body.len()));
            let _ = s.write_all(out.as_bytes()).await;
        }
        Mode::Big(n, written) => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
                .await;
            let block = vec![b'x'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(block.len() as u64) as usize;
                if s.write_all(&block[..k]).await.is_err() {
                    return;
                }
                left -= k as u64;
                written.fetch_add(k as u64, Ordering::SeqCst);
            }
        }
        Mode::Garbage => {
            let _ = s.write_all(b"this is not http at all\r\n\r\n").await;
        }
        Mode::Silent => std::future::pending::<()>().await,
        Mode::HugeHead => {
            let mut out = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..100 {
                out.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(800)));
            }
            out.push_str("\r\n");
            let _ = s.write_all(out.as_bytes()).await;
        }
        Mode::Chunked => {
            let _ = s
                .write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
                .await;
        }
    }
}

fn client() -> UwsgiClient {
    UwsgiClient::new(UwsgiOpts {
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
        send_timeout: Duration::from_secs(30),
        ..UwsgiOpts::default()
    })
}

async fn echo_vars(resp: hyper::Response<Body>) -> HashMap<String, String> {
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn tcp_request_carries_every_variable_with_the_real_client() {
    let srv = tcp_server(Mode::Echo).await;
    let req = Request::get("/caf%C3%A9/a//b/./c?x=1&y=%20")
        .header("host", "app.test:8443")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("accept", "text/plain")
        .header("accept", "text/html")
        .header("x-custom-thing", "v")
        .header("x_custom_thing", "spoof")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "gone")
        .header("proxy", "http://evil")
        .header("x-forwarded-for", "9.9.9.9")
        .header("forwarded", "for=9.9.9.9")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client().send(&srv.addr, req, &ctx()).await.unwrap();
    assert!(
        resp.headers().get("connection").is_none(),
        "hop-by-hop kept in response"
    );
    let v = echo_vars(resp).await;
    let want = [
        ("QUERY_STRING", "x=1&y=%20"),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", "/caf%C3%A9/a//b/./c?x=1&y=%20"),
        ("PATH_INFO", "/café/a/b/c"),
        ("DOCUMENT_ROOT", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "https"),
        ("HTTPS", "on"),
        ("REMOTE_ADDR", "127.0.0.2"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "8443"),
        ("SERVER_NAME", "app.test"),
        ("HTTP_HOST", "app.test:8443"),
        ("HTTP_COOKIE", "a=1; b=2"),
        ("HTTP_ACCEPT", "text/plain, text/html"),
        ("HTTP_X_CUSTOM_THING", "v"),
        // The context's forwarding fields, never the client's copies.
        ("HTTP_X_FORWARDED_FOR", "127.0.0.2"),
        ("HTTP_X_REAL_IP", "127.0.0.2"),
        ("HTTP_X_FORWARDED_PROTO", "https"),
        ("BODY-LEN", "0"),
    ];
    for (k, val) in want {
        assert_eq!(v.get(k).map(String::as_str), Some(val), "{k} in {v:?}");
    }
    for absent in [
        "HTTP_CONNECTION",
        "HTTP_X_HOP",
        "HTTP_PROXY",
        "HTTP_FORWARDED",
    ] {
        assert!(!v.contains_key(absent), "{absent} forwarded: {v:?}");
    }
}

#[tokio::test]
async fn http2_request_over_plain_http_gets_host_from_authority() {
    let srv = tcp_server(Mode::Echo).await;
    let req = Request::get("http://h2.test:8080/p")
        .version(hyper::Version::HTTP_2)
        .header("host", "stale.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut c = ctx();
    c.scheme = Scheme::Http;
    let v = echo_vars(client().send(&srv.addr, req, &c).await.unwrap()).await;
    assert_eq!(v["HTTP_HOST"], "h2.test:8080");
    assert_eq!(v["SERVER_PROTOCOL"], "HTTP/2.0");
    assert_eq!(v["REQUEST_SCHEME"], "http");
    assert!(!v.contains_key("HTTPS"));
}

#[tokio::test]
async fn unix_socket_post_with_content_length_streams_the_body() {
    let srv = unix_server(Mode::Echo).await;
    let chunks: VecDeque<Bytes> = (0..50u8).map(|i| Bytes::from(vec![i; 6000])).collect();
    let total: u64 = 300_000;
    let sum: u64 = (0..50u64).map(|i| i * 6000).sum();
    let req = Request::post("/upload")
        .header("content-type", "application/octet-stream")
        .header("content-length", total.to_string())
        .body(Chunks {
            chunks,
            exact: Some(total),
        })
        .unwrap();
    let v = echo_vars(client().send(&srv.addr, req, &ctx()).await.unwrap()).await;
    assert_eq!(v["CONTENT_LENGTH"], "300000");
    assert_eq!(v["CONTENT_TYPE"], "application/octet-stream");
    assert_eq!(v["BODY-LEN"], "300000");
    assert_eq!(v["BODY-SUM"], sum.to_string());
    assert!(!v.contains_key("HTTP_CONTENT_LENGTH"));
}

#[tokio::test]
async fn unknown_length_body_is_buffered_with_content_length_set() {
    let srv = tcp_server(Mode::Echo).await;
    let chunks: VecDeque<Bytes> = ["abc", "defg", "hi"].into_iter().map(Bytes::from).collect();
    let req = Request::post("/form")
        .header("transfer-encoding", "chunked")
        .body(Chunks {
            chunks,
            exact: None,
        })
        .unwrap();
    let v = echo_vars(client().send(&srv.addr, req, &ctx()).await.unwrap()).await;
    assert_eq!(v["CONTENT_LENGTH"], "9");
    assert_eq!(v["BODY-LEN"], "9");
    assert!(!v.contains_key("HTTP_TRANSFER_ENCODING"));
}

#[tokio::test]
async fn unknown_length_body_over_max_body_is_413_without_connecting() {
    let srv = tcp_server(Mode::Echo).await;
    let c = UwsgiClient::new(UwsgiOpts {
        max_body: 1000,
        ..UwsgiOpts::default()
    });
    let chunks: VecDeque<Bytes> = (0..4).map(|_| Bytes::from(vec![b'z'; 500])).collect();
    let req = Request::post("/")
        .body(Chunks {
            chunks,
            exact: None,
        })
        .unwrap();
    let err = c.send(&srv.addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BodyTooLarge), "{err:?}");
    assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn hundred_mib_response_streams_in_bounded_chunks() {
    const N: u64 = 100 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let srv = unix_server(Mode::Big(N, written.clone())).await;
    let req = Request::get("/big").body(Empty::<Bytes>::new()).unwrap();
    let resp = client().send(&srv.addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut total, mut max_frame, mut max_ahead) = (0u64, 0usize, 0u64);
    while let Some(f) = body.frame().await {
        let data = f.unwrap().into_data().unwrap();
        total += data.len() as u64;
        max_frame = max_frame.max(data.len());
        // What the server wrote but we have not received sits in kernel buffers or in the
        // client: if the client collected the body, the server would run far ahead.
        max_ahead = max_ahead.max(written.load(Ordering::SeqCst).saturating_sub(total));
    }
    assert_eq!(total, N);
    assert!(max_frame <= 2 * CHUNK_SIZE, "frame of {max_frame} bytes");
    assert!(
        max_ahead < 16 << 20,
        "server ran {max_ahead} bytes ahead of the consumer"
    );
}

const CHUNK_SIZE: usize = uwsgi::CHUNK;

#[tokio::test]
async fn chunked_response_is_decoded_and_reframed() {
    let srv = tcp_server(Mode::Chunked).await;
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let resp = client().send(&srv.addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("transfer-encoding").is_none());
    assert!(resp.headers().get("content-length").is_none());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello, world");
}

#[tokio::test]
async fn head_request_response_has_no_body() {
    let srv = tcp_server(Mode::Big(1000, Arc::default())).await;
    let req = Request::head("/").body(Empty::<Bytes>::new()).unwrap();
    let resp = client().send(&srv.addr, req, &ctx()).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn garbage_response_is_502() {
    let srv = tcp_server(Mode::Garbage).await;
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = client().send(&srv.addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn response_head_over_64k_is_502() {
    let srv = unix_server(Mode::HugeHead).await;
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = client().send(&srv.addr, req, &ctx()).await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::BadResponse(m) if m.contains("larger")),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn unreachable_servers_are_502() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ServerAddr::Unix(dir.path().join("nobody.sock"));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ServerAddr::Inet(l.local_addr().unwrap())
    };
    for addr in [missing, closed] {
        let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
        let err = client().send(&addr, req, &ctx()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{addr}: {err:?}");
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    }
}

#[tokio::test(start_paused = true)]
async fn silent_server_is_504_after_the_read_timeout() {
    let srv = tcp_server(Mode::Silent).await;
    let c = UwsgiClient::new(UwsgiOpts {
        connect_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(2),
        ..UwsgiOpts::default()
    });
    let start = tokio::time::Instant::now();
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = c.send(&srv.addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err:?}");
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn variables_over_the_packet_limit_are_431() {
    let srv = tcp_server(Mode::Echo).await;
    let mut b = Request::get("/");
    for i in 0..8 {
        b = b.header(format!("x-big-{i}"), "v".repeat(9000));
    }
    let req = b.body(Empty::<Bytes>::new()).unwrap();
    let err = client().send(&srv.addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::HeadersTooLarge), "{err:?}");
    assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn works_through_the_upstream_trait_and_needs_a_length() {
    let srv = unix_server(Mode::Echo).await;
    let up: Arc<dyn Upstream> = Arc::new(client());
    assert!(up.needs_length(), "uwsgi needs CONTENT_LENGTH");
    let body: RequestBody = http_body_util::Full::new(Bytes::from_static(b"abc"))
        .map_err(|e| match e {})
        .boxed_unsync();
    let req = Request::post("/t").header("content-length", "3").body(body);
    let resp = up.send(&srv.addr, req.unwrap(), &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let out = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("REQUEST_URI=/t\n"), "{text}");
    assert!(text.contains("BODY-LEN=3\n"), "{text}");
}
