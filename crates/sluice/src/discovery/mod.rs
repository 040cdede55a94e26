//! Servers from DNS (issue #7): a server whose `addr` is `host:port` becomes one server per
//! address the name resolves to, named `NAME-IP` (`srv1-10.0.0.7`), and the name is
//! re-resolved every `resolve_interval`. This module resolves, caches and says when an answer
//! changed; updating the affected pools in place is the runtime's (`runtime::dns`).

pub(crate) mod dns;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::balance::ServerAddr;
use crate::spec::{self, Spec};

/// A host name of a backend's server could not be resolved (and no answer is known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend}: {message}")]
pub struct DiscoveryError {
    pub backend: String,
    pub message: String,
}

/// How long one DNS server gets to answer one query.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where host names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolver {
    /// getaddrinfo (/etc/hosts, /etc/resolv.conf), on tokio's blocking pool.
    System,
    /// `[global] resolvers`: these DNS servers, in order.
    Servers(Vec<SocketAddr>),
}

#[derive(Debug, Default)]
struct State {
    /// Last good answer per host name (sorted, deduplicated).
    cache: HashMap<String, Vec<IpAddr>>,
    /// Hosts whose last look-up failed (a failure streak is logged once).
    failing: HashSet<String>,
    /// (host, interval, next due) for every host name of the running configuration.
    watch: Vec<(String, Duration, tokio::time::Instant)>,
}

/// The resolver and the last good answers, shared by the server and its refresh task.
#[derive(Debug)]
pub(crate) struct Discovery {
    resolver: Mutex<Resolver>,
    state: Mutex<State>,
}

/// The host names of a backend's servers.
fn hosts_of(b: &spec::Backend) -> Vec<(String, u16)> {
    b.servers
        .iter()
        .filter_map(|s| match &s.addr {
            ServerAddr::Host { host, port } => Some((host.clone(), *port)),
            _ => None,
        })
        .collect()
}

fn resolver_of(cfg: &Spec) -> Resolver {
    if cfg.global.resolvers.is_empty() {
        Resolver::System
    } else {
        Resolver::Servers(cfg.global.resolvers.clone())
    }
}

/// A backend's spec with host names expanded (one server per address), and the names of the
/// servers that came from a host name.
pub(crate) type Expanded = (spec::Backend, HashSet<String>);

/// A server expanded from `host:port` gets this name: the configured (or positional) name,
/// a dash and the address.
pub(crate) fn expanded_name(base: &str, ip: IpAddr) -> String {
    format!("{base}-{ip}")
}

