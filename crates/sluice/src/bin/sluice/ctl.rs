//! `sluice ctl`: one command for the admin endpoints of several balancers (HAProxy's
//! `set server ... state drain` sent to each, then watched): `drain`, `ready`, `maint` a
//! server everywhere, waiting for a drain to finish; `state`, the merged view. A small HTTP/1
//! client of the admin API (`GET /api/backends`, `POST /api/backends/B/servers/S`); no state.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use sluice::config::Dur;
use tokio::net::TcpStream;

/// Longest admin answer read.
const MAX_ANSWER: usize = 4 << 20;
/// One admin request (connect, send, read) must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct CtlOpts {
    /// A balancer's admin endpoint (`[admin] bind`), `host:port`; repeat for each balancer.
    #[arg(long = "admin", value_name = "HOST:PORT", required = true)]
    admins: Vec<String>,
    /// Bearer token for changes (`[admin] token`); default: $SLUICE_ADMIN_TOKEN.
    #[arg(long)]
    token: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Stop sending new connections to BACKEND/SERVER on every balancer, then wait until its
    /// active connections reach zero everywhere (exit 0) or the timeout passes (exit 1).
    Drain {
        /// `backend/server`, as `state` lists them.
        target: String,
        /// Longest wait for the connections to end.
        #[arg(long, default_value = "5m")]
        timeout: Dur,
        /// How often each balancer is asked.
        #[arg(long, default_value = "500ms")]
        every: Dur,
    },
    /// Put BACKEND/SERVER back in service (undoes drain and maint) on every balancer.
    Ready { target: String },
    /// Take BACKEND/SERVER out of service at once on every balancer (existing connections
    /// stay; HAProxy's `maint`).
    Maint { target: String },
    /// Every backend's servers as each balancer sees them, one line per server and balancer.
    State {
        /// One JSON object per balancer instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `sluice ctl`; the text to print and whether the command succeeded.
pub fn run(opts: CtlOpts) -> (String, bool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (format!("sluice ctl: {e}"), false),
    };
    let token = opts
        .token
        .clone()
        .or_else(|| std::env::var("SLUICE_ADMIN_TOKEN").ok());
    rt.block_on(async {
        match &opts.action {
            Action::Drain {
                target,
                timeout,
                every,
            } => drain(&opts.admins, token.as_deref(), target, timeout.0, every.0).await,
            Action::Ready { target } => {
                set_all(&opts.admins, token.as_deref(), target, "ready").await
            }
            Action::Maint { target } => {
                set_all(&opts.admins, token.as_deref(), target, "maint").await
            }
            Action::State { json } => state(&opts.admins, *json).await,
        }
    })
}

/// `backend/server` split at the first `/` (server names may not contain one; backends can't).
fn split_target(target: &str) -> Result<(&str, &str), String> {
    match target.split_once('/') {
        Some((b, s)) if !b.is_empty() && !s.is_empty() => Ok((b, s)),
        _ => Err(format!("{target:?}: write BACKEND/SERVER, e.g. web/srv1")),
    }
}

