//! The `sluice` command line: `run --config FILE` (until SIGTERM/SIGINT), `check --config
//! FILE` and `demo` (whose logic lives in `crate::demo`); `--version` comes from clap.
//! `main.rs` only sets up tracing and the runtime.

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::server::{Server, ServerError};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "L4 balancer with PROXY protocol and TLS edge"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run until SIGTERM or SIGINT.
    Run {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate the configuration and exit 0, or print the first error and exit non-zero.
    Check {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Both tiers in one process on loopback: a balancer in front of two TLS edges in front of
    /// a built-in app. No files needed; Ctrl-C stops it.
    Demo(crate::demo::DemoOpts),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Already formatted as "FILE:LINE:COL: key: message".
    #[error("{0}")]
    Config(#[from] config::load::ConfigError),
    #[error("{0}")]
    Limits(String),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Loads `path` and checks that the open-file limit can fit `global.max_connections`.
/// Returns the configuration and a one-line summary.
pub fn check(path: &Path) -> Result<(Config, String), CliError> {
    let cfg = config::load::load_file(path)?;
    let needed = config::limits::fds_needed(&cfg);
    let limit = config::limits::raise_nofile(needed).map_err(|why| {
        CliError::Limits(format!(
            "{}: global.max_connections: {} connections need {needed} open files: {why}",
            path.display(),
            cfg.global.max_connections
        ))
    })?;
    let summary = format!(
        "{}: OK ({} frontends, {} backends, max_connections {}, open files limit {limit})",
        path.display(),
        cfg.frontends.len(),
        cfg.backends.len(),
        cfg.global.max_connections
    );
    Ok((cfg, summary))
}

/// `sluice run`: load, bind, serve until `shutdown` completes, drain, return.
pub async fn run(path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), CliError> {
    let cfg = config::load::load_file(path)?;
    let server = Server::bind(cfg).await?;
    server.run(shutdown).await?;
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT. Installs the handlers at once, so a signal
/// arriving before the future is polled is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(CliError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_check_and_short_flag() {
        let cli = Cli::try_parse_from(["sluice", "run", "--config", "a.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Run { config } if config == Path::new("a.toml")));
        let cli = Cli::try_parse_from(["sluice", "check", "-c", "b.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Check { config } if config == Path::new("b.toml")));
        assert!(Cli::try_parse_from(["sluice", "run"]).is_err());
    }
}
