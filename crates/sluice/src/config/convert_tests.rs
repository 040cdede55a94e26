//! `Config::spec`: every string parsed once, defaults resolved (server names, queue timeout),
//! and a hand-built config with a bad value refused with its key.

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::ServerAddr;
use crate::config::{load_str_with, LoadOptions};
use crate::spec;

fn spec_of(toml: &str) -> spec::Spec {
    load_str_with(toml, "t.toml", &LoadOptions::content_only())
        .expect("valid config")
        .spec()
        .expect("a loaded config converts")
}

#[test]
fn strings_become_typed_values_and_defaults_resolve() {
    let s = spec_of(
        r#"
[global]
resolvers = ["127.0.0.1:53"]
[admin]
bind = "127.0.0.1:0"
[[frontend]]
name = "f"
bind = ["127.0.0.1:0", "[::1]:8443"]
backend = "b"
proxy_protocol = { trusted = ["10.0.0.0/8", "::1"], timeout = "2s" }
[[backend]]
name = "b"
source = "127.0.0.1"
timeouts = { connect = "3s" }
servers = [{ addr = "127.0.0.1:80" }, { name = "app", addr = "app.internal:8080" }]
[[backend]]
name = "u"
servers = [{ addr = "unix:/tmp/app.sock" }]
"#,
    );
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(s.global.resolvers, [sa("127.0.0.1:53")]);
    assert!(s.global.fds_needed > 0);
    assert_eq!(s.admin.as_ref().unwrap().bind, sa("127.0.0.1:0"));
    let f = &s.frontends[0];
    assert_eq!(f.bind, [sa("127.0.0.1:0"), sa("[::1]:8443")]);
    let pp = f.proxy_protocol.as_ref().unwrap();
    assert_eq!(pp.trusted.len(), 2);
    assert!(pp.trusted[1].contains(&"::1".parse::<std::net::IpAddr>().unwrap()));
    assert_eq!(pp.timeout, Duration::from_secs(2));
    let b = &s.backends[0];
    assert_eq!(b.source, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(b.timeouts.connect, Duration::from_secs(3));
    assert_eq!(
        b.timeouts.queue, b.timeouts.connect,
        "queue defaults to connect"
    );
    let names: Vec<&str> = b.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["srv1", "app"]);
    assert_eq!(b.servers[0].addr, ServerAddr::Inet(sa("127.0.0.1:80")));
    assert_eq!(
        b.servers[1].addr,
        ServerAddr::Host {
            host: "app.internal".into(),
            port: 8080
        }
    );
    let u = &s.backends[1].servers[0];
    assert_eq!(
        (u.name.as_str(), &u.addr),
        ("srv1", &ServerAddr::Unix("/tmp/app.sock".into()))
    );
}

#[test]
fn an_edge_gets_its_settings_and_server_limits() {
    let s = spec_of(
        r#"
[[frontend]]
name = "web"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "app"
timeouts = { header = "7s" }
[[backend]]
name = "app"
protocol = "uwsgi"
timeouts = { queue = "9s" }
servers = [{ addr = "127.0.0.1:3031" }]
"#,
    );
    assert_eq!(s.frontends[0].edge.timeouts.header, Duration::from_secs(7));
    assert_eq!(s.frontends[0].edge.max_body, 1 << 20);
    let b = &s.backends[0];
    assert_eq!(b.timeouts.queue, Duration::from_secs(9));
    assert_eq!(b.servers[0].max_connections, spec::UWSGI_MAX_CONNECTIONS);
}

#[test]
fn a_hand_built_config_with_a_bad_value_names_the_key() {
    let mut cfg = crate::config::Config::default();
    cfg.frontends.push(crate::config::Frontend {
        bind: vec!["127.0.0.1:0".into(), "nowhere".into()],
        ..toml::from_str("name = \"f\"\nbind = []\nbackend = \"b\"").unwrap()
    });
    let err = cfg.spec().unwrap_err();
    assert_eq!(err.key, "frontend[0].bind[1]");
    assert!(err.message.contains("invalid bind address"), "{err}");
}
