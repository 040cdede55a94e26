//! Edge-only configuration rules: which backends serve http-mode frontends, the per-server
//! `max_connections` they get when unset, and the checks of the edge keys (`[frontend.timeouts]`,
//! `[frontend.limits]`, backend `read`/`send`/`queue`/`max_queue`, keys a tcp frontend or an
//! L4 backend must not set). Whether a key is written comes from `spans`; defaults from `model`.

use std::time::Duration;

use super::model::{Config, Mode, Protocol, HTTP_MAX_CONNECTIONS, UWSGI_MAX_CONNECTIONS};
use super::spans::{At, KeyPath, Located};
use super::validate::Issue;

/// Longest timeout any of the edge keys accepts (a larger one is a typo, and deadlines are
/// computed as `now + timeout`).
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// `[frontend.limits] header_bytes`: hyper's smallest HTTP/1 read buffer, and 16 MiB.
pub(super) const HEADER_BYTES: (usize, usize) = (8192, 16 << 20);
/// `[frontend.limits] headers`.
pub(super) const HEADERS: (usize, usize) = (1, 1000);
/// `[frontend.limits] h2_streams`.
pub(super) const H2_STREAMS: (u32, u32) = (1, 10_000);
/// Most `backend.max_queue`.
pub(super) const MAX_QUEUE: usize = 1 << 20;

/// Frontend keys that only mean something on a `mode = "http"` frontend.
const EDGE_KEYS: &[&str] = &[
    "max_body",
    "request_buffering",
    "response_buffering",
    "body_buffer_size",
    "response_buffer_size",
    "max_temp_file_size",
    "temp_dir",
    "underscores_in_headers",
    "proxy_protocol_tlv_headers",
    "forwarded",
    "timeouts",
    "limits",
];

/// The mode of the frontends using each backend (by index): None when no frontend does.
/// (Validation refuses a backend shared by frontends of both modes.)
pub(super) fn backend_modes(cfg: &Config) -> Vec<Option<Mode>> {
    cfg.backends
        .iter()
        .map(|b| {
            let users = cfg
                .frontends
                .iter()
                .filter(|f| f.backend == b.name || f.routes.iter().any(|r| r.backend == b.name));
            users
                .map(|f| f.mode)
                .reduce(|a, m| if a == Mode::Http { a } else { m })
        })
        .collect()
}

/// `max_connections` of a server of an http-mode backend speaking `protocol` when unset.
pub(super) fn default_edge_cap(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Uwsgi => UWSGI_MAX_CONNECTIONS,
        Protocol::Http => HTTP_MAX_CONNECTIONS,
    }
}

/// The limit server `j` of backend `k` runs with: its `max_connections`, else the default of
/// the backend's role (0 = unlimited for L4 backends).
pub(super) fn effective_cap(cfg: &Config, modes: &[Option<Mode>], k: usize, j: usize) -> usize {
    let b = &cfg.backends[k];
    match (
        b.servers[j].max_connections,
        modes.get(k).copied().flatten(),
    ) {
        (Some(n), _) => n,
        (None, Some(Mode::Http)) => default_edge_cap(b.protocol),
        (None, _) => 0,
    }
}

/// Sets every server's `max_connections` to the limit it runs with.
pub(super) fn fill_caps(cfg: &mut Config) {
    let modes = backend_modes(cfg);
    for k in 0..cfg.backends.len() {
        for j in 0..cfg.backends[k].servers.len() {
            let cap = effective_cap(cfg, &modes, k, j);
            cfg.backends[k].servers[j].max_connections = Some(cap);
        }
    }
}

fn value(out: &mut Vec<Issue>, path: KeyPath, message: impl Into<String>) {
    out.push(Issue {
        path,
        at: At::Value,
        message: message.into(),
    });
}

fn key(out: &mut Vec<Issue>, path: KeyPath, message: impl Into<String>) {
    out.push(Issue {
        path,
        at: At::Key,
        message: message.into(),
    });
}

fn timeout(out: &mut Vec<Issue>, path: KeyPath, d: Duration, zero_ok: bool) {
    if d.is_zero() && !zero_ok {
        value(out, path, "must be longer than 0s");
    } else if d > MAX_TIMEOUT {
        value(out, path, "must be at most 365d");
    }
}

