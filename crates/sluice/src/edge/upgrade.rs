//! Upgraded requests at the edge (WebSocket, issue #16): which requests switch protocols
//! (HTTP/1.1 `Upgrade` of a listed protocol, HTTP/2 extended CONNECT, RFC 8441), the request
//! the app gets (always an HTTP/1.1 `Upgrade`), the answer the client gets (101, or 200 on
//! HTTP/2), and the tunnel started on the connection's tracker. Relaying is `tunnel.rs`'s;
//! requests not upgraded keep going through `service` with `Upgrade` stripped.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::balance::{Lease, NoServer, ServerId};
use crate::upstream::{RequestContext, Upgraded, UpstreamError};

use super::access::{LogBody, RequestLog};
use super::conn::{ConnState, RequestGuard};
use super::strict::Refusal;
use super::tunnel::{self, End};
use super::HttpFrontend;

/// The GUID of RFC 6455 §1.3 (`Sec-WebSocket-Accept`).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A request that asks to switch protocols, and may.
#[derive(Debug, Clone)]
pub(super) struct Want {
    /// The protocol token as the client sent it (`websocket`).
    proto: String,
    /// HTTP/2 extended CONNECT (answered 200, the app asked with a key of ours).
    h2: bool,
}

/// Whether `req` switches protocols: Some for an HTTP/1.1 GET with `Connection: upgrade` and
/// an `Upgrade` whose first protocol is listed, or an extended CONNECT with a listed
/// `:protocol`; None for everything else (its `Upgrade` is stripped on the way). An extended
/// CONNECT of an unlisted protocol is refused (405) like a plain CONNECT.
pub(super) fn classify(
    fe: &HttpFrontend,
    req: &Request<Incoming>,
) -> Result<Option<Want>, Refusal> {
    let listed = |p: &str| {
        fe.upstream.can_upgrade()
            && fe
                .settings
                .upgrade_protocols
                .iter()
                .any(|l| l.eq_ignore_ascii_case(p))
    };
    if req.method() == Method::CONNECT {
        return match req.extensions().get::<hyper::ext::Protocol>() {
            Some(p) if listed(p.as_str()) => Ok(Some(Want {
                proto: p.as_str().to_string(),
                h2: true,
            })),
            _ => Err(Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "CONNECT of a protocol not in upgrade_protocols",
            }),
        };
    }
    if req.version() != Version::HTTP_11 || req.method() != Method::GET {
        return Ok(None);
    }
    if !req.body().is_end_stream() {
        return Ok(None);
    }
    Ok(offered(req.headers(), &[])
        .filter(|t| listed(t))
        .map(|t| Want {
            proto: t.to_string(),
            h2: false,
        }))
}

/// The protocol an HTTP/1.1 request's fields ask to switch to: the first of `Upgrade`
/// (without a `/version`) when `Connection` lists `upgrade`, and, unless `listed` is empty,
/// only a protocol in `listed` (ASCII case ignored). Pure (fuzzed: `upgrade_request`).
pub(crate) fn offered<'a>(headers: &'a HeaderMap, listed: &[String]) -> Option<&'a str> {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !connection_upgrade {
        return None;
    }
    let first = headers
        .get(header::UPGRADE)?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    let name = first.split('/').next()?.trim();
    let ok = !name.is_empty()
        && (listed.is_empty() || listed.iter().any(|l| l.eq_ignore_ascii_case(name)));
    ok.then_some(name)
}

