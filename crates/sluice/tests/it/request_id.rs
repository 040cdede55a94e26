//! One request id across both tiers (issue #15): a client (127.0.0.2) → sluice balancer
//! (`send_proxy = "v2"`, `proxy_v2_unique_id`) → sluice edge (TLS, PROXY trusted from
//! 127.0.0.1) → app. The balancer's connection line, the edge's access line and the app see
//! the same id; a client's `X-Request-Id` counts only from a trusted hop; without UNIQUE_ID
//! the edge makes a fresh id; HAProxy's `unique-id` and a chained balancer's id are kept.
//! The real-uWSGI and HAProxy cases skip loudly without those peers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use tokio::io::AsyncWriteExt;

use crate::support::edge::*;
use crate::support::*;

/// A trusted HTTP hop: listed in the edge's `proxy_protocol.trusted`, connecting through the
/// balancer like any client.
const TRUSTED_HOP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Two requests on one keep-alive connection, both with a client-made X-Request-Id.
const TWO_REQUESTS: &str =
    "GET /first HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: forged-1\r\n\r\n\
     GET /second HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: forged-2\r\nConnection: close\r\n\r\n";

/// The edge `name` (its own in-process server: the balancer needs its address), serving
/// `app` (a `[[backend.servers]]` addr) over uwsgi, logging `$connection_id $request_id`.
async fn edge(dir: &Path, name: &str, app: &str) -> (Sluice, Vec<u8>) {
    edge_with(dir, name, app, "uwsgi").await
}

/// [`edge`] with the backend speaking `protocol` (`uwsgi` or `http`).
async fn edge_with(dir: &Path, name: &str, app: &str, protocol: &str) -> (Sluice, Vec<u8>) {
    let (tls, der) = tls_table(dir);
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"{name}_app\"\naccess_log = \"{d}/{name}.log\"\n\
         log_format = '$remote_addr cid=$connection_id rid=$request_id \"$request\" $status'\n\
         proxy_protocol = {{ trusted = [\"127.0.0.1/32\", \"{TRUSTED_HOP}/32\"], untrusted = \"direct\" }}\n\
         {tls}\n\n\
         [[backend]]\nname = \"{name}_app\"\nprotocol = \"{protocol}\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n",
        d = dir.display(),
    );
    (Sluice::start(&cfg).await, der)
}

/// The balancer `name` in front of `edge`, sending PROXY v2 with UNIQUE_ID.
async fn balancer(dir: &Path, name: &str, edge: SocketAddr) -> Sluice {
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}_edges\"\n\
         access_log = \"{d}/{name}.log\"\n\n\
         [[backend]]\nname = \"{name}_edges\"\nsend_proxy = \"v2\"\nproxy_v2_unique_id = true\n\
         [[backend.servers]]\naddr = \"{edge}\"\n",
        d = dir.display(),
    );
    Sluice::start(&cfg).await
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    line[at + key.len() + 2..].split(' ').next().unwrap()
}

