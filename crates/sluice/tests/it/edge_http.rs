//! The HTTP edge end to end, in-process, on loopback: the real client from a trusted PROXY
//! header reaches the access log, REMOTE_ADDR and X-Forwarded-For (the client's own copy
//! removed); PROXY policy rejections; every error status (400, 413, 431, 502, 503, 504); the
//! JSON access log; retries.

#[path = "edge_buffering/mod.rs"]
mod buffering;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::support::edge::*;
use crate::support::*;

const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
const PROXY_LINE: &[u8] = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 443\r\n";
const GET: &str = "GET /hello?x=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: edge-test\r\nX-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n";

/// Two TLS frontends behind a trusted balancer at 127.0.0.10: `uw` (uwsgi app) and `ht`
/// (HTTP app), each with its own access log.
fn proxied_config(
    dir: &Path,
    uw: std::net::SocketAddr,
    ht: std::net::SocketAddr,
) -> (String, Vec<u8>) {
    let (tls, der) = tls_table(dir);
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"uw\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"uwsgi\"\n\
         access_log = \"{d}/uw.log\"\nproxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n{tls}\n\n\
         [[frontend]]\nname = \"ht\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"http\"\n\
         access_log = \"{d}/ht.log\"\nproxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n{tls}\n\n\
         [[backend]]\nname = \"uwsgi\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n\n\
         [[backend]]\nname = \"http\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{ht}\"\n",
        d = dir.display()
    );
    (cfg, der)
}

#[tokio::test]
async fn trusted_proxy_client_reaches_log_remote_addr_and_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let (uw, ht) = (uwsgi_app().await, http_echo_app().await);
    let (cfg, der) = proxied_config(dir.path(), uw, ht);
    let sl = Sluice::start(&cfg).await;

    let resp = tls_request(BALANCER, sl.addr("uw"), PROXY_LINE, &der, GET)
        .await
        .unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    for want in [
        "REMOTE_ADDR=127.0.0.2\n",
        "REMOTE_PORT=40000\n",
        "HTTPS=on\n",
        "SSL_PROTOCOL=TLSv1.3\n",
        "SSL_SESSION_REUSED=.\n",
        "REQUEST_SCHEME=https\n",
        "SERVER_NAME=app.test\n",
        "SERVER_PORT=443\n",
        "QUERY_STRING=x=1\n",
    ] {
        assert!(resp.contains(want), "missing {want:?} in {resp}");
    }
    let line = wait_for_log_line(&dir.path().join("uw.log"), &["GET /hello?x=1"]).await;
    assert!(
        line.starts_with("127.0.0.2 - - ["),
        "first field is the real client: {line}"
    );
    assert!(line.contains("\"GET /hello?x=1 HTTP/1.1\" 200 "), "{line}");
    assert!(line.ends_with("\"-\" \"edge-test\""), "{line}");

    let resp = tls_request(BALANCER, sl.addr("ht"), PROXY_LINE, &der, GET)
        .await
        .unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    let lower = resp.to_ascii_lowercase();
    // The client's own X-Forwarded-For (10.9.9.9) is not believed: the client is no trusted
    // hop (`[frontend.forwarded]`, #15), so the app gets the edge's value alone.
    assert!(lower.contains("x-forwarded-for: 127.0.0.2\r\n"), "{resp}");
    assert!(!lower.contains("10.9.9.9"), "{resp}");
    assert!(lower.contains("x-real-ip: 127.0.0.2\r\n"), "{resp}");
    assert!(lower.contains("x-forwarded-proto: https\r\n"), "{resp}");
    let line = wait_for_log_line(&dir.path().join("ht.log"), &["GET /hello?x=1"]).await;
    assert!(line.starts_with("127.0.0.2 - - ["), "{line}");
    sl.shutdown().await;
}

#[tokio::test]
async fn untrusted_header_and_missing_header_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (uw, ht) = (uwsgi_app().await, http_echo_app().await);
    // A frontend name of its own: the rejection counters are process-wide.
    let cfg = proxied_config(dir.path(), uw, ht)
        .0
        .replace("name = \"uw\"", "name = \"uw_rejects\"");
    let sl = Sluice::start(&cfg).await;
    let fe = sl.addr("uw_rejects");

    // 127.0.0.2 is not trusted: its PROXY header (claiming another client) is refused.
    let mut c = connect_from(CLIENT_IP, fe).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut c,
        b"PROXY TCP4 127.0.0.11 127.0.0.1 1 443\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(closed_without_data(&mut c).await, "untrusted peer served");
    wait_until("the untrusted header counted", || {
        proxy_rejections("uw_rejects", "untrusted") == 1
    })
    .await;

    // The trusted balancer must send a header: a bare request is refused.
    let mut c = connect_from(BALANCER, fe).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_without_data(&mut c).await,
        "headerless balancer served"
    );
    // Counted under the decoder's reason (not a PROXY header at all), not as untrusted.
    wait_until("the missing header counted", || {
        proxy_rejections("uw_rejects", "") == 2
    })
    .await;
    assert_eq!(proxy_rejections("uw_rejects", "untrusted"), 1);
    // Both connections ended at the header check, so no request line can follow.
    let log = std::fs::read_to_string(dir.path().join("uw.log")).unwrap_or_default();
    assert!(
        log.is_empty(),
        "rejected connections logged requests: {log}"
    );
    sl.shutdown().await;
}

