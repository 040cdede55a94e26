//! The stats exports on the real binary, read as an operator's script would: `/;csv` parsed
//! as CSV (HAProxy's header, the same field count on every row, quoting) and `/stats.json`
//! with serde_json: a frontend's current sessions while a connection is held open, its bytes
//! after traffic, a down server's check detail, a backup server's flag, the process row; an
//! http frontend's responses by class and a failed TLS handshake as a request error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support;
use crate::support::admin::*;
use crate::support::*;
use tokio::io::AsyncWriteExt;

/// Frontend `plain` over backend `be` (s1, and `spare` as backup); frontend `chk` over
/// backend `checked`, whose only server is dead and health-checked over HTTP.
fn config(s1: SocketAddr, spare: SocketAddr) -> String {
    let dead = support::edge::dead_addr();
    format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"plain\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[frontend]]\nname = \"chk\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"checked\"\n\n\
         [[backend]]\nname = \"be\"\n\
         servers = [{{ name = \"s1\", addr = \"{s1}\" }}, \
         {{ name = \"spare\", addr = \"{spare}\", backup = true }}]\n\n\
         [[backend]]\nname = \"checked\"\n\
         health = {{ kind = \"http\", interval = \"50ms\", timeout = \"500ms\", rise = 1, fall = 1 }}\n\
         servers = [{{ name = \"gone\", addr = \"{dead}\" }}]\n"
    )
}

/// Splits one CSV line into fields (RFC 4180 quoting; no line breaks inside fields here).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `/;csv` as (header names, rows as name → value maps); checks the shape on the way.
async fn csv(admin: SocketAddr) -> Vec<std::collections::HashMap<String, String>> {
    let (status, head, body) = http_with_head(admin, "GET", "/;csv", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(header_value(&head, "content-type").is_some_and(|v| v.starts_with("text/plain")));
    let mut lines = body.lines();
    let header = lines.next().expect("header line");
    let names = csv_fields(header.strip_prefix("# ").expect("HAProxy's \"# \" header"));
    assert_eq!(&names[..4], ["pxname", "svname", "qcur", "qmax"]);
    assert_eq!(names[17], "status");
    assert_eq!(names.last().map(String::as_str), Some(""), "trailing comma");
    lines
        .map(|l| {
            let fields = csv_fields(l);
            assert_eq!(fields.len(), names.len(), "field count of {l:?}");
            names.iter().cloned().zip(fields).collect()
        })
        .collect()
}

fn row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    px: &str,
    sv: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r["pxname"] == px && r["svname"] == sv)
        .unwrap_or_else(|| panic!("no CSV row {px}/{sv}: {rows:?}"))
}