/// Every `NAME=value` line the app answered with, in order.
fn app_values<'a>(resp: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}=");
    resp.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_in_the_balancer_line_the_edge_line_and_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (edge, der) = edge(dir.path(), "rid_edge", &app.to_string()).await;
    let lb = balancer(dir.path(), "rid_lb", edge.addr("rid_edge")).await;

    let resp = tls_request(CLIENT_IP, lb.addr("rid_lb"), b"", &der, TWO_REQUESTS)
        .await
        .unwrap();
    let lb_line = wait_for_log_line(&dir.path().join("rid_lb.log"), &["end="]).await;
    let id = field(&lb_line, "id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{lb_line}"
    );
    let want = [format!("{id}-1"), format!("{id}-2")];
    assert_eq!(app_values(&resp, "REQUEST_ID"), want, "{resp}");
    assert_eq!(
        app_values(&resp, "HTTP_X_REQUEST_ID"),
        want,
        "forged ids replaced: {resp}"
    );
    for (path, rid) in [("/first", &want[0]), ("/second", &want[1])] {
        let line = wait_for_log_line(&dir.path().join("rid_edge.log"), &[path]).await;
        assert!(
            line.starts_with(&format!("127.0.0.2 cid={id} rid={rid} ")),
            "{line}"
        );
    }
    lb.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_hops_request_id_is_kept_an_untrusted_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (edge, der) = edge(dir.path(), "rid_trust", &app.to_string()).await;
    let lb = balancer(dir.path(), "rid_trust_lb", edge.addr("rid_trust")).await;
    let req =
        "GET /t HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: hop-7f3a\r\nConnection: close\r\n\r\n";

    let resp = tls_request(TRUSTED_HOP, lb.addr("rid_trust_lb"), b"", &der, req)
        .await
        .unwrap();
    assert_eq!(app_values(&resp, "REQUEST_ID"), ["hop-7f3a"], "{resp}");
    assert_eq!(
        app_values(&resp, "HTTP_X_REQUEST_ID"),
        ["hop-7f3a"],
        "{resp}"
    );
    let line = wait_for_log_line(&dir.path().join("rid_trust.log"), &["127.0.0.3 "]).await;
    assert!(line.contains(" rid=hop-7f3a "), "{line}");

    let resp = tls_request(CLIENT_IP, lb.addr("rid_trust_lb"), b"", &der, req)
        .await
        .unwrap();
    let got = app_values(&resp, "REQUEST_ID");
    assert!(
        got.len() == 1 && got[0] != "hop-7f3a" && got[0].ends_with("-1"),
        "{resp}"
    );
    assert!(!resp.contains("hop-7f3a"), "{resp}");
    lb.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_unique_id_the_edge_makes_a_fresh_connection_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (edge, der) = edge(dir.path(), "rid_fresh", &app.to_string()).await;
    let to = edge.addr("rid_fresh");
    let req = "GET /f HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    // A direct client (untrusted = "direct"), then a PROXY v1 header (no TLVs) from 127.0.0.1.
    let v1 = format!("PROXY TCP4 127.0.0.2 {} 40000 {}\r\n", to.ip(), to.port());
    let mut ids = Vec::new();
    for (from, proxy) in [
        (CLIENT_IP, ""),
        (IpAddr::V4(Ipv4Addr::LOCALHOST), v1.as_str()),
    ] {
        let resp = tls_request(from, to, proxy.as_bytes(), &der, req)
            .await
            .unwrap();
        let got = app_values(&resp, "REQUEST_ID");
        assert_eq!(got.len(), 1, "{resp}");
        let conn = got[0]
            .strip_suffix("-1")
            .unwrap_or_else(|| panic!("{resp}"));
        assert!(
            conn.len() == 32 && conn.bytes().all(|b| b.is_ascii_hexdigit()),
            "{resp}"
        );
        ids.push(conn.to_string());
    }
    assert_ne!(ids[0], ids[1], "each connection its own id");
    let log = dir.path().join("rid_fresh.log");
    for id in &ids {
        wait_for_log_line(&log, &[&format!("cid={id} rid={id}-1 ")]).await;
    }
    edge.shutdown().await;
}

/// A WSGI app (plain python, no framework) answering one `KEY=value` line per string
/// variable of its environment.
const ENV_APP: &str = r"def application(env, start_response):
    body = ''.join('%s=%s\n' % (k, v) for k, v in sorted(env.items()) if isinstance(v, str))
    body = body.encode('utf-8', 'replace')
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
";

/// The acceptance test with the real uWSGI: the id the balancer logs is the connection id
/// in the edge's line and the prefix of the app's REQUEST_ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_uwsgi_sees_the_id_both_tiers_log() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_uw, sock)) = start_uwsgi_wsgi(dir.path(), ENV_APP, &[]).await else {
        return;
    };
    let s = sock.display().to_string();

    let (edge, der) = edge(dir.path(), "rid_real", &format!("unix:{s}")).await;
    let lb = balancer(dir.path(), "rid_real_lb", edge.addr("rid_real")).await;
    let req =
        "GET /env HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: forged\r\nConnection: close\r\n\r\n";
    let resp = tls_request(CLIENT_IP, lb.addr("rid_real_lb"), b"", &der, req)
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let lb_line = wait_for_log_line(&dir.path().join("rid_real_lb.log"), &["end="]).await;
    let id = field(&lb_line, "id");
    let rid = format!("{id}-1");
    assert_eq!(app_values(&resp, "REQUEST_ID"), [rid.as_str()], "{resp}");
    assert_eq!(
        app_values(&resp, "HTTP_X_REQUEST_ID"),
        [rid.as_str()],
        "{resp}"
    );
    assert_eq!(app_values(&resp, "REMOTE_ADDR"), ["127.0.0.2"], "{resp}");
    let line = wait_for_log_line(&dir.path().join("rid_real.log"), &["/env"]).await;
    assert!(
        line.starts_with(&format!(
            "127.0.0.2 cid={id} rid={rid} \"GET /env HTTP/1.1\" 200"
        )),
        "{line}"
    );
    lb.shutdown().await;
    edge.shutdown().await;
}

