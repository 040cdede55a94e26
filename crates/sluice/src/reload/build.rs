//! Turning a `Config` into running pieces, at start and on every reload: backends (pools,
//! health-check tokens), frontends (TCP or HTTP, TLS edges) and listeners keyed by bind
//! address. `prepare` does every fallible step (resolve, TLS load, log open, bind) before
//! anything changes; `Prepared::commit` then swaps. Accept loops are `server::listen`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::summary::{BackendChange, ReloadSummary};
use crate::balance::{Pool, ServerAddr};
use crate::edge::HttpFrontend;
use crate::l4::frontend::{L4Backend, TcpFrontend};
use crate::log::{ConnLog, LogFile, LogFiles};
use crate::proxy::Policy;
use crate::server::listen::{self, FrontendKind, FrontendSlot, Listener};
use crate::server::ServerError;
use crate::spec::{self, AccessLogFormat, Mode, Spec};
use crate::tls::{self, TlsEdge};

/// One running backend.
pub(crate) struct BackendRt {
    pub cfg: spec::Backend,
    /// `cfg` with host-name servers expanded to one named server per address (discovery).
    pub expanded: spec::Backend,
    /// Resolved server addresses, in configuration order.
    pub resolved: Vec<ServerAddr>,
    pub pool: Arc<Pool>,
    pub l4: Arc<L4Backend>,
    /// Stops this backend's health checks (a child of the server's background token).
    pub checks: CancellationToken,
}

/// A frontend's TLS edge and the token of its file watcher.
#[derive(Clone)]
pub(crate) struct TlsRt {
    pub edge: Arc<TlsEdge>,
    pub watcher: CancellationToken,
}

/// One running frontend.
pub(crate) struct FrontendRt {
    pub cfg: spec::Frontend,
    pub kind: FrontendKind,
    pub tls: Option<TlsRt>,
}

/// One listening socket as the reload bookkeeping sees it (the socket is in its task).
pub(crate) struct ListenerRt {
    /// The address as configured (port 0 stays 0): the key reloads match on.
    pub bind: SocketAddr,
    /// The address actually bound.
    pub addr: SocketAddr,
    pub frontend: String,
    pub slot: FrontendSlot,
    pub remove: CancellationToken,
}

/// Everything the running configuration consists of.
#[derive(Default)]
pub(crate) struct Running {
    pub cfg: Spec,
    pub backends: HashMap<String, BackendRt>,
    pub frontends: HashMap<String, FrontendRt>,
    pub listeners: Vec<ListenerRt>,
}

impl Running {
    /// (backend name, pool) in configuration order.
    pub fn pools(&self) -> Vec<(String, Arc<Pool>)> {
        self.cfg
            .backends
            .iter()
            .filter_map(|b| Some((b.name.clone(), self.backends.get(&b.name)?.pool.clone())))
            .collect()
    }

    /// Bound addresses with their frontend, in configuration order.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.frontend.clone(), l.addr))
            .collect()
    }
}

/// Shared server-wide handles the pieces need.
pub(crate) struct Ctx<'a> {
    pub logs: &'a LogFiles,
    pub force: &'a CancellationToken,
    /// Parent of health-check and TLS-watcher tokens.
    pub background: &'a CancellationToken,
    /// Parent of listener removal tokens (the server's stop token).
    pub stop: &'a CancellationToken,
    /// Resolved host names (primed for this configuration).
    pub discovery: &'a crate::discovery::Discovery,
    /// A DNS answer changed, the configuration did not: TLS files are not re-read.
    pub dns_refresh: bool,
    /// SO_REUSEPORT sockets (and accept loops) per new bind: one per worker thread.
    pub sockets_per_bind: usize,
}

/// A new configuration, fully built and bound, not yet in effect.
pub(crate) struct Prepared {
    next: Running,
    /// Newly bound sockets, for accept loops.
    new_listeners: Vec<Listener>,
    /// Old listeners kept, with the frontend each now serves.
    kept: Vec<(FrontendSlot, FrontendKind)>,
    removed_listeners: Vec<ListenerRt>,
    /// Backends whose health checks start at commit.
    start_checks: Vec<String>,
    /// TLS edges whose watcher starts at commit.
    start_watchers: Vec<TlsRt>,
    /// Tokens cancelled at commit: replaced or removed health checks and watchers.
    stop_tokens: Vec<CancellationToken>,
    pub summary: ReloadSummary,
}

fn backend_err(b: &spec::Backend, message: impl Into<String>) -> ServerError {
    ServerError::Backend {
        backend: b.name.clone(),
        message: message.into(),
    }
}

fn frontend_err(f: &spec::Frontend, message: impl Into<String>) -> ServerError {
    ServerError::Frontend {
        frontend: f.name.clone(),
        message: message.into(),
    }
}

/// The servers of `b`, host names expanded to one server per resolved address.
fn resolve_servers(
    b: &spec::Backend,
    ctx: &Ctx<'_>,
) -> Result<crate::discovery::Expanded, ServerError> {
    ctx.discovery.expand(b).map_err(|e| backend_err(b, e))
}

