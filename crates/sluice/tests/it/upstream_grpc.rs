//! HTTP/2 to apps (#16), on loopback: a grpcio app (Debian python3-grpcio) behind a TLS edge
//! behind a sluice balancer (PROXY v2), called by a grpcio client: unary, server-, client-
//! and bidi-streaming calls with their statuses and trailers, the real client address in the
//! app's metadata, a killed app answered as UNAVAILABLE by the edge; `grpc-timeout` enforced
//! by the edge (DEADLINE_EXCEEDED), HTTP/1.1 refused; TLS to the app (`[backend.tls]`) with
//! and without verification; `protocol = "h2c"`: HTTP/1.1 clients
//! reach an h2c app over one multiplexed connection, trailers pass. SKIPs without grpcio.

#[path = "grpc/apps.rs"]
mod apps;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::Value;

use crate::support::edge::*;
use crate::support::*;
use apps::*;

/// A balancer frontend `name` (tcp, PROXY v2 from 127.0.0.10) in front of `edge`.
fn balancer(name: &str, edge: SocketAddr) -> String {
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}\"\n\n\
         [[backend]]\nname = \"{name}\"\nsend_proxy = \"v2\"\nsource = \"127.0.0.10\"\n\
         [[backend.servers]]\naddr = \"{edge}\"\n"
    )
}

/// An edge frontend `name` (with `extra` lines) on backend `name` speaking `protocol` to `app`.
fn edge(name: &str, extra: &str, protocol: &str, app: SocketAddr) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"{name}\"\n{extra}\n\n\
         [[backend]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n\n"
    )
}

fn code(v: &Value, call: &str) -> String {
    v[call]["code"].as_str().unwrap_or("?").to_string()
}

