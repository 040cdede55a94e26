//! The running balancer, built and swapped: `Server::bind` primes DNS, builds backends,
//! frontends and listeners (`prepare`) and starts health checks and admin; `Server::run`
//! (`run`) hands listeners to `server`'s acceptor, applies reloads (`Control`) and DNS changes
//! (`dns`) until shutdown, then drains. Config loading, SIGHUP and `ReloadHandle` live elsewhere.

mod control;
mod dns;
mod frontends;
mod handover;
mod live;
mod prepare;
mod run;
mod running;
mod summary;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::balance::Pool;
use crate::config::{Config, ConfigError};
use crate::discovery::{Discovery, DiscoveryError};
use crate::log::LogFiles;
use crate::server::{self, Accept, Acceptor, Listener, Shutdown};
use crate::spec::Spec;
use control::Request;
pub use control::{Control, NotRunning};
use handover::Inherited;
pub use handover::{HandedSocket, SocketRole};
pub use live::Live;
use running::{Ctx, Running};
pub use summary::{BackendChange, ReloadSummary};

/// Why a configuration could not be put in place (at start or on reload).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A hand-built `Config` with a value that does not parse (loading refuses those).
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("frontend {frontend}: cannot bind {addr}: {source}")]
    Bind {
        frontend: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("frontend {frontend}: {message}")]
    Frontend { frontend: String, message: String },
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminStartError),
    #[error("agent: cannot bind {addr}: {source}")]
    Agent {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start {threads} worker threads: {source}")]
    Workers {
        threads: usize,
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: String,
        source: std::io::Error,
    },
}

impl From<DiscoveryError> for BuildError {
    fn from(e: DiscoveryError) -> BuildError {
        BuildError::Backend {
            backend: e.backend,
            message: e.message,
        }
    }
}

/// What building needs besides the configuration, owned by the server.
struct Parts {
    logs: Arc<LogFiles>,
    shutdown: Shutdown,
    /// Host-name servers: resolved answers, re-resolved while `run` runs.
    discovery: Arc<Discovery>,
    sockets_per_bind: usize,
    /// Sockets handed over by `sluice upgrade`, until the first configuration adopts them.
    inherited: Inherited,
}

impl Parts {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            logs: &self.logs,
            shutdown: &self.shutdown,
            discovery: &self.discovery,
            sockets_per_bind: self.sockets_per_bind,
            inherited: &self.inherited,
        }
    }
}

/// A bound, ready-to-run balancer.
pub struct Server {
    running: Running,
    parts: Parts,
    acceptor: Acceptor,
    /// Bound by `bind`, accepting once `run` starts.
    listeners: Vec<Listener>,
    grace: Duration,
    /// The `[admin]` endpoint, when configured; serves until background work stops.
    admin: Option<crate::admin::AdminListener>,
    /// The admin socket's configured and bound address and a duplicate of it (for `sluice
    /// upgrade`); released when shutdown starts.
    admin_dup: Option<(SocketAddr, SocketAddr, std::os::fd::OwnedFd)>,
    /// The `[agent]` endpoint, when configured; answers until background work stops or a
    /// successor process took its socket over.
    agent: Option<crate::health::endpoint::AgentEndpoint>,
    /// Its configured and bound address and a duplicate of its socket (`sluice upgrade`).
    agent_dup: Option<(SocketAddr, SocketAddr, std::os::fd::OwnedFd)>,
    /// Cancelled when a successor process serves (`sluice upgrade`): the agent endpoint
    /// leaves the answering to it instead of saying `drain` while this one drains.
    handed_over: tokio_util::sync::CancellationToken,
    live: Arc<Live>,
    control: Control,
    requests: mpsc::Receiver<Request>,
}

impl Server {
    /// Binds every listener, builds the pools and starts health checks; connections run on
    /// the caller's runtime ([`Accept::Inline`]). Also raises RLIMIT_NOFILE to fit
    /// `global.max_connections` (a warning when it cannot).
    pub async fn bind(cfg: Config) -> Result<Server, BuildError> {
        Self::bind_with(cfg, Accept::Inline).await
    }

    /// Like [`Server::bind`], with connections accepted and served where `accept` says.
    pub async fn bind_with(cfg: Config, accept: Accept) -> Result<Server, BuildError> {
        Self::bind_inherited(cfg, accept, Vec::new()).await
    }

