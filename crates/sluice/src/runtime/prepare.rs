//! Turning a `Config` into running pieces, at start and on every reload: backends (pools,
//! health tokens), frontends (`frontends`) and listeners keyed by bind address. `prepare`
//! does every fallible step (resolve, TLS load, log open, bind) before anything changes;
//! `Prepared::commit` then swaps. Accepting is `server`'s; DNS changes are `dns`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::frontends::prepare_frontends;
use super::handover::adopt_bind;
use super::running::{BackendRt, Ctx, FrontendRt, ListenerRt, Running, TlsRt};
use super::summary::{BackendChange, ReloadSummary};
use super::BuildError;
use crate::balance::{Pool, ServerAddr};
use crate::l4::frontend::L4Backend;
use crate::net;
use crate::server::listen::Listener;
use crate::server::{frontend, Frontend, FrontendSlot};
use crate::spec::{self, Spec};
use crate::tls;

/// A new configuration, fully built and bound, not yet in effect.
pub(crate) struct Prepared {
    next: Running,
    /// Newly bound sockets, for accept loops.
    new_listeners: Vec<Listener>,
    /// Old listeners kept, with the frontend each now serves.
    kept: Vec<(FrontendSlot, Arc<dyn Frontend>)>,
    removed_listeners: Vec<ListenerRt>,
    changes: Changes,
}

/// What `commit` starts and stops, and the summary, collected while preparing.
#[derive(Default)]
pub(super) struct Changes {
    pub summary: ReloadSummary,
    /// Backends whose health checks start at commit.
    pub start_checks: Vec<String>,
    /// TLS edges whose watcher starts at commit.
    pub start_watchers: Vec<TlsRt>,
    /// Tokens cancelled at commit: replaced or removed health checks and watchers.
    pub stop_tokens: Vec<CancellationToken>,
}

pub(super) fn backend_err(b: &spec::Backend, message: impl Into<String>) -> BuildError {
    BuildError::Backend {
        backend: b.name.clone(),
        message: message.into(),
    }
}

pub(super) fn frontend_err(f: &spec::Frontend, message: impl Into<String>) -> BuildError {
    BuildError::Frontend {
        frontend: f.name.clone(),
        message: message.into(),
    }
}

/// Builds and binds `cfg` next to `prev` (empty at start), reusing what did not change.
/// Nothing running is touched, except that TLS edges kept from `prev` re-read their files
/// (all or nothing per edge, as SIGHUP always did). On error, whatever was bound is dropped.
pub(crate) fn prepare(cfg: &Spec, prev: &Running, ctx: &Ctx<'_>) -> Result<Prepared, BuildError> {
    let mut changes = Changes::default();
    let backends = prepare_backends(cfg, prev, ctx, &mut changes)?;
    let frontends = prepare_frontends(cfg, prev, &backends, ctx, &mut changes)?;
    let bound = prepare_listeners(cfg, prev, &frontends, ctx, &mut changes.summary)?;
    Ok(Prepared {
        next: Running {
            cfg: cfg.clone(),
            backends,
            frontends,
            listeners: bound.listeners,
        },
        new_listeners: bound.new_listeners,
        kept: bound.kept,
        removed_listeners: bound.removed,
        changes,
    })
}

/// Backends: unchanged ones keep pool, health task and all; changed ones get a successor
/// pool sharing the kept servers' state; removed ones stop their checks at commit.
fn prepare_backends(
    cfg: &Spec,
    prev: &Running,
    ctx: &Ctx<'_>,
    ch: &mut Changes,
) -> Result<HashMap<String, BackendRt>, BuildError> {
    let starting = prev.backends.is_empty() && prev.listeners.is_empty();
    let mut backends = HashMap::new();
    for b in &cfg.backends {
        let rt = prepare_backend(b, prev.backends.get(&b.name), starting, ctx, ch)?;
        backends.insert(b.name.clone(), rt);
    }
    for (name, old) in &prev.backends {
        if !backends.contains_key(name) {
            ch.stop_tokens.push(old.checks.clone());
            ch.summary
                .backends
                .push((name.clone(), BackendChange::Removed));
        }
    }
    Ok(backends)
}

