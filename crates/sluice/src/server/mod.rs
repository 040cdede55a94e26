//! The running balancer (mini-redis shape): `Server::bind` binds every listener, builds the
//! backend pools and starts health checks; `Server::run` accepts until the shutdown future
//! completes, applying reloads meanwhile (`reload_handle`), then drains connections for
//! `global.grace`. Config loading is elsewhere; building and diffing is `crate::reload`.

pub mod listen;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::Pool;
use crate::config::{Config, ConfigError};
use crate::discovery::Discovery;
use crate::log::LogFiles;
use crate::reload::build::{self, Ctx, Running};
use crate::reload::{Live, ReloadError, ReloadHandle, ReloadSummary, Request};
use crate::spec::Spec;
use listen::Listener;
pub use workers::Accept;
use workers::Workers;

/// After the grace period, how long force-closed connections get to log and go.
const FORCE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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

/// A bound, ready-to-run balancer.
pub struct Server {
    running: Running,
    /// Bound by `bind`, accepting once `run` starts.
    listeners: Vec<Listener>,
    max_connections: usize,
    grace: Duration,
    logs: Arc<LogFiles>,
    /// Stops health checks and TLS watchers.
    health: CancellationToken,
    /// Ends the grace period: forces open connections closed.
    force: CancellationToken,
    /// Stops accepting (shutdown); parent of each listener's removal token.
    stop: CancellationToken,
    /// The `[admin]` endpoint, when configured; serves until `health` is cancelled.
    admin: Option<crate::admin::AdminListener>,
    live: Arc<Live>,
    reload_tx: mpsc::Sender<Request>,
    reload_rx: mpsc::Receiver<Request>,
    /// Host-name servers: resolved answers, re-resolved while `run` runs.
    discovery: Arc<Discovery>,
    /// Worker threads for [`Accept::Threads`]; None: accept on the caller's runtime.
    workers: Option<Workers>,
    /// Sockets (and accept loops) per bind.
    sockets_per_bind: usize,
}

impl Server {
    /// Binds every listener, builds the pools and starts health checks; connections run on
    /// the caller's runtime ([`Accept::Inline`]). Also raises RLIMIT_NOFILE to fit
    /// `global.max_connections` (a warning when it cannot).
    pub async fn bind(cfg: Config) -> Result<Server, ServerError> {
        Self::bind_with(cfg, Accept::Inline).await
    }

    /// Like [`Server::bind`], with connections accepted and served where `accept` says.
    pub async fn bind_with(cfg: Config, accept: Accept) -> Result<Server, ServerError> {
        let cfg = cfg.spec()?;
        raise_nofile(&cfg);
        crate::edge::buffer::TempFiles::global().set_limit(cfg.global.max_temp_files);
        let (workers, sockets_per_bind) = match accept {
            Accept::Inline => (None, runtime_workers()),
            Accept::Threads(n) => {
                let w = Workers::start(n)
                    .map_err(|source| ServerError::Workers { threads: n, source })?;
                let n = w.len();
                (Some(w), n)
            }
        };
        let health = CancellationToken::new();
        let force = CancellationToken::new();
        let stop = CancellationToken::new();
        let logs = Arc::new(LogFiles::default());
        let discovery = Arc::new(Discovery::new(&cfg));
        discovery.prime(&cfg).await?;
        let ctx = Ctx {
            logs: &logs,
            force: &force,
            background: &health,
            stop: &stop,
            discovery: &discovery,
            dns_refresh: false,
            sockets_per_bind,
        };
        let prepared = build::prepare(&cfg, &Running::default(), &ctx)?;
        let (running, listeners, _) = prepared.commit();
        log_listening(&listeners, sockets_per_bind);
        let live = Arc::new(Live::default());
        live.set(running.pools(), running.addrs());

        let admin = match &cfg.admin {
            Some(a) => {
                // Always the current pools: a reload may replace a changed backend's pool.
                let view = live.clone();
                let source: crate::admin::PoolSource = Arc::new(move || view.pools());
                Some(crate::admin::AdminListener::bind(a, source)?)
            }
            None => None,
        };

        let (reload_tx, reload_rx) = mpsc::channel(4);
        Ok(Server {
            admin,
            running,
            listeners,
            max_connections: cfg.global.max_connections,
            grace: cfg.global.grace,
            logs,
            health,
            force,
            stop,
            live,
            reload_tx,
            reload_rx,
            discovery,
            workers,
            sockets_per_bind,
        })
    }