impl Discovery {
    pub(crate) fn new(cfg: &Spec) -> Discovery {
        Discovery {
            resolver: Mutex::new(resolver_of(cfg)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn look_up(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let resolver = self
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut found = match resolver {
            Resolver::System => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| e.to_string())?
                .map(|a| a.ip())
                .collect::<Vec<_>>(),
            Resolver::Servers(s) => dns::lookup(&s, host, QUERY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?,
        };
        found.sort();
        found.dedup();
        if found.is_empty() {
            return Err("the resolver returned no addresses".into());
        }
        Ok(found)
    }

    /// Before `cfg` goes into effect (start, reload): takes its resolvers and resolution
    /// intervals, and resolves every host name not resolved yet. Fails (naming the server)
    /// when a host name has no address and none is known from before.
    pub(crate) async fn prime(&self, cfg: &Spec) -> Result<(), DiscoveryError> {
        *self.resolver.lock().unwrap_or_else(|e| e.into_inner()) = resolver_of(cfg);
        let now = tokio::time::Instant::now();
        let mut watch: Vec<(String, Duration, tokio::time::Instant)> = Vec::new();
        for b in &cfg.backends {
            let every = b.resolve_interval;
            for (host, port) in hosts_of(b) {
                let known = self.state().cache.contains_key(&host);
                if !known {
                    let ips = self.look_up(&host).await.map_err(|e| DiscoveryError {
                        backend: b.name.clone(),
                        message: format!("cannot resolve {host}:{port}: {e}"),
                    })?;
                    self.state().cache.insert(host.clone(), ips);
                }
                match watch.iter_mut().find(|(h, _, _)| *h == host) {
                    Some(w) => w.1 = w.1.min(every),
                    None => watch.push((host, every, now + every)),
                }
            }
        }
        let mut st = self.state();
        // Keep the schedule of hosts that stay; forget hosts no longer configured.
        for w in &mut watch {
            if let Some(old) = st.watch.iter().find(|o| o.0 == w.0) {
                w.2 = old.2.min(now + w.1);
            }
        }
        st.cache.retain(|h, _| watch.iter().any(|w| &w.0 == h));
        st.watch = watch;
        Ok(())
    }

    /// `b` with host-name servers expanded from the cache (call `prime` first) into one
    /// `Inet` server per address, named `NAME-IP`: the spec to build the pool from. Also the
    /// names of servers that came from a host name.
    pub(crate) fn expand(&self, b: &spec::Backend) -> Result<Expanded, String> {
        let st = self.state();
        let mut out = Vec::with_capacity(b.servers.len());
        let mut from_dns = HashSet::new();
        for s in &b.servers {
            match &s.addr {
                ServerAddr::Host { host, port } => {
                    let ips = st
                        .cache
                        .get(host)
                        .ok_or_else(|| format!("{} has not been resolved", s.addr))?;
                    for ip in ips {
                        let name = expanded_name(&s.name, *ip);
                        from_dns.insert(name.clone());
                        out.push(spec::Server {
                            name,
                            addr: ServerAddr::Inet(SocketAddr::new(*ip, *port)),
                            ..s.clone()
                        });
                    }
                }
                _ => out.push(s.clone()),
            }
        }
        let mut expanded = b.clone();
        expanded.servers = out;
        Ok((expanded, from_dns))
    }

    /// Stores `ips` as the answer for `host`, as a look-up would (tests of the callers).
    #[cfg(test)]
    pub(crate) fn set_answer(&self, host: &str, ips: Vec<IpAddr>) {
        self.state().cache.insert(host.to_string(), ips);
    }

    /// Re-resolves the host names that are due. Returns true when an answer changed (a
    /// failure keeps the last good answer, logged once per failure streak).
    pub(crate) async fn refresh_due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let due: Vec<(String, Duration)> = self
            .state()
            .watch
            .iter()
            .filter(|w| w.2 <= now)
            .map(|w| (w.0.clone(), w.1))
            .collect();
        let mut changed = false;
        for (host, every) in due {
            let got = self.look_up(&host).await;
            let mut st = self.state();
            if let Some(w) = st.watch.iter_mut().find(|w| w.0 == host) {
                w.2 = tokio::time::Instant::now() + every;
            }
            match got {
                Ok(ips) => {
                    if st.failing.remove(&host) {
                        tracing::info!("dns: {host} resolves again: {ips:?}");
                    }
                    if st.cache.get(&host) != Some(&ips) {
                        tracing::info!(
                            "dns: {host} now resolves to {ips:?} (was {:?})",
                            st.cache.get(&host).cloned().unwrap_or_default()
                        );
                        st.cache.insert(host, ips);
                        changed = true;
                    }
                }
                Err(e) => {
                    if st.failing.insert(host.clone()) {
                        tracing::warn!(
                            "dns: cannot resolve {host}: {e}; keeping the last good addresses {:?}",
                            st.cache.get(&host).cloned().unwrap_or_default()
                        );
                    }
                }
            }
        }
        changed
    }

    /// When the next host name is due (None when no server has a host name).
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.state().watch.iter().map(|w| w.2).min()
    }
}

/// Re-resolves due host names until `stop`; sends on `changed` when an answer changed (the
/// runtime then updates the affected pools). Wakes at least once a second to pick up a
/// schedule changed by a reload.
pub(crate) async fn refresh_loop(
    discovery: std::sync::Arc<Discovery>,
    changed: mpsc::Sender<()>,
    stop: CancellationToken,
) {
    const MAX_NAP: Duration = Duration::from_secs(1);
    loop {
        let now = tokio::time::Instant::now();
        let wake = discovery
            .next_due()
            .map_or(now + MAX_NAP, |d| d.min(now + MAX_NAP));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let refresh = discovery.refresh_due();
        let any = tokio::select! {
            _ = stop.cancelled() => return,
            any = refresh => any,
        };
        if any {
            let _ = changed.try_send(());
        }
    }
}

#[cfg(test)]
mod tests;
