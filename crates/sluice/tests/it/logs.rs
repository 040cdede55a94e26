//! Access and connection logs end to end (issue #14): the TCP default line has a timestamp,
//! `log_format` templates (nginx variables for http, HAProxy `tcplog` for tcp) and their
//! load-time errors at file:line:col, syslog (RFC 5424) to a UDP collector on loopback and to
//! a unix datagram socket standing for /dev/log, a dead collector never stalling traffic.
//! The process log side (flat JSON, the stderr switch) is in `logs/stderr.rs`.

#[path = "logs/stderr.rs"]
mod stderr;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::edge::{raw_request, read_all, status_of, uwsgi_app};
use crate::support::*;

/// Sends `ping` through the tcp frontend at `fe` (an echo backend) and closes.
async fn echo_once(fe: SocketAddr) {
    let mut c = client(fe).await;
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within("echo", c.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");
}

fn tcp_frontend(name: &str, extra: &str) -> String {
    format!(
        "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"echo\"\n{extra}\n\n"
    )
}

fn echo_backend(echo: SocketAddr) -> String {
    format!(
        "[[backend]]\nname = \"echo\"\n[[backend.servers]]\nname = \"s1\"\naddr = \"{echo}\"\n\n"
    )
}

/// `dd/Mon/yyyy:HH:MM:SS.mmm` (HAProxy's accept date).
fn is_accept_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 24
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && b[20] == b'.'
        && s[7..11].parse::<u32>().is_ok()
}

#[tokio::test]
async fn tcp_lines_have_a_timestamp_and_tcplog_is_haproxys() {
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n{}{}{}",
        tcp_frontend("plain", &format!("access_log = \"{d}/plain.log\"")),
        tcp_frontend(
            "hap",
            &format!("access_log = \"{d}/hap.log\"\nlog_format = \"tcplog\"")
        ),
        echo_backend(echo)
    );
    let sl = Sluice::start(&cfg).await;
    echo_once(sl.addr("plain")).await;
    echo_once(sl.addr("hap")).await;

    let line = wait_for_log_line(&dir.path().join("plain.log"), &["frontend=plain"]).await;
    assert!(line.starts_with("127.0.0.2:"), "client first: {line}");
    let time = line
        .split(' ')
        .find_map(|f| f.strip_prefix("time="))
        .unwrap_or_else(|| panic!("no time= in {line}"));
    // nginx's $time_iso8601: 2026-12-07T07:07:37+00:00, this year or later.
    assert_eq!(time.len(), 25, "{time}");
    assert!(
        time.ends_with("+00:00") && time[..4].parse::<u32>().unwrap() >= 2026,
        "{time}"
    );
    assert!(
        line.contains(" server=s1 ") && line.contains(" end=client_close reason=\"-\""),
        "{line}"
    );

    let line = wait_for_log_line(&dir.path().join("hap.log"), &[" hap "]).await;
    // 127.0.0.2:PORT [accept date] hap echo/s1 Tw/Tc/Tt bytes_read --
    // actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 9, "{line}");
    assert!(f[0].starts_with("127.0.0.2:"), "{line}");
    let date = f[1].trim_start_matches('[').trim_end_matches(']');
    assert!(is_accept_date(date), "accept date {date} in {line}");
    assert_eq!(&f[2..4], ["hap", "echo/s1"], "{line}");
    let timers: Vec<i64> = f[4].split('/').map(|t| t.parse().unwrap()).collect();
    assert!(
        timers.len() == 3 && timers.iter().all(|t| *t >= 0),
        "{line}"
    );
    assert_eq!(&f[5..7], ["4", "--"], "{line}");
    // This connection is still counted everywhere when its line is written.
    let c: Vec<u64> = f[7].split('/').map(|n| n.parse().unwrap()).collect();
    assert_eq!(c.len(), 5, "{line}");
    assert!(c[0] >= 1 && c[2] >= 1 && c[3] >= 1, "{line}");
    assert_eq!((c[1], c[4]), (1, 0), "feconn, retries: {line}");
    assert_eq!(f[8], "0/0", "{line}");
    sl.shutdown().await;
}