/// One backend of the new configuration; `old` is its running predecessor, if any.
fn prepare_backend(
    b: &spec::Backend,
    old: Option<&BackendRt>,
    starting: bool,
    ctx: &Ctx<'_>,
    ch: &mut Changes,
) -> Result<BackendRt, BuildError> {
    let (expanded, from_dns) = ctx.discovery.expand(b).map_err(|e| backend_err(b, e))?;
    let resolved: Vec<ServerAddr> = expanded.servers.iter().map(|s| s.addr.clone()).collect();
    if let Some(old) = old.filter(|o| o.cfg == *b && o.resolved == resolved) {
        return Ok(BackendRt {
            cfg: b.clone(),
            expanded,
            resolved,
            pool: old.pool.clone(),
            l4: old.l4.clone(),
            checks: old.checks.clone(),
        });
    }
    let pool = match old {
        Some(old) => {
            // Addresses that appear in DNS wait for a passing check before use.
            let (pool, diff) =
                old.pool
                    .reconfigure_starting_down(&old.expanded, &expanded, &from_dns);
            ch.stop_tokens.push(old.checks.clone());
            ch.summary
                .backends
                .push((b.name.clone(), BackendChange::Changed(diff)));
            pool
        }
        None => {
            if !starting {
                ch.summary
                    .backends
                    .push((b.name.clone(), BackendChange::Added));
            }
            Pool::new(&expanded)
        }
    };
    let l4 = Arc::new(L4Backend::new(&expanded, pool.clone()));
    ch.start_checks.push(b.name.clone());
    Ok(BackendRt {
        cfg: b.clone(),
        expanded,
        resolved,
        pool,
        l4,
        checks: ctx.shutdown.stop_background.child_token(),
    })
}

/// The listeners of a new configuration.
#[derive(Default)]
struct Bound {
    listeners: Vec<ListenerRt>,
    new_listeners: Vec<Listener>,
    kept: Vec<(FrontendSlot, Arc<dyn Frontend>)>,
    removed: Vec<ListenerRt>,
}

/// Listeners, keyed by the configured bind address: kept ones keep their socket (and get
/// their frontend's new version at commit), new ones are bound now, the rest are removed.
fn prepare_listeners(
    cfg: &Spec,
    prev: &Running,
    frontends: &HashMap<String, FrontendRt>,
    ctx: &Ctx<'_>,
    summary: &mut ReloadSummary,
) -> Result<Bound, BuildError> {
    probe_new_binds(cfg, prev, ctx)?;
    let mut unmatched: Vec<Option<&ListenerRt>> = prev.listeners.iter().map(Some).collect();
    let mut bound = Bound::default();
    for f in &cfg.frontends {
        let serve = &frontends[&f.name].serve;
        for &bind in &f.bind {
            let found = unmatched
                .iter_mut()
                .find(|l| l.is_some_and(|l| l.bind == bind))
                .and_then(Option::take);
            match found {
                Some(old) => {
                    bound.kept.push((old.slot.clone(), serve.clone()));
                    bound.listeners.push(ListenerRt {
                        bind,
                        frontend: f.name.clone(),
                        ..old.clone()
                    });
                    summary.listeners_kept.push(old.addr);
                }
                None => {
                    let l = match adopt_bind(f, bind, serve, ctx, &mut bound.new_listeners) {
                        Some(adopted) => adopted?,
                        None => bind_new(f, bind, serve, ctx, &mut bound.new_listeners)?,
                    };
                    summary.listeners_added.push((f.name.clone(), l.addr));
                    bound.listeners.push(l);
                }
            }
        }
    }
    bound.removed = prev
        .listeners
        .iter()
        .zip(&unmatched)
        .filter(|(_, u)| u.is_some())
        .map(|(l, _)| l.clone())
        .collect();
    summary.listeners_removed = bound.removed.iter().map(|l| l.addr).collect();
    Ok(bound)
}

