//! PROXY v2 TLVs end to end (#15): an AWS NLB's VPCE TLV passed by a sluice balancer to a
//! sluice edge and uWSGI (and refused from an untrusted source); the ClientHello's SNI and
//! ALPN read by a sluice balancer, seen by an edge's app and log, and logged by nginx;
//! HAProxy's `proxy-v2-options authority,ssl,unique-id` into an edge. Peers skip loudly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use proxy_header::{Addresses, Command, Transport, V2Encoder};
use tokio::io::AsyncWriteExt;

use crate::support::edge::*;
use crate::support::*;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Plays the AWS NLB in front of the balancer.
const NLB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
const VPCE: &str = "vpce-0a1b2c3d4e5f67890";

/// The header an NLB sends: client 127.0.0.2, the VPCE TLV (0xEA, sub-type 0x01), CRC32C.
fn nlb_header() -> Vec<u8> {
    let mut buf = [0u8; 256];
    let a = Addresses::from_socket_addrs(
        "127.0.0.2:41000".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
    );
    let mut enc = V2Encoder::new(&mut buf, Command::Proxy, Transport::Stream, &a).unwrap();
    let mut tlv = vec![0x01];
    tlv.extend_from_slice(VPCE.as_bytes());
    enc.tlv(0xEA, &tlv).unwrap();
    let n = enc.finish(true).unwrap();
    buf[..n].to_vec()
}

/// A WSGI app answering with every string CGI variable, one `KEY=VALUE` line each.
const ENV_APP: &str = r#"def application(env, start_response):
    body = ''.join('%s=%s\n' % (k, v) for k, v in sorted(env.items()) if isinstance(v, str)).encode()
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
"#;

/// The real uWSGI serving `ENV_APP`; None after a SKIP line.
async fn env_uwsgi(dir: &Path) -> Option<(ChildGuard, std::path::PathBuf)> {
    start_uwsgi_wsgi(dir, ENV_APP, &[]).await
}

/// A plain-HTTP edge trusting PROXY from 127.0.0.1, logging `log_format` to `<dir>/<name>.log`.
fn edge_toml(name: &str, dir: &Path, app: &str, log_format: &str, tls: &str) -> String {
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"{name}_app\"\naccess_log = \"{d}/{name}.log\"\nlog_format = '{log_format}'\n\
         proxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n{tls}\n\
         [[backend]]\nname = \"{name}_app\"\nprotocol = \"uwsgi\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n",
        d = dir.display()
    )
}

