//! Interop: sluice's uwsgi client against the real uWSGI (python3 plugin) running the seed's
//! Flask app (examples/seed/app.py) on a unix socket in a temp dir. Proves the app sees the
//! real client from the context, bodies of unknown length arrive, and big bodies stream.
//! Skips loudly without uwsgi/plugin/Flask unless SLUICE_REQUIRE_INTEROP=1.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Request, StatusCode};
use sluice::addr::{ClientAddr, LocalAddr};
use sluice::upstream::{RequestContext, Scheme, ServerAddr, UwsgiClient, UwsgiOpts};

fn required() -> bool {
    std::env::var("SLUICE_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

fn skip(what: &str) {
    if required() {
        panic!("{what} not found and SLUICE_REQUIRE_INTEROP=1");
    }
    eprintln!("\n========== SKIP: {what} not found ==========\n");
}

/// Kills and reaps uwsgi when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_uwsgi() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/uwsgi");
    if fixed.exists() {
        return Some(fixed.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("uwsgi"))
        .find(|p| p.exists())
}

/// Starts uwsgi with the seed app on `<dir>/app.sock`; None (after a SKIP line) when a
/// piece is missing.
fn start_uwsgi(dir: &Path) -> Option<(Peer, PathBuf)> {
    let Some(uwsgi) = find_uwsgi() else {
        skip("uwsgi");
        return None;
    };
    if !Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists() {
        skip("uwsgi python3 plugin (/usr/lib/uwsgi/plugins/python3_plugin.so)");
        return None;
    }
    // The plugin embeds the system python: Flask must import there.
    let flask = Command::new("/usr/bin/python3")
        .args(["-c", "import flask"])
        .status();
    if !flask.is_ok_and(|s| s.success()) {
        skip("Flask for /usr/bin/python3 (python3-flask)");
        return None;
    }
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/app.py");
    let sock = dir.join("app.sock");
    let log = std::fs::File::create(dir.join("uwsgi.log")).unwrap();
    let child = Command::new(uwsgi)
        .args(["--plugin", "python3", "--socket"])
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(&app)
        .args([
            "--processes",
            "1",
            "--threads",
            "2",
            "--need-app",
            "--die-on-term",
        ])
        .args(["--buffer-size", "32768"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn uwsgi");
    Some((Peer(child), sock))
}

/// Waits (bounded) until the socket accepts; panics with uwsgi's log if it dies or stalls.
async fn wait_ready(peer: &mut Peer, sock: &Path, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::UnixStream::connect(sock).await.is_ok() {
            return;
        }
        let log = || std::fs::read_to_string(dir.join("uwsgi.log")).unwrap_or_default();
        if let Ok(Some(st)) = peer.0.try_wait() {
            panic!("uwsgi exited ({st}):\n{}", log());
        }
        if Instant::now() > deadline {
            panic!("uwsgi socket not ready within 30s:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        client: ClientAddr("127.0.0.2:40000".parse().unwrap()),
        local: LocalAddr("127.0.0.1:8443".parse().unwrap()),
        scheme: Scheme::Https,
        server_name: "app.test".into(),
        server_port: 8443,
        tls_version: None,
        tls_resumed: false,
    }
}

/// A body of unknown length (like a chunked HTTP/1.1 or an HTTP/2 upload).
struct Unsized(VecDeque<Bytes>);

impl HttpBody for Unsized {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[tokio::test]
async fn real_uwsgi_sees_the_context_client_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut peer, sock)) = start_uwsgi(dir.path()) else {
        return;
    };
    wait_ready(&mut peer, &sock, dir.path()).await;
    let addr = ServerAddr::Unix(sock);
    let client = UwsgiClient::new(UwsgiOpts::default());

    let req = Request::get("/?a=1")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    for want in [
        "client=127.0.0.2\n",
        "remote_port=40000\n",
        "scheme=https\n",
        "https=on\n",
        "host=app.test\n",
        "server_name=app.test\n",
        "server_port=8443\n",
        "server_addr=127.0.0.1\n",
        "path=/\n",
        "query=a=1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let chunks: VecDeque<Bytes> = (0..10).map(|_| Bytes::from(vec![b'q'; 1000])).collect();
    let req = Request::post("/echo")
        .header("host", "app.test")
        .body(Unsized(chunks))
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"len=10000\n");

    let req = Request::get("/big?mb=32")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut total, mut max_frame) = (0u64, 0usize);
    while let Some(f) = body.frame().await {
        let data = f.unwrap().into_data().unwrap();
        total += data.len() as u64;
        max_frame = max_frame.max(data.len());
    }
    assert_eq!(total, 32 << 20);
    assert!(
        max_frame <= 2 * sluice::upstream::uwsgi::CHUNK,
        "frame of {max_frame} bytes"
    );
}