/// Refuses the configuration when another process listens on one of its new binds (nginx's
/// "Address already in use"), before anything is bound: SO_REUSEPORT would otherwise let
/// the group share the port with a second sluice or an HAProxy. Skipped for port 0 and for
/// binds that overlap a socket this process already listens on (a reload keeps those, and
/// the probe cannot tell their holder from a stranger) or was handed by `sluice upgrade`.
fn probe_new_binds(cfg: &Spec, prev: &Running, ctx: &Ctx<'_>) -> Result<(), BuildError> {
    for f in &cfg.frontends {
        for &bind in &f.bind {
            let ours = prev.listeners.iter().any(|l| net::overlaps(l.addr, bind))
                || ctx.inherited.covers(bind);
            if bind.port() == 0 || ours {
                continue;
            }
            net::probe_unheld(bind).map_err(|source| BuildError::Bind {
                frontend: f.name.clone(),
                addr: bind.to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Binds the socket group of `bind` for frontend `f`, adding one [`Listener`] per socket
/// to `out`.
fn bind_new(
    f: &spec::Frontend,
    bind: SocketAddr,
    serve: &Arc<dyn Frontend>,
    ctx: &Ctx<'_>,
    out: &mut Vec<Listener>,
) -> Result<ListenerRt, BuildError> {
    let err = |source| BuildError::Bind {
        frontend: f.name.clone(),
        addr: bind.to_string(),
        source,
    };
    let group = net::bind_group(bind, ctx.sockets_per_bind).map_err(err)?;
    let addr = group[0].local_addr().unwrap_or(bind);
    listeners_of(f, bind, addr, group, serve, ctx, out).map_err(err)
}

/// The listeners of one bind's socket group (bound now or handed over by `sluice
/// upgrade`): one [`Listener`] per socket into `out`, and the bookkeeping entry, which
/// keeps a duplicate of each socket to hand to a successor process.
pub(super) fn listeners_of(
    f: &spec::Frontend,
    bind: SocketAddr,
    addr: SocketAddr,
    group: Vec<std::net::TcpListener>,
    serve: &Arc<dyn Frontend>,
    ctx: &Ctx<'_>,
    out: &mut Vec<Listener>,
) -> std::io::Result<ListenerRt> {
    let sockets = group
        .iter()
        .map(|s| Ok(std::os::fd::OwnedFd::from(s.try_clone()?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let slot = frontend::slot(serve.clone());
    let remove = ctx.shutdown.stop_accepting.child_token();
    for (shard, socket) in group.into_iter().enumerate() {
        out.push(Listener {
            kind: slot.clone(),
            listener: socket,
            addr,
            shard,
            remove: remove.clone(),
        });
    }
    Ok(ListenerRt {
        bind,
        addr,
        frontend: f.name.clone(),
        slot,
        remove,
        sockets: Arc::new(sockets),
    })
}

impl Prepared {
    /// Puts the new configuration in effect and returns it with the sockets that need an
    /// accept loop: kept listeners serve their new frontend from the next accept, removed
    /// ones drain and close, changed backends' health checks restart, replaced TLS
    /// watchers stop. Connections already open keep the frontend they started with.
    pub(crate) fn commit(self) -> (Running, Vec<Listener>, ReloadSummary) {
        for (slot, serve) in self.kept {
            slot.store(Arc::new(serve));
        }
        for l in &self.removed_listeners {
            l.remove.cancel();
        }
        let ch = self.changes;
        for t in &ch.stop_tokens {
            t.cancel();
        }
        for name in &ch.start_checks {
            if let Some(b) = self.next.backends.get(name) {
                let _ = crate::health::spawn(b.pool.clone(), &b.expanded, b.checks.clone());
            }
        }
        for t in ch.start_watchers {
            drop(tls::spawn_watcher(
                t.edge,
                crate::edge::TLS_WATCH_EVERY,
                t.watcher,
            ));
        }
        (self.next, self.new_listeners, ch.summary)
    }
}