/// A balancer frontend `name` → `server` with PROXY v2 and `keys`; PROXY expected from
/// `trusted` when given. Its log (with the SNI) goes to `<dir>/<name>.log`.
fn balancer_toml(name: &str, dir: &Path, server: SocketAddr, trusted: &str, keys: &str) -> String {
    let pp = if trusted.is_empty() {
        String::new()
    } else {
        format!("proxy_protocol = {{ trusted = [\"{trusted}\"] }}\n")
    };
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}_be\"\n\
         access_log = \"{d}/{name}.log\"\n\
         log_format = '$client sni=$ssl_preread_server_name alpn=$ssl_preread_alpn_protocols end=$end'\n{pp}\n\
         [[backend]]\nname = \"{name}_be\"\nsend_proxy = \"v2\"\n{keys}\n\
         [[backend.servers]]\naddr = \"{server}\"\n",
        d = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nlb_vpce_tlv_reaches_uwsgi_through_balancer_and_edge() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_uwsgi, sock)) = env_uwsgi(dir.path()).await else {
        return;
    };
    let app = format!("unix:{}", sock.display());
    let fmt = "$remote_addr vpce=$proxy_protocol_tlv_aws_vpce_id raw=$proxy_protocol_tlv_0xea";
    let edge = Sluice::start(&edge_toml("tlv_edge_nlb", dir.path(), &app, fmt, "")).await;
    let keys = "proxy_v2_pass_tlvs = true";
    let bal_toml = balancer_toml(
        "tlv_nlb",
        dir.path(),
        edge.addr("tlv_edge_nlb"),
        "127.0.0.10/32",
        keys,
    );
    let bal = Sluice::start(&bal_toml).await;

    let mut c = within("connect", connect_from(NLB, bal.addr("tlv_nlb")))
        .await
        .unwrap();
    let mut req = nlb_header();
    req.extend_from_slice(b"GET /vpce HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    c.write_all(&req).await.unwrap();
    let resp = read_all(&mut c).await;
    let uwsgi_log = || std::fs::read_to_string(dir.path().join("uwsgi.log")).unwrap_or_default();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "{resp}\nuwsgi:\n{}",
        uwsgi_log()
    );
    for want in [
        format!("PROXY_PROTOCOL_TLV_AWS_VPCE_ID={VPCE}\n"),
        "REMOTE_ADDR=127.0.0.2\n".into(),
        "PROXY_PROTOCOL_TLV_0xEA=01767063652d".into(),
    ] {
        assert!(resp.contains(&want), "the app misses {want:?}:\n{resp}");
    }
    let line = wait_for_log_line(&dir.path().join("tlv_edge_nlb.log"), &["vpce="]).await;
    assert!(
        line.starts_with(&format!("127.0.0.2 vpce={VPCE} raw=01767063652d")),
        "{line}"
    );

    // The same header from a host that is not the NLB: refused at the balancer.
    let before = proxy_rejections("tlv_nlb", "untrusted");
    let mut c = within("connect", connect_from(CLIENT_IP, bal.addr("tlv_nlb")))
        .await
        .unwrap();
    let _ = c.write_all(&req).await;
    assert_eq!(
        read_all(&mut c).await,
        "",
        "an untrusted header got an answer"
    );
    hold_until("the untrusted header counted", || {
        proxy_rejections("tlv_nlb", "untrusted") > before
    })
    .await;
    bal.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clienthello_sni_and_alpn_reach_the_edge_app_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let (c, k, der) = cert(dir.path());
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        c.display(),
        k.display()
    );
    let fmt = "$remote_addr sni=$proxy_protocol_tlv_authority alpn=$proxy_protocol_tlv_alpn";
    let edge = Sluice::start(&edge_toml(
        "tlv_edge_sni",
        dir.path(),
        &app.to_string(),
        fmt,
        &tls,
    ))
    .await;
    let keys = "proxy_v2_authority = true\nproxy_v2_alpn = true";
    let bal_toml = balancer_toml("tlv_sni", dir.path(), edge.addr("tlv_edge_sni"), "", keys);
    let bal = Sluice::start(&bal_toml).await;

    let req = "GET /sni HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let resp = tls_request(CLIENT_IP, bal.addr("tlv_sni"), b"", &der, req)
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    for want in [
        format!("PROXY_PROTOCOL_TLV_AUTHORITY={HOST}\n"),
        "PROXY_PROTOCOL_TLV_ALPN=http/1.1\n".into(),
        "REMOTE_ADDR=127.0.0.2\n".into(),
        // The TLS session itself went through untouched.
        "HTTPS=on\n".into(),
    ] {
        assert!(resp.contains(&want), "the app misses {want:?}:\n{resp}");
    }
    let line = wait_for_log_line(&dir.path().join("tlv_edge_sni.log"), &["sni="]).await;
    assert_eq!(line, format!("127.0.0.2 sni={HOST} alpn=http/1.1"));
    let line = wait_for_log_line(&dir.path().join("tlv_sni.log"), &["sni="]).await;
    assert!(line.starts_with("127.0.0.2:"), "{line}");
    assert!(
        line.contains(&format!(" sni={HOST} alpn=http/1.1 ")),
        "{line}"
    );
    bal.shutdown().await;
    edge.shutdown().await;
}

