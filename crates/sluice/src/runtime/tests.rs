//! Tests of building and swapping: a DNS change updates the affected pool in place (same
//! pool, same frontend, new server set, new addresses down until checked), and a reload
//! after it sees nothing to change.

use std::net::IpAddr;
use std::sync::Arc;

use super::dns::update_pools;
use super::prepare::prepare;
use super::running::{Ctx, Running};
use crate::balance::ServerState;
use crate::discovery::Discovery;
use crate::log::LogFiles;
use crate::server::Shutdown;
use crate::spec::Spec;

fn cfg() -> Spec {
    crate::config::load::load_str_with(
        r#"
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
health = { kind = "tcp", interval = "1h", rise = 1, fall = 1 }
servers = [{ name = "app", addr = "app.test:8080" }, { name = "fixed", addr = "127.0.0.9:80" }]
"#,
        "t.toml",
        &crate::config::load::LoadOptions::content_only(),
    )
    .expect("config")
    .spec()
    .expect("spec")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test]
async fn a_dns_change_updates_the_pool_in_place() {
    let cfg = cfg();
    let discovery = Discovery::new(&cfg);
    discovery.set_answer("app.test", ips(&["127.0.0.21", "127.0.0.22"]));
    discovery.prime(&cfg).await.unwrap();
    let (logs, shutdown) = (LogFiles::default(), Shutdown::new());
    let ctx = Ctx {
        logs: &logs,
        shutdown: &shutdown,
        discovery: &discovery,
        sockets_per_bind: 1,
        inherited: &Default::default(),
    };
    let (mut running, _listeners, _) = prepare(&cfg, &Running::default(), &ctx).unwrap().commit();
    let pool = running.backends["be"].pool.clone();
    let serve = running.frontends["fe"].serve.clone();
    let slot = running.listeners[0].slot.clone();

    // Nothing changed: nothing to do.
    let summary = update_pools(&mut running, &ctx).unwrap();
    assert!(summary.backends.is_empty(), "{summary}");

    // .22 vanishes, .23 appears.
    discovery.set_answer("app.test", ips(&["127.0.0.21", "127.0.0.23"]));
    let summary = update_pools(&mut running, &ctx).unwrap();
    let Some(super::BackendChange::Changed(diff)) = summary.backend("be") else {
        panic!("be not changed: {summary}");
    };
    assert_eq!(diff.kept, ["app-127.0.0.21", "fixed"]);
    assert_eq!(diff.added, ["app-127.0.0.23"]);
    assert_eq!(diff.removed, ["app-127.0.0.22"]);
    assert!(summary.frontends_rebuilt.is_empty(), "{summary}");
    // The same pool and the same frontend serve on; the pool holds the new set.
    assert!(Arc::ptr_eq(&pool, &running.backends["be"].pool));
    assert!(Arc::ptr_eq(&serve, &running.frontends["fe"].serve));
    assert!(Arc::ptr_eq(&serve, &slot.load()));
    let servers = pool.servers();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app-127.0.0.21", "app-127.0.0.23", "fixed"]);
    assert_eq!(
        servers[1].state,
        ServerState::Down,
        "new: down until a check passes"
    );
    assert_eq!(servers[0].state, ServerState::Up);

    // A reload of the same configuration afterwards keeps the backend as it is.
    let (next, _, summary) = prepare(&cfg, &running, &ctx).unwrap().commit();
    assert!(summary.backends.is_empty(), "{summary}");
    assert!(Arc::ptr_eq(&pool, &next.backends["be"].pool));
    shutdown.stop_background.cancel();
}

#[tokio::test]
async fn a_dns_change_rebuilds_http_frontends_on_the_same_pool() {
    let cfg = crate::config::load::load_str_with(
        r#"
[[frontend]]
name = "web"
mode = "http"
bind = ["127.0.0.1:0"]
backend = "app"
[[backend]]
name = "app"
protocol = "http"
servers = [{ name = "app", addr = "app.test:8080" }]
"#,
        "t.toml",
        &crate::config::load::LoadOptions::content_only(),
    )
    .expect("config")
    .spec()
    .expect("spec");
    let discovery = Discovery::new(&cfg);
    discovery.set_answer("app.test", ips(&["127.0.0.21"]));
    discovery.prime(&cfg).await.unwrap();
    let (logs, shutdown) = (LogFiles::default(), Shutdown::new());
    let ctx = Ctx {
        logs: &logs,
        shutdown: &shutdown,
        discovery: &discovery,
        sockets_per_bind: 1,
        inherited: &Default::default(),
    };
    let (mut running, _listeners, _) = prepare(&cfg, &Running::default(), &ctx).unwrap().commit();
    let pool = running.backends["app"].pool.clone();
    let before = running.frontends["web"].serve.clone();
    discovery.set_answer("app.test", ips(&["127.0.0.22"]));
    let summary = update_pools(&mut running, &ctx).unwrap();
    // Its per-address socket caps are rebuilt for the new address, over the same pool.
    assert_eq!(summary.frontends_rebuilt, ["web"]);
    let after = running.frontends["web"].serve.clone();
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(Arc::ptr_eq(&after, &running.listeners[0].slot.load()));
    assert!(Arc::ptr_eq(&pool, &running.frontends["web"].pool));
    assert_eq!(pool.servers()[0].name, "app-127.0.0.22");
    shutdown.stop_background.cancel();
}
