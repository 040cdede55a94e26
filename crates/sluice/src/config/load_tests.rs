//! Tests for `config::load`: every error class lands on the right file:line:col and key, the
//! seed examples load, defaults fill in.

use std::time::Duration;

use super::*;
use crate::config::model::{Balance, HealthKind, Mode, Protocol, SendProxy, Untrusted};

const BASE: &str = r#"[global]
max_connections = 100

[[frontend]]
name = "in"
bind = ["127.0.0.1:8443"]
backend = "web"

[[backend]]
name = "web"
servers = [
  { name = "a", addr = "127.0.0.11:443" },
  { name = "b", addr = "127.0.0.12:443" },
]
"#;

fn content(text: &str) -> Result<Config, ConfigError> {
    load_str_with(text, "t.toml", &LoadOptions::content_only())
}

/// `BASE` with `old` replaced by `new` (which must be there).
fn base_with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old:?} not in BASE");
    BASE.replacen(old, new, 1)
}

/// Asserts the error sits at the `nth` occurrence of `marker` in `text`, names `key` and says
/// `says`.
fn expect_err(text: &str, marker: &str, nth: usize, key: &str, says: &str) -> ConfigError {
    let err = content(text).expect_err("config accepted");
    let offset = text
        .match_indices(marker)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {marker:?}"))
        .0;
    let (line, col) = super::super::spans::line_col(text, offset);
    assert_eq!(
        (err.line, err.col, err.key.as_str()),
        (line, col, key),
        "{err}"
    );
    assert!(err.message.contains(says), "{err}");
    assert_eq!(err.file, "t.toml");
    err
}

#[test]
fn base_loads_and_fills_defaults() {
    let cfg = content(BASE).unwrap();
    assert_eq!(cfg.global.max_connections, 100);
    assert_eq!(cfg.global.grace.get(), Duration::from_secs(30));
    let f = &cfg.frontends[0];
    assert_eq!(f.mode, Mode::Tcp);
    assert_eq!(f.max_body, 1 << 20);
    assert!(f.tls.is_none() && f.proxy_protocol.is_none() && f.access_log.is_none());
    let b = &cfg.backends[0];
    assert_eq!(b.balance, Balance::Roundrobin);
    assert_eq!(b.send_proxy, SendProxy::None);
    assert_eq!(b.retries, 3);
    assert_eq!(b.timeouts.connect.get(), Duration::from_secs(5));
    assert_eq!(b.timeouts.idle.get(), Duration::from_secs(300));
    assert!(b.health.is_none());
    assert_eq!(b.servers[1].weight, 1);
    assert!(!b.servers[1].backup);
    assert_eq!(
        b.servers[1].max_connections,
        Some(0),
        "L4: unlimited unless set"
    );
}

