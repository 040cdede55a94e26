//! Hot reload (issue #7): a running `Server` takes a new `Config` (as its `Spec`) through a
//! [`ReloadHandle`];
//! SIGHUP re-reads the config file and reloads (an invalid file is refused and logged with
//! file:line, the old config keeps serving); `sluice reload` signals a running process via
//! its pid file. Building and diffing live in `build`; accepting stays in `server::listen`.

pub(crate) mod build;
pub mod pidfile;
mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::balance::Pool;
use crate::config::{self, Config};
use crate::server::ServerError;
use crate::spec::Spec;

pub use pidfile::{read_pid, send_reload_signal, PidFile};
pub use summary::{BackendChange, ReloadSummary};

/// Why a reload was not applied. In every case the running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load: "FILE:LINE:COL: key: message".
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The configuration loaded but could not be put in place (bind, resolve, TLS files...).
    #[error("{0}")]
    Apply(#[from] ServerError),
    /// The server is not running (it shut down, or `run` was never called).
    #[error("the server is not running")]
    NotRunning,
}

/// What the current configuration serves, kept up to date across reloads (for status pages,
/// the admin API and tests).
#[derive(Debug, Default)]
pub struct Live {
    /// (backend name, pool) in configuration order.
    pools: ArcSwap<Vec<(String, Arc<Pool>)>>,
    addrs: ArcSwap<Vec<(String, SocketAddr)>>,
}

impl Live {
    pub(crate) fn set(&self, pools: Vec<(String, Arc<Pool>)>, addrs: Vec<(String, SocketAddr)>) {
        self.pools.store(Arc::new(pools));
        self.addrs.store(Arc::new(addrs));
    }

    /// The current pool of backend `name` (a changed backend gets a new pool on reload).
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools
            .load()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    /// Every current pool, in configuration order.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.load().iter().map(|(_, p)| p.clone()).collect()
    }

    /// Every bound address with its frontend name, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.load().as_ref().clone()
    }
}

/// One reload request: the new configuration and where to send the outcome.
pub(crate) type Request = (Spec, oneshot::Sender<Result<ReloadSummary, ReloadError>>);

/// Asks a running `Server` to switch to a new configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) live: Arc<Live>,
}

impl ReloadHandle {
    /// Applies `cfg` (already loaded and validated) and waits for the outcome. Reloads are
    /// applied one at a time, in order. Waits until `Server::run` is running.
    pub async fn reload(&self, cfg: Config) -> Result<ReloadSummary, ReloadError> {
        let spec = cfg.spec()?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((spec, tx))
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        rx.await.map_err(|_| ReloadError::NotRunning)?
    }

    /// Loads `path` as `sluice check` does and applies it. A file that does not load is
    /// refused with its `FILE:LINE:COL` error and nothing changes.
    pub async fn reload_file(&self, path: PathBuf) -> Result<ReloadSummary, ReloadError> {
        let cfg = tokio::task::spawn_blocking(move || config::load_file(&path))
            .await
            .map_err(|_| ReloadError::NotRunning)??;
        self.reload(cfg).await
    }

    /// The live view of the current configuration.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

/// Reloads `path` on every SIGHUP until the server stops, logging the outcome: the summary
/// of what changed, or the error (with file:line) and that the old configuration stays.
/// Signals arriving during a reload are merged into one more reload after it.
pub fn spawn_sighup(path: PathBuf, handle: ReloadHandle) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading {}", path.display());
            match handle.reload_file(path.clone()).await {
                Ok(summary) => tracing::info!("reload done: {summary}"),
                Err(ReloadError::NotRunning) => return,
                Err(e) => tracing::error!(
                    "reload refused, the running configuration stays in effect: {e}"
                ),
            }
        }
    }))
}