/// Plain HTTP frontends for the error cases: `ok` (uwsgi app, max_body 1 KiB, 300ms read
/// upstream timeout), `dead` (nothing listens), `down` (health checks mark it down).
fn error_config(dir: &Path, uw: std::net::SocketAddr, json: bool) -> String {
    let dead = dead_addr();
    let fmt = if json { "json" } else { "combined" };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"ok\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/ok.log\"\naccess_log_format = \"{fmt}\"\nmax_body = 1024\n\n\
         [[frontend]]\nname = \"dead\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"dead\"\n\n\
         [[frontend]]\nname = \"down\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"down\"\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\ntimeouts = {{ connect = \"1s\", read = \"300ms\" }}\n\
         [[backend.servers]]\naddr = \"{uw}\"\n\n\
         [[backend]]\nname = \"dead\"\nprotocol = \"uwsgi\"\nretries = 1\n\
         [[backend.servers]]\naddr = \"{dead}\"\n\n\
         [[backend]]\nname = \"down\"\nprotocol = \"uwsgi\"\n\
         health = {{ kind = \"tcp\", interval = \"50ms\", timeout = \"50ms\", rise = 1, fall = 1 }}\n\
         [[backend.servers]]\naddr = \"{dead}\"\n",
        d = dir.display()
    )
}

#[tokio::test]
async fn each_failure_has_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let uw = uwsgi_app().await;
    let sl = Sluice::start(&error_config(dir.path(), uw, false)).await;
    let ok = sl.addr("ok");

    let r = raw_request(
        ok,
        b"GET / HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "400", "malformed head: {r}");

    let mut chunked = String::from(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        chunked.push_str(&format!("200\r\n{}\r\n", "b".repeat(512)));
    }
    chunked.push_str("0\r\n\r\n");
    let r = raw_request(ok, chunked.as_bytes()).await;
    assert_eq!(status_of(&r), "413", "chunked body over max_body: {r}");

    // A small chunked body is buffered and arrives with its length.
    let small = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let r = raw_request(ok, small.as_bytes()).await;
    assert_eq!(status_of(&r), "200", "{r}");
    assert!(
        r.contains("body_len=5\n") && r.contains("CONTENT_LENGTH=5\n"),
        "{r}"
    );

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(40 * 1024)
    );
    let r = raw_request(ok, huge.as_bytes()).await;
    assert_eq!(status_of(&r), "431", "huge header: {r}");

    let r = raw_request(
        ok,
        b"GET /garbage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "502", "garbage from the app: {r}");

    let r = raw_request(
        ok,
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "504", "app too slow: {r}");

    let r = raw_request(
        sl.addr("dead"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "502", "app unreachable: {r}");

    let down = sl.pool("down");
    wait_until("health checks to mark the server down", || !down.any_up()).await;
    let r = raw_request(
        sl.addr("down"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "503", "no server up: {r}");

    let log = dir.path().join("ok.log");
    for status in ["400", "413", "431", "502", "504"] {
        let line = wait_for_log_line(&log, &[&format!("\" {status} ")]).await;
        assert!(line.starts_with("127.0.0.2 - - ["), "{line}");
    }
    sl.shutdown().await;
}

#[tokio::test]
async fn json_access_log_has_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let uw = uwsgi_app().await;
    let sl = Sluice::start(&error_config(dir.path(), uw, true)).await;
    let r = raw_request(
        sl.addr("ok"),
        b"GET /j?q=%221 HTTP/1.1\r\nHost: app.test\r\nReferer: http://r.test/\r\nUser-Agent: a\"b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");
    let body_len = r.split("\r\n\r\n").nth(1).unwrap().len();
    let line = wait_for_log_line(&dir.path().join("ok.log"), &["/j?q="]).await;
    assert!(line.starts_with("{\"remote_addr\":\"127.0.0.2\""), "{line}");
    for part in [
        "\"request\":\"GET /j?q=%221 HTTP/1.1\"".to_string(),
        "\"status\":200".into(),
        format!("\"body_bytes_sent\":{body_len}"),
        "\"http_referer\":\"http://r.test/\"".into(),
        "\"http_user_agent\":\"a\\\"b\"".into(),
        "\"host\":\"app.test\"".into(),
        "\"protocol\":\"HTTP/1.1\"".into(),
        "\"tls_version\":null".into(),
        "\"tls_resumed\":false".into(),
        "\"frontend\":\"ok\"".into(),
        "\"upstream\":\"srv1\"".into(),
        "\"request_time\":".into(),
        "\"upstream_response_time\":".into(),
    ] {
        assert!(line.contains(&part), "{part} missing in {line}");
    }
    assert!(line.ends_with('}') && !line.contains('\n'), "{line}");
    sl.shutdown().await;
}

#[tokio::test]
async fn a_refused_server_is_retried_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let uw = uwsgi_app().await;
    let dead = dead_addr();
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/fe.log\"\naccess_log_format = \"json\"\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\nretries = 2\n\
         [[backend.servers]]\nname = \"gone\"\naddr = \"{dead}\"\n\
         [[backend.servers]]\nname = \"live\"\naddr = \"{uw}\"\n",
        d = dir.path().display()
    );
    let sl = Sluice::start(&cfg).await;
    for i in 0..4 {
        let req = format!(
            "POST /p{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        let r = raw_request(sl.addr("fe"), req.as_bytes()).await;
        assert_eq!(status_of(&r), "200", "request {i}: {r}");
        assert!(r.contains("body_len=3\n"), "{r}");
        let line = wait_for_log_line(&dir.path().join("fe.log"), &[&format!("/p{i} ")]).await;
        assert!(line.contains("\"upstream\":\"live\""), "{line}");
    }
    sl.shutdown().await;
}