/// HTTP apps get the id as `X-Request-Id`, the client's own removed even when its
/// `Connection` header lists the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_apps_get_x_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = http_echo_app().await;
    let (edge, der) = edge_with(dir.path(), "rid_http", &app.to_string(), "http").await;
    let lb = balancer(dir.path(), "rid_http_lb", edge.addr("rid_http")).await;
    let req = "GET /h HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: forged\r\n\
               Connection: close, X-Request-Id\r\n\r\n";
    let resp = tls_request(CLIENT_IP, lb.addr("rid_http_lb"), b"", &der, req)
        .await
        .unwrap();
    let lb_line = wait_for_log_line(&dir.path().join("rid_http_lb.log"), &["end="]).await;
    let want = format!("x-request-id: {}-1\r\n", field(&lb_line, "id"));
    assert!(
        resp.to_ascii_lowercase().contains(&want),
        "{want:?} in {resp}"
    );
    assert!(!resp.contains("forged"), "{resp}");
    lb.shutdown().await;
    edge.shutdown().await;
}

/// A PROXY v2 header from 127.0.0.2:40000 to 127.0.0.1:443 with `unique_id`.
fn v2_with_unique_id(unique_id: &[u8]) -> Vec<u8> {
    let addresses = proxy_header::Addresses::Inet {
        src: "127.0.0.2:40000".parse().unwrap(),
        dst: "127.0.0.1:443".parse().unwrap(),
    };
    let mut out = [0u8; 512];
    let mut enc = proxy_header::V2Encoder::new(
        &mut out,
        proxy_header::Command::Proxy,
        proxy_header::Transport::Stream,
        &addresses,
    )
    .unwrap();
    enc.unique_id(unique_id).unwrap();
    let n = enc.finish(false).unwrap();
    out[..n].to_vec()
}

/// A balancer behind another one (a test client from 127.0.0.1 plays it): the UNIQUE_ID it
/// accepts is its connection id, logged and sent on; binary ids as hex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_keeps_the_unique_id_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut captured) = proxy_capture_server(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"rid_chain\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"rid_chain_be\"\n\
         access_log = \"{d}/rid_chain.log\"\nproxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n\n\
         [[backend]]\nname = \"rid_chain_be\"\nsend_proxy = \"v2\"\nproxy_v2_unique_id = true\n\
         [[backend.servers]]\naddr = \"{server}\"\n",
        d = dir.path().display(),
    );
    let lb = Sluice::start(&cfg).await;
    let log = dir.path().join("rid_chain.log");
    for (sent, want) in [
        (
            &b"7F000001:9C40_7F000001:01BB_6575D2A1_0001"[..],
            "7F000001:9C40_7F000001:01BB_6575D2A1_0001",
        ),
        (&[0xde, 0xad, 0xbe, 0xef][..], "deadbeef"),
    ] {
        let mut s = within(
            "connect",
            connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), lb.addr("rid_chain")),
        )
        .await
        .unwrap();
        s.write_all(&v2_with_unique_id(sent)).await.unwrap();
        assert_eq!(
            read_line(&mut s).await.as_deref(),
            Some("src=127.0.0.2:40000")
        );
        drop(s);
        let cap = next_capture(&mut captured).await;
        assert_eq!(cap.unique_id.as_deref(), Some(want.as_bytes()), "{cap:?}");
        wait_for_log_line(&log, &[&format!(" id={want}")]).await;
    }
    lb.shutdown().await;
}

