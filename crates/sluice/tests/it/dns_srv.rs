//! Servers from DNS through a real DNS server (issue #17): Debian's dnsmasq on 127.0.0.1
//! serves SRV and A records; sluice's servers follow record changes at the records' TTL (1s)
//! though `resolve_interval` is an hour, SRV weight and priority (backup) apply, and an
//! answer too large for UDP arrives whole over TCP. Also the `srv` key's config errors.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support::{client, read_line, wait_until, Dnsmasq, NamedServer, Sluice};
use sluice::balance::Pool;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// (name, address, weight, backup) of every server of `pool`, sorted by name.
fn servers(pool: &Pool) -> Vec<(String, String, u32, bool)> {
    let mut v: Vec<_> = pool
        .servers()
        .into_iter()
        .map(|s| (s.name, s.addr.to_string(), s.weight, s.backup))
        .collect();
    v.sort();
    v
}

/// The greetings of `n` connections through `fe`.
async fn greetings(fe: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = client(fe).await;
        out.push(read_line(&mut c).await.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_follow_srv_and_a_records_from_dnsmasq() {
    let dir = tempfile::tempdir().unwrap();
    let a = NamedServer::start(ip(31), "a").await;
    let b = NamedServer::start(ip(32), "b").await;
    let c = NamedServer::start(ip(33), "c").await;
    // a's target moves to .34 later (same port); web.example.test from .41 to .42.
    let a2 = NamedServer::start_on(SocketAddr::new(ip(34), a.addr.port()), "a2").await;
    let w1 = NamedServer::start(ip(41), "w1").await;
    let w2 = NamedServer::start_on(SocketAddr::new(ip(42), w1.addr.port()), "w2").await;
    let (pa, pb, pc, pw) = (a.addr.port(), b.addr.port(), c.addr.port(), w1.addr.port());
    let srv = |records: &[(&str, u16, u16, u16)]| -> Vec<String> {
        records
            .iter()
            .map(|(t, port, prio, weight)| {
                format!("_app._tcp.example.test,{t}.example.test,{port},{prio},{weight}")
            })
            .collect()
    };
    let hosts = "127.0.0.31 a.example.test\n127.0.0.32 b.example.test\n\
                 127.0.0.33 c.example.test\n127.0.0.41 web.example.test\n";
    let first = srv(&[("a", pa, 10, 5), ("b", pb, 10, 1), ("c", pc, 20, 1)]);
    let Some(mut dns) = Dnsmasq::start(dir.path(), hosts, &first).await else {
        return;
    };
    let toml = format!(
        r#"
[global]
resolvers = ["{dns}"]
grace = "1s"
max_connections = 1000

[[frontend]]
name = "fe_srv"
bind = ["127.0.0.1:0"]
backend = "srv"

[[frontend]]
name = "fe_web"
bind = ["127.0.0.1:0"]
backend = "web"

[[backend]]
name = "srv"
resolve_interval = "1h"
servers = [{{ name = "app", srv = "_app._tcp.example.test" }}]

[[backend]]
name = "web"
resolve_interval = "1h"
servers = [{{ name = "web", addr = "web.example.test:{pw}" }}]
"#,
        dns = dns.addr
    );
    let sluice = Sluice::start(&toml).await;
    let (pool, web) = (sluice.pool("srv"), sluice.pool("web"));

    // One server per SRV record: the record's weight, the higher priority as a backup.
    assert_eq!(
        servers(&pool),
        [
            (
                format!("app-a.example.test-{pa}"),
                format!("127.0.0.31:{pa}"),
                5,
                false
            ),
            (
                format!("app-b.example.test-{pb}"),
                format!("127.0.0.32:{pb}"),
                1,
                false
            ),
            (
                format!("app-c.example.test-{pc}"),
                format!("127.0.0.33:{pc}"),
                1,
                true
            ),
        ]
    );
    let seen = greetings(sluice.addr("fe_srv"), 12).await;
    let count = |who: &str| seen.iter().filter(|g| *g == who).count();
    assert_eq!((count("a"), count("b"), count("c")), (10, 2, 0), "{seen:?}");
    assert_eq!(greetings(sluice.addr("fe_web"), 2).await, ["w1", "w1"]);

    // A records change (dnsmasq re-reads its hosts file): followed at the 1s TTL, not the
    // hour of resolve_interval (wait_until gives up long before an hour).
    dns.set_hosts(
        "127.0.0.34 a.example.test\n127.0.0.32 b.example.test\n\
         127.0.0.33 c.example.test\n127.0.0.42 web.example.test\n",
    );
    let moved = format!("127.0.0.34:{pa}");
    wait_until("a's target and web.example.test moved", || {
        servers(&pool)
            .iter()
            .any(|s| s.0.starts_with("app-a.") && s.1 == moved)
            && servers(&web)
                .iter()
                .map(|s| s.0.as_str())
                .collect::<Vec<_>>()
                == ["web-127.0.0.42"]
    })
    .await;
    assert_eq!(greetings(sluice.addr("fe_web"), 2).await, ["w2", "w2"]);
    assert!(greetings(sluice.addr("fe_srv"), 6)
        .await
        .iter()
        .all(|g| g == "a2" || g == "b"));

    // SRV records change (dnsmasq restarted on the same port): b leaves, c becomes a
    // primary with weight 2.
    dns.restart(&srv(&[("a", pa, 10, 5), ("c", pc, 10, 2)]))
        .await;
    wait_until("b gone and c a primary", || {
        servers(&pool)
            == [
                (format!("app-a.example.test-{pa}"), moved.clone(), 5, false),
                (
                    format!("app-c.example.test-{pc}"),
                    format!("127.0.0.33:{pc}"),
                    2,
                    false,
                ),
            ]
    })
    .await;
    let seen: BTreeSet<String> = greetings(sluice.addr("fe_srv"), 14)
        .await
        .into_iter()
        .collect();
    assert_eq!(seen, ["a2", "c"].map(String::from).into());

    sluice.shutdown().await;
    for s in [a, b, c, a2, w1, w2] {
        s.stop();
    }
}

/// Whether dnsmasq's UDP answer to an A query for `name` with EDNS payload 1232 (what
/// hickory-resolver advertises) has the TC bit set.
async fn udp_answer_truncated(dns: SocketAddr, name: &str) -> bool {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // OPT, 1232 bytes
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q, dns).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = crate::support::within("dnsmasq UDP answer", sock.recv_from(&mut buf))
        .await
        .unwrap();
    n >= 4 && buf[2] & 0x02 != 0
}

#[tokio::test]
async fn truncated_udp_answer_is_retried_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    // 150 A records: about 2.4 kB, over the 1232 bytes a UDP answer may carry.
    let hosts: String = (1..=150)
        .map(|i| format!("127.0.1.{i} many.example.test\n"))
        .collect();
    let Some(dns) = Dnsmasq::start(dir.path(), &hosts, &[]).await else {
        return;
    };
    assert!(
        udp_answer_truncated(dns.addr, "many.example.test").await,
        "the UDP answer should be truncated"
    );
    let toml = format!(
        r#"
[global]
resolvers = ["{}"]
max_connections = 1000
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
servers = [{{ name = "many", addr = "many.example.test:9" }}]
"#,
        dns.addr
    );
    let sluice = Sluice::start(&toml).await;
    let got: BTreeSet<String> = sluice
        .pool("be")
        .servers()
        .into_iter()
        .map(|s| s.addr.to_string())
        .collect();
    let want: BTreeSet<String> = (1..=150).map(|i| format!("127.0.1.{i}:9")).collect();
    assert_eq!(got, want);
    sluice.shutdown().await;
}

#[test]
fn srv_key_errors_name_their_position() {
    let base = |server: &str| {
        format!(
            "[global]\nmax_connections = 1000\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
             [[backend]]\nname = \"be\"\nservers = [{server}]\n"
        )
    };
    for (server, want) in [
        (
            r#"{ srv = "_a._tcp.example.test", addr = "127.0.0.1:80" }"#,
            "either addr or srv",
        ),
        (r#"{ srv = "_a._tcp.exa mple.test" }"#, "invalid SRV name"),
        (r#"{ name = "x" }"#, "needs addr"),
    ] {
        let err = sluice::config::load::load_str(&base(server), "srv.toml")
            .err()
            .unwrap_or_else(|| panic!("{server} accepted"))
            .to_string();
        assert!(err.contains(want) && err.contains("srv.toml:9:"), "{err}");
    }
    let ok = base(r#"{ srv = "_a._tcp.example.test" }"#);
    sluice::config::load::load_str(&ok, "srv.toml").expect("srv server");
}