    /// Every bound address with its frontend name, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.live.local_addrs()
    }

    /// The admin endpoint's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
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

    /// A handle that applies new configurations while `run` runs (SIGHUP uses it).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            tx: self.reload_tx.clone(),
            live: self.live.clone(),
        }
    }

    /// Accepts until `shutdown` completes, applying reloads meanwhile; then stops accepting
    /// (closing the listeners), lets open connections finish for up to `global.grace`, and
    /// force-closes the rest. SIGUSR1 reopens the log files meanwhile.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let limit = Arc::new(Semaphore::new(self.max_connections.max(1)));
        let tracker = TaskTracker::new();
        let stop = self.stop.clone();
        let reopen = spawn_reopen(self.logs.clone(), stop.clone());
        // The admin endpoint stays up through the grace period (watch the drain).
        if let Some(admin) = self.admin.take() {
            tokio::spawn(admin.serve(self.health.clone()));
        }

        let mut accepts = JoinSet::new();
        let workers = self.workers.take();
        // Socket `shard` of a bind goes to worker `shard`: every worker accepts on every bind.
        let spawn_all = |accepts: &mut JoinSet<()>, listeners: Vec<Listener>| {
            for l in listeners {
                let shard = l.shard;
                let task = listen::accept_loop(l, limit.clone(), tracker.clone(), stop.clone());
                match &workers {
                    Some(w) => accepts.spawn_on(task, w.handle(shard)),
                    None => accepts.spawn(task),
                };
            }
        };
        spawn_all(&mut accepts, std::mem::take(&mut self.listeners));
        let (dns_tx, mut dns_rx) = mpsc::channel(1);
        tokio::spawn(crate::discovery::refresh_loop(
            self.discovery.clone(),
            dns_tx,
            self.health.clone(),
        ));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some((cfg, reply)) = self.reload_rx.recv() => {
                    crate::process::notify::reloading();
                    let primed = tokio::select! {
                        p = self.discovery.prime(&cfg) => p,
                        _ = &mut shutdown => break,
                    };
                    let outcome = primed
                        .map_err(ReloadError::from)
                        .and_then(|()| self.apply(cfg, &limit, false))
                        .map(|(summary, listeners)| {
                            spawn_all(&mut accepts, listeners);
                            summary
                        });
                    crate::process::notify::ready();
                    let _ = reply.send(outcome);
                }
                // A DNS answer changed: rebuild the affected pools as a reload would.
                Some(()) = dns_rx.recv() => {
                    let cfg = self.running.cfg.clone();
                    match self.apply(cfg, &limit, true) {
                        Ok((summary, listeners)) => {
                            spawn_all(&mut accepts, listeners);
                            tracing::info!("dns: servers updated: {summary}");
                        }
                        Err(e) => tracing::error!("dns: cannot update servers: {e}"),
                    }
                }
                // Reap accept loops of removed listeners as they finish.
                Some(_) = accepts.join_next(), if !accepts.is_empty() => {}
            }
        }
        tracing::info!(
            "shutting down: stopped accepting, {} connections open, grace {:?}",
            tracker.len(),
            self.grace
        );
        stop.cancel();
        while accepts.join_next().await.is_some() {}
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
        if let Some(w) = workers {
            w.shutdown(FORCE_WAIT).await;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Puts `cfg` in effect (see `reload::build`), returning the summary and the newly bound
    /// sockets. On error nothing changed.
    fn apply(
        &mut self,
        cfg: Spec,
        limit: &Arc<Semaphore>,
        dns_refresh: bool,
    ) -> Result<(ReloadSummary, Vec<Listener>), ReloadError> {
        let ctx = Ctx {
            logs: &self.logs,
            force: &self.force,
            background: &self.health,
            stop: &self.stop,
            discovery: &self.discovery,
            dns_refresh,
            sockets_per_bind: self.sockets_per_bind,
        };
        let prepared = build::prepare(&cfg, &self.running, &ctx)?;
        if cfg.admin != self.running.cfg.admin {
            tracing::warn!("reload: [admin] changes need a restart; the endpoint stays as it was");
        }
        if cfg.global.pid_file != self.running.cfg.global.pid_file {
            tracing::warn!("reload: global.pid_file changes need a restart");
        }
        if cfg.global.threads != self.running.cfg.global.threads {
            tracing::warn!("reload: global.threads changes need a restart");
        }
        raise_nofile(&cfg);
        crate::edge::buffer::TempFiles::global().set_limit(cfg.global.max_temp_files);
        self.resize_limit(limit, cfg.global.max_connections.max(1));
        self.grace = cfg.global.grace;
        let (running, listeners, summary) = prepared.commit();
        log_listening(&listeners, self.sockets_per_bind);
        self.running = running;
        self.live.set(self.running.pools(), self.running.addrs());
        Ok((summary, listeners))
    }

    /// Moves the connection limit to `want`: more permits at once; fewer as connections
    /// close (a background task takes the surplus permits out of circulation).
    fn resize_limit(&mut self, limit: &Arc<Semaphore>, want: usize) {
        let have = self.max_connections.max(1);
        self.max_connections = want;
        if want > have {
            limit.add_permits(want - have);
        } else if want < have {
            let surplus = u32::try_from(have - want).unwrap_or(u32::MAX);
            let (limit, health) = (limit.clone(), self.health.clone());
            tokio::spawn(async move {
                tokio::select! {
                    p = limit.acquire_many_owned(surplus) => if let Ok(p) = p { p.forget() },
                    _ = health.cancelled() => {}
                }
            });
        }
    }
}

/// Inline accepting: one SO_REUSEPORT socket per worker thread of the runtime the server
/// runs on (1 on a current-thread runtime), so every core accepts.
fn runtime_workers() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .max(1)
}

/// Logs each newly bound address once (not once per socket of its group of `sockets`).
fn log_listening(listeners: &[Listener], sockets: usize) {
    for l in listeners.iter().filter(|l| l.shard == 0) {
        // Fields, not text: the text log reads "listening frontend=NAME addr=ADDR" as
        // before, and --log-format json gets them as JSON fields.
        tracing::info!(frontend = %l.kind.load().name(), addr = %l.addr, sockets, "listening");
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
        self.health.cancel();
        self.force.cancel();
    }
}

/// SIGUSR1 → reopen every log file, until `stop`.
fn spawn_reopen(
    logs: Arc<LogFiles>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
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
