//! Tests for the edge keys as `config::load` sees them (`config::edge`): defaults, refused
//! zero durations and out-of-range limits, keys that do not belong to the frontend's or
//! backend's mode, each at the file:line:col of the offending key or value.

use std::time::Duration;

use super::*;
use crate::config::model::{DEFAULT_MAX_QUEUE, HTTP_MAX_CONNECTIONS, UWSGI_MAX_CONNECTIONS};

/// An edge (`web`, uwsgi backend `app`) and a balancer (`lb`, backend `l4`). `{FE}` is
/// replaced by lines for the edge frontend, `{BE}` for its backend, `{LBFE}` / `{LBBE}` for
/// the balancer's.
const EDGE: &str = r#"[global]
max_connections = 100

[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
mode = "http"
backend = "app"
{FE}

[[frontend]]
name = "lb"
bind = ["127.0.0.1:8443"]
backend = "l4"
{LBFE}

[[backend]]
name = "app"
protocol = "uwsgi"
{BE}
servers = [
  { name = "a", addr = "unix:/run/app.sock" },
  { name = "b", addr = "127.0.0.1:3031" },
]

[[backend]]
name = "l4"
{LBBE}
servers = [{ addr = "127.0.0.11:443" }]
"#;

fn text(fe: &str, be: &str, lbfe: &str, lbbe: &str) -> String {
    EDGE.replace("{FE}", fe)
        .replace("{BE}", be)
        .replace("{LBFE}", lbfe)
        .replace("{LBBE}", lbbe)
}

fn load(t: &str) -> Result<Config, ConfigError> {
    load_str_with(t, "e.toml", &LoadOptions::content_only())
}

/// The error sits at the first occurrence of `marker` (at its `^` if it has one, which is
/// not part of the text), names `key` and says `says`.
fn refused(t: &str, marker: &str, key: &str, says: &str) {
    let err = load(t).expect_err("config accepted");
    let caret = marker.find('^').unwrap_or(0);
    let plain = marker.replace('^', "");
    let offset = t
        .find(&plain)
        .unwrap_or_else(|| panic!("no {plain:?} in\n{t}"))
        + caret;
    let (line, col) = super::super::spans::line_col(t, offset);
    assert_eq!(
        (err.line, err.col, err.key.as_str()),
        (line, col, key),
        "{err}"
    );
    assert!(err.message.contains(says), "{err}");
}

#[test]
fn edge_defaults_fill_in() {
    let cfg = load(&text("", "", "", "")).unwrap();
    let f = &cfg.frontends[0];
    assert_eq!(f.timeouts.header.get(), Duration::from_secs(60));
    assert_eq!(f.timeouts.send.get(), Duration::from_secs(60));
    assert_eq!(f.timeouts.keepalive.get(), Duration::from_secs(75));
    assert_eq!(f.limits.keepalive_requests, 1000);
    let app = &cfg.backends[0];
    assert_eq!(app.max_queue, DEFAULT_MAX_QUEUE);
    assert_eq!(app.timeouts.read.get(), Duration::from_secs(60));
    assert_eq!(
        app.timeouts.queue, None,
        "queue defaults to connect at run time"
    );
    // Every edge server gets a limit, unix or TCP; an L4 server stays unlimited.
    let caps: Vec<_> = app.servers.iter().map(|s| s.max_connections).collect();
    assert_eq!(caps, [Some(UWSGI_MAX_CONNECTIONS); 2]);
    assert_eq!(cfg.backends[1].servers[0].max_connections, Some(0));
    let http = load(&text("", "", "", "").replace("\"uwsgi\"", "\"http\"")).unwrap();
    assert_eq!(
        http.backends[0].servers[1].max_connections,
        Some(HTTP_MAX_CONNECTIONS)
    );
    // Set values stay as written.
    let t = text("", "", "", "").replace(
        "\"127.0.0.1:3031\" }",
        "\"127.0.0.1:3031\", max_connections = 7 }",
    );
    assert_eq!(
        load(&t).unwrap().backends[0].servers[1].max_connections,
        Some(7)
    );
}

#[test]
fn settable_timeouts_and_limits_load() {
    let fe = "timeouts = { header = \"30s\", send = \"5m\", keepalive = \"10s\" }\n\
              limits = { header_bytes = 65536, headers = 200, h2_streams = 16, keepalive_requests = 1 }";
    let be = "timeouts = { read = \"2m\", send = \"90s\", queue = \"0s\" }\nmax_queue = 0";
    let cfg = load(&text(fe, be, "", "")).unwrap();
    let f = &cfg.frontends[0];
    assert_eq!(f.timeouts.send.get(), Duration::from_secs(300));
    assert_eq!((f.limits.h2_streams, f.limits.keepalive_requests), (16, 1));
    let b = &cfg.backends[0];
    assert_eq!(b.timeouts.queue.map(|q| q.get()), Some(Duration::ZERO));
    assert_eq!(b.max_queue, 0, "0: no waiting at all, 503 at once");
}

#[test]
fn zero_or_absurd_timeouts_are_refused() {
    for k in ["handshake", "header", "body", "send", "tunnel"] {
        let fe = format!("timeouts = {{ {k} = \"0s\" }}");
        refused(
            &text(&fe, "", "", ""),
            "\"0s\"",
            &format!("frontend[0].timeouts.{k}"),
            "longer than 0s",
        );
    }
    refused(
        &text("[frontend.timeouts]\nkeepalive = \"0ms\"", "", "", ""),
        "\"0ms\"",
        "frontend[0].timeouts.keepalive",
        "keepalive_requests = 1",
    );
    refused(
        &text("timeouts = { send = \"400d\" }", "", "", ""),
        "\"400d\"",
        "frontend[0].timeouts.send",
        "at most 365d",
    );
    for k in ["read", "send"] {
        let be = format!("timeouts = {{ {k} = \"0s\" }}");
        refused(
            &text("", &be, "", ""),
            "\"0s\"",
            &format!("backend[0].timeouts.{k}"),
            "longer than 0s",
        );
    }
}

#[test]
fn upgrade_protocols_default_to_websocket_and_h2c_is_refused() {
    let cfg = load(&text("", "", "", "")).unwrap();
    let f = &cfg.frontends[0];
    assert_eq!(f.upgrade_protocols, ["websocket"]);
    assert_eq!(f.timeouts.tunnel.get(), Duration::from_secs(60));
    let cfg = load(&text("upgrade_protocols = []", "", "", "")).unwrap();
    assert!(cfg.frontends[0].upgrade_protocols.is_empty());
    refused(
        &text("upgrade_protocols = [\"websocket\", \"H2C\"]", "", "", ""),
        "\"H2C\"",
        "frontend[0].upgrade_protocols[1]",
        "h2c is never upgraded",
    );
    refused(
        &text("upgrade_protocols = [\"web socket\"]", "", "", ""),
        "\"web socket\"",
        "frontend[0].upgrade_protocols[0]",
        "not an HTTP token",
    );
    refused(
        &text("", "", "upgrade_protocols = [\"websocket\"]", ""),
        "upgrade_protocols = [\"websocket\"]\n\n[[backend]]",
        "frontend[1].upgrade_protocols",
        "http-mode (edge) setting",
    );
}

#[test]
fn limits_out_of_range_are_refused() {
    for (k, v, says) in [
        ("header_bytes", "1024", "between 8192 and 16777216"),
        ("header_bytes", "16777217", "between 8192"),
        ("headers", "0", "between 1 and 1000"),
        ("headers", "1001", "between 1 and 1000"),
        ("h2_streams", "0", "between 1 and 10000"),
        ("keepalive_requests", "0", "at least 1"),
    ] {
        let fe = format!("[frontend.limits]\n{k} = {v}");
        refused(
            &text(&fe, "", "", ""),
            &format!("{k} = ^{v}"),
            &format!("frontend[0].limits.{k}"),
            says,
        );
    }
    refused(
        &text("", "max_queue = 2000000", "", ""),
        "2000000",
        "backend[0].max_queue",
        "at most",
    );
}

#[test]
fn edge_keys_on_a_tcp_frontend_are_refused_at_the_key() {
    for line in [
        "timeouts = { send = \"5s\" }",
        "max_body = 5",
        "request_buffering = false",
        "underscores_in_headers = true",
    ] {
        let k = line.split(' ').next().unwrap();
        refused(
            &text("", "", line, ""),
            line,
            &format!("frontend[1].{k}"),
            "http-mode (edge)",
        );
    }
    // Written as a table header: the error points at the header's key.
    let t = text("", "", "[frontend.limits]\nheaders = 10", "");
    refused(&t, "limits]", "frontend[1].limits", "set mode = \"http\"");
    // Defaults are not "set": a plain tcp frontend loads (see edge_defaults_fill_in).
}

#[test]
fn idle_on_an_edge_backend_names_read_and_send() {
    let t = text(
        "",
        "timeouts = { connect = \"1s\", idle = \"300ms\" }",
        "",
        "",
    );
    refused(&t, "idle", "backend[0].timeouts.idle", "read");
    let err = load(&t).unwrap_err();
    assert!(
        err.message.contains("send") && err.message.contains("uwsgi_read_timeout"),
        "{err}"
    );
    // An L4 backend keeps idle, and is refused read/send.
    let ok = text("", "", "", "timeouts = { idle = \"5m\" }");
    load(&ok).unwrap();
    let t = text("", "", "", "timeouts = { idle = \"5m\", read = \"1s\" }");
    refused(
        &t,
        "read",
        "backend[1].timeouts.read",
        "tcp-mode backend uses idle",
    );
}

#[test]
fn unlimited_servers_are_refused_on_an_edge_only() {
    let t = text("", "", "", "").replace(
        "\"unix:/run/app.sock\" }",
        "\"unix:/run/app.sock\", max_connections = 0 }",
    );
    refused(
        &t,
        "max_connections = ^0 }",
        "backend[0].servers[0].max_connections",
        "default 100 for uwsgi",
    );
    let t = text("", "", "", "").replace(
        "\"127.0.0.11:443\" }",
        "\"127.0.0.11:443\", max_connections = 0 }",
    );
    assert_eq!(
        load(&t).unwrap().backends[1].servers[0].max_connections,
        Some(0)
    );
}

#[test]
fn temp_dir_must_take_a_temp_file_when_files_are_checked() {
    let files = LoadOptions {
        check_files: true,
        check_fd_limit: false,
    };
    let ok = tempfile::tempdir().unwrap();
    let good = text(
        &format!("temp_dir = \"{}\"", ok.path().display()),
        "",
        "",
        "",
    );
    assert!(load_str_with(&good, "t.toml", &files).is_ok());
    let bad = text("temp_dir = \"/nonexistent/sluice-tmp\"", "", "", "");
    assert!(
        load_str_with(&bad, "t.toml", &LoadOptions::content_only()).is_ok(),
        "content-only loading touches no files"
    );
    let err = load_str_with(&bad, "t.toml", &files).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (9, "frontend[0].temp_dir"),
        "{err}"
    );
    assert!(err.message.contains("cannot create a temp file"), "{err}");
}

