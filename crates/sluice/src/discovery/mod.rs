//! Servers from DNS (issues #7, #17): a server whose `addr` is `host:port` becomes one server
//! per address the name resolves to, named `NAME-IP` (`srv1-10.0.0.7`); a server with `srv`
//! becomes one server per SRV record, `NAME-TARGET-PORT`. Names are re-resolved every
//! `resolve_interval`, sooner when the answer's TTL is shorter (never under 1s). This module
//! resolves (`resolve`, through hickory-resolver), caches and says when an answer changed;
//! updating the affected pools in place is the runtime's (`runtime::dns`).

mod resolve;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::balance::ServerAddr;
use crate::spec::{self, Spec};
use resolve::SrvTarget;

/// A host name of a backend's server could not be resolved (and no answer is known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend}: {message}")]
pub struct DiscoveryError {
    pub backend: String,
    pub message: String,
}

/// An SRV record's weight is capped at this (the admin API's and HAProxy's range).
pub(crate) const MAX_SRV_WEIGHT: u32 = 256;

/// The system's resolver configuration is read again when older than this.
const SYSTEM_CONF_REREAD: Duration = Duration::from_secs(1);

/// A record TTL shortens the re-resolve interval down to this, never below.
pub(crate) const TTL_FLOOR: Duration = Duration::from_secs(1);

/// What is looked up: a host name (A/AAAA) or an SRV name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Host(String),
    Srv(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Host(h) => f.write_str(h),
            Key::Srv(n) => write!(f, "SRV {n}"),
        }
    }
}

/// The last good answer for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Sorted, deduplicated.
    Ips(Vec<IpAddr>),
    /// Sorted by (priority, target, port).
    Srv(Vec<SrvTarget>),
}

/// When a key is looked up next.
#[derive(Debug)]
struct Watch {
    key: Key,
    /// The shortest `resolve_interval` of the backends using it.
    every: Duration,
    /// The last answer's TTL.
    ttl: Option<Duration>,
    due: tokio::time::Instant,
}

/// The interval until the next look-up: `resolve_interval`, or the answer's TTL when that is
/// shorter, but at least `TTL_FLOOR` (a TTL of 0, as Consul's, must not spin).
pub(crate) fn next_interval(every: Duration, ttl: Option<Duration>) -> Duration {
    match ttl {
        Some(t) => every.min(t.max(TTL_FLOOR)),
        None => every,
    }
}

#[derive(Debug, Default)]
struct State {
    /// Last good answer per key, with its TTL.
    cache: HashMap<Key, (Answer, Option<Duration>)>,
    /// Keys whose last look-up failed (a failure streak is logged once).
    failing: HashSet<Key>,
    /// Every key of the running configuration.
    watch: Vec<Watch>,
}

/// A resolver and when it was built.
type Built = (TokioResolver, std::time::Instant);

