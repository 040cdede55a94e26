//! Interop with real peers over loopback: headers HAProxy 2.6 sends (`send-proxy`,
//! `send-proxy-v2` with CRC32C and UNIQUE_ID) decode right, and headers we encode are
//! accepted by HAProxy `accept-proxy` and nginx `proxy_protocol`. std::net + threads only.

#[path = "interop_support/peers.rs"]
mod peers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command as Cmd;

use peers::{accept, connect_from, exchange, free_port, have, wait_for_text, Peer};
use proxy_header::{decode, v1, Command, DecodeOptions, Decoded, Transport, V2Encoder, Version};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";
const CLIENT_IP: &str = "127.0.0.2";

fn start_haproxy(dir: &tempfile::TempDir, cfg: &str, port: u16) -> Peer {
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write haproxy.cfg");
    let mut cmd = Cmd::new(HAPROXY);
    cmd.arg("-f").arg(&path).arg("-db");
    let mut peer = Peer::spawn(&mut cmd, dir.path().join("haproxy.log"));
    peer.wait_listening(SocketAddr::from(([127, 0, 0, 1], port)));
    peer
}

/// HAProxy relays a client from 127.0.0.2 to our listener with `server_opts`; returns what
/// our listener received (header + data) and the client's address.
fn haproxy_sends(server_opts: &str, frontend_extra: &str) -> Option<(Vec<u8>, SocketAddr, u16)> {
    if !have(HAPROXY) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr");
    let port = free_port();
    let cfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n{frontend_extra}  default_backend be\n\
         backend be\n  server s1 {backend} {server_opts}\n"
    );
    let _haproxy = start_haproxy(&dir, &cfg, port);
    // wait_listening made (and closed) probe connections: HAProxy may relay those first.
    let client = connect_from(CLIENT_IP, SocketAddr::from(([127, 0, 0, 1], port)));
    let client_addr = client.local_addr().expect("client addr");
    (&client)
        .write_all(b"hello from the client")
        .expect("client write");
    for _ in 0..20 {
        let mut conn = accept(&listener);
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while got.len() < 8192 {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if got.ends_with(b"hello from the client") {
                return Some((got, client_addr, port));
            }
        }
    }
    panic!("the client's connection never reached the backend");
}

