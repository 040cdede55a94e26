//! Peers of the gRPC/h2c tests: the grpcio test app (`server.py`) and client (`client.py`)
//! run with Debian's python3, a Rust h2c app (prior knowledge) that counts its connections
//! and answers with trailers, and a small HTTP/2 client for raw gRPC frames. No assertions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::support::{skip, tool, within, ChildGuard};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/grpc")
        .join(name)
}

/// Debian's python3 when it has the grpc module (python3-grpcio); None after a SKIP line.
pub fn grpc_python() -> Option<PathBuf> {
    let python = tool("python3", &["/usr/bin/python3", "python3"])?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(python)
    } else {
        skip("python3-grpcio (the grpc module)");
        None
    }
}

/// The grpcio test app on 127.0.0.1 (port 0), over TLS with `tls` = (cert, key); killed on
/// drop. Returns once it listens.
pub async fn start_grpc_app(
    python: &Path,
    tls: Option<(&Path, &Path)>,
) -> (ChildGuard, SocketAddr) {
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script("server.py"));
    if let Some((cert, key)) = tls {
        cmd.arg(cert).arg(key);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the grpc app");
    let out = child.stdout.take().unwrap();
    let child = ChildGuard(child);
    // The first line, read off the runtime (a blocking pipe); the app keeps the pipe open.
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        line
    });
    let line = within("grpc app port", read)
        .await
        .expect("grpc app output");
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("grpc app said {line:?}"));
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Runs the grpcio client against `target` (TLS, trusting `ca`) in `mode`; its JSON answer.
pub async fn grpc_client(
    python: &Path,
    target: SocketAddr,
    ca: &Path,
    mode: &str,
) -> serde_json::Value {
    let out = tokio::process::Command::new(python)
        .arg(script("client.py"))
        .arg(target.to_string())
        .arg(ca)
        .arg(mode)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("grpc client finished")
        .expect("run the grpc client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "grpc client: {e}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// An h2c app (HTTP/2 prior knowledge only) on 127.0.0.1: answers each request with
/// `<version> <x-forwarded-for> <te>` and a trailer `x-app-trailer: done`; the counter is
/// the connections it accepted. With `goaway`, each connection says GOAWAY (graceful) as it
/// answers its first request.
pub async fn h2c_app(goaway: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answered = Arc::new(tokio::sync::Notify::new());
            let signal = answered.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                signal.notify_one();
                async move { Ok::<_, std::convert::Infallible>(h2c_answer(&req)) }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = answered.notified(), if goaway => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    (addr, accepted)
}

/// The h2c app's answer to `req`.
fn h2c_answer(
    req: &Request<hyper::body::Incoming>,
) -> Response<http_body_util::combinators::WithTrailers<Full<Bytes>, TrailersFut>> {
    let h = req.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let text = format!(
        "{:?} {} {}",
        req.version(),
        get("x-forwarded-for"),
        get("te")
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("x-app-trailer", "done".parse().unwrap());
    Response::new(
        Full::new(Bytes::from(text)).with_trailers(std::future::ready(Some(Ok(trailers)))),
    )
}

type TrailersFut = std::future::Ready<Option<Result<HeaderMap, std::convert::Infallible>>>;

/// What an HTTP/2 exchange gave: status, head, body bytes, trailers.
pub struct H2Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// One HTTP/2 (prior knowledge) request to `to`: `method path` with `headers` and `body`.
pub async fn h2_exchange(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> H2Answer {
    let s = within("connect", tokio::net::TcpStream::connect(to))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://app.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = within("h2 response", send.send_request(req))
        .await
        .expect("h2 response");
    let status = resp.status().as_u16();
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(f) = within("h2 body", body.frame()).await {
        let f: Frame<Bytes> = f.expect("h2 body frame");
        match f.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    H2Answer {
        status,
        headers: parts.headers,
        body: data.into(),
        trailers,
    }
}

/// One gRPC message as framed on the wire: uncompressed flag, length, bytes.
pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(5 + msg.len());
    b.push(0);
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b.into()
}
