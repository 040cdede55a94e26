//! Strict HTTP at the edge, black-box over loopback (issue #12): Host rules (400), userinfo
//! in Host or :authority (400), the absolute-form target's authority in HTTP_HOST,
//! SERVER_NAME and the log, 405 for CONNECT/TRACE, `_` header names dropped unless
//! `underscores_in_headers`, and no HTTP/1 answer on an ALPN-h2 connection.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;

use crate::support::edge::*;
use crate::support::*;

/// Frontends `uw`/`ht` (uwsgi / HTTP app, JSON access logs), `uw_on`/`ht_on` (the same with
/// `underscores_in_headers = true`) and `tls` (uwsgi app over TLS, JSON access log).
fn config(dir: &Path, uw: SocketAddr, ht: SocketAddr, c: &Path, k: &Path) -> String {
    let fe = |name: &str, backend: &str, extra: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\n\
             backend = \"{backend}\"\naccess_log = \"{d}/{name}.log\"\n\
             access_log_format = \"json\"\n{extra}\n\n",
            d = dir.display()
        )
    };
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        c.display(),
        k.display()
    );
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}{}{}\
         [[backend]]\nname = \"uwsgi\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n\n\
         [[backend]]\nname = \"http\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{ht}\"\n",
        fe("uw", "uwsgi", ""),
        fe("ht", "http", ""),
        fe("uw_on", "uwsgi", "underscores_in_headers = true"),
        fe("ht_on", "http", "underscores_in_headers = true"),
        fe("tls", "uwsgi", &tls),
    )
}

async fn start(dir: &Path) -> (Sluice, Vec<u8>) {
    let (uw, ht) = (uwsgi_app().await, http_echo_app().await);
    let (c, k, der) = cert(dir);
    (Sluice::start(&config(dir, uw, ht, &c, &k)).await, der)
}