/// Percent-encodes a path segment (server names such as `srv1-10.0.0.7` pass as they are).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request to `admin`: the status and the JSON answer.
async fn call(
    admin: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let exchange = async {
        let tcp = TcpStream::connect(admin)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, admin);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match &body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&answer).map_err(|e| {
            format!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&answer)
            )
        })?;
        Ok::<_, String>((status, v))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(r) => r.map_err(|e| format!("{admin}: {e}")),
        Err(_) => Err(format!("{admin}: no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// Sets `state` on the target on every balancer; one line per balancer.
async fn set_on(
    admins: &[String],
    token: Option<&str>,
    target: &str,
    state: &str,
) -> Result<Vec<String>, String> {
    let (b, s) = split_target(target)?;
    let path = format!("/api/backends/{}/servers/{}", segment(b), segment(s));
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for admin in admins {
        match call(
            admin,
            Method::POST,
            &path,
            token,
            Some(json!({ "state": state })),
        )
        .await
        {
            Ok((st, v)) if st.is_success() => lines.push(format!(
                "{admin} {target}: {} (active {})",
                v["state"].as_str().unwrap_or("?"),
                v["active"]
            )),
            Ok((st, v)) => failed.push(format!(
                "{admin} {target}: {st}: {}",
                v["error"].as_str().unwrap_or("refused")
            )),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(lines)
    } else {
        lines.extend(failed);
        Err(lines.join("\n"))
    }
}

async fn set_all(
    admins: &[String],
    token: Option<&str>,
    target: &str,
    state: &str,
) -> (String, bool) {
    match set_on(admins, token, target, state).await {
        Ok(lines) => (lines.join("\n"), true),
        Err(e) => (e, false),
    }
}

/// The server's active connections on `admin`, from `GET /api/backends`.
async fn active_on(admin: &str, backend: &str, server: &str) -> Result<u64, String> {
    let (_, v) = call(admin, Method::GET, "/api/backends", None, None).await?;
    find_server(&v, backend, server)
        .and_then(|s| s["active"].as_u64())
        .ok_or_else(|| format!("{admin}: no server {backend}/{server}"))
}

fn find_server<'a>(v: &'a Value, backend: &str, server: &str) -> Option<&'a Value> {
    v["backends"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == backend)?["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == server)
}

async fn drain(
    admins: &[String],
    token: Option<&str>,
    target: &str,
    timeout: Duration,
    every: Duration,
) -> (String, bool) {
    let (b, s) = match split_target(target) {
        Ok(pair) => pair,
        Err(e) => return (e, false),
    };
    let mut out = match set_on(admins, token, target, "drain").await {
        Ok(lines) => lines,
        Err(e) => return (e, false),
    };
    let start = tokio::time::Instant::now();
    let mut left: BTreeMap<&str, u64> = admins.iter().map(|a| (a.as_str(), u64::MAX)).collect();
    loop {
        for (admin, active) in left.iter_mut() {
            match active_on(admin, b, s).await {
                Ok(n) => *active = n,
                Err(e) => return (format!("{}\n{e}", out.join("\n")), false),
            }
        }
        left.retain(|_, n| *n > 0);
        if left.is_empty() {
            out.push(format!(
                "{target}: drained on {} balancer(s) after {:.1}s",
                admins.len(),
                start.elapsed().as_secs_f64()
            ));
            return (out.join("\n"), true);
        }
        if start.elapsed() >= timeout {
            for (admin, n) in &left {
                out.push(format!(
                    "{admin} {target}: still {n} active after {timeout:?}"
                ));
            }
            return (out.join("\n"), false);
        }
        tokio::time::sleep(every.min(timeout.saturating_sub(start.elapsed()))).await;
    }
}

async fn state(admins: &[String], as_json: bool) -> (String, bool) {
    let mut views = Vec::new();
    let mut ok = true;
    for admin in admins {
        match call(admin, Method::GET, "/api/backends", None, None).await {
            Ok((_, v)) => views.push((admin.as_str(), v)),
            Err(e) => {
                ok = false;
                views.push((admin.as_str(), json!({ "error": e })));
            }
        }
    }
    if as_json {
        let lines: Vec<String> = views
            .iter()
            .map(|(a, v)| json!({ "admin": a, "view": v }).to_string())
            .collect();
        return (lines.join("\n"), ok);
    }
    (table(&views), ok)
}

/// One line per server and balancer, servers grouped; a server whose state differs between
/// balancers is marked `*` (a drain that did not reach every balancer, a health view apart).
fn table(views: &[(&str, Value)]) -> String {
    let mut rows: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut out = vec![format!(
        "{:<32} {:<22} {:<10} {:>6} {:>9} {:>8} {:>10}",
        "BACKEND/SERVER", "BALANCER", "STATE", "WEIGHT", "EFFECTIVE", "ACTIVE", "TOTAL"
    )];
    for (admin, v) in views {
        if let Some(e) = v["error"].as_str() {
            out.push(format!("{admin}: {e}"));
            continue;
        }
        for b in v["backends"].as_array().into_iter().flatten() {
            for s in b["servers"].as_array().into_iter().flatten() {
                let key = (
                    b["name"].as_str().unwrap_or("?").to_string(),
                    s["name"].as_str().unwrap_or("?").to_string(),
                );
                // The weight selection uses now (agent %, slow start); "-" from a balancer
                // too old to report it.
                let effective = s["effective_weight"]
                    .as_f64()
                    .map_or_else(|| "-".to_string(), |w| format!("{w:.3}"));
                let line = format!(
                    "{:<22} {:<10} {:>6} {:>9} {:>8} {:>10}",
                    admin,
                    s["state"].as_str().unwrap_or("?"),
                    s["weight"],
                    effective.trim_end_matches('0').trim_end_matches('.'),
                    s["active"],
                    s["total"]
                );
                let st = s["state"].as_str().unwrap_or("?").to_string();
                rows.entry(key).or_default().push((st, line));
            }
        }
    }
    for ((b, s), lines) in rows {
        let differs = lines.iter().any(|(st, _)| *st != lines[0].0);
        let name = format!("{b}/{s}{}", if differs { " *" } else { "" });
        for (_, line) in lines {
            out.push(format!("{name:<32} {line}"));
        }
    }
    out.join("\n")
}