#[tokio::test]
async fn non_tls_client_is_forwarded_without_hello_tlvs() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let keys = "proxy_v2_authority = true\nproxy_v2_alpn = true";
    let bal = Sluice::start(&balancer_toml("tlv_plain", dir.path(), server, "", keys)).await;
    let mut c = client(bal.addr("tlv_plain")).await;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(read_line(&mut c)
        .await
        .unwrap()
        .starts_with("src=127.0.0.2:"));
    drop(c);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.error, None);
    assert_eq!(
        cap.data, b"GET / HTTP/1.0\r\n\r\n",
        "the bytes read are forwarded"
    );
    let tlvs = proxy_header::Tlvs::parse(&cap.tlvs).unwrap();
    assert_eq!((tlvs.authority(), tlvs.alpn()), (None, None));
    let line = wait_for_log_line(&dir.path().join("tlv_plain.log"), &["sni="]).await;
    assert!(line.contains(" sni=- alpn=- "), "{line}");
    bal.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_proxy_v2_options_reach_the_edge_app() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = uwsgi_app().await;
    let fmt =
        "$remote_addr authority=$proxy_protocol_tlv_authority ssl=$proxy_protocol_tlv_ssl_version";
    let edge = Sluice::start(&edge_toml(
        "tlv_edge_hap",
        dir.path(),
        &app.to_string(),
        fmt,
        "",
    ))
    .await;
    let (c, k, der) = cert(dir.path());
    let pem = std::fs::read_to_string(&c).unwrap() + &std::fs::read_to_string(&k).unwrap();
    let pem = write_file(dir.path(), "haproxy.pem", &pem);
    let port = free_port(LOOP);
    let hcfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fe\n  bind 127.0.0.1:{port} ssl crt {} alpn http/1.1\n\
         \x20 unique-id-format hap-%{{+X}}o%ci:%cp\n  default_backend be\n\n\
         backend be\n  server e1 {} send-proxy-v2 proxy-v2-options authority,ssl,ssl-cipher,unique-id\n",
        pem.display(),
        edge.addr("tlv_edge_hap")
    );
    let haddr = SocketAddr::new(LOOP, port);
    let _haproxy = start_haproxy(&haproxy, dir.path(), &hcfg, haddr).await;

    let req = "GET /hap HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let resp = tls_request(CLIENT_IP, haddr, b"", &der, req).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    for want in [
        format!("PROXY_PROTOCOL_TLV_AUTHORITY={HOST}\n"),
        "PROXY_PROTOCOL_TLV_SSL_VERSION=TLSv1.3\n".into(),
        "PROXY_PROTOCOL_TLV_SSL_CIPHER=TLS_".into(),
        "PROXY_PROTOCOL_TLV_UNIQUE_ID=hap-".into(),
        "REMOTE_ADDR=127.0.0.2\n".into(),
    ] {
        assert!(resp.contains(&want), "the app misses {want:?}:\n{resp}");
    }
    let line = wait_for_log_line(&dir.path().join("tlv_edge_hap.log"), &["authority="]).await;
    assert_eq!(line, format!("127.0.0.2 authority={HOST} ssl=TLSv1.3"));
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_behind_balancer_logs_sni_and_alpn_tlvs() {
    // `$proxy_protocol_tlv_*` came with nginx 1.23.2; Debian 12 ships 1.22.1, so CI builds
    // 1.26.3 (`.ci/nginx/build.sh`, into $TMPDIR/nginx-1.26) and names it in SLUICE_NGINX_RECENT.
    let tmp = std::env::temp_dir().join("nginx-1.26/sbin/nginx");
    let recent = std::env::var("SLUICE_NGINX_RECENT").ok();
    let mut candidates: Vec<&str> = recent.iter().map(String::as_str).collect();
    candidates.extend([tmp.to_str().unwrap_or_default(), "/usr/sbin/nginx", "nginx"]);
    let Some(nginx) = tool("nginx", &candidates) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (c, k, der) = cert(dir.path());
    let port = free_port(LOOP);
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           log_format tlv '$proxy_protocol_addr sni=$proxy_protocol_tlv_authority alpn=$proxy_protocol_tlv_alpn \"$request\"';\n\
           access_log {d}/access.log tlv;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
           uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl proxy_protocol;\n\
             ssl_certificate {}; ssl_certificate_key {};\n\
             location / {{ return 200 \"ok\\n\"; }}\n\
           }}\n\
         }}\n",
        c.display(),
        k.display()
    );
    let conf = write_file(dir.path(), "nginx.conf", &conf);
    // An nginx older than 1.23.2 refuses the config.
    let test = std::process::Command::new(&nginx)
        .args(["-t", "-p", &format!("{d}/"), "-c", conf.to_str().unwrap()])
        .args(["-e", &format!("{d}/error.log")])
        .output()
        .expect("run nginx -t");
    let said = String::from_utf8_lossy(&test.stderr);
    if said.contains("unknown \"proxy_protocol_tlv_authority\" variable") {
        assert!(
            !interop_required(),
            "{} has no $proxy_protocol_tlv_* (needs 1.23.2+; set SLUICE_NGINX_RECENT) \
             and SLUICE_REQUIRE_INTEROP=1",
            nginx.display()
        );
        eprintln!(
            "\n========== SKIP: this nginx has no $proxy_protocol_tlv_* (needs 1.23.2+) ==========\n"
        );
        return;
    }
    assert!(test.status.success(), "nginx -t: {said}");
    let nginx_addr = SocketAddr::new(LOOP, port);
    let _nginx = start_nginx(&nginx, dir.path(), &conf, nginx_addr).await;
    let keys = "proxy_v2_authority = true\nproxy_v2_alpn = true";
    let bal = Sluice::start(&balancer_toml(
        "tlv_nginx",
        dir.path(),
        nginx_addr,
        "",
        keys,
    ))
    .await;
    let req = "GET /tlv HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let resp = tls_request(CLIENT_IP, bal.addr("tlv_nginx"), b"", &der, req)
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let line = wait_for_log_line(&dir.path().join("access.log"), &["GET /tlv "]).await;
    assert!(
        line.starts_with(&format!("127.0.0.2 sni={HOST} alpn=http/1.1 ")),
        "nginx access log: {line}"
    );
    bal.shutdown().await;
}

#[tokio::test]
async fn http_app_gets_configured_tlv_headers_and_never_client_copies() {
    let app = http_echo_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"tlv_edge_http\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"tlv_http_app\"\nproxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n\
         proxy_protocol_tlv_headers = {{ aws_vpce_id = \"X-Amzn-Vpce-Id\", authority = \"X-PP-Authority\" }}\n\n\
         [[backend]]\nname = \"tlv_http_app\"\nprotocol = \"http\"\n\
         [[backend.servers]]\naddr = \"{app}\"\n"
    );
    let edge = Sluice::start(&cfg).await;
    let mut c = within("connect", connect_from(NLB, edge.addr("tlv_edge_http")))
        .await
        .unwrap();
    let mut req = nlb_header();
    req.extend_from_slice(
        b"GET /h HTTP/1.1\r\nHost: app.test\r\nX-Amzn-Vpce-Id: forged\r\n\
          X-PP-Authority: forged\r\nConnection: close\r\n\r\n",
    );
    c.write_all(&req).await.unwrap();
    let resp = read_all(&mut c).await.to_ascii_lowercase();
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    assert!(
        resp.contains(&format!("x-amzn-vpce-id: {VPCE}\r\n")),
        "{resp}"
    );
    assert!(
        !resp.contains("forged"),
        "a client-sent copy reached the app: {resp}"
    );
    assert!(
        !resp.contains("x-pp-authority"),
        "no AUTHORITY TLV, no header: {resp}"
    );
    edge.shutdown().await;
}

