//! The forwarding-header policy end to end (#15), on loopback: a client's own
//! `X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` sent
//! through a sluice balancer (PROXY v2) to a sluice edge never reach the real uWSGI nor an HTTP
//! app: they see the edge's values only. Behind a trusted HTTP hop (`real_ip_header`,
//! `recursive`), a table of hop lists, each with the client (REMOTE_ADDR, `$remote_addr`)
//! and the fields the apps get. Without uwsgi's python3 plugin the uWSGI half SKIPs loudly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::edge::*;
use crate::support::*;

const ALL: &str = "emit = [\"x-forwarded-for\", \"x-real-ip\", \"x-forwarded-proto\", \
                   \"x-forwarded-host\", \"forwarded\"]";

/// A WSGI app (no Flask) answering REMOTE_ADDR, REMOTE_PORT and every HTTP_* variable,
/// one `KEY=VALUE` line each, sorted.
const ENV_APP: &str = r#"
def application(environ, start_response):
    keys = sorted(k for k in environ if k.startswith("HTTP_") or k in ("REMOTE_ADDR", "REMOTE_PORT"))
    body = "".join("%s=%s\n" % (k, environ[k]) for k in keys).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// The real uWSGI running [`ENV_APP`]; None after a SKIP line.
async fn env_uwsgi(dir: &Path) -> Option<(ChildGuard, PathBuf)> {
    start_uwsgi_wsgi(dir, ENV_APP, &["--threads", "2"]).await
}

/// An edge frontend `name` on `backend` with `extra` lines (PROXY, `[frontend.forwarded]`).
fn edge(dir: &Path, name: &str, backend: &str, extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"{backend}\"\naccess_log = \"{d}/{name}.log\"\n\
         log_format = \"$remote_addr $remote_port $realip_remote_addr $request\"\n{extra}\n\n",
        d = dir.display()
    )
}

fn backends(uw: Option<&Path>, ht: std::net::SocketAddr) -> String {
    // Without uWSGI, the uwsgi frontends point at a socket nobody serves (never asked).
    let uw = uw.map_or("127.0.0.1:9".to_string(), |p| {
        format!("unix:{}", p.display())
    });
    format!(
        "[[backend]]\nname = \"uw\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n\n\
         [[backend]]\nname = \"ht\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{ht}\"\n"
    )
}

async fn get(to: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n");
    let resp = raw_request(to, req.as_bytes()).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    resp
}

/// uWSGI's answer as a map of its variables.
fn vars(resp: &str) -> BTreeMap<String, String> {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every value of header `name` in the HTTP echo app's copy of the request head.
fn echoed(resp: &str, name: &str) -> Vec<String> {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

const SPOOF: &str = "X-Forwarded-For: 8.8.8.8\r\nForwarded: for=8.8.8.8;proto=https\r\n\
                     X-Real-IP: 8.8.8.8\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n";

#[tokio::test]
async fn client_forwarding_fields_never_reach_apps_through_the_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let uw = env_uwsgi(dir.path()).await;
    let ht = http_echo_app().await;
    let pp =
        format!("proxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n[frontend.forwarded]\n{ALL}");
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}",
        edge(dir.path(), "fw_uw", "uw", &pp),
        edge(dir.path(), "fw_ht", "ht", &pp),
        backends(uw.as_ref().map(|u| u.1.as_path()), ht)
    );
    let edges = Sluice::start(&cfg).await;
    let lb = |name: &str, to: std::net::SocketAddr| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}\"\n\n\
             [[backend]]\nname = \"{name}\"\nsend_proxy = \"v2\"\n[[backend.servers]]\naddr = \"{to}\"\n\n"
        )
    };
    let lbcfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}",
        lb("fw_lb_uw", edges.addr("fw_uw")),
        lb("fw_lb_ht", edges.addr("fw_ht"))
    );
    let lbs = Sluice::start(&lbcfg).await;
    let forwarded = "for=127.0.0.2;proto=http;host=\"app.test\"";

    if uw.is_some() {
        let resp = get(lbs.addr("fw_lb_uw"), "/", SPOOF).await;
        assert!(
            !resp.contains("8.8.8.8") && !resp.contains("evil"),
            "{resp}"
        );
        let v = vars(&resp);
        for (k, want) in [
            ("REMOTE_ADDR", "127.0.0.2"),
            ("HTTP_X_FORWARDED_FOR", "127.0.0.2"),
            ("HTTP_X_REAL_IP", "127.0.0.2"),
            ("HTTP_X_FORWARDED_PROTO", "http"),
            ("HTTP_X_FORWARDED_HOST", "app.test"),
            ("HTTP_FORWARDED", forwarded),
        ] {
            assert_eq!(v.get(k).map(String::as_str), Some(want), "{k}: {resp}");
        }
    }
    let resp = get(lbs.addr("fw_lb_ht"), "/", SPOOF).await;
    assert!(
        !resp.contains("8.8.8.8") && !resp.contains("evil"),
        "{resp}"
    );
    for (k, want) in [
        ("x-forwarded-for", "127.0.0.2"),
        ("x-real-ip", "127.0.0.2"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.test"),
        ("forwarded", forwarded),
    ] {
        assert_eq!(echoed(&resp, k), [want], "{k}: {resp}");
    }
    let line = wait_for_log_line(&dir.path().join("fw_ht.log"), &["GET /"]).await;
    assert!(line.starts_with("127.0.0.2 "), "{line}");
    lbs.shutdown().await;
    edges.shutdown().await;
}

