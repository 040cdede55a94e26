//! HTTP/1.1 keep-alive over TLS across idle periods, under paused tokio time: the edge lets
//! go of hyper's connection while a client is idle and builds it again on the next bytes.
//! A client sees none of it: a next request after a long pause, a head split across a pause,
//! pipelined requests, the header timeout for a head never finished (not restarted by the
//! pause), and the keep-alive timeout for an idle connection all behave as before.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::support::edge::*;
use crate::support::*;

const HEADER: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(50);

/// A TLS frontend in front of the test uwsgi app, and the certificate's DER.
fn config(dir: &Path, app: std::net::SocketAddr) -> (String, Vec<u8>) {
    let (tls, der) = tls_table(dir);
    let cfg = format!(
        "[global]\nmax_connections = 20\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         timeouts = {{ header = \"30s\", keepalive = \"50s\" }}\n{tls}\n\n\
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

#[tokio::test(start_paused = true)]
async fn an_idle_keepalive_connection_is_served_again_after_each_pause() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (cfg, der) = config(dir.path(), app);
    let sl = Sluice::start(&cfg).await;
    let fe = sl.addr("web");
    let pause = Duration::from_secs(20);
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = hold_clock("handshake", async {
        let tcp = connect_from(CLIENT_IP, fe).await.unwrap();
        tls_connector(&der, &[b"http/1.1"])
            .connect(name, tcp)
            .await
            .unwrap()
    })
    .await;
    let mut rx = Responses { buf: Vec::new() };

    let resp = hold_clock("the first response", async {
        tls.write_all(b"GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        rx.next(&mut tls).await
    })
    .await;
    assert_served(resp, "/one");

    // A head split by a pause longer than nothing but shorter than the header timeout.
    tokio::time::sleep(pause).await;
    tls.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(pause).await;
    let resp = hold_clock("the split request's response", async {
        tls.write_all(b"st: app.test\r\n\r\n").await.unwrap();
        rx.next(&mut tls).await
    })
    .await;
    assert_served(resp, "/two");

    // Two requests in one write after a pause: both answered, in order.
    tokio::time::sleep(pause).await;
    let (three, four) = hold_clock("the pipelined responses", async {
        tls.write_all(
            b"GET /three HTTP/1.1\r\nHost: app.test\r\n\r\nGET /four HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .await
        .unwrap();
        (rx.next(&mut tls).await, rx.next(&mut tls).await)
    })
    .await;
    assert_served(three, "/three");
    assert_served(four, "/four");

    // A head never finished is cut at the header timeout from its first byte: the pause
    // before it does not start the timer, and nothing after it restarts it.
    tokio::time::sleep(pause).await;
    tls.write_all(b"GET /five HTTP/1.1\r\n").await.unwrap();
    let start = tokio::time::Instant::now();
    tokio::time::timeout(KEEPALIVE * 2, rx.next(&mut tls))
        .await
        .expect("the unfinished head is cut off");
    let waited = start.elapsed();
    assert!(
        waited >= HEADER && waited < HEADER + Duration::from_secs(2),
        "closed after {waited:?}"
    );

    // An idle connection closes at the keep-alive timeout from its last response.
    let mut tls = hold_clock("second handshake", async {
        let tcp = connect_from(CLIENT_IP, fe).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
        tls_connector(&der, &[b"http/1.1"])
            .connect(name, tcp)
            .await
            .unwrap()
    })
    .await;
    let mut rx = Responses { buf: Vec::new() };
    let resp = hold_clock("the response", async {
        tls.write_all(b"GET /six HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        rx.next(&mut tls).await
    })
    .await;
    assert_served(resp, "/six");
    let start = tokio::time::Instant::now();
    let end = tokio::time::timeout(KEEPALIVE * 2, rx.next(&mut tls))
        .await
        .expect("the idle connection is closed");
    assert!(end.is_none());
    let waited = start.elapsed();
    assert!(
        waited >= KEEPALIVE && waited < KEEPALIVE + Duration::from_secs(2),
        "closed after {waited:?}"
    );
    sl.shutdown().await;
}