/// Sends the upgrade to an app server (another on a connect failure, up to `retries`); on
/// 101 answers the client and starts the tunnel, which writes the access line when it ends.
/// Any other answer, or a failure, is an ordinary response logged as usual.
pub(super) async fn handle(
    fe: &Arc<HttpFrontend>,
    ctx: RequestContext,
    want: Want,
    mut req: Request<Incoming>,
    mut line: RequestLog,
    guard: RequestGuard,
    state: &ConnState,
) -> Response<LogBody> {
    let start = Instant::now();
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let key = want.h2.then(|| to_app_request(&mut parts));
    let (answer, lease) = match open(fe, &ctx, parts, &want, line.rec()).await {
        Ok(a) => a,
        Err(status) => {
            line.rec().status = status.as_u16();
            let resp = super::service::error_response(status);
            return resp.map(|b| LogBody::new(b, line, None, guard));
        }
    };
    let took = start.elapsed();
    line.rec().upstream_time = Some(took);
    fe.log.series.upstream(took);
    let (headers, io, leftover) = match answer {
        Upgraded::Answered(resp) => {
            line.rec().status = resp.status().as_u16();
            return resp.map(|b| LogBody::new(b, line, Some(lease), guard));
        }
        Upgraded::Switched {
            headers,
            io,
            leftover,
        } => (headers, io, leftover),
    };
    if let Some(key) = &key {
        let accept = headers
            .get("sec-websocket-accept")
            .map(HeaderValue::as_bytes);
        if accept != Some(accept_for(key).as_bytes()) {
            tracing::info!(
                frontend = %fe.name,
                server = lease.name(),
                "upgrade refused: the app's Sec-WebSocket-Accept does not match our key"
            );
            line.rec().status = 502;
            let resp = super::service::error_response(StatusCode::BAD_GATEWAY);
            return resp.map(|b| LogBody::new(b, line, Some(lease), guard));
        }
    }
    let resp = client_answer(&want, headers);
    line.rec().status = resp.status().as_u16();
    let opened = crate::metrics::global().upgraded(&fe.name, &want.proto.to_ascii_lowercase());
    let (fe2, idle) = (fe.clone(), fe.settings.client.tunnel);
    // HTTP/1: `h1::H1` hands the stream over; HTTP/2: the stream is hyper's.
    let handoff = (!want.h2).then(|| state.expect_handoff());
    state.tunnels.spawn(async move {
        // Holds the lease, the request guard and the line until the tunnel ends.
        let (_opened, _lease, _guard, mut line) = (opened, lease, guard, line);
        let client = tokio::select! {
            c = client_stream(handoff, client_side) => c,
            _ = fe2.force.cancelled() => return,
        };
        let out = match client {
            Ok(c) => tunnel::relay(c, io, leftover, idle, &fe2.force).await,
            Err(e) => {
                tracing::debug!(frontend = %fe2.name, "client upgrade failed: {e}");
                return;
            }
        };
        let rec = line.rec();
        rec.body_bytes_sent = out.down;
        rec.bytes_in = Some(out.up);
        let end = match out.end {
            End::Closed => "closed",
            End::Idle => "idle timeout",
            End::Error => "i/o error",
            End::Forced => "forced stop",
        };
        tracing::debug!(
            frontend = %fe2.name,
            client = %rec.client,
            up = out.up,
            down = out.down,
            "tunnel ended: {end}"
        );
    });
    resp.map(|b| LogBody::bare(b.map_err(|e| match e {}).boxed()))
}