    /// Like [`Server::bind_with`], adopting the listening sockets a running sluice handed
    /// over (`sluice upgrade`) for every bind (and the admin endpoint) configured as it was
    /// there; other binds are bound afresh, handed sockets no bind claims are closed.
    pub async fn bind_inherited(
        cfg: Config,
        accept: Accept,
        handed: Vec<HandedSocket>,
    ) -> Result<Server, BuildError> {
        let cfg = cfg.spec()?;
        raise_nofile(&cfg);
        crate::edge::buffer::TempFiles::global().set_limit(cfg.global.max_temp_files);
        let shutdown = Shutdown::new();
        let acceptor = Acceptor::new(accept, cfg.global.max_connections, shutdown.clone())
            .map_err(|source| BuildError::Workers {
                threads: match accept {
                    Accept::Threads(n) => n,
                    Accept::Inline => 0,
                },
                source,
            })?;
        let parts = Parts {
            logs: Arc::new(LogFiles::default()),
            shutdown,
            discovery: Arc::new(Discovery::new(&cfg)),
            sockets_per_bind: acceptor.sockets_per_bind(),
            inherited: Inherited::new(handed),
        };
        parts.discovery.prime(&cfg).await?;
        let prepared = prepare::prepare(&cfg, &Running::default(), &parts.ctx())?;
        let (running, listeners, _) = prepared.commit();
        server::log_listening(&listeners, parts.sockets_per_bind);
        let live = Arc::new(Live::default());
        live.set(running.pools(), running.addrs(), &running.cfg);
        let admin = match &cfg.admin {
            Some(a) => {
                // Always the current pools: a reload may replace a changed backend's pool.
                let inherited = parts.inherited.take_admin(a.bind);
                Some(crate::admin::AdminListener::bind(
                    a,
                    live.clone(),
                    inherited,
                )?)
            }
            None => None,
        };
        let agent = match &cfg.agent {
            Some(a) => {
                let inherited = parts.inherited.take_agent(a.bind);
                let edges: Arc<dyn crate::health::endpoint::Edges> = live.clone();
                Some(
                    crate::health::endpoint::AgentEndpoint::bind(a, edges, inherited).map_err(
                        |source| BuildError::Agent {
                            addr: a.bind,
                            source,
                        },
                    )?,
                )
            }
            None => None,
        };
        let agent_dup = match (&agent, &cfg.agent) {
            (Some(l), Some(a)) => l.dup().ok().map(|fd| (a.bind, l.addr(), fd)),
            _ => None,
        };
        parts.inherited.close_rest();
        let admin_dup = match (&admin, &cfg.admin) {
            (Some(l), Some(a)) => l.dup().ok().map(|fd| (a.bind, l.addr(), fd)),
            _ => None,
        };
        let (control, requests) = Control::channel();
        Ok(Server {
            running,
            parts,
            acceptor,
            listeners,
            grace: cfg.global.grace,
            admin,
            admin_dup,
            agent,
            agent_dup,
            handed_over: tokio_util::sync::CancellationToken::new(),
            live,
            control,
            requests,
        })
    }

    /// Every bound address with its frontend name, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.live.local_addrs()
    }

    /// The pool of backend `name` (for status and tests). After a reload, ask
    /// [`Server::live`] instead: a changed backend gets a new pool.
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.live.pool(name)
    }

    /// The current pools and addresses, kept up to date across reloads.
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Cancel it once a successor process serves (`sluice upgrade`): the agent endpoint
    /// then stops answering here (the successor answers on the same socket), instead of
    /// saying `drain` while this process drains.
    pub fn handover_token(&self) -> tokio_util::sync::CancellationToken {
        self.handed_over.clone()
    }

    /// The channel that applies new configurations while `run` runs (`reload` wraps it in
    /// its `ReloadHandle`).
    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

/// Raises RLIMIT_NOFILE for `cfg` (a warning when it cannot).
fn raise_nofile(cfg: &Spec) {
    let needed = cfg.global.fds_needed;
    match crate::config::limits::raise_nofile(needed) {
        Ok(limit) => tracing::debug!("RLIMIT_NOFILE is {limit} ({needed} needed)"),
        Err(why) => tracing::warn!(
            "cannot raise RLIMIT_NOFILE to {needed} for max_connections={}: {why}",
            cfg.global.max_connections
        ),
    }
}

impl Drop for Server {
    /// A server dropped without running (or after) stops its health checks.
    fn drop(&mut self) {
        self.parts.shutdown.stop_background.cancel();
        self.parts.shutdown.force_close.cancel();
    }
}
