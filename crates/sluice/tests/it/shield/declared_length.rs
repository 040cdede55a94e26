//! `Content-Length: 10000000000` (issue #12): over HTTP/1.1 and HTTP/2, to an HTTP and a
//! uwsgi backend, the edge answers 413 (default `max_body`, 1 MiB) and the app server never
//! sees a connection (a listener posing as the app counts its accepts).

use std::sync::atomic::Ordering;

use super::shield_peers::*;
use crate::support::edge::{raw_request, status_of, tls_table};
use crate::support::Sluice;

const HUGE: u64 = 10_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_above_max_body_gets_413_and_never_reaches_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let (tls_line, der) = tls_table(dir.path());
    let (http_app, http_accepts) = counting_listener().await;
    let (uwsgi_app, uwsgi_accepts) = counting_listener().await;
    let cfg = global()
        + &frontend("http_plain", "http", "")
        + &frontend("http_tls", "http", &tls_line)
        + &frontend("uwsgi_plain", "uwsgi", "")
        + &frontend("uwsgi_tls", "uwsgi", &tls_line)
        + &backend("http", "http", &http_app.to_string())
        + &backend("uwsgi", "uwsgi", &uwsgi_app.to_string());
    let sl = Sluice::start(&cfg).await;

    let mut failures = Vec::new();
    for (proto, accepts) in [("http", &http_accepts), ("uwsgi", &uwsgi_accepts)] {
        let h1 = format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {HUGE}\r\nConnection: close\r\n\r\n"
        );
        let resp = raw_request(sl.addr(&format!("{proto}_plain")), h1.as_bytes()).await;
        let seen = accepts.load(Ordering::SeqCst);
        if status_of(&resp) != "413" || seen != 0 {
            failures.push(format!(
                "HTTP/1.1 to {proto}: status {:?}, app accepted {seen} connection(s)",
                resp.lines().next().unwrap_or("")
            ));
        }
        let before = seen;
        let to = sl.addr(&format!("{proto}_tls"));
        let got = tokio::time::timeout(
            NORMAL_WAIT,
            h2_once(to, &der, "POST", "/upload", Some(HUGE)),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {NORMAL_WAIT:?}")));
        let seen = accepts.load(Ordering::SeqCst) - before;
        if !matches!(got, Ok((413, _))) || seen != 0 {
            failures.push(format!(
                "HTTP/2 to {proto}: {:?}, app accepted {seen} connection(s)",
                got.map(|(s, _)| s)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "Content-Length: {HUGE} (max_body 1 MiB): {failures:#?}"
    );
    sl.shutdown().await;
}
