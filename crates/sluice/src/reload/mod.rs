//! Hot reload (#7) and upgrade (#14): a [`ReloadHandle`] hands a new `Config` to a running
//! `Server`; SIGHUP re-reads the file (refused with file:line, the old config serves on); the
//! control socket (`control`) answers `sluice reload` and `sluice upgrade` (`upgrade`) with
//! the outcome. Building and swapping are `crate::runtime`'s, over its `Control` channel.

mod control;
mod pidfile;
mod upgrade;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::runtime::{BuildError, Control, Server};

pub use crate::runtime::{BackendChange, Live, ReloadSummary};
pub use control::{control_socket_path, request, ControlServer};
pub use pidfile::{is_held, read_pid, send_reload_signal, PidFile, PidFileError};
pub use upgrade::{Successor, Upgrader, START_TIMEOUT};

/// Why a reload was not applied. In every case the running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load: "FILE:LINE:COL: key: message".
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The configuration loaded but could not be put in place (bind, resolve, TLS files...).
    #[error("{0}")]
    Apply(#[from] BuildError),
    /// The server is not running (it shut down, or `run` was never called).
    #[error("the server is not running")]
    NotRunning,
}

/// Asks a running `Server` to switch to a new configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    control: Control,
    live: Arc<Live>,
}

// `reload` builds on `runtime`, not the other way round: the handle is offered on `Server`
// from here (an inherent impl may live anywhere in the crate).
impl Server {
    /// A handle that applies new configurations while `run` runs (SIGHUP uses it).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            control: self.control(),
            live: self.live(),
        }
    }
}

impl ReloadHandle {
    /// Applies `cfg` (already loaded and validated) and waits for the outcome. Reloads are
    /// applied one at a time, in order. Waits until `Server::run` is running.
    pub async fn reload(&self, cfg: Config) -> Result<ReloadSummary, ReloadError> {
        let spec = cfg.spec()?;
        match self.control.apply(spec).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(ReloadError::NotRunning),
        }
    }

    /// Loads `path` as `sluice check` does and applies it. A file that does not load is
    /// refused with its `FILE:LINE:COL` error and nothing changes.
    pub async fn reload_file(&self, path: PathBuf) -> Result<ReloadSummary, ReloadError> {
        let file = path.clone();
        let cfg = tokio::task::spawn_blocking(move || {
            let cfg = config::load_file(&file)?;
            check_tls(&file, &cfg)?;
            Ok::<_, config::ConfigError>(cfg)
        })
        .await
        .map_err(|_| ReloadError::NotRunning)??;
        match self.reload(cfg.clone()).await {
            Err(ReloadError::Apply(e @ BuildError::Bind { .. })) => Err(locate(&path, &cfg, e)),
            other => other,
        }
    }

    /// The live view of the current configuration.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

/// Loads every TLS certificate, key and ticket key file of `cfg` as building the server
/// would (parse, key matches certificate, SNI names, sizes); an error is positioned at the
/// config key that names the bad file (`sluice check`, `run` and every reload use it).
pub fn check_tls(path: &std::path::Path, cfg: &Config) -> Result<(), config::ConfigError> {
    for (i, f) in cfg.frontends.iter().enumerate() {
        if let Some(t) = &f.tls {
            crate::tls::check_files(&t.spec()).map_err(|e| {
                let key = format!("frontend[{i}].tls.{}", e.entry);
                config::ConfigError::at_key(path, &key, e.error.to_string())
            })?;
        }
    }
    Ok(())
}

/// A bind that failed, reported at its address in the file (as `sluice run` does).
fn locate(path: &std::path::Path, cfg: &Config, e: BuildError) -> ReloadError {
    if let BuildError::Bind { frontend, addr, .. } = &e {
        if let Some(at) = config::load::locate_bind(path, cfg, frontend, addr, e.to_string()) {
            return ReloadError::Config(at);
        }
    }
    ReloadError::Apply(e)
}

/// Reloads `path` on every SIGHUP until the server stops, logging the outcome: the summary
/// of what changed, or the error (with file:line) and that the old configuration stays.
/// Signals arriving during a reload are merged into one more reload after it.
pub fn spawn_sighup(path: PathBuf, handle: ReloadHandle) -> std::io::Result<JoinHandle<()>> {
    let mut hup = crate::process::signals::hangups()?;
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