fn range<T: PartialOrd + std::fmt::Display>(out: &mut Vec<Issue>, path: KeyPath, v: T, r: (T, T)) {
    if v < r.0 || v > r.1 {
        value(out, path, format!("must be between {} and {}", r.0, r.1));
    }
}

/// Every problem with the edge keys; `doc` tells which keys are written in the file.
pub(super) fn check(cfg: &Config, doc: Option<&Located<'_>>, out: &mut Vec<Issue>) {
    let exists = |p: &KeyPath| doc.is_some_and(|d| d.exists(p));
    for (i, f) in cfg.frontends.iter().enumerate() {
        let p = KeyPath::root().key("frontend").index(i);
        if f.mode == Mode::Tcp {
            for k in EDGE_KEYS.iter().filter(|k| exists(&p.key(k))) {
                key(
                    out,
                    p.key(k),
                    format!(
                        "{k} is an http-mode (edge) setting; a tcp-mode frontend forwards bytes \
                         unmodified (remove it or set mode = \"http\")"
                    ),
                );
            }
        }
        let t = &f.timeouts;
        let tp = p.key("timeouts");
        for (name, d) in [
            ("handshake", t.handshake),
            ("header", t.header),
            ("body", t.body),
            ("send", t.send),
        ] {
            timeout(out, tp.key(name), d.get(), false);
        }
        if t.keepalive.get().is_zero() {
            value(
                out,
                tp.key("keepalive"),
                "must be longer than 0s (to close every connection after one request, set \
                 limits.keepalive_requests = 1)",
            );
        } else {
            timeout(out, tp.key("keepalive"), t.keepalive.get(), false);
        }
        let l = &f.limits;
        let lp = p.key("limits");
        range(out, lp.key("header_bytes"), l.header_bytes, HEADER_BYTES);
        range(out, lp.key("headers"), l.headers, HEADERS);
        range(out, lp.key("h2_streams"), l.h2_streams, H2_STREAMS);
        if l.keepalive_requests == 0 {
            value(out, lp.key("keepalive_requests"), "must be at least 1");
        }
    }
    let modes = backend_modes(cfg);
    for (k, b) in cfg.backends.iter().enumerate() {
        let p = KeyPath::root().key("backend").index(k);
        let tp = p.key("timeouts");
        let t = &b.timeouts;
        timeout(out, tp.key("read"), t.read.get(), false);
        timeout(out, tp.key("send"), t.send.get(), false);
        if let Some(q) = t.queue {
            timeout(out, tp.key("queue"), q.get(), true);
        }
        if b.max_queue > MAX_QUEUE {
            value(
                out,
                p.key("max_queue"),
                format!("must be at most {MAX_QUEUE}"),
            );
        }
        match modes[k] {
            Some(Mode::Http) => {
                if exists(&tp.key("idle")) {
                    key(
                        out,
                        tp.key("idle"),
                        "idle is the tcp-mode (L4) idle timeout; for an http-mode backend set \
                         read (the app's response, nginx uwsgi_read_timeout) and send (the \
                         request, nginx uwsgi_send_timeout), 60s each by default",
                    );
                }
                for (j, s) in b.servers.iter().enumerate() {
                    if s.max_connections == Some(0) {
                        value(
                            out,
                            p.key("servers").index(j).key("max_connections"),
                            format!(
                                "0 (unlimited) is not allowed on an http-mode backend: HTTP/2 \
                                 clients could open any number of upstream sockets; give a \
                                 number (default {} for {} servers)",
                                default_edge_cap(b.protocol),
                                match b.protocol {
                                    Protocol::Uwsgi => "uwsgi",
                                    Protocol::Http => "http",
                                }
                            ),
                        );
                    }
                }
            }
            Some(Mode::Tcp) => {
                for name in ["read", "send"] {
                    if exists(&tp.key(name)) {
                        key(
                            out,
                            tp.key(name),
                            format!(
                                "{name} is for http-mode backends; a tcp-mode backend uses idle \
                                 (no bytes either way for that long)"
                            ),
                        );
                    }
                }
            }
            None => {}
        }
    }
}
