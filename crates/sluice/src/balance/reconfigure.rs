//! Changing a pool's servers, sharing the live entry (health, counters, active connections)
//! of each server whose name and address stay: `reconfigure` builds a successor pool for a
//! reload (admin-API changes give way to the config), `update` replaces the set in place for
//! DNS answers (pingora's `LoadBalancer::update`). When to change is the runtime's call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::server::ServerEntry;
use super::{Pool, ServerAddr};
use crate::config;

/// What a reconfiguration did to the servers of one backend (server names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolDiff {
    /// Same name and address: state and counters carried over.
    pub kept: Vec<String>,
    /// Kept, and the configured weight changed (the new weight applies).
    pub reweighted: Vec<String>,
    /// New servers, or servers whose address, `backup` or `max_connections` changed: they
    /// start fresh, as at startup (up until `fall` failed checks).
    pub added: Vec<String>,
    /// Gone from the configuration: no new connections; open ones finish.
    pub removed: Vec<String>,
}

impl PoolDiff {
    /// True when no server was added, removed or re-weighted.
    pub fn is_unchanged(&self) -> bool {
        self.reweighted.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

impl Pool {
    /// The pool serving `cfg` after a reload; `self` was built from `prev`. `servers` pairs
    /// each configured server with its resolved address, as for [`Pool::new`].
    ///
    /// A server whose name and address are unchanged (and whose `backup` and
    /// `max_connections` are too) shares its live entry with this pool, so health state,
    /// counters and active connections carry over. Runtime changes made through the admin API
    /// do not survive a reload (as the API's answer says): the configured weight applies and
    /// the server is back to ready. `self` keeps working for the leases already taken on it.
    pub fn reconfigure(
        &self,
        prev: &config::Backend,
        cfg: &config::Backend,
        servers: Vec<(config::Server, ServerAddr)>,
    ) -> (Arc<Pool>, PoolDiff) {
        self.reconfigure_starting_down(prev, cfg, servers, &HashSet::new())
    }

    /// [`Pool::reconfigure`], except that added servers named in `start_down` start down
    /// when `cfg` has health checks: they need `rise` passing checks before use (servers
    /// appearing in DNS answers).
    pub fn reconfigure_starting_down(
        &self,
        prev: &config::Backend,
        cfg: &config::Backend,
        servers: Vec<(config::Server, ServerAddr)>,
        start_down: &HashSet<String>,
    ) -> (Arc<Pool>, PoolDiff) {
        let (entries, diff) = self.carry(prev, cfg, servers, start_down, true);
        (Pool::from_entries(cfg, entries), diff)
    }

    /// Replaces this pool's servers in place with `servers` (the backend's configuration is
    /// the same; `prev` and `cfg` list the servers before and after, e.g. a host name that
    /// now resolves to other addresses). Kept servers keep their entry, admin-API state and
    /// weight included; added ones named in `start_down` start down when `cfg` has health
    /// checks; removed ones get no new connections while their leases finish. Whoever holds
    /// this pool sees the new set from the next selection.
    pub fn update(
        &self,
        prev: &config::Backend,
        cfg: &config::Backend,
        servers: Vec<(config::Server, ServerAddr)>,
        start_down: &HashSet<String>,
    ) -> PoolDiff {
        let (entries, diff) = self.carry(prev, cfg, servers, start_down, false);
        self.replace_members(entries);
        diff
    }

    /// The entries of a pool serving `servers`: this pool's entry for each server whose
    /// name, address, `backup` and `max_connections` stay (its configured weight re-applied
    /// and admin state reset when `reset` is set), a new one for every other server.
    fn carry(
        &self,
        prev: &config::Backend,
        cfg: &config::Backend,
        servers: Vec<(config::Server, ServerAddr)>,
        start_down: &HashSet<String>,
        reset: bool,
    ) -> (Vec<Arc<ServerEntry>>, PoolDiff) {
        let members = self.members();
        let old: HashMap<&str, &Arc<ServerEntry>> =
            members.iter().map(|e| (e.name.as_str(), e)).collect();
        let prev_weight: HashMap<String, u32> = prev
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| (server_name(s, i), s.weight))
            .collect();
        let mut diff = PoolDiff::default();
        let mut entries = Vec::with_capacity(servers.len());
        for (i, (s, addr)) in servers.into_iter().enumerate() {
            let name = server_name(&s, i);
            let reuse = old
                .get(name.as_str())
                .filter(|e| e.addr == addr && e.backup == s.backup && e.max_connections == s.cap());
            match reuse {
                Some(e) => {
                    if reset {
                        e.weight.store(s.weight, Ordering::Relaxed);
                    }
                    let was = if reset { e.reset_admin() } else { None };
                    if let Some(mode) = was {
                        tracing::info!(
                            backend = %cfg.name, server = %name,
                            "server {}/{}: admin state {} reset to ready by the reload \
                             (admin API changes are runtime-only)",
                            cfg.name, name, mode
                        );
                    }
                    if prev_weight.get(name.as_str()) != Some(&s.weight) {
                        diff.reweighted.push(name);
                    } else {
                        diff.kept.push(name);
                    }
                    entries.push(Arc::clone(e));
                }
                None => {
                    diff.added.push(name.clone());
                    let down = cfg.health.is_some() && start_down.contains(&name);
                    let entry = ServerEntry::new(name, addr, s.weight, s.backup, s.cap());
                    if down {
                        entry.up.store(false, Ordering::Release);
                    }
                    entries.push(Arc::new(entry));
                }
            }
        }
        for e in members.iter() {
            if !entries.iter().any(|n| Arc::ptr_eq(n, e)) {
                diff.removed.push(e.name.clone());
            }
        }
        (entries, diff)
    }
}

/// The configured name, or "srvN" by position as `Pool::new` names it.
fn server_name(s: &config::Server, i: usize) -> String {
    s.name.clone().unwrap_or_else(|| format!("srv{}", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ClientAddr;
    use crate::balance::{AdminMode, ServerId, ServerState};

    fn backend(toml: &str) -> (config::Backend, Vec<(config::Server, ServerAddr)>) {
        #[derive(serde::Deserialize)]
        struct W {
            backend: config::Backend,
        }
        let b = toml::from_str::<W>(toml).expect("backend toml").backend;
        let servers = b
            .servers
            .iter()
            .map(|s| (s.clone(), ServerAddr::Inet(s.addr.parse().unwrap())))
            .collect();
        (b, servers)
    }

    const V1: &str = r#"[backend]
name = "b"
health = { rise = 1, fall = 1 }
servers = [{ name = "a", addr = "127.0.0.10:80" }, { name = "b", addr = "127.0.0.11:80" },
           { name = "c", addr = "127.0.0.12:80" }]"#;

    #[test]
    fn kept_servers_share_state_changed_weight_applies_removed_drain() {
        let (cfg1, s1) = backend(V1);
        let pool = Pool::new(&cfg1, s1);
        let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
        // A connection on "a", a failed check taking "c" down, some traffic counted.
        let held = pool.select(&client, &[ServerId(1), ServerId(2)]).unwrap();
        assert_eq!(held.name(), "a");
        pool.record_check(ServerId(2), Err("refused".into()));
        assert_eq!(pool.servers()[2].state, ServerState::Down);

        // "a" re-weighted, "b" gone, "c" unchanged, "d" new; "c" moved to the end.
        let (cfg2, s2) = backend(
            r#"[backend]
name = "b"
health = { rise = 1, fall = 1 }
servers = [{ name = "a", addr = "127.0.0.10:80", weight = 5 },
           { name = "d", addr = "127.0.0.11:81" }, { name = "c", addr = "127.0.0.12:80" }]"#,
        );
        let (next, diff) = pool.reconfigure(&cfg1, &cfg2, s2);
        assert_eq!(diff.kept, vec!["c"]);
        assert_eq!(diff.reweighted, vec!["a"]);
        assert_eq!(diff.added, vec!["d"]);
        assert_eq!(diff.removed, vec!["b"]);
        let snap = next.servers();
        let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "d", "c"]);
        assert_eq!(snap[0].active, 1, "the open connection still counts on a");
        assert_eq!(snap[0].total, 1);
        assert_eq!(snap[0].weight, 5);
        assert_eq!(snap[2].state, ServerState::Down, "c keeps its health state");
        assert_eq!(snap[2].checks_failed, 1);
        assert_eq!(snap[1].total, 0);
        // The down server is not selected by the new pool; "d" and "a" are.
        for _ in 0..12 {
            let l = next.select(&client, &[]).unwrap();
            assert_ne!(l.name(), "c");
        }
        // The old lease finishes on the old pool and frees the shared slot.
        drop(held);
        assert_eq!(next.servers()[0].active, 0);
    }

    #[test]
    fn admin_changes_give_way_to_the_config_and_address_change_is_new() {
        let (cfg1, s1) = backend(V1);
        let pool = Pool::new(&cfg1, s1);
        // Runtime-only admin changes: a weight and a drain. A reload restores the config.
        pool.set_admin("a", Some(AdminMode::Drain), Some(7))
            .unwrap();
        assert_eq!(pool.servers()[0].weight, 7);
        let moved = V1.replace("127.0.0.11:80", "127.0.0.11:90");
        let (cfg2, s2) = backend(&moved);
        let (next, diff) = pool.reconfigure(&cfg1, &cfg2, s2);
        assert_eq!(next.servers()[0].weight, 1);
        assert_eq!(next.servers()[0].admin, AdminMode::Ready);
        assert_eq!(diff.kept, vec!["a", "c"]);
        assert_eq!(diff.added, vec!["b"]);
        assert_eq!(diff.removed, vec!["b"]);
        assert!(!diff.is_unchanged());
        let (_, same) = next.reconfigure(&cfg2, &cfg2, backend(&moved).1);
        assert!(same.is_unchanged());
    }

    #[test]
    fn update_in_place_keeps_state_starts_new_servers_down_and_drains_removed() {
        let (cfg1, s1) = backend(V1);
        let pool = Pool::new(&cfg1, s1);
        let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
        let held = pool.select(&client, &[ServerId(0), ServerId(2)]).unwrap();
        assert_eq!(held.name(), "b");
        pool.set_admin("a", Some(AdminMode::Drain), Some(7))
            .unwrap();
        // "b" vanishes, "d" appears (from DNS: starts down), "a" and "c" stay.
        let (cfg2, s2) = backend(&V1.replace(
            r#"{ name = "b", addr = "127.0.0.11:80" }"#,
            r#"{ name = "d", addr = "127.0.0.13:80" }"#,
        ));
        let start_down: HashSet<String> = ["d".to_string()].into();
        let diff = pool.update(&cfg1, &cfg2, s2, &start_down);
        assert_eq!(diff.kept, vec!["a", "c"]);
        assert_eq!(diff.added, vec!["d"]);
        assert_eq!(diff.removed, vec!["b"]);
        let snap = pool.servers();
        let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "d", "c"], "the same pool serves the new set");
        assert_eq!(
            snap[1].state,
            ServerState::Down,
            "new from DNS: down until checked"
        );
        assert_eq!(
            snap[0].admin,
            AdminMode::Drain,
            "no reload: admin state stays"
        );
        assert_eq!(snap[0].weight, 7);
        // Only "c" is selectable: "a" drained, "d" down, "b" gone.
        for _ in 0..6 {
            assert_eq!(pool.select(&client, &[]).unwrap().name(), "c");
        }
        // The lease on the removed server still works and frees its slot.
        assert_eq!(held.name(), "b");
        drop(held);
        // A passing check (by name) brings "d" in.
        pool.record_check_named(ServerId(1), "d", Ok(std::time::Duration::from_millis(1)));
        assert!((0..12).any(|_| pool.select(&client, &[]).unwrap().name() == "d"));
        // A check result for a server no longer in the pool goes nowhere.
        pool.record_check_named(ServerId(1), "b", Err("refused".into()));
        assert_eq!(pool.servers()[1].state, ServerState::Up);
    }

    #[test]
    fn a_failure_seen_through_the_old_pool_takes_the_server_out_of_the_new_one() {
        let (cfg1, s1) = backend(V1);
        let pool = Pool::new(&cfg1, s1);
        let (next, _) = pool.reconfigure(&cfg1, &cfg1, backend(V1).1);
        let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
        // A connection still on the old pool fails to reach "b" (fall = 1).
        let lease = pool.select(&client, &[ServerId(0), ServerId(2)]).unwrap();
        assert_eq!(lease.name(), "b");
        lease.connect_failed("connection refused");
        drop(lease);
        for _ in 0..12 {
            assert_ne!(next.select(&client, &[]).unwrap().name(), "b");
        }
        // And back: a check through the new pool brings it back in the old one too.
        next.record_check(ServerId(1), Ok(std::time::Duration::from_millis(1)));
        assert!((0..12).any(|_| pool.select(&client, &[]).unwrap().name() == "b"));
    }
}