fn open_log(logs: &LogFiles, path: &Option<String>) -> Result<Option<Arc<LogFile>>, ServerError> {
    match path {
        Some(p) => logs
            .open(Path::new(p))
            .map(Some)
            .map_err(|source| ServerError::LogFile {
                path: p.clone(),
                source,
            }),
        None => Ok(None),
    }
}

/// Builds and binds `cfg` next to `prev` (empty at start), reusing what did not change.
/// Nothing running is touched, except that TLS edges kept from `prev` re-read their files
/// (all or nothing per edge, as SIGHUP always did). On error, whatever was bound is dropped.
pub(crate) fn prepare(cfg: &Spec, prev: &Running, ctx: &Ctx<'_>) -> Result<Prepared, ServerError> {
    let mut summary = ReloadSummary::default();
    let mut stop_tokens = Vec::new();
    let mut start_checks = Vec::new();

    // Backends: unchanged ones keep pool, health task and all; changed ones get a successor
    // pool sharing the kept servers' state.
    let mut backends = HashMap::new();
    for b in &cfg.backends {
        let (expanded, from_dns) = resolve_servers(b, ctx)?;
        let resolved: Vec<ServerAddr> = expanded.servers.iter().map(|s| s.addr.clone()).collect();
        let old = prev.backends.get(&b.name);
        if let Some(old) = old.filter(|o| o.cfg == *b && o.resolved == resolved) {
            backends.insert(
                b.name.clone(),
                BackendRt {
                    cfg: b.clone(),
                    expanded,
                    resolved,
                    pool: old.pool.clone(),
                    l4: old.l4.clone(),
                    checks: old.checks.clone(),
                },
            );
            continue;
        }
        let pool = match old {
            Some(old) => {
                // Addresses that appear in DNS wait for a passing check before use.
                let (pool, diff) =
                    old.pool
                        .reconfigure_starting_down(&old.expanded, &expanded, &from_dns);
                stop_tokens.push(old.checks.clone());
                summary
                    .backends
                    .push((b.name.clone(), BackendChange::Changed(diff)));
                pool
            }
            None => {
                if !prev.backends.is_empty() || !prev.listeners.is_empty() {
                    summary
                        .backends
                        .push((b.name.clone(), BackendChange::Added));
                }
                Pool::new(&expanded)
            }
        };
        let l4 = Arc::new(L4Backend::new(&expanded, pool.clone()));
        start_checks.push(b.name.clone());
        backends.insert(
            b.name.clone(),
            BackendRt {
                cfg: b.clone(),
                expanded,
                resolved,
                pool,
                l4,
                checks: ctx.background.child_token(),
            },
        );
    }
    for (name, old) in &prev.backends {
        if !backends.contains_key(name) {
            stop_tokens.push(old.checks.clone());
            summary
                .backends
                .push((name.clone(), BackendChange::Removed));
        }
    }

    // Frontends: rebuilt when their config or their backend changed; a TLS edge is kept
    // (re-reading its files) while its [frontend.tls] section is the same.
    let mut frontends = HashMap::new();
    let mut start_watchers = Vec::new();
    for f in &cfg.frontends {
        let be = backends
            .get(&f.backend)
            .ok_or_else(|| frontend_err(f, format!("unknown backend {:?}", f.backend)))?;
        let old = prev.frontends.get(&f.name);
        let tls = match &f.tls {
            None => None,
            Some(t) => match old.and_then(|o| o.tls.as_ref()) {
                Some(o) if o.edge.config() == t => {
                    if !ctx.dns_refresh {
                        o.edge
                            .reload()
                            .map_err(|e| frontend_err(f, e.to_string()))?;
                        summary.tls_reloaded.push(f.name.clone());
                    }
                    Some(o.clone())
                }
                _ => {
                    let edge = TlsEdge::load(t).map_err(|e| frontend_err(f, e.to_string()))?;
                    let rt = TlsRt {
                        edge,
                        watcher: ctx.background.child_token(),
                    };
                    start_watchers.push(rt.clone());
                    Some(rt)
                }
            },
        };
        // Watchers of edges that are not carried over stop at commit.
        if let Some(o) = old.and_then(|o| o.tls.as_ref()) {
            let kept = tls.as_ref().is_some_and(|n| Arc::ptr_eq(&n.edge, &o.edge));
            if !kept {
                stop_tokens.push(o.watcher.clone());
            }
        }
        let same_backend =
            old.is_some_and(|o| backend_of(&o.kind).is_some_and(|p| Arc::ptr_eq(p, &be.pool)));
        let kind = match old {
            Some(o) if o.cfg == *f && same_backend => o.kind.clone(),
            _ => {
                if old.is_some() {
                    summary.frontends_rebuilt.push(f.name.clone());
                }
                build_kind(f, be, tls.as_ref().map(|t| t.edge.clone()), ctx)?
            }
        };
        frontends.insert(
            f.name.clone(),
            FrontendRt {
                cfg: f.clone(),
                kind,
                tls,
            },
        );
    }
    for (name, old) in &prev.frontends {
        if !frontends.contains_key(name) {
            if let Some(t) = &old.tls {
                stop_tokens.push(t.watcher.clone());
            }
        }
    }

    // Listeners, keyed by the configured bind address: kept ones keep their socket.
    let mut unmatched: Vec<Option<&ListenerRt>> = prev.listeners.iter().map(Some).collect();
    let mut listeners = Vec::new();
    let mut new_listeners = Vec::new();
    let mut kept = Vec::new();
    for f in &cfg.frontends {
        let kind = &frontends[&f.name].kind;
        for &bind in &f.bind {
            let found = unmatched
                .iter_mut()
                .find(|l| l.is_some_and(|l| l.bind == bind))
                .and_then(Option::take);
            if let Some(old) = found {
                kept.push((old.slot.clone(), kind.clone()));
                listeners.push(ListenerRt {
                    bind,
                    addr: old.addr,
                    frontend: f.name.clone(),
                    slot: old.slot.clone(),
                    remove: old.remove.clone(),
                });
                summary.listeners_kept.push(old.addr);
                continue;
            }
            let group = listen::bind_group(bind, ctx.sockets_per_bind).map_err(|source| {
                ServerError::Bind {
                    frontend: f.name.clone(),
                    addr: bind.to_string(),
                    source,
                }
            })?;
            let addr = group[0].local_addr().unwrap_or(bind);
            let slot: FrontendSlot = Arc::new(ArcSwap::from_pointee(kind.clone()));
            let remove = ctx.stop.child_token();
            for (shard, socket) in group.into_iter().enumerate() {
                new_listeners.push(Listener {
                    kind: slot.clone(),
                    listener: socket,
                    addr,
                    shard,
                    remove: remove.clone(),
                });
            }
            listeners.push(ListenerRt {
                bind,
                addr,
                frontend: f.name.clone(),
                slot,
                remove,
            });
            summary.listeners_added.push((f.name.clone(), addr));
        }
    }
    let removed_listeners: Vec<ListenerRt> = prev
        .listeners
        .iter()
        .zip(&unmatched)
        .filter(|(_, u)| u.is_some())
        .map(|(l, _)| ListenerRt {
            bind: l.bind,
            addr: l.addr,
            frontend: l.frontend.clone(),
            slot: l.slot.clone(),
            remove: l.remove.clone(),
        })
        .collect();
    summary.listeners_removed = removed_listeners.iter().map(|l| l.addr).collect();

    Ok(Prepared {
        next: Running {
            cfg: cfg.clone(),
            backends,
            frontends,
            listeners,
        },
        new_listeners,
        kept,
        removed_listeners,
        start_checks,
        start_watchers,
        stop_tokens,
        summary,
    })
}

