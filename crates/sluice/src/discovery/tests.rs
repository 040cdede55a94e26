//! Tests of expansion: a host name gives one named server per address, an SRV name one per
//! record (weights, lower priorities as backups), other servers keep their (positional)
//! names, an unresolved name is an error; the TTL shortens the interval down to 1s.

use super::*;

fn cfg(toml: &str) -> Spec {
    crate::config::load::load_str_with(
        toml,
        "t.toml",
        &crate::config::load::LoadOptions::content_only(),
    )
    .expect("config")
    .spec()
    .expect("spec")
}

#[test]
fn host_names_expand_to_named_servers() {
    let c = cfg(r#"
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
servers = [{ addr = "127.0.0.10:80" }, { addr = "app.test:8080", weight = 3 }, { name = "x", addr = "127.0.0.11:80" }]
"#);
    let d = Discovery::new(&c);
    let b = &c.backends[0];
    assert!(d.expand(b).is_err(), "not primed");
    d.set_answer(
        "app.test",
        vec!["127.0.0.21".parse().unwrap(), "127.0.0.22".parse().unwrap()],
    );
    let (expanded, from_dns) = d.expand(b).unwrap();
    let names: Vec<_> = expanded.servers.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["srv1", "srv2-127.0.0.21", "srv2-127.0.0.22", "x"]);
    assert_eq!(
        expanded.servers[2].addr,
        ServerAddr::Inet("127.0.0.22:8080".parse().unwrap())
    );
    assert_eq!(expanded.servers[2].weight, 3);
    assert_eq!(
        expanded.servers[1].addr,
        ServerAddr::Inet("127.0.0.21:8080".parse().unwrap())
    );
    assert_eq!(from_dns.len(), 2);
    assert!(from_dns.contains("srv2-127.0.0.22"));
    assert_eq!(b.resolve_interval, Duration::from_secs(30));
}

#[tokio::test]
async fn prime_resolves_with_the_system_resolver() {
    let c = cfg(r#"
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
resolve_interval = "1s"
servers = [{ addr = "localhost:8080" }]
"#);
    let d = Discovery::new(&c);
    d.prime(&c).await.unwrap();
    let (expanded, _) = d.expand(&c.backends[0]).unwrap();
    assert!(!expanded.servers.is_empty());
    assert!(expanded
        .servers
        .iter()
        .all(|s| matches!(s.addr, ServerAddr::Inet(sa) if sa.ip().is_loopback())));
    assert!(d.next_due().is_some());
}

fn target(priority: u16, target: &str, port: u16, weight: u16, ip: &str) -> SrvTarget {
    SrvTarget {
        priority,
        target: target.into(),
        port,
        weight,
        ip: ip.parse().unwrap(),
    }
}

#[test]
fn srv_names_expand_to_one_server_per_record() {
    let c = cfg(r#"
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
servers = [{ name = "app", srv = "_app._tcp.example.test", max_connections = 7 }, { addr = "127.0.0.11:80" }]
"#);
    let d = Discovery::new(&c);
    let b = &c.backends[0];
    assert_eq!(
        b.servers[0].addr,
        ServerAddr::Srv {
            name: "_app._tcp.example.test".into()
        }
    );
    assert!(d.expand(b).is_err(), "not primed");
    d.set_srv(
        "_app._tcp.example.test",
        vec![
            target(10, "a.example.test", 8001, 5, "127.0.0.21"),
            target(10, "b.example.test", 8002, 0, "127.0.0.22"),
            target(20, "c.example.test", 8003, 1000, "127.0.0.23"),
        ],
    );
    let (expanded, from_dns) = d.expand(b).unwrap();
    let got: Vec<_> = expanded
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.addr.to_string(), s.weight, s.backup))
        .collect();
    assert_eq!(
        got,
        [
            (
                "app-a.example.test-8001",
                "127.0.0.21:8001".into(),
                5,
                false
            ),
            (
                "app-b.example.test-8002",
                "127.0.0.22:8002".into(),
                1,
                false
            ),
            (
                "app-c.example.test-8003",
                "127.0.0.23:8003".into(),
                256,
                true
            ),
            ("srv2", "127.0.0.11:80".into(), 1, false),
        ]
    );
    assert!(expanded.servers[..3].iter().all(|s| s.max_connections == 7));
    assert_eq!(from_dns.len(), 3);
}

#[test]
fn ttl_shortens_the_interval_down_to_a_floor() {
    let s = Duration::from_secs;
    assert_eq!(next_interval(s(30), None), s(30));
    assert_eq!(next_interval(s(30), Some(s(300))), s(30));
    assert_eq!(next_interval(s(30), Some(s(5))), s(5));
    assert_eq!(next_interval(s(30), Some(s(0))), s(1), "Consul's TTL 0");
    assert_eq!(
        next_interval(Duration::from_millis(200), Some(s(0))),
        Duration::from_millis(200)
    );
}