#[test]
fn forwarded_policy_loads_and_converts() {
    let t = text(
        "[frontend.forwarded]\ntrusted = [\"10.0.0.0/8\", \"::1\"]\nreal_ip_header = \"X-Forwarded-For\"\n\
         recursive = true\nemit = [\"x-forwarded-for\", \"forwarded\", \"forwarded\"]\n\
         forwarded_for = \"obfuscated\"",
        "",
        "",
        "",
    );
    let spec = load(&t).unwrap().spec().unwrap();
    let fw = &spec.frontends[0].edge.forwarded;
    assert_eq!(fw.trusted.len(), 2);
    assert_eq!(fw.real_ip_header, crate::spec::RealIpHeader::XForwardedFor);
    assert!(fw.recursive);
    use crate::spec::ForwardField as F;
    assert_eq!(
        fw.emit,
        [F::XForwardedFor, F::Forwarded],
        "duplicates dropped"
    );
    assert_eq!(fw.forwarded_for, crate::spec::ForwardedFor::Obfuscated);
    // Unset: nobody trusted, the fields earlier versions sent.
    let spec = load(&text("", "", "", "")).unwrap().spec().unwrap();
    assert_eq!(
        spec.frontends[0].edge.forwarded,
        crate::spec::Forwarded::default()
    );
}

#[test]
fn forwarded_policy_mistakes_are_refused_at_the_key() {
    let t = text("forwarded = { trusted = [\"10.0.0.0/33\"] }", "", "", "");
    refused(
        &t,
        "\"10.0.0.0/33\"",
        "frontend[0].forwarded.trusted[0]",
        "",
    );
    let t = text("forwarded = { real_ip_header = \"forwarded\" }", "", "", "");
    refused(
        &t,
        "forwarded = ^{",
        "frontend[0].forwarded.trusted",
        "is empty",
    );
    let t = text(
        "forwarded = { trusted = [\"::1\"], real_ip_header = \"x-real-ip\" }",
        "",
        "",
        "",
    );
    assert!(load(&t).is_err(), "unknown real_ip_header accepted");
    let t = text("forwarded = { emit = [\"via\"] }", "", "", "");
    assert!(load(&t).is_err(), "unknown emit field accepted");
    let line = "forwarded = { trusted = [\"::1\"] }";
    refused(
        &text("", "", line, ""),
        line,
        "frontend[1].forwarded",
        "http-mode (edge)",
    );
}
