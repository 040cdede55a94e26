//! Admin routes: `GET /metrics`, `GET /api/backends`, `POST /api/backends/{b}/servers/{s}`
//! (bearer token when configured, JSON `{"state": ..., "weight": N}`), `GET /` (the stats
//! page), its exports `GET /;csv` and `/stats.json` (also `/;json`, `/stats;csv`,
//! `/stats;json`). Bodies are size- and time-limited; no route writes the config file.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{export, guard, page, report, State, BODY_TIMEOUT, MAX_BODY_BYTES};
use crate::balance::{AdminMode, Pool};
use crate::metrics;

/// Said in every successful POST answer: what a change does and does not survive.
pub(crate) const RUNTIME_ONLY_NOTE: &str =
    "runtime change only: the config file was not modified. \
A restart restores the configured state and weight; to keep the change, write it to the config.";

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "error": message.into() }))
}

/// Routes one admin request.
pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET | &Method::HEAD, [""]) => {
            respond(StatusCode::OK, "text/html; charset=utf-8", page::HTML)
        }
        (&Method::GET | &Method::HEAD, ["stats.css"]) => {
            respond(StatusCode::OK, "text/css; charset=utf-8", page::CSS)
        }
        (&Method::GET | &Method::HEAD, ["stats.js"]) => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", page::JS)
        }
        (&Method::GET | &Method::HEAD, ["metrics"]) => {
            let pools = state.view.pools();
            // Prometheus text 0.0.4 unless the scraper asks for OpenMetrics.
            let accept = req.headers().get(header::ACCEPT);
            let format = metrics::Format::negotiate(accept.and_then(|v| v.to_str().ok()));
            let body = metrics::global().encode_as(&pools, format);
            let mut r = respond(StatusCode::OK, format.content_type(), body);
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept"));
            r
        }
        (&Method::GET | &Method::HEAD, [";csv" | "stats;csv"]) => {
            let body = export::csv(&report::gather(state.view.as_ref()));
            // As HAProxy: plain text, so a browser shows it instead of downloading it.
            respond(StatusCode::OK, "text/plain; charset=utf-8", body)
        }
        (&Method::GET | &Method::HEAD, [";json" | "stats;json" | "stats.json"]) => {
            let r = report::gather(state.view.as_ref());
            json_resp(StatusCode::OK, &export::json(&r))
        }
        (&Method::GET | &Method::HEAD, ["api", "backends"]) => {
            json_resp(StatusCode::OK, &backends_json(&state.view.pools()))
        }
        (&Method::POST, ["api", "backends", b, "servers", s]) => {
            let (Some(b), Some(s)) = (percent_decode(b), percent_decode(s)) else {
                return error(StatusCode::BAD_REQUEST, "bad percent-encoding in the path");
            };
            set_server(state, req, &b, &s).await
        }
        (
            _,
            [""]
            | ["metrics"]
            | ["api", "backends"]
            | ["api", "backends", _, "servers", _]
            | [";csv" | "stats;csv" | ";json" | "stats;json" | "stats.json"],
        ) => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            let allow = if segments.len() == 5 {
                "POST"
            } else {
                "GET, HEAD"
            };
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such admin path {path}")),
    }
}

/// Every backend with its servers, as `GET /api/backends` answers.
pub(crate) fn backends_json(pools: &[std::sync::Arc<Pool>]) -> Value {
    let backends: Vec<Value> = pools
        .iter()
        .map(|p| {
            let servers: Vec<Value> = p
                .servers()
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "addr": s.addr.to_string(),
                        "state": metrics::display_state(s),
                        "health": if s.state == crate::balance::ServerState::Up { "up" } else { "down" },
                        "admin": s.admin.as_str(),
                        "weight": s.weight,
                        "effective_weight": s.effective_weight,
                        "agent_weight_pct": s.agent_pct,
                        "slow_start_pct": s.ramp_pct,
                        "backup": s.backup,
                        "max_connections": s.max_connections,
                        "active": s.active,
                        "total": s.total,
                        "connect_failures": s.connect_failures,
                        "checks_ok": s.checks_ok,
                        "checks_failed": s.checks_failed,
                        "last_check_ms": s.last_check_latency.map(|d| d.as_secs_f64() * 1000.0),
                        "last_error": s.last_error,
                    })
                })
                .collect();
            json!({
                "name": p.name(),
                "balance": format!("{:?}", p.balance()).to_lowercase(),
                "queue": p.queue_len(),
                "backup_active": p.backup_active(),
                "servers": servers,
            })
        })
        .collect();
    json!({ "backends": backends })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetServer {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

async fn set_server(state: &State, req: Request<Incoming>, backend: &str, server: &str) -> Resp {
    if let Some(token) = &state.token {
        let given = guard::bearer(req.headers());
        if !given.is_some_and(|g| same(g.trim().as_bytes(), token.as_bytes())) {
            let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice admin\""),
            );
            return r;
        }
    }
    // JSON only: a cross-site HTML form cannot send it without a CORS preflight.
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body unreadable or over {MAX_BODY_BYTES} bytes: {e}"),
            )
        }
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
    };
    let set: SetServer = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let mode = match set.state.as_deref() {
        None => None,
        Some(s) => match AdminMode::parse(s) {
            Some(m) => Some(m),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("state must be \"drain\", \"maint\" or \"ready\", not {s:?}"),
                )
            }
        },
    };
    if mode.is_none() && set.weight.is_none() {
        return error(StatusCode::BAD_REQUEST, "give \"state\" and/or \"weight\"");
    }
    let pools = state.view.pools();
    let Some(pool) = pools.iter().find(|p| p.name() == backend) else {
        return error(StatusCode::NOT_FOUND, format!("no backend {backend:?}"));
    };
    match pool.set_admin(server, mode, set.weight) {
        Ok(id) => {
            let snap = pool.servers();
            let s = &snap[id.0];
            json_resp(
                StatusCode::OK,
                &json!({
                    "backend": backend,
                    "server": s.name,
                    "state": metrics::display_state(s),
                    "admin": s.admin.as_str(),
                    "weight": s.weight,
                    "active": s.active,
                    "persisted": false,
                    "note": RUNTIME_ONLY_NOTE,
                }),
            )
        }
        Err(e @ crate::balance::ChangeRefused::NoServer { .. }) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Constant-time equality (the token must not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `%XX` escapes of one path segment; None when malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("s%201").as_deref(), Some("s 1"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn token_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
