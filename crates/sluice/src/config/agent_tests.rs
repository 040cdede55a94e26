//! The agent keys load into the spec (`health.agent` with its defaults, `slow_start`,
//! `[agent]`) and each mistake lands on its key's file:line:col.

use std::time::Duration;

use super::super::load::{load_str_with, ConfigError, LoadOptions};
use super::super::spans::line_col;

const BASE: &str = r#"[global]
max_connections = 100

[agent]
bind = "127.0.0.1:9999"
capacity = 8

[[frontend]]
name = "edge"
bind = ["127.0.0.1:8080"]
mode = "http"
backend = "app"

[[backend]]
name = "app"
protocol = "http"
servers = [{ addr = "127.0.0.11:80", slow_start = "30s" }]
[backend.health]
timeout = "3s"
agent = { port = 5555, interval = "500ms", send = "app\n" }
"#;

fn load(text: &str) -> Result<crate::config::Config, ConfigError> {
    load_str_with(text, "t.toml", &LoadOptions::content_only())
}

/// `BASE` with `old` replaced by `new`; the error must sit at `marker` and say `says`.
fn expect_err(old: &str, new: &str, marker: &str, key: &str, says: &str) {
    assert!(BASE.contains(old), "{old:?} not in BASE");
    let text = BASE.replacen(old, new, 1);
    let err = load(&text).expect_err("config accepted");
    let offset = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"));
    let (line, col) = line_col(&text, offset);
    assert_eq!(
        (err.line, err.col, err.key.as_str()),
        (line, col, key),
        "{err}"
    );
    assert!(err.message.contains(says), "{err}");
}

#[test]
fn loads_into_the_spec_with_defaults() {
    let spec = load(BASE).unwrap().spec().unwrap();
    let a = spec.agent.as_ref().unwrap();
    assert_eq!(a.bind, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(a.capacity, Some(8));
    let b = &spec.backends[0];
    assert_eq!(b.servers[0].slow_start, Duration::from_secs(30));
    let agent = b.health.as_ref().unwrap().agent.as_ref().unwrap();
    assert_eq!(agent.port, 5555);
    assert_eq!(agent.addr, None);
    assert_eq!(agent.interval, Duration::from_millis(500));
    // The agent's timeout defaults to the health table's (HAProxy: `timeout check`).
    assert_eq!(agent.timeout, Duration::from_secs(3));
    assert_eq!(agent.send, "app\n");

    let plain = BASE.replacen(", slow_start = \"30s\"", "", 1).replacen(
        ", interval = \"500ms\", send = \"app\\n\"",
        ", addr = \"::1\"",
        1,
    );
    let spec = load(&plain).unwrap().spec().unwrap();
    let b = &spec.backends[0];
    assert_eq!(b.servers[0].slow_start, Duration::ZERO);
    let agent = b.health.as_ref().unwrap().agent.as_ref().unwrap();
    assert_eq!(
        agent.interval,
        Duration::from_secs(2),
        "HAProxy's agent-inter default"
    );
    assert_eq!(agent.addr, Some("::1".parse().unwrap()));
}

#[test]
fn mistakes_point_at_their_key() {
    expect_err(
        "port = 5555",
        "port = 0",
        "0,",
        "backend[0].health.agent.port",
        "port number",
    );
    expect_err(
        "agent = { port",
        "agent = { addr = \"agent.test\", port",
        "\"agent.test\"",
        "backend[0].health.agent.addr",
        "not an IP address",
    );
    expect_err(
        "interval = \"500ms\"",
        "interval = \"1ms\"",
        "\"1ms\"",
        "backend[0].health.agent.interval",
        "at least 10ms",
    );
    expect_err(
        "slow_start = \"30s\"",
        "slow_start = \"2d\"",
        "\"2d\"",
        "backend[0].servers[0].slow_start",
        "at most 1d",
    );
    expect_err(
        "capacity = 8",
        "capacity = 0",
        "0\n\n[[frontend]]",
        "agent.capacity",
        "at least 1",
    );
    expect_err(
        "bind = \"127.0.0.1:9999\"",
        "bind = \"nowhere\"",
        "\"nowhere\"",
        "agent.bind",
        "",
    );
    expect_err(
        "mode = \"http\"",
        "mode = \"tcp\"",
        "\"127.0.0.1:9999\"",
        "agent.bind",
        "no frontend has mode = \"http\"",
    );
    expect_err(
        "capacity = 8",
        "capacity = 8\nweight = 3",
        "weight",
        "agent.weight",
        "unknown field",
    );
    expect_err(
        "\"127.0.0.11:80\"",
        "\"unix:/run/app.sock\"",
        "5555",
        "backend[0].health.agent.port",
        "unix socket",
    );
}
