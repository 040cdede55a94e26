//! The admin endpoint on the real binary: Prometheus series after real traffic (tcp and TLS
//! edge), the JSON API (drain keeps open connections and takes no new ones, ready restores,
//! maint, errors), the bearer token on writes (any case of the scheme), refusing a public bind
//! without a token, and the endpoint's guards: foreign Host, cross-origin writes, framing,
//! and idle keep-alive connections that must not lock scrapes out.

use std::net::{IpAddr, Ipv4Addr};

use crate::support;
use crate::support::admin::*;
use crate::support::*;
use tokio::io::AsyncWriteExt;

const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));

/// A tcp frontend `plain` and a PROXY-expecting `pp` over backend `be` (s1, s2 and a dead
/// server), plus backend `checked` whose only server is dead and health-checked.
fn l4_config(s1: std::net::SocketAddr, s2: std::net::SocketAddr) -> String {
    let dead = support::edge::dead_addr();
    let dead2 = support::edge::dead_addr();
    format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"plain\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[frontend]]\nname = \"pp\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
         proxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n\n\
         [[frontend]]\nname = \"chk\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"checked\"\n\n\
         [[backend]]\nname = \"be\"\nretries = 2\n\
         servers = [{{ name = \"s1\", addr = \"{s1}\" }}, {{ name = \"s2\", addr = \"{s2}\" }}, \
         {{ name = \"dead\", addr = \"{dead}\" }}]\n\n\
         [[backend]]\nname = \"checked\"\n\
         health = {{ interval = \"50ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
         servers = [{{ name = \"gone\", addr = \"{dead2}\" }}]\n"
    )
}

/// Connects from 127.0.0.2, reads the server's name line, sends `payload`, closes.
async fn one_connection(to: std::net::SocketAddr, payload: &[u8]) -> String {
    let mut c = client(to).await;
    let name = read_line(&mut c).await.expect("server name line");
    c.write_all(payload).await.unwrap();
    c.shutdown().await.unwrap();
    name
}

#[tokio::test]
async fn metrics_after_tcp_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (
        NamedServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), "s1").await,
        NamedServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), "s2").await,
    );
    let (sl, admin) = start(dir.path(), &l4_config(s1.addr, s2.addr), 3).await;

    for _ in 0..3 {
        let name = one_connection(sl.addr("plain"), b"0123456789").await;
        assert!(name == "s1" || name == "s2", "{name}");
    }
    // Not a trusted balancer: rejected before any server is picked.
    let mut c = client(sl.addr("pp")).await;
    assert!(closed_without_data(&mut c).await);
    // A trusted balancer sending garbage: rejected with the decoder's reason.
    let mut c = connect_from(BALANCER, sl.addr("pp")).await.unwrap();
    c.write_all(b"PROXY TCP4 nonsense\r\n").await.unwrap();
    assert!(closed_without_data(&mut c).await);

    let text = scrape_until(
        admin,
        "sluice_frontend_current_connections{frontend=\"plain\"}",
        |v| v == 0.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "sluice_frontend_connections_total{frontend=\"plain\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "sluice_frontend_received_bytes_total{frontend=\"plain\"}"
        ),
        Some(30.0),
        "3 x 10 bytes from the clients"
    );
    assert_eq!(
        metric(
            &text,
            "sluice_frontend_sent_bytes_total{frontend=\"plain\"}"
        ),
        Some(9.0),
        "3 x \"sN\\n\" from the servers"
    );
    assert_eq!(
        metric(
            &text,
            "sluice_proxy_rejected_total{frontend=\"pp\",reason=\"untrusted\"}"
        ),
        Some(1.0)
    );
    let garbage: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("sluice_proxy_rejected_total{frontend=\"pp\",reason=\"")
                && !l.contains("untrusted")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(garbage, 1.0, "one decoder rejection:\n{text}");
    // Roundrobin over three servers put the dead one first in line at least once.
    assert!(
        metric(
            &text,
            "sluice_server_connect_failures_total{backend=\"be\",server=\"dead\"}"
        )
        .unwrap()
            >= 1.0
    );
    let served = ["s1", "s2"]
        .iter()
        .map(|s| {
            metric(
                &text,
                &format!("sluice_server_connections_total{{backend=\"be\",server=\"{s}\"}}"),
            )
            .unwrap()
        })
        .sum::<f64>();
    assert_eq!(served, 3.0);
    assert_eq!(
        metric(
            &text,
            "sluice_server_state{backend=\"be\",server=\"s1\",state=\"up\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "sluice_server_active_connections{backend=\"be\",server=\"s1\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "sluice_backend_queue_length{backend=\"be\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "sluice_server_weight{backend=\"be\",server=\"s2\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "sluice_server_effective_weight{backend=\"be\",server=\"s2\"}"
        ),
        Some(1.0)
    );

    // The health-checked dead server goes down; checks and their durations are counted.
    let text = scrape_until(
        admin,
        "sluice_server_state{backend=\"checked\",server=\"gone\",state=\"down\"}",
        |v| v == 1.0,
    )
    .await;
    assert!(
        metric(
            &text,
            "sluice_health_checks_total{backend=\"checked\",server=\"gone\",result=\"failed\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        metric(
            &text,
            "sluice_health_check_duration_seconds_count{backend=\"checked\",server=\"gone\"}"
        )
        .unwrap()
            >= 1.0
    );
    // No Accept header: the Prometheus text format 0.0.4 (metrics_format.rs tests OpenMetrics).
    assert!(text.contains("# TYPE sluice_frontend_connections_total counter"));
    assert!(!text.contains("# EOF"));
}

#[tokio::test]
async fn metrics_for_the_tls_edge() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::edge::http_echo_app().await;
    let (c, k, der) = support::edge::cert(dir.path());
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\nservers = [{{ addr = \"{app}\" }}]\n",
        c.display(),
        k.display()
    );
    let (sl, admin) = start(dir.path(), &cfg, 1).await;
    let get = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let missing =
        "GET /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: x\r\nConnection: close\r\n\r\n";
    for req in [get, get, missing] {
        support::edge::tls_request(CLIENT_IP, sl.addr("web"), b"", &der, req)
            .await
            .unwrap();
    }
    scrape_until(
        admin,
        "sluice_http_responses_total{frontend=\"web\",class=\"2xx\"}",
        |v| v == 2.0,
    )
    .await;
    // A response is counted when its end was handed on, which may be just after the client
    // read it: wait for the 400 too, as for the 200s, then check the whole scrape.
    let text = scrape_until(
        admin,
        "sluice_http_responses_total{frontend=\"web\",class=\"4xx\"}",
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "sluice_http_responses_total{frontend=\"web\",class=\"4xx\"}"
        ),
        Some(1.0),
        "the malformed request got a 400:\n{text}"
    );
    let tls13 = metric(
        &text,
        "sluice_tls_handshakes_total{frontend=\"web\",version=\"TLSv1.3\",kind=\"full\"}",
    );
    assert_eq!(tls13, Some(3.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "sluice_upstream_response_duration_seconds_count{backend=\"app\"}"
        ),
        Some(2.0)
    );
    assert!(
        metric(
            &text,
            "sluice_frontend_received_bytes_total{frontend=\"web\"}"
        )
        .unwrap()
            > 300.0,
        "TLS handshakes and requests count as received bytes"
    );
    assert_eq!(
        metric(&text, "sluice_frontend_connections_total{frontend=\"web\"}"),
        Some(3.0)
    );
}

#[tokio::test]
async fn drain_keeps_open_connections_and_ready_restores() {
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s1, s2) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "s2").await,
    );
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n\
         servers = [{{ name = \"s1\", addr = \"{}\" }}, {{ name = \"s2\", addr = \"{}\" }}]\n",
        s1.addr, s2.addr
    );
    let (sl, admin) = start(dir.path(), &cfg, 1).await;
    let v = backends(admin).await;
    assert_eq!(state_of(&v, "be", "s1"), "up");
    assert_eq!(state_of(&v, "be", "s2"), "up");

    // Hold connections until one of them sits on s1.
    let mut held = Vec::new();
    let mut on_s1 = None;
    for _ in 0..4 {
        let mut c = client(sl.addr("fe")).await;
        let name = read_line(&mut c).await.unwrap();
        if name == "s1" && on_s1.is_none() {
            on_s1 = Some(c);
        } else {
            held.push(c);
        }
    }
    let mut on_s1 = on_s1.expect("roundrobin reached s1");

    let (status, body) = set(admin, "be", "s1", r#"{"state":"drain"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["state"], "drain");
    assert_eq!(r["persisted"], false);
    assert!(r["note"].as_str().unwrap().contains("config"));
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "drain");

    for _ in 0..6 {
        let mut c = client(sl.addr("fe")).await;
        assert_eq!(
            read_line(&mut c).await.unwrap(),
            "s2",
            "drained s1 got a new connection"
        );
    }
    // The connection already on s1 is untouched: still open, still forwarding.
    on_s1.write_all(b"still here").await.unwrap();
    assert!(s1.open() >= 1);
    let v = backends(admin).await;
    let s1_json = &v["backends"][0]["servers"][0];
    assert_eq!(s1_json["name"], "s1");
    assert!(s1_json["active"].as_u64().unwrap() >= 1, "{v}");

    // Maint shows as such; ready brings s1 back into rotation.
    let (status, _) = set(admin, "be", "s1", r#"{"state":"maint"}"#, None).await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "maint");
    let (status, body) = set(admin, "be", "s1", r#"{"state":"ready","weight":3}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut c = client(sl.addr("fe")).await;
        names.push(read_line(&mut c).await.unwrap());
    }
    assert!(names.iter().any(|n| n == "s1"), "{names:?}");
    let s1 = &backends(admin).await["backends"][0]["servers"][0];
    assert_eq!(s1["weight"], 3);
    // No agent, no slow start: selection uses the weight set.
    assert_eq!(s1["effective_weight"], 3.0);
    assert_eq!(s1["agent_weight_pct"], 100);
    assert_eq!(s1["slow_start_pct"], 100);
    drop(on_s1);
    drop(held);

    // Errors say what is wrong.
    let (status, _) = set(admin, "be", "s9", r#"{"state":"drain"}"#, None).await;
    assert_eq!(status, 404);
    let (status, _) = set(admin, "nope", "s1", r#"{"state":"drain"}"#, None).await;
    assert_eq!(status, 404);
    let (status, body) = set(admin, "be", "s1", r#"{"state":"off"}"#, None).await;
    assert_eq!(status, 400);
    assert!(body.contains("drain"), "{body}");
    let (status, _) = set(admin, "be", "s1", r#"{"weight":100000}"#, None).await;
    assert_eq!(status, 400);
    let (status, _) = http(
        admin,
        "POST",
        "/api/backends/be/servers/s1",
        &[("Content-Type", "text/plain")],
        r#"{"state":"drain"}"#,
    )
    .await;
    assert_eq!(status, 415, "a form post (CSRF) is refused");
    let (status, _) = http(admin, "GET", "/nothing", &[], "").await;
    assert_eq!(status, 404);
    let (status, _) = http(admin, "DELETE", "/api/backends", &[], "").await;
    assert_eq!(status, 405);
    let big = format!(r#"{{"state":"drain","x":"{}"}}"#, "a".repeat(10_000));
    let (status, _) = set(admin, "be", "s1", &big, None).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn writes_need_the_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = NamedServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), "s1").await;
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\nservers = [{{ name = \"s1\", addr = \"{}\" }}]\n",
        s1.addr
    );
    let (_sl, admin) = start(dir.path(), &cfg, 1).await;
    assert_eq!(
        state_of(&backends(admin).await, "be", "s1"),
        "up",
        "reads need no token"
    );
    let (status, _) = set(admin, "be", "s1", r#"{"state":"drain"}"#, None).await;
    assert_eq!(status, 401);
    let (status, _) = set(admin, "be", "s1", r#"{"state":"drain"}"#, Some("wrong")).await;
    assert_eq!(status, 401);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
    let (status, _) = set(admin, "be", "s1", r#"{"state":"drain"}"#, Some("s3cret")).await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "drain");
}

#[test]
fn public_admin_bind_needs_a_token_or_an_explicit_opt_in() {
    let base = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
                [[backend]]\nname = \"be\"\nservers = [{ addr = \"127.0.0.1:9\" }]\n";
    let load =
        |admin: &str| sluice::config::load::load_str(&format!("{GLOBAL}{admin}\n{base}"), "t.toml");
    let err = load("[admin]\nbind = \"0.0.0.0:9100\"")
        .expect_err("public bind without token")
        .to_string();
    assert!(err.contains("admin.bind") && err.contains("token"), "{err}");
    load("[admin]\nbind = \"0.0.0.0:9100\"\ntoken = \"t\"").expect("token given");
    load("[admin]\nbind = \"0.0.0.0:9100\"\nallow_public = true").expect("explicit opt-in");
    load("[admin]\nbind = \"127.0.0.1:9100\"").expect("loopback is fine");
    load("[admin]\nbind = \"[::1]:9100\"").expect("IPv6 loopback is fine");
    let err = load("[admin]\nbind = \"127.0.0.1:9100\"\ntoken = \" \"")
        .expect_err("blank token")
        .to_string();
    assert!(err.contains("admin.token"), "{err}");
    load("[admin]\nbind = \"127.0.0.1:9100\"\nserver_names = [\"lb1.example.net\"]")
        .expect("a name");
    let err = load("[admin]\nbind = \"127.0.0.1:9100\"\nserver_names = [\"lb1:9100\"]")
        .expect_err("a port in a name")
        .to_string();
    assert!(err.contains("admin.server_names"), "{err}");
    let cfg = sluice::config::load::load_str(&format!("{GLOBAL}{base}"), "t.toml").unwrap();
    assert!(cfg.admin.is_none(), "admin is off by default");
}

/// One backend `be` with server `s1` behind frontend `fe`; `admin_extra` goes in `[admin]`.
async fn one_server(
    dir: &std::path::Path,
    admin_extra: &str,
) -> (SluiceProcess, std::net::SocketAddr, NamedServer) {
    let s1 = NamedServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), "s1").await;
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n{admin_extra}\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\nservers = [{{ name = \"s1\", addr = \"{}\" }}]\n",
        s1.addr
    );
    let (sl, admin) = start(dir, &cfg, 1).await;
    (sl, admin, s1)
}

const DRAIN: &str = r#"{"state":"drain"}"#;

#[tokio::test]
async fn cross_origin_writes_are_refused_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = one_server(dir.path(), "").await;
    let host = admin.to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let host = host.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut all = vec![("Content-Type", "application/json")];
            all.extend(h);
            http_full(
                admin,
                Some(&host),
                "POST",
                "/api/backends/be/servers/s1",
                &all,
                DRAIN,
            )
            .await
        }
    };
    for evil in [
        vec![("Origin", "http://127.0.0.2:8080".to_string())],
        vec![("Origin", "null".to_string())],
        vec![("Origin", format!("http://{host}.evil.example"))],
        vec![("Sec-Fetch-Site", "cross-site".to_string())],
        vec![("Sec-Fetch-Site", "same-site".to_string())],
    ] {
        let (status, _, body) = post(evil.clone()).await;
        assert_eq!(status, 403, "{evil:?}: {body}");
        assert!(body.contains("refused"), "{body}");
    }
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
    // The page's own fetch: same origin.
    let (status, _, body) = post(vec![
        ("Origin", format!("http://{host}")),
        ("Sec-Fetch-Site", "same-origin".to_string()),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "drain");
    // curl and scripts send neither header.
    let (status, _) = set(admin, "be", "s1", r#"{"state":"ready"}"#, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn foreign_host_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = one_server(dir.path(), "server_names = [\"stats.test\"]").await;
    let port = admin.port();
    for bad in [format!("rebind.evil.example:{port}"), "evil.example".into()] {
        for path in ["/", "/metrics", "/api/backends", "/;csv", "/stats.json"] {
            let (status, _, body) = http_full(admin, Some(&bad), "GET", path, &[], "").await;
            assert_eq!(status, 421, "Host {bad} {path}: {body}");
        }
        let (status, _, _) = http_full(
            admin,
            Some(&bad),
            "POST",
            "/api/backends/be/servers/s1",
            &[("Content-Type", "application/json")],
            DRAIN,
        )
        .await;
        assert_eq!(status, 421);
    }
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
    for good in [
        admin.to_string(),
        format!("localhost:{port}"),
        format!("STATS.test:{port}"),
        "127.0.0.1".to_string(),
    ] {
        let (status, _, body) =
            http_full(admin, Some(&good), "GET", "/api/backends", &[], "").await;
        assert_eq!(status, 200, "Host {good}: {body}");
    }
    let (status, _, _) = http_full(admin, None, "GET", "/metrics", &[], "").await;
    assert_eq!(
        status, 200,
        "no Host (HTTP/1.0-style scrapers): not a browser"
    );
}

#[tokio::test]
async fn every_answer_forbids_framing() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = one_server(dir.path(), "").await;
    let host = admin.to_string();
    for path in ["/", "/api/backends", "/;csv", "/stats.json", "/nope"] {
        let (_, head, _) = http_full(admin, Some(&host), "GET", path, &[], "").await;
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nx-frame-options: deny"), "{path}: {head}");
        assert!(
            head.contains("\r\ncontent-security-policy: ")
                && head.contains("frame-ancestors 'none'"),
            "{path}: {head}"
        );
    }
    // A GET of the page never changes state, whatever its query says.
    let (status, _, _) = http_full(admin, Some(&host), "GET", "/?click=drain:be/s1", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = one_server(dir.path(), "token = \"s3cret\"").await;
    let post = |auth: &'static str, state: &'static str| async move {
        let body = format!(r#"{{"state":"{state}"}}"#);
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ];
        http(
            admin,
            "POST",
            "/api/backends/be/servers/s1",
            &headers,
            &body,
        )
        .await
        .0
    };
    assert_eq!(post("bearer s3cret", "drain").await, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "drain");
    assert_eq!(post("BEARER s3cret", "maint").await, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "maint");
    assert_eq!(post("bEaReR   s3cret", "ready").await, 200);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
    assert_eq!(post("Basic s3cret", "drain").await, 401);
    assert_eq!(post("bearer wrong", "drain").await, 401);
    assert_eq!(post("bearers3cret", "drain").await, 401);
    assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_block_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = one_server(dir.path(), "").await;
    // Twice the cap of idle connections: after one request each, and never a byte at all.
    let cap = sluice::spec::ADMIN_MAX_CONNECTIONS;
    let mut idle = Vec::new();
    for _ in 0..cap {
        idle.push(keep_alive_after_get(admin, "/api/backends").await);
    }
    for _ in 0..cap {
        idle.push(
            within("connect", tokio::net::TcpStream::connect(admin))
                .await
                .unwrap(),
        );
    }
    // Well inside the 10 s head timeout that used to free a slot.
    for _ in 0..3 {
        let scrape = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            http(admin, "GET", "/metrics", &[], ""),
        )
        .await
        .expect("a scrape got through despite the idle connections");
        assert_eq!(scrape.0, 200);
    }
    drop(idle);
}
