//! HTTP/1.1 keep-alive across idle periods, over TLS (ALPN http/1.1) and plain HTTP, under
//! paused tokio time: the edge lets go of hyper's connection while a client is idle and builds
//! it again on the next bytes. A client sees none of it: a next request after a long pause, a
//! head split across a pause, pipelined requests, a request body never read as a next request,
//! the header timeout for a head never finished (not restarted by the pause), the keep-alive
//! timeout for an idle connection, and `Connection: close` all behave as before.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::support::edge::*;
use crate::support::*;

const HEADER: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(50);

/// A TLS frontend `web` and a plain one `plain` in front of the test uwsgi app, and the
/// certificate's DER.
fn config(dir: &Path, app: std::net::SocketAddr) -> (String, Vec<u8>) {
    let (tls, der) = tls_table(dir);
    let cfg = format!(
        "[global]\nmax_connections = 20\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         timeouts = {{ header = \"30s\", keepalive = \"50s\" }}\n{tls}\n\n\
         [[frontend]]\nname = \"plain\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         timeouts = {{ header = \"30s\", keepalive = \"50s\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{app}\"\n"
    );
    (cfg, der)
}

/// Responses read one at a time off a keep-alive stream (`Content-Length` bodies).
struct Responses {
    buf: Vec<u8>,
}

impl Responses {
    /// The next response's (head, body); None when the stream ended first.
    async fn next<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body =
                        String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                    self.buf.drain(..end + 4 + len);
                    return Some((head, body));
                }
            }
            let mut b = [0u8; 4096];
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }
}

fn assert_served(resp: Option<(String, String)>, path: &str) {
    let (head, body) = resp.unwrap_or_else(|| panic!("no response for {path}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "{path}: {head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{path}: {head}"
    );
    assert!(
        body.contains(&format!("PATH_INFO={path}\n")),
        "{path}: {body}"
    );
    assert!(body.contains("REMOTE_ADDR=127.0.0.2\n"), "{path}: {body}");
}

/// One request written whole, its response read, the clock held meanwhile.
async fn exchange<S>(s: &mut S, rx: &mut Responses, req: &[u8]) -> Option<(String, String)>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    hold_clock("a response", async {
        s.write_all(req).await.unwrap();
        rx.next(s).await
    })
    .await
}

/// The whole sequence on one keep-alive connection `s`; it ends with the connection cut at
/// the header timeout.
async fn idle_sequence<S>(s: &mut S)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let pause = Duration::from_secs(20);
    let mut rx = Responses { buf: Vec::new() };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").into_bytes();
    assert_served(exchange(s, &mut rx, &get("/one")).await, "/one");

    // A head split by a pause shorter than the header timeout.
    tokio::time::sleep(pause).await;
    s.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(pause).await;
    assert_served(exchange(s, &mut rx, b"st: app.test\r\n\r\n").await, "/two");

    // Two requests in one write after a pause: both answered, in order.
    tokio::time::sleep(pause).await;
    let both = [get("/three"), get("/four")].concat();
    assert_served(exchange(s, &mut rx, &both).await, "/three");
    assert_served(hold_clock("the second", rx.next(s)).await, "/four");

    // A request with a body (read whole before the app, as request buffering does), then a
    // pause, then one without: the body is never taken for a next request.
    tokio::time::sleep(pause).await;
    let post = b"POST /post HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello";
    let (head, body) = exchange(s, &mut rx, post)
        .await
        .expect("the POST's response");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(body.contains("body_len=5\n"), "{body}");
    tokio::time::sleep(pause).await;
    assert_served(exchange(s, &mut rx, &get("/after")).await, "/after");

    // A head never finished is cut at the header timeout from its first byte: the pause
    // before it does not start the timer, and nothing after it restarts it.
    tokio::time::sleep(pause).await;
    s.write_all(b"GET /five HTTP/1.1\r\n").await.unwrap();
    let start = tokio::time::Instant::now();
    tokio::time::timeout(KEEPALIVE * 2, rx.next(s))
        .await
        .expect("the unfinished head is cut off");
    let waited = start.elapsed();
    assert!(
        waited >= HEADER && waited < HEADER + Duration::from_secs(2),
        "closed after {waited:?}"
    );
}

/// After one answered request, the connection closes at the keep-alive timeout.
async fn idle_until_closed<S>(s: &mut S)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut rx = Responses { buf: Vec::new() };
    let req = b"GET /six HTTP/1.1\r\nHost: app.test\r\n\r\n";
    assert_served(exchange(s, &mut rx, req).await, "/six");
    let start = tokio::time::Instant::now();
    let end = tokio::time::timeout(KEEPALIVE * 2, rx.next(s))
        .await
        .expect("the idle connection is closed");
    assert!(end.is_none());
    let waited = start.elapsed();
    assert!(
        waited >= KEEPALIVE && waited < KEEPALIVE + Duration::from_secs(2),
        "closed after {waited:?}"
    );
}

/// `Connection: close` is answered and the connection ends right after.
async fn closes_when_asked<S>(s: &mut S)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut rx = Responses { buf: Vec::new() };
    let req = b"GET /seven HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let (head, _) = exchange(s, &mut rx, req).await.expect("the response");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(hold_clock("the close", rx.next(s)).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_idle_keepalive_connection_is_served_again_after_each_pause() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (cfg, der) = config(dir.path(), app);
    let sl = Sluice::start(&cfg).await;
    let (tls_fe, plain_fe) = (sl.addr("web"), sl.addr("plain"));
    let tls = || async {
        hold_clock("handshake", async {
            let tcp = connect_from(CLIENT_IP, tls_fe).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
            tls_connector(&der, &[b"http/1.1"])
                .connect(name, tcp)
                .await
                .unwrap()
        })
        .await
    };
    let plain = || async { connect_from(CLIENT_IP, plain_fe).await.unwrap() };

    // TLS with ALPN http/1.1, and plain HTTP (the version told by the first bytes).
    idle_sequence(&mut tls().await).await;
    idle_sequence(&mut plain().await).await;
    idle_until_closed(&mut tls().await).await;
    idle_until_closed(&mut plain().await).await;
    closes_when_asked(&mut tls().await).await;
    closes_when_asked(&mut plain().await).await;
    sl.shutdown().await;
}
