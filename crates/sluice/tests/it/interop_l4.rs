//! Interop with real peers: nginx behind sluice (send_proxy v1 and v2) logs and sees the real
//! client 127.0.0.2; HAProxy (send-proxy-v2) in front of a sluice frontend with proxy_protocol
//! passes the client through to sluice's backend. Skips loudly when a peer is missing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn nginx_conf(dir: &std::path::Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           log_format realip '$remote_addr $proxy_protocol_addr \"$request\" $status';\n\
           access_log {d}/access.log realip;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
           uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} proxy_protocol;\n\
             set_real_ip_from 127.0.0.0/8;\n\
             real_ip_header proxy_protocol;\n\
             location / {{ return 200 \"client $remote_addr\\n\"; }}\n\
           }}\n\
         }}\n"
    )
}

async fn http_get(to: SocketAddr, path: &str) -> String {
    let mut c = client(to).await;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    within("http response", c.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn nginx_behind_sluice_sees_and_logs_the_real_client() {
    let Some(nginx) = tool("nginx", &["/usr/sbin/nginx", "nginx"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(LOOP);
    let conf = write_file(dir.path(), "nginx.conf", &nginx_conf(dir.path(), port));
    let nginx_addr = SocketAddr::new(LOOP, port);
    let _nginx = start_nginx(&nginx, dir.path(), &conf, nginx_addr).await;

    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"v1\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"nginx_v1\"\n\n\
         [[frontend]]\nname = \"v2\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"nginx_v2\"\n\n\
         [[backend]]\nname = \"nginx_v1\"\nsend_proxy = \"v1\"\n[[backend.servers]]\naddr = \"{nginx_addr}\"\n\n\
         [[backend]]\nname = \"nginx_v2\"\nsend_proxy = \"v2\"\n[[backend.servers]]\naddr = \"{nginx_addr}\"\n"
    );
    let sl = Sluice::start(&cfg).await;
    for fe in ["v1", "v2"] {
        let resp = http_get(sl.addr(fe), &format!("/{fe}")).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{fe}: {resp}");
        assert!(
            resp.ends_with("client 127.0.0.2\n"),
            "{fe}: nginx saw another client: {resp}"
        );
        let line =
            wait_for_log_line(&dir.path().join("access.log"), &[&format!("GET /{fe} ")]).await;
        assert!(
            line.starts_with("127.0.0.2 127.0.0.2 "),
            "{fe}: nginx access log: {line}"
        );
    }
    sl.shutdown().await;
}

#[tokio::test]
async fn haproxy_in_front_of_sluice_passes_the_client_through() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return;
    };
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"edge\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\
         proxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n\n\
         [[backend]]\nname = \"app\"\nsend_proxy = \"v2\"\n[[backend.servers]]\naddr = \"{server}\"\n"
    );
    let sl = Sluice::start(&cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(LOOP);
    let hcfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
         backend be\n  server s1 {} send-proxy-v2\n",
        sl.addr("edge")
    );
    let haddr = SocketAddr::new(LOOP, port);
    let _haproxy = start_haproxy(&haproxy, dir.path(), &hcfg, haddr).await;

    let mut c = client(haddr).await;
    let me = c.local_addr().unwrap();
    c.write_all(b"via haproxy").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
    drop(c);
    // Skip the readiness probe's connection (no data) if it got through.
    let cap = loop {
        let cap = next_capture(&mut rx).await;
        if !cap.data.is_empty() {
            break cap;
        }
    };
    assert_eq!(cap.error, None);
    assert_eq!(cap.source, Some(me), "sluice's server must see 127.0.0.2");
    assert_eq!(cap.data, b"via haproxy");
    sl.shutdown().await;
}
