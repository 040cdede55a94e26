//! The FastCGI client against a fake app on a unix socket that speaks the app's side of the
//! protocol: params and body arrive, STDOUT/STDERR/END_REQUEST come back, kept connections
//! are reused and a kept connection the app closed costs a retry, not a failed request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, Full};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::*;
use crate::upstream::uwsgi_tests::ctx;

/// What the fake app does with a request.
#[derive(Clone, Copy, PartialEq)]
enum App {
    /// Answers with the params as `K=V` lines, then the body; honours FCGI_KEEP_CONN.
    Echo,
    /// Like Echo, but closes every connection after the first request on it.
    EchoThenClose,
    /// Sends a record of request id 2.
    BadRecord,
}

struct Fake {
    addr: ServerAddr,
    accepts: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn fake(app: App) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let l = UnixListener::bind(&path).unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let n = accepts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, app));
        }
    });
    Fake {
        addr: ServerAddr::Unix(path),
        accepts,
        _dir: dir,
    }
}

/// One record as the app reads it: (type, content).
async fn read_record(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await.ok()?;
    assert_eq!(h[0], 1);
    assert_eq!(u16::from_be_bytes([h[2], h[3]]), 1);
    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut c = vec![0u8; len + h[6] as usize];
    s.read_exact(&mut c).await.ok()?;
    c.truncate(len);
    Some((h[1], c))
}

fn app_record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let mut v = vec![1, kind];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(content.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(content);
    v
}

async fn serve(mut s: UnixStream, app: App) {
    loop {
        let Some((1, begin)) = read_record(&mut s).await else {
            return;
        };
        let keep = begin[2] & 1 == 1;
        let mut params = Vec::new();
        let mut stdin = Vec::new();
        loop {
            match read_record(&mut s).await {
                Some((PARAMS, c)) => params.extend(c),
                Some((STDIN, c)) if c.is_empty() => break,
                Some((STDIN, c)) => stdin.extend(c),
                _ => return,
            }
        }
        if app == App::BadRecord {
            let _ = s.write_all(&app_record(6, 2, b"x")).await;
            return;
        }
        let mut out = b"Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        for (k, v) in record::decode_pairs(&params).unwrap() {
            out.extend_from_slice(k);
            out.push(b'=');
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out.extend_from_slice(b"--body--\n");
        out.extend_from_slice(&stdin);
        let mut w = app_record(7, 1, b"PHP Warning: \x1b[31mred\n");
        for part in out.chunks(40_000) {
            w.extend(app_record(6, 1, part));
        }
        w.extend(app_record(6, 1, b""));
        w.extend(app_record(3, 1, &[0, 0, 0, 0, 0, 0, 0, 0]));
        if s.write_all(&w).await.is_err() || !keep || app == App::EchoThenClose {
            return;
        }
    }
}

fn client(keepalive: usize) -> FastCgiClient {
    FastCgiClient::new(FastCgiOpts {
        document_root: "/srv/www".into(),
        keepalive,
        ..FastCgiOpts::default()
    })
}

/// The params (as a map) and the body the fake app echoed.
async fn echoed(resp: Response<Body>) -> (HashMap<String, String>, Vec<u8>) {
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let all = resp.into_body().collect().await.unwrap().to_bytes();
    let at = all.windows(9).position(|w| w == b"--body--\n").unwrap();
    let vars = String::from_utf8_lossy(&all[..at])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (vars, all[at + 9..].to_vec())
}

#[tokio::test]
async fn params_body_and_status_go_through_without_keepalive() {
    let app = fake(App::Echo).await;
    let c = client(0);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("/dir/../app.php?q=1")
        .header("host", "app.test")
        .header("content-length", body.len())
        .header("x-custom", "v")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let resp = c.send(&app.addr, req, &ctx()).await.unwrap();
    let (vars, got) = echoed(resp).await;
    assert_eq!(got, body, "the body arrives byte-exact");
    assert_eq!(vars["SCRIPT_FILENAME"], "/srv/www/app.php");
    assert_eq!(vars["SCRIPT_NAME"], "/app.php");
    assert_eq!(vars["REQUEST_URI"], "/dir/../app.php?q=1");
    assert_eq!(vars["QUERY_STRING"], "q=1");
    assert_eq!(vars["CONTENT_LENGTH"], "300000");
    assert_eq!(vars["REMOTE_ADDR"], "127.0.0.2");
    assert_eq!(vars["HTTPS"], "on");
    assert_eq!(vars["HTTP_X_CUSTOM"], "v");
    assert_eq!(vars["REDIRECT_STATUS"], "200");
    // Without keepalive nothing is pooled: each request has its own connection.
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let (vars, _) = echoed(c.send(&app.addr, req, &ctx()).await.unwrap()).await;
    assert_eq!(vars["SCRIPT_FILENAME"], "/srv/www/index.php");
    assert_eq!(app.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keepalive_reuses_one_connection() {
    let app = fake(App::Echo).await;
    let c = client(4);
    for i in 0..3 {
        let body = format!("request {i}");
        let req = Request::post("/k.php")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let (_, got) = echoed(c.send(&app.addr, req, &ctx()).await.unwrap()).await;
        assert_eq!(got, body.as_bytes());
    }
    assert_eq!(app.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_kept_connection_the_app_closed_is_replaced() {
    let app = fake(App::EchoThenClose).await;
    let c = client(4);
    for _ in 0..3 {
        let req = Request::get("/a.php").body(Empty::<Bytes>::new()).unwrap();
        let (vars, _) = echoed(c.send(&app.addr, req, &ctx()).await.unwrap()).await;
        assert_eq!(vars["SCRIPT_NAME"], "/a.php");
    }
    assert_eq!(app.accepts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_record_for_another_request_is_a_bad_response() {
    let app = fake(App::BadRecord).await;
    let req = Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let err = client(0).send(&app.addr, req, &ctx()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::BadResponse(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}