/// (case, frontend kind, request fields, REMOTE_ADDR, REMOTE_PORT or "", the app's
/// X-Forwarded-For, the app's Forwarded).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("no header: the hop is the client", "xff", "", "127.0.0.2", "", "127.0.0.2",
     "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("one client", "xff", "X-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7", "0",
     "203.0.113.7, 127.0.0.2", "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("spoofed entries left of the client, trusted hops skipped", "xff",
     "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3\r\n", "203.0.113.7", "0",
     "6.6.6.6, 203.0.113.7, 10.1.2.3, 127.0.0.2", "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("several header lines are one list", "xff",
     "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-For: 10.1.2.3\r\n", "203.0.113.7", "0",
     "6.6.6.6, 203.0.113.7, 10.1.2.3, 127.0.0.2", "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("IPv6 with a port", "xff", "X-Forwarded-For: [2001:db8::7]:4711, 10.1.2.3\r\n",
     "2001:db8::7", "4711", "[2001:db8::7]:4711, 10.1.2.3, 127.0.0.2",
     "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("malformed entry on the walk: the hop stays the client", "xff",
     "X-Forwarded-For: 203.0.113.7, junk, 10.1.2.3\r\n", "127.0.0.2", "",
     "203.0.113.7, junk, 10.1.2.3, 127.0.0.2", "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("every entry trusted: the leftmost", "xff", "X-Forwarded-For: 10.9.9.9, 10.1.2.3\r\n",
     "10.9.9.9", "0", "10.9.9.9, 10.1.2.3, 127.0.0.2", "for=127.0.0.2;proto=http;host=\"app.test\""),
    ("Forwarded, recursive, IPv6 quoted", "fwd",
     "Forwarded: for=6.6.6.6, for=\"[2001:db8::7]\";proto=https, for=10.1.2.3\r\n",
     "2001:db8::7", "0", "127.0.0.2",
     "for=6.6.6.6, for=\"[2001:db8::7]\";proto=https, for=10.1.2.3, for=127.0.0.2;proto=http;host=\"app.test\""),
    ("Forwarded that does not parse is dropped", "fwd",
     "Forwarded: for=1.2.3.4;for=5.6.7.8\r\n", "127.0.0.2", "", "127.0.0.2",
     "for=127.0.0.2;proto=http;host=\"app.test\""),
];

#[tokio::test]
async fn trusted_http_hop_real_ip_recursive_table() {
    let dir = tempfile::tempdir().unwrap();
    let uw = env_uwsgi(dir.path()).await;
    let ht = http_echo_app().await;
    let policy = |header: &str| {
        format!(
            "[frontend.forwarded]\ntrusted = [\"127.0.0.2/32\", \"10.0.0.0/8\"]\n\
             real_ip_header = \"{header}\"\nrecursive = true\n{ALL}"
        )
    };
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}{}{}",
        edge(dir.path(), "cdn_xff_uw", "uw", &policy("X-Forwarded-For")),
        edge(dir.path(), "cdn_xff_ht", "ht", &policy("X-Forwarded-For")),
        edge(dir.path(), "cdn_fwd_uw", "uw", &policy("forwarded")),
        edge(dir.path(), "cdn_fwd_ht", "ht", &policy("forwarded")),
        backends(uw.as_ref().map(|u| u.1.as_path()), ht)
    );
    let sl = Sluice::start(&cfg).await;
    for (i, (name, kind, fields, client, port, xff, fwd)) in CASES.iter().enumerate() {
        let path = format!("/case{i}");
        if uw.is_some() {
            let resp = get(sl.addr(&format!("cdn_{kind}_uw")), &path, fields).await;
            let v = vars(&resp);
            let got = |k: &str| v.get(k).map(String::as_str);
            assert_eq!(got("REMOTE_ADDR"), Some(*client), "{name}: {resp}");
            if !port.is_empty() {
                assert_eq!(got("REMOTE_PORT"), Some(*port), "{name}: {resp}");
            }
            assert_eq!(got("HTTP_X_REAL_IP"), Some(*client), "{name}: {resp}");
            assert_eq!(got("HTTP_X_FORWARDED_FOR"), Some(*xff), "{name}: {resp}");
            assert_eq!(got("HTTP_FORWARDED"), Some(*fwd), "{name}: {resp}");
        }
        let resp = get(sl.addr(&format!("cdn_{kind}_ht")), &path, fields).await;
        assert_eq!(echoed(&resp, "x-real-ip"), [*client], "{name}: {resp}");
        assert_eq!(echoed(&resp, "x-forwarded-for"), [*xff], "{name}: {resp}");
        assert_eq!(echoed(&resp, "forwarded"), [*fwd], "{name}: {resp}");
        // The access line: $remote_addr is the chosen client, $realip_remote_addr the hop.
        let log = dir.path().join(format!("cdn_{kind}_ht.log"));
        let line = wait_for_log_line(&log, &[&format!("GET {path} ")]).await;
        assert!(line.starts_with(&format!("{client} ")), "{name}: {line}");
        assert!(line.contains(" 127.0.0.2 GET"), "{name}: {line}");
    }
    sl.shutdown().await;
}