#[tokio::test]
async fn http_log_format_takes_nginx_variables() {
    let uw = uwsgi_app().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n\
         [[frontend]]\nname = \"vars\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/vars.log\"\n\
         log_format = '$remote_addr|$request_method|$request_uri|$server_protocol|$status|$body_bytes_sent|$upstream_name|$upstream_addr|$ssl_protocol|$scheme|$host|${{http_user_agent}}|$time_iso8601|$request_time|$upstream_response_time'\n\n\
         [[frontend]]\nname = \"js\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/js.log\"\n\
         log_format = 'escape=json {{\"addr\":\"$remote_addr\",\"ua\":\"$http_user_agent\",\"ref\":\"$http_referer\",\"xff\":\"$http_x_forwarded_for\",\"none\":\"$http_x_absent\",\"status\":$status}}'\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\nname = \"u1\"\naddr = \"{uw}\"\n"
    );
    let sl = Sluice::start(&cfg).await;
    let req =
        b"GET /v?a=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: t\"x\r\nX-Forwarded-For: 10.1.1.1\r\n\
          X-Forwarded-For: 10.2.2.2\r\nConnection: close\r\n\r\n";
    for fe in ["vars", "js"] {
        let r = raw_request(sl.addr(fe), req).await;
        assert_eq!(status_of(&r), "200", "{r}");
    }
    let line = wait_for_log_line(&dir.path().join("vars.log"), &["|/v?a=1|"]).await;
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(
        &f[..12],
        [
            "127.0.0.2",
            "GET",
            "/v?a=1",
            "HTTP/1.1",
            "200",
            f[5],
            "u1",
            &uw.to_string(),
            "-",
            "http",
            "app.test",
            "t\\x22x"
        ],
        "{line}"
    );
    assert!(f[5].parse::<u64>().unwrap() > 0, "{line}");
    assert!(f[12].ends_with("+00:00"), "{line}");
    for secs in &f[13..] {
        assert!(secs.parse::<f64>().is_ok(), "{secs} in {line}");
    }
    let line = wait_for_log_line(&dir.path().join("js.log"), &["\"status\":"]).await;
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["addr"], "127.0.0.2");
    assert_eq!(v["ua"], "t\"x");
    assert_eq!(v["ref"], "");
    // Any request header as $http_NAME, repeated ones joined as nginx does.
    assert_eq!(v["xff"], "10.1.1.1, 10.2.2.2");
    assert_eq!(v["none"], "");
    assert_eq!(v["status"], 200);
    sl.shutdown().await;
}

