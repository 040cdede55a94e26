//! The edge with real clients: curl over HTTP/2 (ALPN, `-k`) and a streamed 100 MiB
//! download, and h2load for a quick throughput observation (SIGUSR1 log reopening is in
//! l4_lifecycle). Skips loudly without curl/h2load unless SLUICE_REQUIRE_INTEROP=1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::support;
use crate::support::edge::*;
use crate::support::*;

fn curl_bin() -> Option<PathBuf> {
    tool("curl", &["/usr/bin/curl", "curl"])
}

/// One TLS frontend `web` (json access log) in front of the test uwsgi app.
fn tls_config(dir: &Path, app: SocketAddr) -> String {
    let (c, k, _) = cert(dir);
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/web.log\"\naccess_log_format = \"json\"\n\
         tls = {{ cert = \"{c}\", key = \"{k}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        d = dir.display(),
        c = c.display(),
        k = k.display()
    )
}

async fn run_curl(curl: &Path, args: Vec<String>) -> String {
    let curl = curl.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::edge::curl(&curl, &args)
    })
    .await
    .unwrap()
}

fn resolve(addr: SocketAddr) -> String {
    format!("{HOST}:{}:{}", addr.port(), addr.ip())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_and_a_streamed_100_mib_response() {
    let Some(curl) = curl_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let sl = Sluice::start(&tls_config(dir.path(), app)).await;
    let fe = sl.addr("web");
    let url = |p: &str| format!("https://{HOST}:{}{p}", fe.port());
    let log = dir.path().join("web.log");

    let out = run_curl(
        &curl,
        vec![
            "--http2".into(),
            "-k".into(),
            "--resolve".into(),
            resolve(fe),
            "-A".into(),
            "curl-h2".into(),
            "-w".into(),
            "\nversion=%{http_version}".into(),
            url("/h2?x=1"),
        ],
    )
    .await;
    assert!(out.ends_with("\nversion=2"), "not HTTP/2: {out}");
    for want in [
        "REMOTE_ADDR=127.0.0.2\n",
        "SERVER_PROTOCOL=HTTP/2.0\n",
        "HTTP_HOST=app.test:",
        "HTTPS=on\n",
        "SERVER_NAME=app.test\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    let line = wait_for_log_line(&log, &["/h2?x=1"]).await;
    for part in [
        "{\"remote_addr\":\"127.0.0.2\"",
        "\"request\":\"GET /h2?x=1 HTTP/2.0\"",
        "\"status\":200",
        "\"protocol\":\"HTTP/2.0\"",
        "\"tls_version\":\"TLSv1.3\"",
        "\"http_user_agent\":\"curl-h2\"",
        "\"upstream\":\"srv1\"",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }

    let out = run_curl(
        &curl,
        vec![
            "--http1.1".into(),
            "-k".into(),
            "--resolve".into(),
            resolve(fe),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code} %{size_download}".into(),
            url("/big?mb=100"),
        ],
    )
    .await;
    assert_eq!(out, "200 104857600");
    let line = wait_for_log_line(&log, &["/big?mb=100"]).await;
    assert!(line.contains("\"body_bytes_sent\":104857600"), "{line}");
    assert!(line.contains("\"protocol\":\"HTTP/1.1\""), "{line}");
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_observation() {
    let Some(h2load) = tool("h2load", &["/usr/bin/h2load", "h2load"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let sl = Sluice::start(&tls_config(dir.path(), app)).await;
    let fe = sl.addr("web");
    let url = format!("https://127.0.0.1:{}/load", fe.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(h2load)
            .args(["-n", "2000", "-c", "10", "-m", "10", &url])
            .output()
            .expect("run h2load")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("h2load through the edge (debug build, test uwsgi app):\n{text}");
    assert!(
        text.contains("2000 succeeded"),
        "h2load did not complete every request: {text}"
    );
    sl.shutdown().await;
}