/// The JSON access line of `frontend` whose request contains `marker`.
async fn logged(dir: &Path, frontend: &str, marker: &str) -> serde_json::Value {
    let line = wait_for_log_line(&dir.join(format!("{frontend}.log")), &[marker]).await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// One HTTP/2 request over `io` (h2c prior knowledge or TLS after ALPN h2): (status, body).
async fn h2_request<IO>(io: IO, req: Request<Empty<Bytes>>) -> Result<(u16, String), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = within("h2 response", send.send_request(req))
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = within("h2 body", resp.into_body().collect())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn h2c(to: SocketAddr, req: Request<Empty<Bytes>>) -> (u16, String) {
    let tcp = client(to).await;
    h2_request(tcp, req).await.expect("h2c request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rules_give_400_and_never_reach_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, _) = start(dir.path()).await;
    for fe in ["uw", "ht"] {
        let to = sl.addr(fe);
        let cases: [(&str, &str, &str); 5] = [
            ("no-host", "GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
            (
                "two-hosts",
                "GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\nConnection: close\r\n\r\n",
                "400",
            ),
            (
                "userinfo",
                "GET /userinfo HTTP/1.1\r\nHost: user:pw@evil.example\r\nConnection: close\r\n\r\n",
                "400",
            ),
            (
                "bad-host",
                "GET /bad-host HTTP/1.1\r\nHost: a.example/x\r\nConnection: close\r\n\r\n",
                "400",
            ),
            ("http10", "GET /http10 HTTP/1.0\r\n\r\n", "200"),
        ];
        for (name, req, want) in cases {
            let resp = raw_request(to, req.as_bytes()).await;
            assert_eq!(status_of(&resp), want, "{fe} {name}: {resp}");
            if want == "400" {
                // The app echoes what it got; a 400 comes from the edge alone.
                assert!(
                    !resp.contains("REQUEST_METHOD") && !resp.contains("x-forwarded-for"),
                    "{fe} {name} reached the app: {resp}"
                );
            }
            let line = logged(dir.path(), fe, &format!("/{name} ")).await;
            assert_eq!(
                line["status"],
                want.parse::<u16>().unwrap(),
                "{fe} {name}: {line}"
            );
            if want == "400" {
                assert_eq!(line["upstream"], serde_json::Value::Null, "{line}");
            }
        }
    }
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_with_userinfo_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, der) = start(dir.path()).await;
    // h2c with prior knowledge on the plain port.
    let req = Request::get("http://user:pw@evil.example/h2-userinfo")
        .body(Empty::new())
        .unwrap();
    let (status, body) = h2c(sl.addr("uw"), req).await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("HTTP_HOST"), "reached the app: {body}");
    // A Host field with userinfo next to a clean :authority: refused too.
    let req = Request::get("http://a.example/h2-host-userinfo")
        .header("host", "user@evil.example")
        .body(Empty::new())
        .unwrap();
    assert_eq!(h2c(sl.addr("ht"), req).await.0, 400);
    // Over TLS with ALPN h2.
    let tcp = client(sl.addr("tls")).await;
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let tls = within("tls", tls_connector(&der, &[b"h2"]).connect(name, tcp))
        .await
        .unwrap();
    let req = Request::get("https://user:pw@app.test/tls-userinfo")
        .body(Empty::new())
        .unwrap();
    let (status, body) = h2_request(tls, req).await.unwrap();
    assert_eq!(status, 400, "{body}");
    let line = logged(dir.path(), "tls", "/tls-userinfo ").await;
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["protocol"], "HTTP/2.0", "{line}");
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_authority_replaces_host_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, _) = start(dir.path()).await;
    let abs = "GET http://a.example:8080/abs?q=1 HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    // uwsgi: HTTP_HOST and SERVER_NAME from the target, not from Host.
    let resp = raw_request(sl.addr("uw"), abs.as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    for want in [
        "HTTP_HOST=a.example:8080\n",
        "SERVER_NAME=a.example\n",
        "PATH_INFO=/abs\n",
        "QUERY_STRING=q=1\n",
    ] {
        assert!(resp.contains(want), "missing {want:?}: {resp}");
    }
    assert!(!resp.contains("b.example"), "the Host field leaked: {resp}");
    let line = logged(dir.path(), "uw", "/abs?q=1").await;
    assert_eq!(line["host"], "a.example:8080", "{line}");
    // HTTP app: one Host, the target's authority, and an origin-form target.
    let resp = raw_request(sl.addr("ht"), abs.as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    let head = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(head.starts_with("get /abs?q=1 http/1.1\r\n"), "{head}");
    assert_eq!(head.matches("\r\nhost: ").count(), 1, "{head}");
    assert!(head.contains("\r\nhost: a.example:8080\r\n"), "{head}");
    let line = logged(dir.path(), "ht", "/abs?q=1").await;
    assert_eq!(line["host"], "a.example:8080", "{line}");
    // HTTP/2: :authority wins over a different Host field, for uwsgi too.
    let req = Request::get("http://a.example/h2-authority")
        .header("host", "b.example")
        .body(Empty::new())
        .unwrap();
    let (status, body) = h2c(sl.addr("uw"), req).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("HTTP_HOST=a.example\n"), "{body}");
    assert!(body.contains("SERVER_NAME=a.example\n"), "{body}");
    assert!(!body.contains("b.example"), "{body}");
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_trace_get_405() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, _) = start(dir.path()).await;
    for fe in ["uw", "ht"] {
        for req in [
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nConnection: close\r\n\r\n",
            "TRACE /trace HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        ] {
            let resp = raw_request(sl.addr(fe), req.as_bytes()).await;
            assert_eq!(status_of(&resp), "405", "{fe} {req:?}: {resp:?}");
            assert!(resp.ends_with("405 Method Not Allowed\n"), "{resp:?}");
        }
        let line = logged(dir.path(), fe, "CONNECT a.example:443").await;
        assert_eq!(line["status"], 405, "{line}");
        assert!(line["body_bytes_sent"].as_u64().unwrap() > 0, "{line}");
        let line = logged(dir.path(), fe, "TRACE /trace").await;
        assert_eq!(line["status"], 405, "{line}");
    }
    // A 405 keeps the connection: the next request on it is served.
    let mut s = client(sl.addr("uw")).await;
    s.write_all(b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let resp = read_all(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
    assert!(
        resp.contains("HTTP/1.1 200 ") && resp.contains("PATH_INFO=/after\n"),
        "{resp}"
    );
    // HTTP/2 TRACE.
    let req = Request::builder()
        .method("TRACE")
        .uri("http://a.example/h2-trace")
        .body(Empty::new())
        .unwrap();
    assert_eq!(h2c(sl.addr("ht"), req).await.0, 405);
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_header_names_reach_no_app_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, _) = start(dir.path()).await;
    let req = "GET /u HTTP/1.1\r\nHost: a.example\r\nX-Forwarded_For: 9.9.9.9\r\nX-Foo_Bar: 1\r\nX-Plain: 2\r\nConnection: close\r\n\r\n";
    // Off (default): gone for both kinds of app; X-Forwarded-For is the real client's.
    let resp = raw_request(sl.addr("uw"), req.as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    assert!(
        !resp.contains("9.9.9.9") && !resp.contains("FOO_BAR"),
        "{resp}"
    );
    assert!(resp.contains("HTTP_X_PLAIN=2\n"), "{resp}");
    let resp = raw_request(sl.addr("ht"), req.as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        !lower.contains("9.9.9.9") && !lower.contains("x-foo_bar"),
        "{resp}"
    );
    assert!(
        lower.contains("\r\nx-forwarded-for: 127.0.0.2\r\n"),
        "{resp}"
    );
    assert!(lower.contains("\r\nx-plain: 2\r\n"), "{resp}");
    // On: both pass them (uwsgi as HTTP_X_FOO_BAR, like nginx).
    let resp = raw_request(sl.addr("uw_on"), req.as_bytes()).await;
    assert!(resp.contains("HTTP_X_FOO_BAR=1\n"), "{resp}");
    let resp = raw_request(sl.addr("ht_on"), req.as_bytes()).await;
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-foo_bar: 1\r\n"), "{resp}");
    // Except a name that aliases a forwarding field (`[frontend.forwarded]`): an app mapping
    // `_` and `-` alike would take it for the edge's X-Forwarded-For.
    assert!(
        !lower.contains("x-forwarded_for") && !lower.contains("9.9.9.9"),
        "{resp}"
    );
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_on_an_alpn_h2_connection_gets_no_http1_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, der) = start(dir.path()).await;
    let tcp = client(sl.addr("tls")).await;
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = within("tls", tls_connector(&der, &[b"h2"]).connect(name, tcp))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"GET /h1-on-h2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // read_all returns at EOF or reset: the edge closed the connection.
    let got = read_all(&mut tls).await;
    assert!(!got.contains("HTTP/1."), "answered as HTTP/1: {got:?}");
    // What came back, if anything, is HTTP/2 frames: the server SETTINGS first.
    let b = got.as_bytes();
    assert!(
        b.is_empty() || b.get(3) == Some(&4),
        "not a SETTINGS frame: {got:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("tls.log")).unwrap_or_default();
    assert!(!log.contains("/h1-on-h2"), "served: {log}");
    // The same port still serves HTTP/2 and HTTP/1.1 by ALPN.
    let tcp = client(sl.addr("tls")).await;
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let tls = within("tls", tls_connector(&der, &[b"h2"]).connect(name, tcp))
        .await
        .unwrap();
    let req = Request::get("https://app.test/h2-ok")
        .body(Empty::new())
        .unwrap();
    assert_eq!(h2_request(tls, req).await.unwrap().0, 200);
    let resp = tls_request(
        CLIENT_IP,
        sl.addr("tls"),
        b"",
        &der,
        "GET /h1-ok HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    sl.shutdown().await;
}