#[tokio::test]
async fn grpc_calls_pass_balancer_and_tls_edge_and_a_dead_app_is_unavailable() {
    let Some(python) = grpc_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (app, app_addr) = start_grpc_app(&python, None).await;
    let (tls, _der) = tls_table(dir.path());
    let ca = dir.path().join("cert.pem");
    let extra = format!("proxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n{tls}");
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}",
        edge("gr_edge", &extra, "grpc", app_addr)
    );
    let edges = Sluice::start(&cfg).await;
    let lbs = Sluice::start(&balancer("gr_lb", edges.addr("gr_edge"))).await;
    let lb = lbs.addr("gr_lb");

    let v = grpc_client(&python, lb, &ca, "calls").await;
    let text = v.to_string();
    assert_eq!(code(&v, "unary"), "OK", "{text}");
    assert_eq!(v["unary"]["value"], "hello", "{text}");
    assert_eq!(v["unary"]["trailers"]["x-trailer"], "t-hello", "{text}");
    // The app saw the client (127.0.0.1, from the PROXY header), not the balancer's
    // 127.0.0.10, and the edge's request id.
    assert_eq!(code(&v, "who"), "OK", "{text}");
    let who: Value = serde_json::from_str(v["who"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(who["x-forwarded-for"], "127.0.0.1", "{who}");
    assert_eq!(who["x-real-ip"], "127.0.0.1", "{who}");
    assert_eq!(who["x-forwarded-proto"], "https", "{who}");
    assert!(
        who["x-request-id"].as_str().is_some_and(|s| !s.is_empty()),
        "{who}"
    );
    // The app's own status, message and trailing metadata pass through.
    assert_eq!(code(&v, "fail"), "NOT_FOUND", "{text}");
    assert_eq!(v["fail"]["details"], "no such thing", "{text}");
    assert_eq!(v["fail"]["trailers"]["x-why"], "because", "{text}");
    assert_eq!(code(&v, "server_stream"), "OK", "{text}");
    assert_eq!(
        v["server_stream"]["value"],
        serde_json::json!(["0", "1", "2", "3", "4"]),
        "{text}"
    );
    assert_eq!(v["server_stream"]["trailers"]["x-count"], "5", "{text}");
    assert_eq!(code(&v, "client_stream"), "OK", "{text}");
    assert_eq!(v["client_stream"]["value"], "a,b,cccccc/70004", "{text}");
    assert_eq!(code(&v, "bidi"), "OK", "{text}");
    let bidi: Vec<String> = (0..100).map(|i| format!("X{i}")).collect();
    assert_eq!(v["bidi"]["value"], serde_json::json!(bidi), "{text}");
    assert_eq!(code(&v, "deadline"), "DEADLINE_EXCEEDED", "{text}");

    // The app dies: the edge answers UNAVAILABLE itself ("unavailable" is the edge's
    // grpc-message; a client mapping an HTTP 502 page would say "Received http2 header ...").
    drop(app);
    wait_until("the grpc app's port closed", || {
        std::net::TcpStream::connect(app_addr).is_err()
    })
    .await;
    let v = grpc_client(&python, lb, &ca, "unavailable").await;
    assert_eq!(code(&v, "unary"), "UNAVAILABLE", "{v}");
    assert_eq!(v["unary"]["details"], "unavailable", "{v}");
}

#[tokio::test]
async fn grpc_timeout_is_enforced_by_the_edge_and_http1_is_refused() {
    let Some(python) = grpc_python() else { return };
    let (_app, app_addr) = start_grpc_app(&python, None).await;
    let dead = dead_addr();
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}",
        edge("gr_plain", "", "grpc", app_addr),
        edge("gr_dead", "", "grpc", dead)
    );
    let s = Sluice::start(&cfg).await;
    let grpc_headers = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "300m"),
    ];
    // The app sleeps 5 s; the edge ends the call at 300 ms with DEADLINE_EXCEEDED.
    let started = std::time::Instant::now();
    let a = h2_exchange(
        s.addr("gr_plain"),
        "POST",
        "/test.Echo/Unary",
        &grpc_headers,
        grpc_frame(b"sleep"),
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(a.status, 200);
    let status = a.trailers.as_ref().unwrap_or(&a.headers);
    assert_eq!(
        status["grpc-status"], "4",
        "{:?} {:?}",
        a.headers, a.trailers
    );
    assert_eq!(status["grpc-message"], "deadline exceeded");

    // A call within its deadline gets the app's answer and trailers.
    let a = h2_exchange(
        s.addr("gr_plain"),
        "POST",
        "/test.Echo/Unary",
        &grpc_headers[..2],
        grpc_frame(b"hi"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, grpc_frame(b"hi"));
    let t = a.trailers.expect("the app's trailers");
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["x-trailer"], "t-hi");

    // Nothing listens: a trailers-only UNAVAILABLE with HTTP 200, as a gRPC client needs.
    let a = h2_exchange(
        s.addr("gr_dead"),
        "POST",
        "/test.Echo/Unary",
        &grpc_headers[..2],
        grpc_frame(b"hi"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/grpc");
    assert_eq!(a.headers["grpc-status"], "14");
    assert_eq!(a.headers["grpc-message"], "unavailable");
    assert!(a.body.is_empty() && a.trailers.is_none());

    // HTTP/1.1 cannot carry gRPC: refused with a plain 400, never sent upstream.
    let req =
        "POST /test.Echo/Unary HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/grpc\r\n\
               Content-Length: 0\r\nConnection: close\r\n\r\n";
    let resp = raw_request(s.addr("gr_plain"), req.as_bytes()).await;
    assert_eq!(status_of(&resp), "400", "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("grpc-status"), "{resp}");
}

#[tokio::test]
async fn grpc_over_tls_to_the_app_checks_its_certificate_when_asked() {
    let Some(python) = grpc_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert(dir.path());
    let (_app, app_addr) = start_grpc_app(&python, Some((&cert, &key))).await;
    let tls = |extra: &str| format!("tls = {{ {extra} }}\n");
    let ca = format!(
        "verify = true, trusted_certificate = \"{}\"",
        cert.display()
    );
    let mut cfg = String::from("[global]\nmax_connections = 100\ngrace = \"1s\"\n\n");
    for (name, t) in [
        (
            "gt_verified",
            tls(&format!("{ca}, name = \"app.test\", server_name = true")),
        ),
        (
            "gt_wrong_name",
            tls(&format!("{ca}, name = \"other.test\"")),
        ),
        ("gt_unverified", tls("")),
    ] {
        cfg.push_str(&edge(name, "", "grpc", app_addr).replace(
            "protocol = \"grpc\"\n",
            &format!("protocol = \"grpc\"\n{t}"),
        ));
    }
    let s = Sluice::start(&cfg).await;
    let call = |fe: &str| {
        h2_exchange(
            s.addr(fe),
            "POST",
            "/test.Echo/Unary",
            &[("content-type", "application/grpc"), ("te", "trailers")],
            grpc_frame(b"tls"),
        )
    };
    for fe in ["gt_verified", "gt_unverified"] {
        let a = call(fe).await;
        assert_eq!(a.status, 200, "{fe}");
        assert_eq!(a.body, grpc_frame(b"tls"), "{fe}");
        let t = a.trailers.expect("the app's trailers");
        assert_eq!(t["grpc-status"], "0", "{fe}");
        assert_eq!(t["x-trailer"], "t-tls", "{fe}");
    }
    // The certificate is not for other.test: no connection, UNAVAILABLE.
    let a = call("gt_wrong_name").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["grpc-status"], "14", "{:?}", a.headers);
}

#[tokio::test]
async fn h2c_app_gets_http1_clients_over_one_connection_with_trailers() {
    let (app, accepted) = h2c_app(false).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}",
        edge("hc_edge", "", "h2c", app)
    );
    let s = Sluice::start(&cfg).await;
    let to = s.addr("hc_edge");
    // 20 HTTP/1.1 clients from 127.0.0.2 at once: the app sees HTTP/2 requests with the
    // client's address, all on the first connection the edge opened.
    let reqs = (0..20).map(|_| {
        raw_request(
            to,
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        )
    });
    for resp in futures_join(reqs).await {
        assert_eq!(status_of(&resp), "200", "{resp}");
        assert!(resp.contains("HTTP/2.0 127.0.0.2 trailers"), "{resp}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // An HTTP/2 client gets the app's trailers.
    let a = h2_exchange(to, "GET", "/x", &[("te", "trailers")], Bytes::new()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.trailers.expect("trailers")["x-app-trailer"], "done");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn h2c_connection_closed_by_goaway_is_replaced() {
    // Each app connection serves one request and says GOAWAY: every next request finds its
    // pooled connection gone (or going) and gets a new one, never an error.
    let (app, accepted) = h2c_app(true).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}",
        edge("hc_goaway", "", "h2c", app)
    );
    let s = Sluice::start(&cfg).await;
    for i in 1..=5 {
        let resp = raw_request(
            s.addr("hc_goaway"),
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&resp), "200", "request {i}: {resp}");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 2);
}

/// Awaits every future concurrently (no futures crate in the tree).
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<String>
where
    F: std::future::Future<Output = String> + Send + 'static,
{
    let tasks: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}