/// The resolver and the last good answers, shared by the server and its refresh task.
pub(crate) struct Discovery {
    /// `[global] resolvers` (empty: the system's) and the resolver built for them (lazily,
    /// on the runtime that looks up) with when it was built.
    resolver: Mutex<(Vec<SocketAddr>, Option<Built>)>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What a backend's servers look up.
fn keys_of(b: &spec::Backend) -> Vec<(Key, String)> {
    b.servers
        .iter()
        .filter_map(|s| match &s.addr {
            ServerAddr::Host { host, .. } => Some((Key::Host(host.clone()), s.addr.to_string())),
            ServerAddr::Srv { name } => Some((Key::Srv(name.clone()), s.addr.to_string())),
            _ => None,
        })
        .collect()
}

/// A backend's spec with DNS servers expanded, and the names of the servers that came from
/// DNS.
pub(crate) type Expanded = (spec::Backend, HashSet<String>);

/// A server expanded from `host:port` gets this name: the configured (or positional) name,
/// a dash and the address.
pub(crate) fn expanded_name(base: &str, ip: IpAddr) -> String {
    format!("{base}-{ip}")
}

/// A server expanded from an SRV record: `NAME-TARGET-PORT` (stable while the record is).
pub(crate) fn srv_name(base: &str, t: &SrvTarget) -> String {
    format!("{base}-{}-{}", t.target, t.port)
}

impl Discovery {
    pub(crate) fn new(cfg: &Spec) -> Discovery {
        Discovery {
            resolver: Mutex::new((cfg.global.resolvers.clone(), None)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resolver(&self) -> Result<TokioResolver, String> {
        let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        // The system's resolver is rebuilt (at most once a second) so that edits of
        // /etc/resolv.conf and /etc/hosts apply, as they do for getaddrinfo.
        let stale = r.0.is_empty()
            && r.1
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= SYSTEM_CONF_REREAD);
        if r.1.is_none() || stale {
            r.1 = Some((resolve::build(&r.0)?, std::time::Instant::now()));
        }
        Ok(r.1.as_ref().expect("built above").0.clone())
    }

    async fn look_up(&self, key: &Key) -> Result<(Answer, Option<Duration>), String> {
        let r = self.resolver()?;
        match key {
            Key::Host(h) => {
                let (ips, ttl) = resolve::ips(&r, h).await?;
                Ok((Answer::Ips(ips), ttl))
            }
            Key::Srv(n) => {
                let (targets, ttl, skipped) = resolve::srv(&r, n).await?;
                if !skipped.is_empty() {
                    tracing::warn!(
                        "dns: SRV {n}: targets without an address left out: {}",
                        skipped.join("; ")
                    );
                }
                Ok((Answer::Srv(targets), ttl))
            }
        }
    }

    /// Before `cfg` goes into effect (start, reload): takes its resolvers and resolution
    /// intervals, and resolves every name not resolved yet. Fails (naming the server) when a
    /// name has no answer and none is known from before.
    pub(crate) async fn prime(&self, cfg: &Spec) -> Result<(), DiscoveryError> {
        {
            let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
            if r.0 != cfg.global.resolvers {
                *r = (cfg.global.resolvers.clone(), None);
            }
        }
        let now = tokio::time::Instant::now();
        let mut watch: Vec<Watch> = Vec::new();
        for b in &cfg.backends {
            let every = b.resolve_interval;
            for (key, shown) in keys_of(b) {
                let known = self.state().cache.get(&key).map(|c| c.1);
                let ttl = match known {
                    Some(ttl) => ttl,
                    None => {
                        let (answer, ttl) =
                            self.look_up(&key).await.map_err(|e| DiscoveryError {
                                backend: b.name.clone(),
                                message: format!("cannot resolve {shown}: {e}"),
                            })?;
                        self.state().cache.insert(key.clone(), (answer, ttl));
                        ttl
                    }
                };
                match watch.iter_mut().find(|w| w.key == key) {
                    Some(w) => w.every = w.every.min(every),
                    None => watch.push(Watch {
                        key,
                        every,
                        ttl,
                        due: now,
                    }),
                }
            }
        }
        let mut st = self.state();
        for w in &mut watch {
            w.due = now + next_interval(w.every, w.ttl);
            // Keep the schedule of keys that stay; forget keys no longer configured.
            if let Some(old) = st.watch.iter().find(|o| o.key == w.key) {
                w.due = w.due.min(old.due);
            }
        }
        st.cache.retain(|k, _| watch.iter().any(|w| &w.key == k));
        st.watch = watch;
        Ok(())
    }

    /// `b` with DNS servers expanded from the cache (call `prime` first): a host name into
    /// one `Inet` server per address (`NAME-IP`), an SRV name into one per record
    /// (`NAME-TARGET-PORT`, the record's weight within 1..=256; records of a priority other
    /// than the lowest are backups). Also the names of the servers that came from DNS.
    pub(crate) fn expand(&self, b: &spec::Backend) -> Result<Expanded, String> {
        let st = self.state();
        let mut out = Vec::with_capacity(b.servers.len());
        let mut from_dns = HashSet::new();
        for s in &b.servers {
            let key = match &s.addr {
                ServerAddr::Host { host, .. } => Key::Host(host.clone()),
                ServerAddr::Srv { name } => Key::Srv(name.clone()),
                _ => {
                    out.push(s.clone());
                    continue;
                }
            };
            let answer = &st
                .cache
                .get(&key)
                .ok_or_else(|| format!("{} has not been resolved", s.addr))?
                .0;
            match (answer, &s.addr) {
                (Answer::Ips(ips), ServerAddr::Host { port, .. }) => {
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
                (Answer::Srv(targets), _) => {
                    let best = targets.iter().map(|t| t.priority).min();
                    for t in targets {
                        let name = srv_name(&s.name, t);
                        from_dns.insert(name.clone());
                        out.push(spec::Server {
                            name,
                            addr: ServerAddr::Inet(SocketAddr::new(t.ip, t.port)),
                            weight: u32::from(t.weight).clamp(1, MAX_SRV_WEIGHT),
                            backup: s.backup || Some(t.priority) != best,
                            ..s.clone()
                        });
                    }
                }
                _ => return Err(format!("{}: unexpected answer", s.addr)),
            }
        }
        let mut expanded = b.clone();
        expanded.servers = out;
        Ok((expanded, from_dns))
    }

    /// Stores `ips` as the answer for `host`, as a look-up would (tests of the callers).
    #[cfg(test)]
    pub(crate) fn set_answer(&self, host: &str, ips: Vec<IpAddr>) {
        self.state()
            .cache
            .insert(Key::Host(host.to_string()), (Answer::Ips(ips), None));
    }

    /// Stores `targets` as the answer for SRV `name` (tests).
    #[cfg(test)]
    fn set_srv(&self, name: &str, targets: Vec<SrvTarget>) {
        self.state()
            .cache
            .insert(Key::Srv(name.to_string()), (Answer::Srv(targets), None));
    }

    /// Re-resolves the names that are due. Returns true when an answer changed (a failure
    /// keeps the last good answer, logged once per failure streak).
    pub(crate) async fn refresh_due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let due: Vec<Key> = self
            .state()
            .watch
            .iter()
            .filter(|w| w.due <= now)
            .map(|w| w.key.clone())
            .collect();
        let mut changed = false;
        for key in due {
            let got = self.look_up(&key).await;
            let mut st = self.state();
            let ttl = got.as_ref().ok().and_then(|g| g.1);
            if let Some(w) = st.watch.iter_mut().find(|w| w.key == key) {
                if got.is_ok() {
                    w.ttl = ttl;
                }
                w.due = tokio::time::Instant::now() + next_interval(w.every, w.ttl);
            }
            match got {
                Ok((answer, ttl)) => {
                    if st.failing.remove(&key) {
                        tracing::info!("dns: {key} resolves again: {answer:?}");
                    }
                    let old = st.cache.get(&key).map(|c| c.0.clone());
                    if old.as_ref() != Some(&answer) {
                        tracing::info!("dns: {key} now resolves to {answer:?} (was {old:?})");
                        changed = true;
                    }
                    st.cache.insert(key, (answer, ttl));
                }
                Err(e) => {
                    if st.failing.insert(key.clone()) {
                        tracing::warn!(
                            "dns: cannot resolve {key}: {e}; keeping the last good answer {:?}",
                            st.cache.get(&key).map(|c| &c.0)
                        );
                    }
                }
            }
        }
        changed
    }

    /// When the next name is due (None when no server has a DNS name).
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.state().watch.iter().map(|w| w.due).min()
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
