//! The frontend step of `prepare`: each configured frontend becomes what serves its
//! listeners (`l4::TcpFrontend` or `edge::HttpFrontend`, behind `server::Frontend`), rebuilt
//! only when its config or its backend's pool changed; a TLS edge is kept (re-reading its
//! files) while its `[frontend.tls]` section is the same. Binding is `prepare`'s.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::prepare::{frontend_err, Changes};
use super::running::{BackendRt, Ctx, FrontendRt, PoolPtr, Running, TlsRt};
use super::BuildError;
use crate::edge::HttpFrontend;
use crate::l4::frontend::TcpFrontend;
use crate::l4::log::ConnLog;
use crate::l4::route::L4Routes;
use crate::log::{LogFiles, LogSink, Syslog, SyslogDest};
use crate::proxy_protocol::Policy;
use crate::server::Frontend;
use crate::spec::{self, LogTarget, Mode, Spec, SyslogServer};
use crate::tls::TlsEdge;

/// Frontends of `cfg` over `backends` (already prepared), reusing `prev`'s where nothing
/// they depend on changed. Watchers of TLS edges not carried over stop at commit.
pub(super) fn prepare_frontends(
    cfg: &Spec,
    prev: &Running,
    backends: &HashMap<String, BackendRt>,
    ctx: &Ctx<'_>,
    ch: &mut Changes,
) -> Result<HashMap<String, FrontendRt>, BuildError> {
    let mut frontends = HashMap::new();
    for f in &cfg.frontends {
        let be = backends
            .get(&f.backend)
            .ok_or_else(|| frontend_err(f, format!("unknown backend {:?}", f.backend)))?;
        let old = prev.frontends.get(&f.name);
        let tls = prepare_tls(f, old, ctx, ch)?;
        let same_backend = old.is_some_and(|o| {
            Arc::ptr_eq(&o.pool, &be.pool) && route_pools(f, backends) == o.route_pools
        });
        let serve = match old {
            Some(o) if o.cfg == *f && same_backend => o.serve.clone(),
            _ => {
                if old.is_some() {
                    ch.summary.frontends_rebuilt.push(f.name.clone());
                }
                build(f, backends, tls.as_ref().map(|t| t.edge.clone()), ctx)?
            }
        };
        let pool = be.pool.clone();
        frontends.insert(
            f.name.clone(),
            FrontendRt {
                cfg: f.clone(),
                serve,
                pool,
                route_pools: route_pools(f, backends),
                tls,
            },
        );
    }
    for (name, old) in &prev.frontends {
        if !frontends.contains_key(name) {
            if let Some(t) = &old.tls {
                ch.stop_tokens.push(t.watcher.clone());
            }
        }
    }
    Ok(frontends)
}

/// The TLS edge of `f`: `old`'s, re-read, while the section is unchanged; else a new one
/// whose watcher starts at commit (and `old`'s watcher stops).
fn prepare_tls(
    f: &spec::Frontend,
    old: Option<&FrontendRt>,
    ctx: &Ctx<'_>,
    ch: &mut Changes,
) -> Result<Option<TlsRt>, BuildError> {
    let old_tls = old.and_then(|o| o.tls.as_ref());
    let tls = match &f.tls {
        None => None,
        Some(t) => match old_tls {
            Some(o) if o.edge.config() == t => {
                o.edge
                    .reload()
                    .map_err(|e| frontend_err(f, e.to_string()))?;
                ch.summary.tls_reloaded.push(f.name.clone());
                Some(o.clone())
            }
            _ => {
                let edge = TlsEdge::load(t).map_err(|e| frontend_err(f, e.to_string()))?;
                let name = f.name.clone();
                edge.ticketer().on_decrypt_failure(move || {
                    crate::metrics::global().ticket_decrypt_failed(&name)
                });
                let rt = TlsRt {
                    edge,
                    watcher: ctx.shutdown.stop_background.child_token(),
                };
                ch.start_watchers.push(rt.clone());
                Some(rt)
            }
        },
    };
    if let Some(o) = old_tls {
        let kept = tls.as_ref().is_some_and(|n| Arc::ptr_eq(&n.edge, &o.edge));
        if !kept {
            ch.stop_tokens.push(o.watcher.clone());
        }
    }
    Ok(tls)
}