async fn stats_json(admin: SocketAddr) -> serde_json::Value {
    let (status, body) = http(admin, "GET", "/stats.json", &[], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

fn find<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test]
async fn csv_and_json_show_what_an_operator_checks() {
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s1, spare) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "spare").await,
    );
    let (sl, admin) = start(dir.path(), &config(s1.addr, spare.addr), 2).await;

    // One connection held open: one current session on `plain`, in both exports.
    let mut held = client(sl.addr("plain")).await;
    assert_eq!(read_line(&mut held).await.as_deref(), Some("s1"));
    let rows = csv(admin).await;
    let fe = row(&rows, "plain", "FRONTEND");
    assert_eq!((fe["scur"].as_str(), fe["stot"].as_str()), ("1", "1"));
    assert_eq!((fe["smax"].as_str(), fe["slim"].as_str()), ("1", "100"));
    assert_eq!(fe["status"], "OPEN");
    assert_eq!(fe["type"], "0");
    assert!(fe["rate_max"].parse::<u64>().unwrap() >= 1, "{fe:?}");
    let v = stats_json(admin).await;
    assert_eq!(find(&v["frontends"], "plain")["current"], 1);
    assert_eq!(v["process"]["current_connections"], 1);

    // Traffic, then closed: bytes in and out, nothing open, the peak kept.
    held.write_all(b"0123456789").await.unwrap();
    held.shutdown().await.unwrap();
    drop(held);
    let end = tokio::time::Instant::now() + DEADLINE;
    let fe = loop {
        let v = stats_json(admin).await;
        let fe = find(&v["frontends"], "plain").clone();
        if fe["current"] == 0 || tokio::time::Instant::now() > end {
            break fe;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(fe["current"], 0, "{fe}");
    assert_eq!(fe["max"], 1);
    assert_eq!(fe["bytes_in"], 10, "{fe}");
    assert_eq!(fe["bytes_out"], 3, "\"s1\\n\" from the server: {fe}");
    assert_eq!(fe["mode"], "tcp");
    assert_eq!(fe["http_responses"], serde_json::Value::Null);
    let rows = csv(admin).await;
    let fe = row(&rows, "plain", "FRONTEND");
    assert_eq!((fe["bin"].as_str(), fe["bout"].as_str()), ("10", "3"));

    // The backup server: flagged as such, not counted as active.
    let srv = row(&rows, "be", "spare");
    assert_eq!((srv["bck"].as_str(), srv["act"].as_str()), ("1", "0"));
    assert_eq!(srv["status"], "no check", "be has no [health]");
    assert_eq!(srv["type"], "2");
    let srv = row(&rows, "be", "s1");
    assert_eq!((srv["bck"].as_str(), srv["act"].as_str()), ("0", "1"));
    assert_eq!(srv["stot"], "1");
    let be = row(&rows, "be", "BACKEND");
    assert_eq!((be["status"].as_str(), be["act"].as_str()), ("UP", "1"));
    assert_eq!(be["bck"], "1");
    let v = stats_json(admin).await;
    let be = find(&v["backends"], "be");
    assert_eq!(find(&be["servers"], "spare")["backup"], true);
    assert_eq!(find(&be["servers"], "s1")["backup"], false);

    // The dead, checked server: down, with HAProxy's check status and the reason.
    let end = tokio::time::Instant::now() + DEADLINE;
    let gone = loop {
        let v = stats_json(admin).await;
        let gone = find(&find(&v["backends"], "checked")["servers"], "gone").clone();
        if gone["status"] == "DOWN" || tokio::time::Instant::now() > end {
            break gone;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(gone["status"], "DOWN", "{gone}");
    assert_eq!(gone["check"]["status"], "L4CON", "{gone}");
    assert_eq!(gone["check"]["detail"], "connection refused", "{gone}");
    assert_eq!(gone["downs"], 1);
    assert!(gone["since_s"].as_u64().is_some_and(|s| s < 60), "{gone}");
    let rows = csv(admin).await;
    let srv = row(&rows, "checked", "gone");
    assert_eq!(srv["status"], "DOWN");
    assert_eq!(srv["check_status"], "L4CON");
    assert_eq!(srv["last_chk"], "connection refused");
    assert_eq!(srv["chkdown"], "1");
    assert!(srv["lastchg"].parse::<u64>().is_ok(), "{srv:?}");
    assert_eq!(row(&rows, "checked", "BACKEND")["status"], "DOWN");

    // The process row.
    let p = &v["process"];
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["pid"], sl.pid());
    assert_eq!(p["max_connections"], 100);
    assert!(p["fd_limit"].as_u64().is_some_and(|n| n >= 100), "{p}");
    assert!(p["uptime_s"].as_u64().is_some_and(|s| s < 600), "{p}");
    assert!(p["threads"].as_u64().is_some_and(|n| n >= 1), "{p}");
}

#[tokio::test]
async fn export_aliases_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s1, spare) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "spare").await,
    );
    let (_sl, admin) = start(dir.path(), &config(s1.addr, spare.addr), 2).await;
    for path in ["/;json", "/stats;json", "/stats.json"] {
        let (status, head, body) = http_with_head(admin, "GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            header_value(&head, "content-type"),
            Some("application/json")
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect(path);
        assert!(v["frontends"].is_array() && v["backends"].is_array());
    }
    for path in ["/;csv", "/stats;csv"] {
        let (status, body) = http(admin, "GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.starts_with("# pxname,svname,"), "{path}: {body}");
    }
    // Read-only: a POST is refused, with the methods allowed.
    let (status, head, _) = http_with_head(admin, "POST", "/;csv", &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(header_value(&head, "allow"), Some("GET, HEAD"));
}

/// An http frontend with TLS: responses by class and a failed handshake, in both exports.
#[tokio::test]
async fn http_frontend_rows_count_responses_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::edge::http_echo_app().await;
    let (c, k, der) = support::edge::cert(dir.path());
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\nservers = [{{ addr = \"{app}\" }}]\n",
        c.display(),
        k.display()
    );
    let (sl, admin) = start(dir.path(), &cfg, 1).await;
    let get = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let bad = "GET /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: x\r\nConnection: close\r\n\r\n";
    for req in [get, get, bad] {
        support::edge::tls_request(CLIENT_IP, sl.addr("web"), b"", &der, req)
            .await
            .unwrap();
    }
    // Plain HTTP to the TLS port: a failed handshake.
    support::edge::raw_request(sl.addr("web"), get.as_bytes()).await;

    let end = tokio::time::Instant::now() + DEADLINE;
    let fe = loop {
        let v = stats_json(admin).await;
        let fe = find(&v["frontends"], "web").clone();
        let settled = fe["http_responses"]["4xx"] == 1 && fe["tls_failures"] == 1;
        if settled || tokio::time::Instant::now() > end {
            break fe;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(fe["mode"], "http");
    assert_eq!(fe["http_responses"]["2xx"], 2, "{fe}");
    assert_eq!(fe["http_responses"]["4xx"], 1, "{fe}");
    assert_eq!(fe["tls_failures"], 1, "{fe}");
    assert_eq!(fe["total"], 4, "{fe}");
    let rows = csv(admin).await;
    let fe = row(&rows, "web", "FRONTEND");
    assert_eq!(
        (fe["hrsp_2xx"].as_str(), fe["hrsp_4xx"].as_str()),
        ("2", "1")
    );
    assert_eq!((fe["req_tot"].as_str(), fe["ereq"].as_str()), ("3", "1"));
    assert_eq!(fe["stot"], "4");
    assert!(fe["bin"].parse::<u64>().unwrap() > 300, "{fe:?}");
}
