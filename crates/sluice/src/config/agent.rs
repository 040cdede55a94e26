//! Checks of the agent keys (issue #17): the `[agent]` endpoint (a parseable bind, a
//! capacity above 0, at least one http frontend to report on), `health.agent` (port, IP
//! address, interval, timeout, a `send` string an agent can take) and servers' `slow_start`.
//! Conversion is `convert`'s; what the keys do is `health`'s and `balance`'s.

use std::time::Duration;

use super::model::{Config, Mode};
use super::parsed::parse_bind;
use super::spans::At;
use super::spans::KeyPath;
use super::validate::Issue;

/// Longest `health.agent.send` (HAProxy sends it in one write).
const MAX_SEND: usize = 1024;
/// Longest `slow_start` (HAProxy's `slowstart` has no limit; a day is more than anyone ramps).
const MAX_SLOW_START: Duration = Duration::from_secs(86_400);

fn value(out: &mut Vec<Issue>, path: KeyPath, message: impl Into<String>) {
    out.push(Issue {
        path,
        at: At::Value,
        message: message.into(),
    });
}

pub(super) fn check(cfg: &Config, out: &mut Vec<Issue>) {
    if let Some(a) = &cfg.agent {
        let p = KeyPath::root().key("agent");
        if let Err(e) = parse_bind(&a.bind) {
            value(out, p.key("bind"), e);
        }
        if a.capacity == Some(0) {
            value(out, p.key("capacity"), "must be at least 1");
        }
        if !cfg.frontends.iter().any(|f| f.mode == Mode::Http) {
            value(
                out,
                p.key("bind"),
                "the agent reports on this process's edges: no frontend has mode = \"http\"",
            );
        }
    }
    for (k, b) in cfg.backends.iter().enumerate() {
        let bp = KeyPath::root().key("backend").index(k);
        for (j, s) in b.servers.iter().enumerate() {
            if let Some(d) = s.slow_start {
                if d.get() > MAX_SLOW_START {
                    value(
                        out,
                        bp.key("servers").index(j).key("slow_start"),
                        "must be at most 1d",
                    );
                }
            }
        }
        let Some(a) = b.health.as_ref().and_then(|h| h.agent.as_ref()) else {
            continue;
        };
        let ap = bp.key("health").key("agent");
        if a.port == 0 {
            value(out, ap.key("port"), "must be a port number (1-65535)");
        }
        match &a.addr {
            Some(ip) if ip.parse::<std::net::IpAddr>().is_err() => {
                value(out, ap.key("addr"), format!("{ip:?} is not an IP address"))
            }
            Some(_) => {}
            None => {
                let unix = b.servers.iter().position(|s| s.addr.starts_with("unix:"));
                if let Some(j) = unix {
                    value(
                        out,
                        ap.key("port"),
                        format!(
                            "server {} is a unix socket: set health.agent.addr to an IP address",
                            j + 1
                        ),
                    );
                }
            }
        }
        if a.interval.get() < Duration::from_millis(10) {
            value(out, ap.key("interval"), "must be at least 10ms");
        }
        if a.timeout.is_some_and(|t| t.get().is_zero()) {
            value(out, ap.key("timeout"), "must be longer than 0s");
        }
        if a.send.len() > MAX_SEND {
            value(out, ap.key("send"), format!("longer than {MAX_SEND} bytes"));
        }
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