fn open_log(logs: &LogFiles, f: &spec::Frontend) -> Result<Option<LogSink>, BuildError> {
    match &f.access_log {
        Some(LogTarget::File(p)) => logs
            .open(Path::new(p))
            .map(|f| Some(LogSink::File(f)))
            .map_err(|source| BuildError::LogFile {
                path: p.clone(),
                source,
            }),
        Some(LogTarget::Syslog(t)) => {
            let dest = match &t.server {
                SyslogServer::Udp(a) => SyslogDest::Udp(*a),
                SyslogServer::Unix(p) => SyslogDest::Unix(p.clone()),
            };
            Syslog::open(
                &dest,
                t.facility,
                t.severity,
                &t.tag,
                crate::metrics::global().log_dropped(&f.name),
            )
            .map(|s| Some(LogSink::Syslog(Arc::new(s))))
            .map_err(|source| BuildError::LogFile {
                path: match &dest {
                    SyslogDest::Udp(a) => format!("syslog:server={a}"),
                    SyslogDest::Unix(p) => format!("syslog:server=unix:{}", p.display()),
                },
                source,
            })
        }
        None => Ok(None),
    }
}

/// The pools of `f`'s route backends, in route order (a frontend is rebuilt when one changes).
fn route_pools(f: &spec::Frontend, backends: &HashMap<String, BackendRt>) -> Vec<PoolPtr> {
    let list = f.routes.iter().flat_map(|r| &r.list);
    list.filter_map(|r| backends.get(&r.backend))
        .map(|b| PoolPtr(b.pool.clone()))
        .collect()
}

/// A frontend's routes with their backends' L4 paths.
fn l4_routes(
    f: &spec::Frontend,
    backends: &HashMap<String, BackendRt>,
) -> Result<Option<L4Routes>, BuildError> {
    let Some(routes) = &f.routes else {
        return Ok(None);
    };
    let list = routes
        .list
        .iter()
        .map(|r| match backends.get(&r.backend) {
            Some(b) => Ok((r.clone(), b.l4.clone())),
            None => Err(frontend_err(f, format!("unknown backend {:?}", r.backend))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(L4Routes {
        list,
        preread_timeout: routes.preread_timeout,
        no_hello: routes.no_hello,
    }))
}

/// Builds what serves frontend `f`'s connections over its backend (and its routes').
pub(super) fn build(
    f: &spec::Frontend,
    backends: &HashMap<String, BackendRt>,
    tls: Option<Arc<TlsEdge>>,
    ctx: &Ctx<'_>,
) -> Result<Arc<dyn Frontend>, BuildError> {
    let be = backends
        .get(&f.backend)
        .ok_or_else(|| frontend_err(f, format!("unknown backend {:?}", f.backend)))?;
    let sink = open_log(ctx.logs, f)?;
    let force = ctx.shutdown.force_close.clone();
    Ok(match f.mode {
        Mode::Tcp => {
            if f.forward == spec::Forward::Sockmap {
                // Loaded (or found unusable, logged once) now rather than on a first client.
                let _ = crate::l4::sockmap::kernel();
            }
            let policy = f.proxy_protocol.as_ref().map(Policy::new);
            Arc::new(TcpFrontend {
                name: f.name.as_str().into(),
                backend: be.l4.clone(),
                policy,
                log: ConnLog {
                    sink,
                    format: Arc::new(f.log_format.clone()),
                    stderr: f.access_log_stderr,
                },
                force,
                splice: true,
                sockmap: f.forward == spec::Forward::Sockmap,
                metrics: crate::metrics::global().frontend(&f.name),
                routes: l4_routes(f, backends)?,
            })
        }
        Mode::Http => HttpFrontend::new(f, &be.expanded, be.pool.clone(), sink, force, tls)
            .map_err(|e| frontend_err(f, e.to_string()))?,
    })
}