#[test]
fn haproxy_send_proxy_v1_decodes_to_the_real_client() {
    let Some((got, client, port)) = haproxy_sends("send-proxy", "") else {
        return;
    };
    let Ok(Decoded::Complete { header, consumed }) = decode(&got, &DecodeOptions::default()) else {
        panic!(
            "HAProxy's v1 line does not decode: {:?}",
            String::from_utf8_lossy(&got)
        );
    };
    eprintln!(
        "HAProxy sent: {:?}",
        String::from_utf8_lossy(&got[..consumed])
    );
    assert_eq!(header.version, Version::V1);
    assert_eq!(header.source(), Some(client), "real client address");
    assert_eq!(
        header.destination(),
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    assert_eq!(
        &got[consumed..],
        b"hello from the client",
        "application data untouched"
    );
}

#[test]
fn haproxy_send_proxy_v2_with_crc_and_unique_id_decodes() {
    let Some((got, client, port)) = haproxy_sends(
        "send-proxy-v2 proxy-v2-options crc32c,unique-id",
        "  unique-id-format uid-%ci-%cp\n",
    ) else {
        return;
    };
    let Ok(Decoded::Complete { header, consumed }) = decode(&got, &DecodeOptions::default()) else {
        panic!("HAProxy's v2 header does not decode: {:02x?}", got);
    };
    eprintln!(
        "HAProxy sent {consumed} bytes: {:?}",
        header.tlvs.iter().collect::<Vec<_>>()
    );
    assert_eq!(
        (header.version, header.command, header.transport),
        (Version::V2, Command::Proxy, Transport::Stream)
    );
    assert_eq!(header.source(), Some(client), "real client address");
    assert_eq!(
        header.destination(),
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    assert!(
        header.tlvs.crc32c().is_some(),
        "CRC32C TLV present (and verified by decode)"
    );
    let want = format!("uid-{}-{}", client.ip(), client.port());
    assert_eq!(header.tlvs.unique_id(), Some(want.as_bytes()));
    assert_eq!(&got[consumed..], b"hello from the client");
}

/// An HTTP frontend with `accept-proxy` that answers with the address it believes in.
fn haproxy_accept_proxy() -> Option<(tempfile::TempDir, Peer, SocketAddr)> {
    if !have(HAPROXY) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = format!(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{port} accept-proxy\n\
         \x20 http-request return status 200 content-type text/plain lf-string \"src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port] uid=%[fc_pp_unique_id]\\n\"\n"
    );
    let peer = start_haproxy(&dir, &cfg, port);
    Some((dir, peer, SocketAddr::from(([127, 0, 0, 1], port))))
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[test]
fn haproxy_accepts_our_v1_and_v2_with_crc() {
    let Some((_dir, peer, addr)) = haproxy_accept_proxy() else {
        return;
    };
    let src: SocketAddr = "127.0.0.10:1234".parse().unwrap();
    let dst: SocketAddr = "127.0.0.11:443".parse().unwrap();
    let mut buf = [0u8; 512];

    let n = v1::encode(src, dst, &mut buf).unwrap();
    let reply = exchange(connect_from(CLIENT_IP, addr), &[&buf[..n], GET].concat());
    assert!(
        reply.contains("src=127.0.0.10 sport=1234 dst=127.0.0.11 dport=443"),
        "v1: {reply}\n{}",
        peer.log_text()
    );

    let addrs = proxy_header::Addresses::from_socket_addrs("127.0.0.12:5678".parse().unwrap(), dst);
    let mut enc = V2Encoder::new(&mut buf, Command::Proxy, Transport::Stream, &addrs).unwrap();
    enc.alpn(b"http/1.1")
        .unwrap()
        .authority("example.com")
        .unwrap()
        .unique_id(b"sluice-uid-1")
        .unwrap();
    enc.ssl(1, 0, &[(0x21, b"TLSv1.3")]).unwrap();
    let n = enc.finish(true).unwrap();
    let reply = exchange(connect_from(CLIENT_IP, addr), &[&buf[..n], GET].concat());
    assert!(
        reply.contains("src=127.0.0.12 sport=5678 dst=127.0.0.11 dport=443"),
        "v2: {reply}\n{}",
        peer.log_text()
    );
    assert!(reply.contains("uid=sluice-uid-1"), "v2 unique id: {reply}");

    // The same header with one CRC bit flipped must be refused (no HTTP answer).
    buf[n - 1] ^= 1;
    let reply = exchange(connect_from(CLIENT_IP, addr), &[&buf[..n], GET].concat());
    assert!(
        !reply.contains("200"),
        "HAProxy accepted a bad CRC32C: {reply}"
    );
    eprintln!("HAProxy's answer to a bad CRC32C: {reply:?}");
}

#[test]
fn nginx_accepts_our_v1_and_v2() {
    if !have(NGINX) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().display();
    let port = free_port();
    let conf = format!(
        "user root;\nmaster_process off;\nworker_processes 1;\nerror_log {p}/error.log info;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  log_format pp '$remote_addr:$remote_port via $proxy_protocol_addr:$proxy_protocol_port';\n\
         \x20 access_log {p}/access.log pp;\n\
         \x20 client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} proxy_protocol;\n    set_real_ip_from 127.0.0.0/8;\n\
         \x20   real_ip_header proxy_protocol;\n    location / {{ return 200 \"addr=$remote_addr\\n\"; }}\n  }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let mut cmd = Cmd::new(NGINX);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"));
    cmd.arg("-c").arg(&conf_path).arg("-g").arg("daemon off;");
    let mut nginx = Peer::spawn(&mut cmd, dir.path().join("stderr.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    nginx.wait_listening(addr);

    let dst: SocketAddr = "127.0.0.11:443".parse().unwrap();
    let mut buf = [0u8; 256];
    let n = v1::encode("127.0.0.10:1111".parse().unwrap(), dst, &mut buf).unwrap();
    let reply = exchange(connect_from(CLIENT_IP, addr), &[&buf[..n], GET].concat());
    assert!(
        reply.contains("addr=127.0.0.10"),
        "v1: {reply}\n{}",
        nginx.log_text()
    );

    let addrs = proxy_header::Addresses::from_socket_addrs("127.0.0.12:2222".parse().unwrap(), dst);
    let mut enc = V2Encoder::new(&mut buf, Command::Proxy, Transport::Stream, &addrs).unwrap();
    enc.authority("example.com").unwrap();
    let n = enc.finish(true).unwrap();
    let reply = exchange(connect_from(CLIENT_IP, addr), &[&buf[..n], GET].concat());
    assert!(
        reply.contains("addr=127.0.0.12"),
        "v2: {reply}\n{}",
        nginx.log_text()
    );

    let log = wait_for_text(&dir.path().join("access.log"), "127.0.0.12:2222");
    assert!(
        log.contains("127.0.0.10:1111 via 127.0.0.10:1111"),
        "access log: {log}"
    );
    assert!(
        log.contains("127.0.0.12:2222 via 127.0.0.12:2222"),
        "access log: {log}"
    );
}