/// The client's stream once the answer is out: HTTP/1's from `h1::H1`'s hand-over, an
/// HTTP/2 extended CONNECT's from hyper's upgrade API.
async fn client_stream(
    handoff: Option<tokio::sync::oneshot::Receiver<Box<dyn tunnel::ClientIo>>>,
    hyper_side: hyper::upgrade::OnUpgrade,
) -> Result<Box<dyn tunnel::ClientIo>, String> {
    match handoff {
        Some(rx) => rx
            .await
            .map_err(|_| "the connection ended before its 101 was sent".to_string()),
        None => match hyper_side.await {
            Ok(u) => Ok(Box::new(TokioIo::new(u))),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Picks servers and asks, at most `1 + retries` attempts; only connect failures move on.
async fn open(
    fe: &HttpFrontend,
    ctx: &RequestContext,
    parts: hyper::http::request::Parts,
    want: &Want,
    rec: &mut super::AccessRecord,
) -> Result<(Upgraded, Lease), StatusCode> {
    let mut tried: Vec<ServerId> = Vec::new();
    let mut last: Option<UpstreamError> = None;
    for _attempt in 0..=fe.retries {
        let deadline = Instant::now() + fe.settings.upstream.queue;
        let lease = match fe.pool.acquire(&ctx.client, &tried, deadline).await {
            Ok(l) => l,
            Err(NoServer::Unavailable) if last.is_some() => break,
            Err(_) => return Err(StatusCode::SERVICE_UNAVAILABLE),
        };
        let (name, addr) = lease.log_names();
        (rec.upstream, rec.upstream_addr) = (Some(name), Some(addr));
        let attempt = fe
            .upstream
            .upgrade(lease.addr(), parts.clone(), &want.proto, ctx)
            .await;
        match attempt {
            Ok(a) => {
                lease.connected();
                return Ok((a, lease));
            }
            Err(UpstreamError::Connect(e)) => {
                lease.connect_failed(&format!("{}: {e}", lease.name()));
                tried.push(lease.id());
                last = Some(UpstreamError::Connect(e));
            }
            Err(e) => {
                tracing::info!(frontend = %fe.name, server = lease.name(), "upgrade failed: {e}");
                return Err(e.status());
            }
        }
    }
    match last {
        Some(e) => {
            tracing::info!(frontend = %fe.name, "upgrade failed: {e}");
            Err(e.status())
        }
        None => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// An extended CONNECT (RFC 8441 §5) as the HTTP/1.1 request the app gets: GET, the same
/// path and authority, a fresh `Sec-WebSocket-Key` (returned) and `Sec-WebSocket-Version`.
fn to_app_request(parts: &mut hyper::http::request::Parts) -> String {
    let key = base64(&rand::random::<[u8; 16]>());
    parts.method = Method::GET;
    parts.version = Version::HTTP_11;
    parts.extensions = Default::default();
    let h = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert("sec-websocket-key", v);
    }
    if !h.contains_key("sec-websocket-version") {
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    key
}

/// The client's answer to a switch the app accepted: HTTP/1.1 101 with the app's fields and
/// `Connection: upgrade`; HTTP/2 200 without the handshake's HTTP/1.1-only fields.
fn client_answer(want: &Want, app: HeaderMap) -> Response<Empty<Bytes>> {
    let mut resp = Response::new(Empty::new());
    let h = resp.headers_mut();
    let upgrade = app.get(header::UPGRADE).cloned();
    for (name, value) in &app {
        let skip = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
        ) || (want.h2 && name == "sec-websocket-accept");
        if !skip {
            h.append(name.clone(), value.clone());
        }
    }
    if want.h2 {
        *resp.status_mut() = StatusCode::OK;
    } else {
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let proto = upgrade.or_else(|| HeaderValue::from_str(&want.proto).ok());
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(p) = proto {
            h.insert(header::UPGRADE, p);
        }
    }
    resp
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2): base64 of SHA-1 of key + GUID.
fn accept_for(key: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WS_GUID);
    base64(ctx.finish().as_ref())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_needs_connection_upgrade_and_takes_the_first_protocol() {
        let h = |c: &str, u: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONNECTION, HeaderValue::from_str(c).unwrap());
            m.insert(header::UPGRADE, HeaderValue::from_str(u).unwrap());
            m
        };
        let ws = ["websocket".to_string()];
        assert_eq!(
            offered(&h("keep-alive, Upgrade", "WebSocket"), &ws),
            Some("WebSocket")
        );
        assert_eq!(offered(&h("close", "websocket"), &ws), None);
        assert_eq!(offered(&h("upgrade", "h2c"), &ws), None);
        assert_eq!(offered(&h("upgrade", "h2c, websocket"), &ws), None);
        assert_eq!(offered(&h("upgrade", "foo/2, bar"), &[]), Some("foo"));
        assert_eq!(offered(&h("upgrade", " , x"), &[]), None);
    }

    #[test]
    fn accept_matches_rfc_6455_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn h2_answer_drops_the_accept_and_h1_names_the_protocol() {
        let mut app = HeaderMap::new();
        app.insert("sec-websocket-accept", HeaderValue::from_static("x"));
        app.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        app.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        let h2 = Want {
            proto: "websocket".into(),
            h2: true,
        };
        let r = client_answer(&h2, app.clone());
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("sec-websocket-accept"));
        assert!(!r.headers().contains_key(header::UPGRADE));
        assert_eq!(r.headers()["sec-websocket-protocol"], "chat");
        let h1 = Want { h2: false, ..h2 };
        let r = client_answer(&h1, app);
        assert_eq!(r.status(), 101);
        assert_eq!(r.headers()[header::UPGRADE], "WebSocket");
        assert_eq!(r.headers()[header::CONNECTION], "upgrade");
        assert_eq!(r.headers()["sec-websocket-accept"], "x");
    }
}