/// The pool a frontend's connections use.
fn backend_of(kind: &FrontendKind) -> Option<&Arc<Pool>> {
    match kind {
        FrontendKind::Tcp(fe) => Some(&fe.backend.pool),
        FrontendKind::Http(fe) => Some(&fe.pool),
    }
}

fn build_kind(
    f: &spec::Frontend,
    be: &BackendRt,
    tls: Option<Arc<TlsEdge>>,
    ctx: &Ctx<'_>,
) -> Result<FrontendKind, ServerError> {
    let file = open_log(ctx.logs, &f.access_log)?;
    Ok(match f.mode {
        Mode::Tcp => {
            let policy = f.proxy_protocol.as_ref().map(Policy::new);
            FrontendKind::Tcp(Arc::new(TcpFrontend {
                name: f.name.as_str().into(),
                backend: be.l4.clone(),
                policy,
                log: ConnLog {
                    file,
                    json: f.access_log_format == AccessLogFormat::Json,
                },
                force: ctx.force.clone(),
                splice: true,
                metrics: crate::metrics::global().frontend(&f.name),
            }))
        }
        Mode::Http => FrontendKind::Http(
            HttpFrontend::with_tls(
                f,
                &be.expanded,
                be.pool.clone(),
                file,
                ctx.force.clone(),
                tls,
            )
            .map_err(|e| frontend_err(f, e.to_string()))?,
        ),
    })
}

impl Prepared {
    /// Puts the new configuration in effect and returns it with the sockets that need an
    /// accept loop: kept listeners serve their new frontend from the next accept, removed
    /// ones drain and close, changed backends' health checks restart, replaced TLS
    /// watchers stop. Connections already open keep the frontend they started with.
    pub(crate) fn commit(self) -> (Running, Vec<Listener>, ReloadSummary) {
        for (slot, kind) in self.kept {
            slot.store(Arc::new(kind));
        }
        for l in &self.removed_listeners {
            l.remove.cancel();
        }
        for t in &self.stop_tokens {
            t.cancel();
        }
        for name in &self.start_checks {
            if let Some(b) = self.next.backends.get(name) {
                let _ = crate::health::spawn(b.pool.clone(), &b.expanded, b.checks.clone());
            }
        }
        for t in self.start_watchers {
            drop(tls::spawn_watcher(
                t.edge,
                crate::edge::TLS_WATCH_EVERY,
                t.watcher,
            ));
        }
        (self.next, self.new_listeners, self.summary)
    }
}
