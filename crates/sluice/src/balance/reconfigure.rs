//! Changing a pool's servers, sharing the live entry (health, counters, active connections)
//! of each server whose name and address stay: `reconfigure` builds a successor pool for a
//! reload (admin-API changes give way to the config), `update` replaces the set in place for
//! DNS answers (pingora's `LoadBalancer::update`). When to change is the runtime's call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::server::ServerEntry;
use super::Pool;
use crate::spec;

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
    /// The pool serving `cfg` after a reload; `self` was built from `prev`. Host names in
    /// `cfg` are already expanded, as for [`Pool::new`].
    ///
    /// A server whose name and address are unchanged (and whose `backup` and
    /// `max_connections` are too) shares its live entry with this pool, so health state,
    /// counters and active connections carry over. Runtime changes made through the admin API
    /// do not survive a reload (as the API's answer says): the configured weight applies and
    /// the server is back to ready. `self` keeps working for the leases already taken on it.
    pub fn reconfigure(&self, prev: &spec::Backend, cfg: &spec::Backend) -> (Arc<Pool>, PoolDiff) {
        self.reconfigure_starting_down(prev, cfg, &HashSet::new())
    }

    /// [`Pool::reconfigure`], except that added servers named in `start_down` start down
    /// when `cfg` has health checks: they need `rise` passing checks before use (servers
    /// appearing in DNS answers).
    pub fn reconfigure_starting_down(
        &self,
        prev: &spec::Backend,
        cfg: &spec::Backend,
        start_down: &HashSet<String>,
    ) -> (Arc<Pool>, PoolDiff) {
        let (entries, diff) = self.carry(prev, cfg, start_down, true);
        (Pool::from_entries(cfg, entries), diff)
    }

    /// Replaces this pool's servers in place with those of `cfg` (the same backend; `prev`
    /// and `cfg` list the servers before and after, e.g. a host name that now resolves to
    /// other addresses). Kept servers keep their entry, admin-API state and weight included;
    /// added ones named in `start_down` start down when `cfg` has health checks; removed ones
    /// get no new connections while their leases finish. Whoever holds this pool sees the
    /// new set from the next selection.
    pub fn update(
        &self,
        prev: &spec::Backend,
        cfg: &spec::Backend,
        start_down: &HashSet<String>,
    ) -> PoolDiff {
        let (entries, diff) = self.carry(prev, cfg, start_down, false);
        self.replace_members(entries);
        diff
    }

    /// The entries of a pool serving `cfg`: this pool's entry for each server whose name,
    /// address, `backup` and `max_connections` stay (its configured weight re-applied and
    /// admin state reset when `reset` is set), a new one for every other server.
    fn carry(
        &self,
        prev: &spec::Backend,
        cfg: &spec::Backend,
        start_down: &HashSet<String>,
        reset: bool,
    ) -> (Vec<Arc<ServerEntry>>, PoolDiff) {
        let members = self.members();
        let old: HashMap<&str, &Arc<ServerEntry>> =
            members.iter().map(|e| (e.name.as_str(), e)).collect();
        let prev_weight: HashMap<&str, u32> = prev
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.weight))
            .collect();
        let mut diff = PoolDiff::default();
        let mut entries = Vec::with_capacity(cfg.servers.len());
        for s in &cfg.servers {
            let name = s.name.clone();
            let reuse = old.get(name.as_str()).filter(|e| {
                e.addr == s.addr && e.backup == s.backup && e.max_connections == s.max_connections
            });
            match reuse {
                Some(e) => {
                    if reset {
                        e.weight.store(s.weight, Ordering::Relaxed);
                    }
                    e.set_slow_start(s.slow_start);
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
                    let entry = ServerEntry::new(
                        name,
                        s.addr.clone(),
                        s.weight,
                        s.backup,
                        s.max_connections,
                    );
                    entry.set_slow_start(s.slow_start);
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

#[cfg(test)]
#[path = "reconfigure_tests.rs"]
mod tests;
