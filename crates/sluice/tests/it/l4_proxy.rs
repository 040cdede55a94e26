//! PROXY protocol end to end: headers sluice sends (v1, v2 with CRC32C and UNIQUE_ID) as
//! decoded by `proxy_header`; headers it receives from trusted peers, rejects from untrusted
//! ones, the header timeout, and chaining two sluices (the `direct` policy is in
//! `hostile_proxy`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support::*;
use tokio::io::AsyncWriteExt;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(frontend_extra: &str, backend_extra: &str, server: SocketAddr) -> String {
    format!(
        "[global]\nmax_connections = 1000\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n{frontend_extra}\n\n\
         [[backend]]\nname = \"be\"\n{backend_extra}\n\
         [[backend.servers]]\nname = \"s1\"\naddr = \"{server}\"\n"
    )
}

fn read(log: &std::path::Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn log_has(log: &std::path::Path, part: &str) -> bool {
    read(log)
        .lines()
        .any(|l| l.contains("end=proxy_rejected") && l.contains(part))
}

fn with_log(dir: &tempfile::TempDir, rest: &str) -> (String, std::path::PathBuf) {
    let log = dir.path().join("conn.log");
    (format!("access_log = \"{}\"\n{rest}", log.display()), log)
}

#[tokio::test]
async fn sends_v1_and_v2_with_the_real_client() {
    for (send, crc, uid) in [
        ("v1", false, false),
        ("v2", true, false),
        ("v2", true, true),
        ("v2", false, false),
    ] {
        let (server, mut rx) = proxy_capture_server(LOOP).await;
        let backend = format!(
            "send_proxy = \"{send}\"\nproxy_v2_crc32c = {crc}\nproxy_v2_unique_id = {uid}\n"
        );
        let sl = Sluice::start(&config("", &backend, server)).await;
        let fe = sl.addr("fe");
        let mut c = client(fe).await;
        let me = c.local_addr().unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
        c.write_all(b"after the header").await.unwrap();
        drop(c);
        let cap = next_capture(&mut rx).await;
        assert_eq!(cap.error, None);
        let want = if send == "v1" {
            proxy_header::Version::V1
        } else {
            proxy_header::Version::V2
        };
        assert_eq!(cap.version, Some(want));
        assert_eq!(cap.source, Some(me), "{send}: server must see 127.0.0.2");
        assert_eq!(cap.destination, Some(fe));
        assert_eq!(cap.crc32c, crc, "{send} crc32c={crc}");
        assert_eq!(cap.unique_id.is_some(), uid, "{send} unique_id={uid}");
        assert_eq!(cap.data, b"after the header");
        sl.shutdown().await;
    }
}

/// A client that speaks first: its bytes are usually there by the time the server
/// connection opens and go out in the same write as the header. Whichever way they go, the
/// server sees header then data, and the log counts every byte.
#[tokio::test]
async fn client_bytes_sent_before_the_server_connects_follow_the_header() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let (fe_extra, log) = with_log(&dir, "");
    let sl = Sluice::start(&config(&fe_extra, "send_proxy = \"v1\"", server)).await;
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let me = c.local_addr().unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
    c.write_all(b"more").await.unwrap();
    drop(c);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.error, None);
    assert_eq!(cap.source, Some(me));
    assert_eq!(cap.data, b"GET / HTTP/1.0\r\n\r\nmore");
    let line = wait_for_log_line(&log, &["frontend=fe"]).await;
    assert!(line.contains(" bytes_in=22 "), "{line}");
    sl.shutdown().await;
}

/// Sends a v1 header claiming `claimed` from a trusted "balancer" at 127.0.0.1, plus data.
async fn send_header_from_balancer(
    fe: SocketAddr,
    claimed: &str,
    data: &[u8],
) -> tokio::net::TcpStream {
    let mut s = within("connect", connect_from(LOOP, fe)).await.unwrap();
    let mut first =
        format!("PROXY TCP4 {claimed} 127.0.0.1 {} {}\r\n", 40000, fe.port()).into_bytes();
    first.extend_from_slice(data);
    s.write_all(&first).await.unwrap();
    s
}

#[tokio::test]
async fn trusted_peer_header_sets_the_client_and_data_follows_untouched() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let (fe_extra, log) = with_log(&dir, "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }");
    let sl = Sluice::start(&config(&fe_extra, "send_proxy = \"v2\"", server)).await;
    let mut s = send_header_from_balancer(sl.addr("fe"), "127.0.0.2", b"hello, app").await;
    assert_eq!(read_line(&mut s).await.unwrap(), "src=127.0.0.2:40000");
    drop(s);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.source, Some("127.0.0.2:40000".parse().unwrap()));
    assert_eq!(cap.data, b"hello, app");
    let line = wait_for_log_line(&log, &["frontend=fe"]).await;
    assert!(
        line.starts_with("127.0.0.2:40000 peer=127.0.0.1:"),
        "{line}"
    );
    sl.shutdown().await;
}