#[test]
fn config_positions_tlv_mistakes() {
    let load = |text: &str| {
        sluice::config::load::load_str(text, "t.toml")
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let base = "[global]\nmax_connections = 100\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n";
    let server = "[[backend.servers]]\naddr = \"127.0.0.1:9\"\n";
    let v1 = format!("{base}\n[[backend]]\nname = \"b\"\nsend_proxy = \"v1\"\nproxy_v2_authority = true\n{server}");
    let err = load(&v1).unwrap_err();
    assert!(
        err.contains("t.toml:11:") && err.contains("proxy_v2_authority") && err.contains("v2"),
        "{err}"
    );
    let zero = format!("{base}\n[[backend]]\nname = \"b\"\nsend_proxy = \"v2\"\nproxy_v2_alpn = true\ntimeouts = {{ preread = \"0s\" }}\n{server}");
    let err = load(&zero).unwrap_err();
    assert!(
        err.contains("t.toml:12:") && err.contains("preread"),
        "{err}"
    );
    let ok = format!("{base}\n[[backend]]\nname = \"b\"\nsend_proxy = \"v2\"\nproxy_v2_authority = true\nproxy_v2_alpn = true\nproxy_v2_pass_tlvs = true\n{server}");
    load(&ok).unwrap();

    let edge =
        "[global]\nmax_connections = 100\n[[frontend]]\nname = \"e\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"a\"\n";
    let app = "[[backend]]\nname = \"a\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"127.0.0.1:9\"\n";
    let bad = format!("{edge}proxy_protocol_tlv_headers = {{ sni = \"X-Sni\" }}\n{app}");
    let err = load(&bad).unwrap_err();
    assert!(
        err.contains("t.toml:8:") && err.contains("unknown PROXY TLV \"sni\""),
        "{err}"
    );
    let reserved =
        format!("{edge}proxy_protocol_tlv_headers = {{ authority = \"X-Forwarded-For\" }}\n{app}");
    assert!(load(&reserved)
        .unwrap_err()
        .contains("set by sluice itself"));
    let bad_var = format!("{edge}log_format = '$proxy_protocol_tlv_nope'\n{app}");
    assert!(load(&bad_var)
        .unwrap_err()
        .contains("unknown PROXY TLV name"));
    let tcp_var = format!(
        "{base}log_format = '$proxy_protocol_tlv_alpn'\n[[backend]]\nname = \"b\"\n{server}"
    );
    assert!(load(&tcp_var)
        .unwrap_err()
        .contains("not available in tcp mode"));
    let tcp_key = format!("{base}proxy_protocol_tlv_headers = {{ alpn = \"X-Alpn\" }}\n[[backend]]\nname = \"b\"\n{server}");
    assert!(load(&tcp_key).is_err());
}
