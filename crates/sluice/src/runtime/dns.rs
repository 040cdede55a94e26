//! A DNS answer changed: each backend whose resolved addresses differ gets its pool's server
//! set replaced in place (`Pool::update`: new addresses down until a check passes, vanished
//! ones drain) and its health checks restarted over the new set. Frontends keep the pool;
//! listeners, TLS and the configuration are untouched (reloads are `prepare`'s).

use std::collections::HashSet;
use std::sync::Arc;

use super::frontends;
use super::prepare::backend_err;
use super::running::{Ctx, Running};
use super::summary::{BackendChange, ReloadSummary};
use super::BuildError;
use crate::balance::ServerAddr;
use crate::spec::{self, Mode, Protocol};

/// One backend's new server set.
struct Update {
    name: String,
    expanded: spec::Backend,
    from_dns: HashSet<String>,
    resolved: Vec<ServerAddr>,
}

/// Updates the pools of `running` whose host names now resolve differently (from the
/// discovery cache, already refreshed). On error nothing changed.
pub(super) fn update_pools(
    running: &mut Running,
    ctx: &Ctx<'_>,
) -> Result<ReloadSummary, BuildError> {
    let mut updates = Vec::new();
    for b in &running.cfg.backends {
        let Some(rt) = running.backends.get(&b.name) else {
            continue;
        };
        let (expanded, from_dns) = ctx.discovery.expand(b).map_err(|e| backend_err(b, e))?;
        let resolved: Vec<ServerAddr> = expanded.servers.iter().map(|s| s.addr.clone()).collect();
        if resolved != rt.resolved {
            updates.push(Update {
                name: b.name.clone(),
                expanded,
                from_dns,
                resolved,
            });
        }
    }
    let mut summary = ReloadSummary {
        listeners_kept: running.listeners.iter().map(|l| l.addr).collect(),
        ..ReloadSummary::default()
    };
    for u in updates {
        update_one(running, u, ctx, &mut summary);
    }
    Ok(summary)
}

/// Puts one backend's new server set in place and restarts its health checks.
fn update_one(running: &mut Running, u: Update, ctx: &Ctx<'_>, summary: &mut ReloadSummary) {
    let Some(rt) = running.backends.get_mut(&u.name) else {
        return;
    };
    // Old checks stop first: none of them records a result on the new set.
    rt.checks.cancel();
    let diff = rt.pool.update(&rt.expanded, &u.expanded, &u.from_dns);
    rt.expanded = u.expanded;
    rt.resolved = u.resolved;
    rt.checks = ctx.shutdown.stop_background.child_token();
    let _ = crate::health::spawn(rt.pool.clone(), &rt.expanded, rt.checks.clone());
    summary
        .backends
        .push((u.name.clone(), BackendChange::Changed(diff)));
    if rt.cfg.protocol == Protocol::Http {
        refresh_http_frontends(running, &u.name, ctx, summary);
    }
}

/// HTTP frontends over backend `name` cap their sockets per server address, taken from the
/// pool when they are built: rebuild them (same pool) so the new addresses are capped too.
fn refresh_http_frontends(
    running: &mut Running,
    name: &str,
    ctx: &Ctx<'_>,
    summary: &mut ReloadSummary,
) {
    if !running.backends.contains_key(name) {
        return;
    }
    for f in &running.cfg.frontends {
        if f.backend != name || f.mode != Mode::Http {
            continue;
        }
        let (fname, Some(fe)) = (&f.name, running.frontends.get_mut(&f.name)) else {
            continue;
        };
        let tls = fe.tls.as_ref().map(|t| t.edge.clone());
        match frontends::build(&fe.cfg, &running.backends, tls, ctx) {
            Ok(serve) => {
                fe.serve = serve;
                for l in running.listeners.iter().filter(|l| &l.frontend == fname) {
                    l.slot.store(Arc::new(fe.serve.clone()));
                }
                summary.frontends_rebuilt.push(fname.clone());
            }
            Err(e) => tracing::error!(
                "dns: frontend {fname} keeps its socket caps for the old addresses: {e}"
            ),
        }
    }
}