/// A v2 LOCAL header (what HAProxy's `check-send-proxy` health checks send): the balancer
/// speaks for itself, so the client is the peer and the data after it is forwarded.
#[tokio::test]
async fn trusted_v2_local_header_keeps_the_peer_as_the_client() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let (fe_extra, log) = with_log(&dir, "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }");
    let sl = Sluice::start(&config(&fe_extra, "send_proxy = \"v2\"", server)).await;
    let mut s = within("connect", connect_from(LOOP, sl.addr("fe")))
        .await
        .unwrap();
    let me = s.local_addr().unwrap();
    // Signature, version 2 + LOCAL, UNSPEC family, no address block.
    let mut first = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    first.extend_from_slice(b"ping");
    s.write_all(&first).await.unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), format!("src={me}"));
    drop(s);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.source, Some(me), "the peer travels as the client");
    assert_eq!(cap.data, b"ping");
    let line = wait_for_log_line(&log, &["frontend=fe"]).await;
    assert!(line.starts_with(&format!("{me} peer={me}")), "{line}");
    sl.shutdown().await;
}

#[tokio::test]
async fn untrusted_peer_is_rejected_and_never_reaches_a_server() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let (fe_extra, log) = with_log(&dir, "proxy_protocol = { trusted = [\"127.0.0.10/32\"] }");
    let sl = Sluice::start(&config(&fe_extra, "send_proxy = \"v1\"", server)).await;
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"PROXY TCP4 10.9.9.9 127.0.0.1 1 2\r\n")
        .await
        .unwrap();
    assert!(closed_without_data(&mut c).await);
    let line = wait_for_log_line(&log, &["end=proxy_rejected"]).await;
    assert!(
        line.starts_with("127.0.0.2:"),
        "the forged address must not be logged: {line}"
    );
    assert!(line.contains("untrusted"), "{line}");
    // The line is written when the connection ends; a lease is taken before any connect.
    assert_eq!(
        sl.pool("be").servers()[0].total,
        0,
        "a rejected connection reached the server"
    );
    assert!(rx.try_recv().is_err());
    sl.shutdown().await;
}

#[tokio::test]
async fn trusted_peer_without_header_is_closed_after_the_timeout() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let pp = "proxy_protocol = { trusted = [\"127.0.0.0/8\"], timeout = \"200ms\" }";
    let (fe_extra, log) = with_log(&dir, pp);
    let sl = Sluice::start(&config(&fe_extra, "", server)).await;
    // Silent trusted peer: closed once the timeout passes.
    let mut c = client(sl.addr("fe")).await;
    assert!(closed_without_data(&mut c).await);
    let line = wait_for_log_line(&log, &["end=proxy_rejected", "timeout"]).await;
    assert!(line.starts_with("127.0.0.2:"), "{line}");
    // Garbage instead of a header: closed at once with the decoder's reason.
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(closed_without_data(&mut c).await);
    wait_until("two rejections logged", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("end=proxy_rejected")
            .count()
            == 2
    })
    .await;
    assert!(log_has(&log, "reason=\"timeout: "), "{}", read(&log));
    assert_eq!(
        sl.pool("be").servers()[0].total,
        0,
        "a rejected one reached the server"
    );
    assert!(rx.try_recv().is_err());
    sl.shutdown().await;
}

#[tokio::test]
async fn chained_sluices_carry_the_original_client() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    // B: the edge tier, trusts the balancer tier on loopback and passes the client on.
    let b = Sluice::start(&config(
        "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }",
        "send_proxy = \"v2\"",
        server,
    ))
    .await;
    // A: the balancer tier, sends v1 to B.
    let a = Sluice::start(&config("", "send_proxy = \"v1\"", b.addr("fe"))).await;
    let mut c = client(a.addr("fe")).await;
    let me = c.local_addr().unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
    c.write_all(b"through two hops").await.unwrap();
    drop(c);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.source, Some(me));
    assert_eq!(
        cap.destination,
        Some(a.addr("fe")),
        "the address the client dialled travels too"
    );
    assert_eq!(cap.data, b"through two hops");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn ipv6_clients_travel_as_inet6_on_every_bound_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip("IPv6 loopback ([::1])");
        return;
    }
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let cfg = config("", "send_proxy = \"v2\"", server).replace(
        "bind = [\"127.0.0.1:0\"]",
        "bind = [\"127.0.0.1:0\", \"[::1]:0\"]",
    );
    let sl = Sluice::start(&cfg).await;
    let addrs: Vec<SocketAddr> = sl.addrs.iter().map(|(_, a)| *a).collect();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let v6 = *addrs
        .iter()
        .find(|a| a.is_ipv6())
        .expect("an IPv6 listener");
    let mut c = within("connect", connect_from("::1".parse().unwrap(), v6))
        .await
        .unwrap();
    let me = c.local_addr().unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
    drop(c);
    let cap = next_capture(&mut rx).await;
    assert_eq!(cap.source, Some(me));
    assert_eq!(cap.destination, Some(v6));
    sl.shutdown().await;
}