/// `$remote_addr` is the client a trusted PROXY header names, `$realip_remote_addr` the
/// balancer that sent it, `$proxy_protocol_addr` the header's source ("-" without one);
/// `$connection` numbers connections, `$connection_requests` the requests on one.
#[tokio::test]
async fn http_log_format_tells_client_balancer_and_connection_apart() {
    let uw = uwsgi_app().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let fmt = "$remote_addr|$realip_remote_addr|$proxy_protocol_addr:$proxy_protocol_port|$server_addr:$server_port|$connection|$connection_requests|$request_uri";
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n\
         [[frontend]]\nname = \"pp\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/pp.log\"\nlog_format = '{fmt}'\n\
         proxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n\n\
         [[frontend]]\nname = \"direct\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{d}/direct.log\"\nlog_format = '{fmt}'\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\nname = \"u1\"\naddr = \"{uw}\"\n"
    );
    let sl = Sluice::start(&cfg).await;
    let balancer = "127.0.0.10".parse().unwrap();
    let mut s = within("connect", connect_from(balancer, sl.addr("pp")))
        .await
        .unwrap();
    s.write_all(
        b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n\
          GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let resp = read_all(&mut s).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    let r = raw_request(
        sl.addr("direct"),
        b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");

    let path = dir.path().join("pp.log");
    let one = wait_for_log_line(&path, &["|/one"]).await;
    let two = wait_for_log_line(&path, &["|/two"]).await;
    let f1: Vec<&str> = one.split('|').collect();
    let f2: Vec<&str> = two.split('|').collect();
    assert_eq!(
        f1[..4],
        [
            "203.0.113.7",
            "127.0.0.10",
            "203.0.113.7:40000",
            "198.51.100.1:443"
        ],
        "{one}"
    );
    assert_eq!((f1[5], f2[5]), ("1", "2"), "{one} / {two}");
    assert_eq!(f1[4], f2[4], "same connection: {one} / {two}");
    let three = wait_for_log_line(&dir.path().join("direct.log"), &["|/three"]).await;
    let f3: Vec<&str> = three.split('|').collect();
    let port = sl.addr("direct").port().to_string();
    assert_eq!(f3[..3], ["127.0.0.2", "127.0.0.2", "-:-"], "{three}");
    assert_eq!(f3[3], format!("127.0.0.1:{port}"), "{three}");
    assert_ne!(f3[4], f1[4], "another connection: {three}");
    assert_eq!(f3[5], "1", "{three}");
    sl.shutdown().await;
}

#[test]
fn bad_formats_and_targets_are_refused_at_their_line() {
    let base = "[global]\nmax_connections = 100\n\n[[backend]]\nname = \"b\"\n[[backend.servers]]\naddr = \"127.0.0.1:9\"\n\n";
    for (frontend, want) in [
        (
            "log_format = \"$remote_addr $nope\"",
            "test.toml:13:14: frontend[0].log_format: unknown variable $nope",
        ),
        (
            "log_format = \"$status\"",
            "test.toml:13:14: frontend[0].log_format: variable $status is not available in tcp mode",
        ),
        (
            "access_log = \"syslog:server=logs.example\"",
            "test.toml:13:14: frontend[0].access_log: syslog: server \"logs.example\" is not",
        ),
        (
            "log_format = \"conn\"\naccess_log_format = \"json\"",
            "test.toml:13:14: frontend[0].log_format: set log_format or access_log_format",
        ),
    ] {
        let toml = format!(
            "{base}[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n{frontend}\n"
        );
        let e = sluice::config::load::load_str(&toml, "test.toml")
            .expect_err(frontend)
            .to_string();
        assert!(e.starts_with(want), "{frontend}: {e}");
    }
}

/// Receives one datagram within the deadline.
fn recv_udp(s: &UdpSocket) -> String {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).expect("a syslog datagram");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG` split into its parts.
fn rfc5424(d: &str) -> (String, Vec<String>, String) {
    let (head, msg) = d
        .split_once(" - ")
        .unwrap_or_else(|| panic!("no ' - ' in {d}"));
    let mut parts: Vec<String> = head.split(' ').map(String::from).collect();
    assert_eq!(parts.len(), 6, "{d}");
    let pri = parts.remove(0);
    (pri, parts, msg.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_udp_to_a_loopback_collector() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = collector.local_addr().unwrap();
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let uw = uwsgi_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n{}\
         [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"syslog:server={at},tag=edge\"\n\n{}\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n",
        tcp_frontend(
            "lb",
            &format!("access_log = \"syslog:server={at},facility=local0,severity=notice\"")
        ),
        echo_backend(echo)
    );
    let sl = Sluice::start(&cfg).await;
    echo_once(sl.addr("lb")).await;
    let (pri, ids, msg) = tokio::task::block_in_place(|| rfc5424(&recv_udp(&collector)));
    // local0 (16) * 8 + notice (5)
    assert_eq!(pri, "<133>1");
    let pid = std::process::id().to_string();
    assert_eq!(ids[0].len(), 27, "RFC 3339 with microseconds: {ids:?}");
    assert!(
        ids[0].ends_with('Z') && ids[0].as_bytes()[10] == b'T',
        "{ids:?}"
    );
    assert_eq!(&ids[2..], ["sluice", pid.as_str(), "conn"]);
    assert!(
        msg.starts_with("127.0.0.2:") && msg.contains(" frontend=lb "),
        "{msg}"
    );

    let r = raw_request(
        sl.addr("web"),
        b"GET /s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");
    let (pri, ids, msg) = tokio::task::block_in_place(|| rfc5424(&recv_udp(&collector)));
    // local7 (23) * 8 + info (6), nginx's defaults
    assert_eq!(pri, "<190>1");
    assert_eq!(&ids[2..], ["edge", pid.as_str(), "access"]);
    assert!(
        msg.starts_with("127.0.0.2 - - [") && msg.contains("\"GET /s HTTP/1.1\" 200 "),
        "{msg}"
    );
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_to_a_unix_socket_standing_for_dev_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let dev_log = UnixDatagram::bind(&path).unwrap();
    dev_log.set_read_timeout(Some(DEADLINE)).unwrap();
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n{}{}",
        tcp_frontend(
            "lb",
            &format!(
                "access_log = \"syslog:server=unix:{}\"\nlog_format = \"tcplog\"",
                path.display()
            )
        ),
        echo_backend(echo)
    );
    let sl = Sluice::start(&cfg).await;
    echo_once(sl.addr("lb")).await;
    let d = tokio::task::block_in_place(|| {
        let mut buf = vec![0u8; 65536];
        let n = dev_log.recv(&mut buf).expect("a datagram on the socket");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    });
    let (pri, ids, msg) = rfc5424(&d);
    assert_eq!(pri, "<190>1");
    assert_eq!(ids[4], "conn");
    assert!(
        msg.contains(" lb echo/s1 ") && msg.contains(" -- ") && msg.ends_with("/0 0/0"),
        "{msg}"
    );
    sl.shutdown().await;
}

#[tokio::test]
async fn a_dead_collector_never_stalls_traffic() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens on either.
    let gone = dir.path().join("gone.sock");
    let silent = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let cfg = format!(
        "[global]\nmax_connections = 100\n\n{}{}{}",
        tcp_frontend(
            "dead_unix",
            &format!("access_log = \"syslog:server=unix:{}\"", gone.display())
        ),
        tcp_frontend(
            "dead_udp",
            &format!("access_log = \"syslog:server={silent}\"")
        ),
        echo_backend(echo)
    );
    let sl = Sluice::start(&cfg).await;
    let t0 = std::time::Instant::now();
    for _ in 0..20 {
        echo_once(sl.addr("dead_unix")).await;
        echo_once(sl.addr("dead_udp")).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Every line to the absent socket is counted as dropped (UDP sends to a silent port
    // succeed: nothing to count there).
    wait_until("20 dropped lines", || dropped_lines("dead_unix") == 20).await;
    sl.shutdown().await;
}

/// `sluice_log_dropped_lines_total` of `frontend`.
fn dropped_lines(frontend: &str) -> u64 {
    let fe = format!("sluice_log_dropped_lines_total{{frontend=\"{frontend}\"}} ");
    sluice::metrics::global()
        .encode(&[])
        .lines()
        .find_map(|l| l.strip_prefix(&fe)?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
