//! The running balancer (mini-redis shape): `Server::bind` binds every listener, builds the
//! backend pools and starts health checks; `Server::run` accepts until the shutdown future
//! completes, then drains connections for `global.grace`. Config loading is elsewhere.

pub mod listen;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::{Pool, ServerAddr};
use crate::config::{self, AccessLogFormat, Config, Mode};
use crate::edge::HttpFrontend;
use crate::l4::frontend::{L4Backend, TcpFrontend};
use crate::log::{ConnLog, LogFiles};
use crate::proxy::Policy;
use listen::{FrontendKind, Listener};

/// After the grace period, how long force-closed connections get to log and go.
const FORCE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: String,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run balancer.
pub struct Server {
    listeners: Vec<Listener>,
    pools: HashMap<String, Arc<Pool>>,
    max_connections: usize,
    grace: Duration,
    logs: Arc<LogFiles>,
    /// Stops health checks.
    health: CancellationToken,
    /// Ends the grace period: forces open connections closed.
    force: CancellationToken,
    /// The `[admin]` endpoint, when configured; serves until `health` is cancelled.
    admin: Option<crate::admin::AdminListener>,
}

fn backend_err(b: &config::Backend, message: impl Into<String>) -> ServerError {
    ServerError::Backend {
        backend: b.name.clone(),
        message: message.into(),
    }
}

fn frontend_err(f: &config::Frontend, message: impl Into<String>) -> ServerError {
    ServerError::Frontend {
        frontend: f.name.clone(),
        message: message.into(),
    }
}

/// Resolves every server of `b` (a host name takes its first address).
fn resolve_servers(b: &config::Backend) -> Result<Vec<(config::Server, ServerAddr)>, ServerError> {
    let mut out = Vec::with_capacity(b.servers.len());
    for s in &b.servers {
        let parsed = config::parsed::parse_server_addr(&s.addr).map_err(|e| backend_err(b, e))?;
        let resolved = config::parsed::resolve(&parsed)
            .map_err(|e| backend_err(b, format!("cannot resolve {}: {e}", s.addr)))?;
        let first = resolved
            .into_iter()
            .next()
            .ok_or_else(|| backend_err(b, format!("{} resolves to no address", s.addr)))?;
        out.push((s.clone(), to_pool_addr(first)));
    }
    Ok(out)
}

/// The loader's address type as the pool spells it (the same variants).
fn to_pool_addr(a: config::parsed::ServerAddr) -> ServerAddr {
    match a {
        config::parsed::ServerAddr::Inet(sa) => ServerAddr::Inet(sa),
        config::parsed::ServerAddr::Unix(p) => ServerAddr::Unix(p),
        config::parsed::ServerAddr::Host { host, port } => ServerAddr::Host { host, port },
    }
}

