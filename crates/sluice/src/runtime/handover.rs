//! Listening sockets across `sluice upgrade`: the running process exports a duplicate of
//! every listening socket (frontends, admin, agent) with the address it was configured as; the
//! new process adopts those whose configured bind it also has, instead of binding afresh.
//! Passing them between processes is `reload`'s; binding is `prepare`'s.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::running::{Ctx, ListenerRt, Running};
use super::BuildError;
use crate::net;
use crate::server::listen::Listener;
use crate::server::Frontend;
use crate::spec;

/// What a listening socket is, as the exporting process configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketRole {
    /// A frontend's bind: configured address (port 0 stays 0) and the frontend.
    Frontend { frontend: String, bind: SocketAddr },
    /// The `[admin]` endpoint, configured at `bind`.
    Admin { bind: SocketAddr },
    /// The `[agent]` endpoint, configured at `bind`.
    Agent { bind: SocketAddr },
}

/// One listening socket handed from a running process to its successor.
#[derive(Debug)]
pub struct HandedSocket {
    pub role: SocketRole,
    /// The address actually bound.
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

/// Sockets handed over, waiting to be adopted by the configuration that starts with them;
/// what no bind claims is closed when the server is built.
#[derive(Debug, Default)]
pub(crate) struct Inherited(Mutex<Vec<HandedSocket>>);

impl Inherited {
    pub(crate) fn new(sockets: Vec<HandedSocket>) -> Inherited {
        Inherited(Mutex::new(sockets))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HandedSocket>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a handed-over socket listens where `bind` would (the probe for strangers
    /// must not trip over it).
    pub(crate) fn covers(&self, bind: SocketAddr) -> bool {
        self.lock().iter().any(|s| net::overlaps(s.addr, bind))
    }

    /// Takes the socket group handed over for bind `bind` of frontend `name`: the group of
    /// that frontend configured as `bind` (or bound at `bind`: `:0` then, the port now
    /// written out), else another frontend's group at that address (not for port 0). Every
    /// socket of the group, which share one address.
    fn take_bind(&self, name: &str, bind: SocketAddr) -> Vec<HandedSocket> {
        let mut all = self.lock();
        let at = |s: &HandedSocket, same_name: bool| match &s.role {
            SocketRole::Frontend { frontend, bind: b } => {
                (*b == bind || s.addr == bind) && (!same_name || frontend == name)
            }
            SocketRole::Admin { .. } | SocketRole::Agent { .. } => false,
        };
        let group = all
            .iter()
            .find(|s| at(s, true))
            .or_else(|| all.iter().find(|s| bind.port() != 0 && at(s, false)))
            .map(|s| s.addr);
        let Some(addr) = group else {
            return Vec::new();
        };
        let (mine, rest) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|s| s.addr == addr && matches!(s.role, SocketRole::Frontend { .. }));
        *all = rest;
        mine
    }

    /// Takes the admin socket handed over for `bind`, if any.
    pub(crate) fn take_admin(&self, bind: SocketAddr) -> Option<std::net::TcpListener> {
        self.take_single(SocketRole::Admin { bind }, "admin")
    }

    /// Takes the agent endpoint's socket handed over for `bind`, if any.
    pub(crate) fn take_agent(&self, bind: SocketAddr) -> Option<std::net::TcpListener> {
        self.take_single(SocketRole::Agent { bind }, "agent")
    }

    fn take_single(&self, role: SocketRole, what: &str) -> Option<std::net::TcpListener> {
        let mut all = self.lock();
        let i = all.iter().position(|s| s.role == role)?;
        let s = all.remove(i);
        match net::adopt(s.fd) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("upgrade: {what} socket {} not adopted: {e}", s.addr);
                None
            }
        }
    }

    /// Closes what nobody adopted (binds the new configuration dropped), logging each.
    pub(crate) fn close_rest(&self) {
        for s in self.lock().drain(..) {
            tracing::info!("upgrade: closing {} (not in the new configuration)", s.addr);
        }
    }
}

/// Adopts the sockets handed over for `bind` of frontend `f` (every socket of the old
/// group, so no queued connection is left in a socket nobody accepts on), adding one
/// [`Listener`] per socket to `out`. None when nothing was handed over for `bind`.
pub(super) fn adopt_bind(
    f: &spec::Frontend,
    bind: SocketAddr,
    serve: &Arc<dyn Frontend>,
    ctx: &Ctx<'_>,
    out: &mut Vec<Listener>,
) -> Option<Result<ListenerRt, BuildError>> {
    let handed = ctx.inherited.take_bind(&f.name, bind);
    let addr = handed.first()?.addr;
    let err = |source| BuildError::Bind {
        frontend: f.name.clone(),
        addr: bind.to_string(),
        source,
    };
    let mut group = Vec::with_capacity(handed.len());
    for s in handed {
        match net::adopt(s.fd) {
            Ok(l) => group.push(l),
            Err(e) => return Some(Err(err(e))),
        }
    }
    tracing::info!(
        "upgrade: adopted {} socket(s) of frontend={} addr={addr}",
        group.len(),
        f.name
    );
    Some(super::prepare::listeners_of(f, bind, addr, group, serve, ctx, out).map_err(err))
}

impl Running {
    /// A duplicate of every listening socket with what it is, for a successor process.
    pub(super) fn export(&self) -> std::io::Result<Vec<HandedSocket>> {
        let mut out = Vec::new();
        for l in &self.listeners {
            for fd in l.sockets.iter() {
                out.push(HandedSocket {
                    role: SocketRole::Frontend {
                        frontend: l.frontend.clone(),
                        bind: l.bind,
                    },
                    addr: l.addr,
                    fd: fd.try_clone()?,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(frontend: &str, bind: &str, l: &std::net::TcpListener) -> HandedSocket {
        HandedSocket {
            role: SocketRole::Frontend {
                frontend: frontend.into(),
                bind: bind.parse().unwrap(),
            },
            addr: l.local_addr().unwrap(),
            fd: OwnedFd::from(l.try_clone().unwrap()),
        }
    }

    #[test]
    fn a_group_is_taken_by_frontend_and_bind_or_by_its_bound_address() {
        let x = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let y = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (xa, ya) = (x.local_addr().unwrap(), y.local_addr().unwrap());
        let all = vec![
            handed("a", "127.0.0.1:0", &x),
            handed("a", "127.0.0.1:0", &x),
            handed("b", "127.0.0.1:0", &y),
        ];
        let inh = Inherited::new(all);
        // Two frontends configured as port 0: each gets its own group.
        let b = inh.take_bind("b", "127.0.0.1:0".parse().unwrap());
        assert_eq!((b.len(), b[0].addr), (1, ya));
        // The port written out in the new config: the whole group at that address.
        let a = inh.take_bind("a", xa);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|s| s.addr == xa));
        assert!(inh.take_bind("a", xa).is_empty(), "taken once");

        // Another frontend's group is adopted at a fixed address, never for port 0.
        let inh = Inherited::new(vec![handed("old", &xa.to_string(), &x)]);
        assert!(inh
            .take_bind("new", "127.0.0.1:0".parse().unwrap())
            .is_empty());
        assert_eq!(inh.take_bind("new", xa).len(), 1);
    }
}