#[test]
fn defaults_of_optional_tables_and_unnamed_servers() {
    let text = base_with(
        "servers = [",
        "health = {}\nservers = [\n  { addr = \"127.0.0.13:443\" },",
    )
    .replace("name = \"a\", ", "");
    let cfg = content(&text).unwrap();
    let names: Vec<_> = cfg.backends[0]
        .servers
        .iter()
        .map(|s| s.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["srv1", "srv2", "b"]);
    let h = cfg.backends[0].health.as_ref().unwrap();
    assert_eq!((h.kind, h.rise, h.fall), (HealthKind::Tcp, 2, 3));
    assert_eq!(
        (h.interval.get(), h.timeout.get()),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((h.path.as_str(), h.expect_status), ("/", 200));

    let text = base_with(
        "backend = \"web\"\n",
        "backend = \"web\"\nproxy_protocol = { trusted = [\"127.0.0.10\"] }\n",
    );
    let pp = content(&text).unwrap().frontends[0]
        .proxy_protocol
        .clone()
        .unwrap();
    assert_eq!(pp.timeout.get(), Duration::from_secs(5));
    assert_eq!(pp.untrusted, Untrusted::Reject);
}

#[test]
fn display_is_file_line_col_key_message() {
    let err = expect_err(
        &base_with("backend = \"web\"", "backend = \"app\""),
        "\"app\"",
        0,
        "frontend[0].backend",
        "",
    );
    assert_eq!(
        err.to_string(),
        "t.toml:7:11: frontend[0].backend: no backend named \"app\" (defined: \"web\")"
    );
}

#[test]
fn toml_syntax_error() {
    let text = base_with("name = \"in\"", "name = \"in");
    let err = content(&text).unwrap_err();
    assert_eq!((err.line, err.key.as_str()), (5, ""), "{err}");
    assert!(err.to_string().starts_with("t.toml:5:"), "{err}");
}

#[test]
fn wrong_types() {
    expect_err(
        &base_with("max_connections = 100", "max_connections = \"many\""),
        "\"many\"",
        0,
        "global.max_connections",
        "invalid type",
    );
    expect_err(
        &base_with("name = \"web\"", "name = \"web\"\nretries = -1"),
        "-1",
        0,
        "backend[0].retries",
        "invalid value",
    );
    expect_err(
        &base_with("bind = [\"127.0.0.1:8443\"]", "bind = \"127.0.0.1:8443\""),
        "\"127.0.0.1:8443\"",
        0,
        "frontend[0].bind",
        "invalid type",
    );
    expect_err(
        &base_with("backend = \"web\"", "backend = \"web\"\nmode = \"udp\""),
        "\"udp\"",
        0,
        "frontend[0].mode",
        "unknown variant `udp`",
    );
}

#[test]
fn bad_durations() {
    expect_err(
        &base_with(
            "max_connections = 100",
            "max_connections = 100\ngrace = \"5x\"",
        ),
        "\"5x\"",
        0,
        "global.grace",
        "invalid duration",
    );
    let text = base_with(
        "name = \"web\"",
        "name = \"web\"\ntimeouts = { connect = \"1.5s\" }",
    );
    expect_err(
        &text,
        "\"1.5s\"",
        0,
        "backend[0].timeouts.connect",
        "invalid duration",
    );
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let err = expect_err(
        &base_with("name = \"in\"", "name = \"in\"\nbnd = 1"),
        "bnd",
        0,
        "frontend[0].bnd",
        "unknown field `bnd`",
    );
    assert!(
        err.message.contains("`bind`") && err.message.contains("`proxy_protocol`"),
        "{err}"
    );
    let text = base_with(
        "name = \"web\"",
        "name = \"web\"\nhealth = { intervall = \"2s\" }",
    );
    let err = expect_err(
        &text,
        "intervall",
        0,
        "backend[0].health.intervall",
        "unknown field `intervall`",
    );
    assert!(err.message.contains("`interval`"), "{err}");
    expect_err(
        &base_with("{ name = \"b\",", "{ name = \"b\", wieght = 2,"),
        "wieght",
        0,
        "backend[0].servers[1].wieght",
        "unknown field",
    );
    expect_err(
        &format!("[globl]\n{BASE}"),
        "globl",
        0,
        "globl",
        "unknown field `globl`",
    );
}

#[test]
fn missing_required_keys_point_at_their_table() {
    let text = base_with("name = \"web\"\n", "");
    expect_err(
        &text,
        "[[backend]]",
        0,
        "backend[0]",
        "missing field `name`",
    );
}

#[test]
fn unknown_backend() {
    let err = expect_err(
        &base_with("backend = \"web\"", "backend = \"wbe\""),
        "\"wbe\"",
        0,
        "frontend[0].backend",
        "no backend named \"wbe\"",
    );
    assert!(err.message.contains("defined: \"web\""), "{err}");
}

#[test]
fn duplicate_names() {
    let dup_fe = format!(
        "{BASE}\n[[frontend]]\nname = \"in\"\nbind = [\"127.0.0.1:8444\"]\nbackend = \"web\"\n"
    );
    expect_err(
        &dup_fe,
        "\"in\"",
        1,
        "frontend[1].name",
        "duplicate frontend name \"in\" (also frontend[0])",
    );
    let dup_be = format!(
        "{BASE}\n[[backend]]\nname = \"web\"\nservers = [{{ addr = \"127.0.0.11:80\" }}]\n"
    );
    expect_err(
        &dup_be,
        "\"web\"",
        2,
        "backend[1].name",
        "duplicate backend name \"web\"",
    );
    expect_err(
        &base_with("name = \"b\"", "name = \"a\""),
        "\"a\"",
        1,
        "backend[0].servers[1].name",
        "duplicate server name \"a\"",
    );
    // An explicit name equal to a default one collides with the unnamed server.
    let text = base_with("name = \"a\", ", "").replace("name = \"b\"", "name = \"srv1\"");
    expect_err(
        &text,
        "\"srv1\"",
        0,
        "backend[0].servers[1].name",
        "duplicate server name \"srv1\"",
    );
}

#[test]
fn unparsable_addresses() {
    expect_err(
        &base_with("127.0.0.1:8443", "localhost:8443"),
        "\"localhost:8443\"",
        0,
        "frontend[0].bind[0]",
        "invalid bind address",
    );
    expect_err(
        &base_with("127.0.0.12:443", "127.0.0.12"),
        "\"127.0.0.12\"",
        0,
        "backend[0].servers[1].addr",
        "missing port",
    );
    expect_err(
        &base_with("127.0.0.12:443", "unix:"),
        "\"unix:\"",
        0,
        "backend[0].servers[1].addr",
        "empty unix socket path",
    );
    let text = base_with(
        "backend = \"web\"",
        "backend = \"web\"\nproxy_protocol = { trusted = [\"127.0.0.10/32\", \"10.0.0.0/33\"] }",
    );
    expect_err(
        &text,
        "\"10.0.0.0/33\"",
        0,
        "frontend[0].proxy_protocol.trusted[1]",
        "invalid CIDR",
    );
    expect_err(
        &base_with("name = \"web\"", "name = \"web\"\nsource = \"10.0.0.10:0\""),
        "\"10.0.0.10:0\"",
        0,
        "backend[0].source",
        "invalid source address",
    );
}

#[test]
fn source_family_must_match_servers() {
    let text = base_with("name = \"web\"", "name = \"web\"\nsource = \"127.0.0.10\"")
        .replace("127.0.0.12:443", "[::1]:443");
    expect_err(
        &text,
        "\"[::1]:443\"",
        0,
        "backend[0].servers[1].addr",
        "address families differ",
    );
}

#[test]
fn backend_without_servers_or_weight() {
    let text = format!("{BASE}\n[[backend]]\nname = \"spare\"\nservers = []\n");
    expect_err(
        &text,
        "[]",
        0,
        "backend[1].servers",
        "needs at least one server",
    );
    let text = base_with("name = \"a\", ", "name = \"a\", weight = 0, ")
        .replace("name = \"b\", ", "name = \"b\", weight = 0, ");
    expect_err(
        &text,
        "0,",
        0,
        "backend[0].servers[0].weight",
        "every server of this backend has weight 0",
    );
    let text = base_with("name = \"a\", ", "name = \"a\", weight = 0, ");
    assert!(content(&text).is_ok(), "one zero weight is fine");
}

#[test]
fn health_rise_fall_and_http_fields() {
    let h = |body: &str| {
        base_with(
            "name = \"web\"",
            &format!("name = \"web\"\nhealth = {{ {body} }}"),
        )
    };
    expect_err(
        &h("rise = 0"),
        "0 }",
        0,
        "backend[0].health.rise",
        "must be at least 1",
    );
    expect_err(
        &h("fall = 0"),
        "0 }",
        0,
        "backend[0].health.fall",
        "must be at least 1",
    );
    expect_err(
        &h("interval = \"0s\""),
        "\"0s\"",
        0,
        "backend[0].health.interval",
        "longer than 0s",
    );
    expect_err(
        &h("kind = \"http\", path = \"health\""),
        "\"health\"",
        0,
        "backend[0].health.path",
        "not a request path",
    );
    expect_err(
        &h("kind = \"https\", expect_status = 42"),
        "42",
        0,
        "backend[0].health.expect_status",
        "100-599",
    );
    assert!(content(&h(
        "kind = \"http\", path = \"/ready\", expect_status = 204"
    ))
    .is_ok());
}

#[test]
fn mode_and_backend_protocol_must_fit() {
    // tcp frontend in front of a uwsgi backend.
    let text = base_with("name = \"web\"", "name = \"web\"\nprotocol = \"uwsgi\"");
    expect_err(
        &text,
        "\"uwsgi\"",
        0,
        "backend[0].protocol",
        "needs an http-mode frontend",
    );
    // http frontend: uwsgi servers cannot read PROXY, nor answer HTTP/TLS health checks.
    let http = base_with("backend = \"web\"", "backend = \"web\"\nmode = \"http\"");
    let text = http.replace(
        "name = \"web\"",
        "name = \"web\"\nprotocol = \"uwsgi\"\nsend_proxy = \"v2\"",
    );
    expect_err(
        &text,
        "\"v2\"",
        0,
        "backend[0].send_proxy",
        "uwsgi servers do not read PROXY",
    );
    let text = http.replace(
        "name = \"web\"",
        "name = \"web\"\nprotocol = \"uwsgi\"\nhealth = { kind = \"http\" }",
    );
    expect_err(
        &text,
        "\"http\" }",
        0,
        "backend[0].health.kind",
        "use kind = \"tcp\"",
    );
    let cfg =
        content(&http.replace("name = \"web\"", "name = \"web\"\nprotocol = \"uwsgi\"")).unwrap();
    assert_eq!(cfg.backends[0].protocol, Protocol::Uwsgi);
    // One backend behind frontends of both modes.
    let text = format!("{BASE}\n[[frontend]]\nname = \"edge\"\nmode = \"http\"\nbind = [\"127.0.0.1:8080\"]\nbackend = \"web\"\n");
    expect_err(
        &text,
        "\"web\"",
        2,
        "frontend[1].backend",
        "already used by tcp-mode frontend \"in\"",
    );
}

#[test]
fn tls_table_on_a_tcp_frontend() {
    let text = base_with(
        "backend = \"web\"\n",
        "backend = \"web\"\ntls = { cert = \"c.pem\", key = \"k.pem\" }\n",
    );
    expect_err(&text, "tls", 0, "frontend[0].tls", "cannot terminate TLS");
}

#[test]
fn same_bind_twice() {
    let text = base_with(
        "[\"127.0.0.1:8443\"]",
        "[\"127.0.0.1:8443\", \"[::1]:8443\", \"127.0.0.1:0\", \"127.0.0.1:0\"]",
    );
    assert!(
        content(&text).is_ok(),
        "distinct addresses and port 0 may repeat"
    );
    let text = format!(
        "{BASE}\n[[frontend]]\nname = \"other\"\nbind = [\"127.0.0.1:8443\"]\nbackend = \"web\"\n"
    );
    expect_err(
        &text,
        "\"127.0.0.1:8443\"",
        1,
        "frontend[1].bind[0]",
        "already bound by frontend[0].bind[0]",
    );
}

#[test]
fn max_connections_beyond_the_hard_fd_limit() {
    let text = base_with("max_connections = 100", "max_connections = 1000000000000");
    assert!(
        content(&text).is_ok(),
        "content-only loading skips the fd check"
    );
    let err = load_str_with(
        &text,
        "t.toml",
        &LoadOptions {
            check_files: false,
            check_fd_limit: true,
        },
    )
    .unwrap_err();
    assert_eq!(
        (err.line, err.col, err.key.as_str()),
        (2, 19, "global.max_connections"),
        "{err}"
    );
    assert!(err.message.contains("hard RLIMIT_NOFILE"), "{err}");
    assert!(load_str_with(
        BASE,
        "t.toml",
        &LoadOptions {
            check_files: false,
            check_fd_limit: true
        }
    )
    .is_ok());
    let zero = base_with("max_connections = 100", "max_connections = 0");
    expect_err(&zero, "0\n", 0, "global.max_connections", "at least 1");
}

#[test]
fn first_problem_in_file_order_wins() {
    let text =
        base_with("backend = \"web\"", "backend = \"nope\"").replace("127.0.0.12:443", "bad");
    expect_err(&text, "\"nope\"", 0, "frontend[0].backend", "no backend");
}

#[test]
fn proxy_protocol_needs_trusted_peers_and_a_timeout() {
    let pp = |body: &str| {
        base_with(
            "backend = \"web\"",
            &format!("backend = \"web\"\nproxy_protocol = {{ {body} }}"),
        )
    };
    expect_err(
        &pp("trusted = []"),
        "[]",
        0,
        "frontend[0].proxy_protocol.trusted",
        "every connection would be refused",
    );
    assert!(content(&pp("trusted = [], untrusted = \"direct\"")).is_ok());
    expect_err(
        &pp("trusted = [\"127.0.0.10\"], timeout = \"0ms\""),
        "\"0ms\"",
        0,
        "frontend[0].proxy_protocol.timeout",
        "longer than 0s",
    );
    expect_err(
        &pp("trusted = [\"127.0.0.10\"], untrusted = \"allow\""),
        "\"allow\"",
        0,
        "frontend[0].proxy_protocol.untrusted",
        "unknown variant `allow`",
    );
}

#[test]
fn forward_sockmap_is_a_tcp_frontend_key() {
    let tcp = base_with(
        "backend = \"web\"\n",
        "backend = \"web\"\nforward = \"sockmap\"\n",
    );
    let cfg = content(&tcp).expect("tcp frontend with sockmap");
    assert_eq!(cfg.frontends[0].forward, crate::spec::Forward::Sockmap);
    assert_eq!(
        content(BASE).expect("base").frontends[0].forward,
        crate::spec::Forward::Auto,
        "default unchanged"
    );
    let http = base_with(
        "backend = \"web\"\n",
        "backend = \"web\"\nmode = \"http\"\nforward = \"sockmap\"\n",
    );
    expect_err(
        &http,
        "\"sockmap\"",
        0,
        "frontend[0].forward",
        "is for tcp-mode frontends",
    );
}