/// HAProxy as the balancer (`send-proxy-v2` with `proxy-v2-options unique-id`): its `%ID`
/// (logged) is the edge's connection id and the prefix of the app's REQUEST_ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxys_unique_id_is_the_edges_connection_id() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (edge, der) = edge(dir.path(), "rid_hap", &app.to_string()).await;
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let hcfg = format!(
        "global\n  log stdout format raw local0\n\n\
         defaults\n  mode tcp\n  log global\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n\
         \x20 unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid\n\
         \x20 log-format \"hap uid=%ID client=%ci\"\n  default_backend be\n\n\
         backend be\n  server e1 {} send-proxy-v2 proxy-v2-options unique-id\n",
        edge.addr("rid_hap")
    );
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let (_hap, out) = start_haproxy(&haproxy, dir.path(), &hcfg, to).await;
    let req = "GET /h HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let resp = tls_request(CLIENT_IP, to, b"", &der, req).await.unwrap();

    let hap_line = wait_for_log_line(&out, &["hap uid=", "client=127.0.0.2"]).await;
    let uid = field(&hap_line, "uid");
    assert!(uid.contains(':') && uid.contains('_'), "{hap_line}");
    let rid = format!("{uid}-1");
    assert_eq!(app_values(&resp, "REQUEST_ID"), [rid.as_str()], "{resp}");
    let line = wait_for_log_line(&dir.path().join("rid_hap.log"), &["/h "]).await;
    assert!(
        line.starts_with(&format!("127.0.0.2 cid={uid} rid={rid} ")),
        "{line}"
    );
    edge.shutdown().await;
}

/// HTTP/2: the streams of one connection are requests 1, 2, ... of its connection id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_number_their_request_ids() {
    let Some(curl) = tool("curl", &["/usr/bin/curl", "curl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (edge, _der) = edge(dir.path(), "rid_h2", &app.to_string()).await;
    let lb = balancer(dir.path(), "rid_h2_lb", edge.addr("rid_h2")).await;
    let port = lb.addr("rid_h2_lb").port();
    let resolve = format!("{HOST}:{port}:127.0.0.1");
    let (a, b) = (
        format!("https://{HOST}:{port}/a"),
        format!("https://{HOST}:{port}/b"),
    );
    let out = tokio::task::spawn_blocking(move || {
        // Two URLs in one curl run: one connection, two streams, one after the other.
        crate::support::edge::curl(&curl, &["--http2", "-k", "--resolve", &resolve, &a, &b])
    })
    .await
    .unwrap();
    let lb_line = wait_for_log_line(&dir.path().join("rid_h2_lb.log"), &["end="]).await;
    let id = field(&lb_line, "id");
    assert_eq!(
        app_values(&out, "REQUEST_ID"),
        [format!("{id}-1"), format!("{id}-2")],
        "{out}"
    );
    assert_eq!(
        app_values(&out, "SERVER_PROTOCOL"),
        ["HTTP/2.0", "HTTP/2.0"]
    );
    lb.shutdown().await;
    edge.shutdown().await;
}

/// A CDN or HTTP proxy in front (127.0.0.4, listed in `[frontend.forwarded].trusted`, no
/// PROXY protocol) may set the request id; a direct client may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_forwarding_hop_may_set_the_request_id() {
    let app = http_echo_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"rid_cdn\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"rid_cdn_app\"\n\
         [frontend.forwarded]\ntrusted = [\"127.0.0.4/32\"]\n\n\
         [[backend]]\nname = \"rid_cdn_app\"\nprotocol = \"http\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n"
    );
    let edge = Sluice::start(&cfg).await;
    let req =
        b"GET /c HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: cdn-77\r\nConnection: close\r\n\r\n";
    for (from, kept) in [
        (Ipv4Addr::new(127, 0, 0, 4), true),
        (Ipv4Addr::new(127, 0, 0, 2), false),
    ] {
        let mut c = within(
            "connect",
            connect_from(IpAddr::V4(from), edge.addr("rid_cdn")),
        )
        .await
        .unwrap();
        c.write_all(req).await.unwrap();
        let resp = read_all(&mut c).await.to_ascii_lowercase();
        assert!(resp.starts_with("http/1.1 200"), "{resp}");
        assert_eq!(
            resp.contains("x-request-id: cdn-77\r\n"),
            kept,
            "from {from}: {resp}"
        );
        assert!(resp.contains("x-request-id: "), "{resp}");
    }
    edge.shutdown().await;
}
