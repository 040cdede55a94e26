//! Tests of the HTTP upstream against a hyper HTTP/1.1 server on 127.0.0.1:0 and on a unix
//! socket that counts accepted connections and echoes the request head it received.
//! Covers keep-alive reuse, hop-by-hop removal, forwarding headers and error mapping.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};

use super::uwsgi_tests::{ctx, Chunks};
use super::*;

async fn echo(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut out = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    out.push_str(&format!("body-len: {}\n", body.len()));
    let resp = Response::builder()
        .header("keep-alive", "timeout=5")
        .header("x-resp", "1")
        .body(Full::new(Bytes::from(out)))
        .unwrap();
    Ok(resp)
}

struct Server {
    addr: ServerAddr,
    accepted: Arc<AtomicUsize>,
    _dir: Option<tempfile::TempDir>,
}

async fn serve_conn<S>(s: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(s), service_fn(echo))
        .await;
}

async fn tcp_server() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Inet(l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_conn(s));
        }
    });
    Server {
        addr,
        accepted,
        _dir: None,
    }
}

async fn unix_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http.sock");
    let l = UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_conn(s));
        }
    });
    Server {
        addr: ServerAddr::Unix(path),
        accepted,
        _dir: Some(dir),
    }
}

fn upstream() -> HttpUpstream {
    HttpUpstream::new(HttpOpts {
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
        ..HttpOpts::default()
    })
}

async fn text(resp: Response<Body>) -> String {
    assert_eq!(resp.status(), StatusCode::OK);
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn header<'a>(t: &'a str, name: &str) -> Option<&'a str> {
    t.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn ten_sequential_requests_reuse_one_connection() {
    let srv = tcp_server().await;
    let up = upstream();
    for i in 0..10 {
        let req = Request::get(format!("/n/{i}"))
            .header("host", "app.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let t = text(up.send(&srv.addr, req, &ctx()).await.unwrap()).await;
        assert!(t.starts_with(&format!("GET /n/{i} HTTP/1.1")), "{t}");
    }
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn hop_by_hop_removed_and_forwarding_headers_added() {
    let srv = tcp_server().await;
    let req = Request::post("/f?q=1")
        .header("host", "app.test")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=9")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("upgrade", "websocket")
        .header("x-forwarded-for", "10.1.1.1")
        .header("x-real-ip", "6.6.6.6")
        .header("x-end", "kept")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = upstream().send(&srv.addr, req, &ctx()).await.unwrap();
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "response hop-by-hop kept"
    );
    assert_eq!(resp.headers()["x-resp"], "1");
    let t = text(resp).await;
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "trailer",
    ] {
        assert!(header(&t, gone).is_none(), "{gone} forwarded:\n{t}");
    }
    // The context's forwarding fields replace the request's (the edge's policy decides them).
    assert_eq!(header(&t, "x-forwarded-for"), Some("127.0.0.2"), "{t}");
    assert_eq!(header(&t, "x-real-ip"), Some("127.0.0.2"));
    assert_eq!(header(&t, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&t, "host"), Some("app.test"));
    assert_eq!(header(&t, "x-end"), Some("kept"));
    assert_eq!(header(&t, "body-len"), Some("5"));
    assert!(t.starts_with("POST /f?q=1 HTTP/1.1"), "{t}");
}

#[tokio::test]
async fn http2_request_goes_out_as_http11_with_host_from_authority() {
    let srv = unix_server().await;
    let chunks: VecDeque<Bytes> = ["ab", "cde"].into_iter().map(Bytes::from).collect();
    let req = Request::put("https://h2.test/up")
        .version(hyper::Version::HTTP_2)
        .header("host", "stale.test")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Chunks {
            chunks,
            exact: None,
        })
        .unwrap();
    let t = text(upstream().send(&srv.addr, req, &ctx()).await.unwrap()).await;
    assert!(t.starts_with("PUT /up HTTP/1.1"), "{t}");
    assert_eq!(header(&t, "host"), Some("h2.test"));
    assert_eq!(header(&t, "cookie"), Some("a=1; b=2"));
    assert_eq!(header(&t, "body-len"), Some("5"));
    assert_eq!(header(&t, "x-forwarded-for"), Some("127.0.0.2"));
}

#[tokio::test]
async fn unix_socket_server_reuses_its_connection() {
    let srv = unix_server().await;
    let up = upstream();
    for _ in 0..3 {
        let req = Request::get("/")
            .header("host", "u")
            .body(Empty::<Bytes>::new())
            .unwrap();
        text(up.send(&srv.addr, req, &ctx()).await.unwrap()).await;
    }
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_is_502_and_garbage_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = upstream()
        .send(&ServerAddr::Unix(dir.path().join("none.sock")), req, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Inet(l.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok((mut s, _)) = l.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"SSH-2.0-nope\r\n\r\n").await;
        }
    });
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = upstream().send(&addr, req, &ctx()).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_http_server_is_504() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Inet(l.local_addr().unwrap());
    tokio::spawn(async move {
        let held = l.accept().await;
        std::future::pending::<()>().await;
        drop(held);
    });
    let up = HttpUpstream::new(HttpOpts {
        connect_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(3),
        ..HttpOpts::default()
    });
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = up.send(&addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err:?}");
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn sockets_per_server_stay_within_its_cap() {
    // 16 requests at once to a server capped at 2 sockets (no lease here: the cap alone
    // makes the pool wait for a socket instead of connecting), then 16 one after another,
    // each sent as soon as the previous response ended: the pool's background connects
    // (racing a socket that is about to come back) stay within the cap too.
    for srv in [tcp_server().await, unix_server().await] {
        let up = HttpUpstream::new(HttpOpts {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            socket_caps: Arc::new(SocketCaps::new([(srv.addr.clone(), 2)])),
            ..HttpOpts::default()
        });
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..16 {
            let req = Request::get(format!("/c/{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let (up, addr) = (up.clone(), srv.addr.clone());
            sends.spawn(async move { text(up.send(&addr, req, &ctx()).await.unwrap()).await });
        }
        assert_eq!(sends.join_all().await.len(), 16);
        for i in 0..16 {
            let req = Request::get(format!("/s/{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            text(up.send(&srv.addr, req, &ctx()).await.unwrap()).await;
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 2, "{:?}", srv.addr);
    }
}

#[tokio::test]
async fn works_through_the_upstream_trait_without_a_length() {
    let srv = unix_server().await;
    let up: Arc<dyn Upstream> = Arc::new(upstream());
    assert!(!up.needs_length(), "HTTP can send a body chunked");
    let body: RequestBody = Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync();
    let req = Request::get("/via/trait")
        .header("host", "app.test")
        .body(body);
    let t = text(up.send(&srv.addr, req.unwrap(), &ctx()).await.unwrap()).await;
    assert!(t.starts_with("GET /via/trait HTTP/1.1"), "{t}");
}
