//! Tests of host-name expansion: one named server per address, other servers keep their
//! (positional) names, an unresolved name is an error.

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
    d.state().cache.insert(
        "app.test".into(),
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
