//! The running state a configuration was turned into: each backend (pool, L4 view, health
//! token), each frontend (what serves its listeners, its TLS edge) and each listening socket
//! as the reload bookkeeping sees it; plus the server-wide handles building needs (`Ctx`).
//! Data only: building is `prepare`/`frontends`, swapping is `Prepared::commit`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::balance::{Pool, ServerAddr};
use crate::discovery::Discovery;
use crate::l4::frontend::L4Backend;
use crate::log::LogFiles;
use crate::server::{Frontend, FrontendSlot, Shutdown};
use crate::spec::{self, Spec};
use crate::tls::TlsEdge;

/// One running backend.
pub(crate) struct BackendRt {
    pub cfg: spec::Backend,
    /// `cfg` with host-name servers expanded to one named server per address (discovery).
    pub expanded: spec::Backend,
    /// Resolved server addresses, in configuration order.
    pub resolved: Vec<ServerAddr>,
    pub pool: Arc<Pool>,
    pub l4: Arc<L4Backend>,
    /// Stops this backend's health checks (a child of the background token).
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
    /// What serves its listeners' connections.
    pub serve: Arc<dyn Frontend>,
    /// The pool its connections use (a rebuilt backend means a rebuilt frontend).
    pub pool: Arc<Pool>,
    /// Its routes' pools, in route order (tcp frontends with `routes`).
    pub route_pools: Vec<PoolPtr>,
    pub tls: Option<TlsRt>,
}

/// A pool compared by identity: the same `Arc`, not equal contents.
#[derive(Clone)]
pub(crate) struct PoolPtr(pub Arc<Pool>);

impl PartialEq for PoolPtr {
    fn eq(&self, other: &PoolPtr) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One listening socket as the reload bookkeeping sees it (the socket is in its task).
#[derive(Clone)]
pub(crate) struct ListenerRt {
    /// The address as configured (port 0 stays 0): the key reloads match on.
    pub bind: SocketAddr,
    /// The address actually bound.
    pub addr: SocketAddr,
    pub frontend: String,
    pub slot: FrontendSlot,
    pub remove: CancellationToken,
    /// A duplicate of each socket of the group, handed to a successor by `sluice upgrade`
    /// (released when shutdown starts, so the sockets close with the accept loops).
    pub sockets: Arc<Vec<std::os::fd::OwnedFd>>,
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
    pub(super) fn pools(&self) -> Vec<(String, Arc<Pool>)> {
        self.cfg
            .backends
            .iter()
            .filter_map(|b| Some((b.name.clone(), self.backends.get(&b.name)?.pool.clone())))
            .collect()
    }

    /// Bound addresses with their frontend, in configuration order.
    pub(super) fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.frontend.clone(), l.addr))
            .collect()
    }
}

/// Shared server-wide handles the pieces need.
pub(crate) struct Ctx<'a> {
    pub logs: &'a LogFiles,
    /// Parent tokens: background work (health checks, TLS watchers), force-close for the
    /// frontends, stop-accepting for listener removal.
    pub shutdown: &'a Shutdown,
    /// Resolved host names (primed for this configuration).
    pub discovery: &'a Discovery,
    /// SO_REUSEPORT sockets (and accept loops) per new bind: one per worker thread.
    pub sockets_per_bind: usize,
    /// Sockets handed over by the process this one upgrades (empty otherwise).
    pub inherited: &'a super::handover::Inherited,
}