impl Server {
    /// Binds every listener, builds the pools and starts health checks. Also raises
    /// RLIMIT_NOFILE to fit `global.max_connections` (a warning when it cannot).
    pub async fn bind(cfg: Config) -> Result<Server, ServerError> {
        let needed = config::limits::fds_needed(&cfg);
        match config::limits::raise_nofile(needed) {
            Ok(limit) => tracing::debug!("RLIMIT_NOFILE is {limit} ({needed} needed)"),
            Err(why) => tracing::warn!(
                "cannot raise RLIMIT_NOFILE to {needed} for max_connections={}: {why}",
                cfg.global.max_connections
            ),
        }
        let health = CancellationToken::new();
        let force = CancellationToken::new();
        let logs = Arc::new(LogFiles::default());

        let mut pools = HashMap::new();
        let mut l4_backends = HashMap::new();
        for b in &cfg.backends {
            let pool = Pool::new(b, resolve_servers(b)?);
            let l4 = L4Backend::new(b, pool.clone()).map_err(|e| backend_err(b, e))?;
            l4_backends.insert(b.name.clone(), Arc::new(l4));
            pools.insert(b.name.clone(), pool);
        }

        let mut listeners = Vec::new();
        for f in &cfg.frontends {
            let kind = match f.mode {
                Mode::Tcp => {
                    let backend = l4_backends
                        .get(&f.backend)
                        .ok_or_else(|| frontend_err(f, format!("unknown backend {:?}", f.backend)))?
                        .clone();
                    let policy = f
                        .proxy_protocol
                        .as_ref()
                        .map(Policy::from_config)
                        .transpose()
                        .map_err(|e| frontend_err(f, e))?;
                    let file = match &f.access_log {
                        Some(p) => Some(logs.open(Path::new(p)).map_err(|source| {
                            ServerError::LogFile {
                                path: p.clone(),
                                source,
                            }
                        })?),
                        None => None,
                    };
                    let log = ConnLog {
                        file,
                        json: f.access_log_format == AccessLogFormat::Json,
                    };
                    FrontendKind::Tcp(Arc::new(TcpFrontend {
                        name: f.name.as_str().into(),
                        backend,
                        policy,
                        log,
                        force: force.clone(),
                        splice: true,
                    }))
                }
                Mode::Http => {
                    let (bcfg, pool) = cfg
                        .backends
                        .iter()
                        .find(|b| b.name == f.backend)
                        .and_then(|b| Some((b, pools.get(&b.name)?.clone())))
                        .ok_or_else(|| {
                            frontend_err(f, format!("unknown backend {:?}", f.backend))
                        })?;
                    let file = match &f.access_log {
                        Some(p) => Some(logs.open(Path::new(p)).map_err(|source| {
                            ServerError::LogFile {
                                path: p.clone(),
                                source,
                            }
                        })?),
                        None => None,
                    };
                    let fe = HttpFrontend::new(f, bcfg, pool, file, force.clone(), health.clone())
                        .map_err(|e| frontend_err(f, e.to_string()))?;
                    FrontendKind::Http(fe)
                }
            };
            for b in &f.bind {
                let addr = config::parsed::parse_bind(b).map_err(|e| frontend_err(f, e))?;
                let listener = listen::bind_listener(addr).map_err(|source| ServerError::Bind {
                    frontend: f.name.clone(),
                    addr: b.clone(),
                    source,
                })?;
                let addr = listener.local_addr().unwrap_or(addr);
                tracing::info!("listening frontend={} addr={}", f.name, addr);
                listeners.push(Listener {
                    kind: kind.clone(),
                    listener,
                    addr,
                });
            }
        }

        for b in &cfg.backends {
            if let Some(pool) = pools.get(&b.name) {
                let _ = crate::health::spawn(pool.clone(), b, health.clone());
            }
        }

        let admin = match &cfg.admin {
            Some(a) => {
                let ordered: Vec<Arc<Pool>> = cfg
                    .backends
                    .iter()
                    .filter_map(|b| pools.get(&b.name).cloned())
                    .collect();
                let source: crate::admin::PoolSource = Arc::new(move || ordered.clone());
                Some(crate::admin::AdminListener::bind(a, source)?)
            }
            None => None,
        };

        Ok(Server {
            admin,
            listeners,
            pools,
            max_connections: cfg.global.max_connections,
            grace: cfg.global.grace.get(),
            logs,
            health,
            force,
        })
    }

    /// Every bound address with its frontend name, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.kind.name().to_string(), l.addr))
            .collect()
    }

    /// The admin endpoint's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// The pool of backend `name` (for status and tests).
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.get(name).cloned()
    }

    /// Accepts until `shutdown` completes; then stops accepting (closing the listeners),
    /// lets open connections finish for up to `global.grace`, and force-closes the rest.
    /// SIGUSR1 reopens the log files meanwhile.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let limit = Arc::new(Semaphore::new(self.max_connections.max(1)));
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let reopen = spawn_reopen(self.logs.clone(), stop.clone());
        // The admin endpoint stays up through the grace period (watch the drain).
        if let Some(admin) = self.admin.take() {
            tokio::spawn(admin.serve(self.health.clone()));
        }

        let mut accepts = Vec::new();
        for l in std::mem::take(&mut self.listeners) {
            accepts.push(tokio::spawn(listen::accept_loop(
                l,
                limit.clone(),
                tracker.clone(),
                stop.clone(),
            )));
        }
        shutdown.await;
        tracing::info!(
            "shutting down: stopped accepting, {} connections open, grace {:?}",
            tracker.len(),
            self.grace
        );
        stop.cancel();
        for a in accepts {
            let _ = a.await;
        }
        tracker.close();
        if tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: closing {} connections", tracker.len());
            self.force.cancel();
            let _ = tokio::time::timeout(FORCE_WAIT, tracker.wait()).await;
        }
        self.health.cancel();
        if let Some(r) = reopen {
            let _ = r.await;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

impl Drop for Server {
    /// A server dropped without running (or after) stops its health checks.
    fn drop(&mut self) {
        self.health.cancel();
        self.force.cancel();
    }
}

/// SIGUSR1 → reopen every log file, until `stop`.
fn spawn_reopen(
    logs: Arc<LogFiles>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if logs.is_empty() {
        return None;
    }
    let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGUSR1 (log reopen disabled): {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                got = sig.recv() => match got {
                    Some(()) => logs.reopen_all(),
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
        }
    }))
}
