//! The `sluice` command line: `run --config FILE` (until SIGTERM/SIGINT; SIGHUP reloads;
//! handlers in `sluice::process::signals`), `check --config FILE` (the file, every TLS file it
//! names, the fd limit), `reload --config FILE [--pid PID]` (check, then SIGHUP the running
//! process) and, with the `demo` feature, `demo` (logic in `crate::demo`); `--version` from
//! clap. `main.rs` sets up tracing and the runtime.

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use sluice::config::{self, Config};
use sluice::reload::{self, PidFile};
use sluice::runtime::BuildError;
use sluice::Accept;
use sluice::Server;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "L4 balancer with PROXY protocol and TLS edge"
)]
pub struct Cli {
    /// Format of the process log on stderr: `text` (human) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Validate the configuration like `check`, then tell the running sluice to reload it
    /// (SIGHUP to the pid in `global.pid_file`, or to `--pid`). Like `nginx -t && nginx -s
    /// reload`: an invalid file is reported here and nothing is signalled.
    Reload {
        /// The TOML configuration file (the one the running process was started with).
        #[arg(short, long)]
        config: PathBuf,
        /// The process to signal; default: the pid in the file's `global.pid_file`.
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Both tiers in one process, on loopback unless --listen/--edge say otherwise: a balancer
    /// in front of TLS edges (two by default) in front of a built-in app. No files needed;
    /// Ctrl-C stops it.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoOpts),
    /// Write the man pages and shell completions into a directory (for packaging).
    #[command(hide = true)]
    Generate(crate::generate::GenerateOpts),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Already formatted as "FILE:LINE:COL: key: message".
    #[error("{0}")]
    Config(#[from] config::load::ConfigError),
    #[error("{0}")]
    Limits(String),
    #[error(transparent)]
    Server(#[from] BuildError),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Reload(String),
}

/// Loads every TLS certificate, key and ticket key file of `cfg` as `run` does (parse, key
/// matches certificate, SNI names, sizes); an error is positioned at the config key that
/// names the bad file, like any other configuration error.
pub fn check_tls(path: &Path, cfg: &Config) -> Result<(), CliError> {
    for (i, f) in cfg.frontends.iter().enumerate() {
        if let Some(t) = &f.tls {
            sluice::tls::check_files(&t.spec()).map_err(|e| {
                let key = format!("frontend[{i}].tls.{}", e.entry);
                config::ConfigError::at_key(path, &key, e.error.to_string())
            })?;
        }
    }
    Ok(())
}

/// Loads `path`, loads its TLS files (`check_tls`) and checks that the open-file limit can fit `global.max_connections`.
/// Returns the configuration and a one-line summary.
pub fn check(path: &Path) -> Result<(Config, String), CliError> {
    let cfg = config::load::load_file(path)?;
    check_tls(path, &cfg)?;
    let needed = config::limits::fds_needed(&cfg);
    let limit = config::limits::raise_nofile(needed).map_err(|why| {
        let ceiling = config::limits::nofile_ceiling().unwrap_or(0);
        CliError::Limits(format!(
            "{}: global.max_connections: {} connections need {needed} open files: {why}, or {}",
            path.display(),
            cfg.global.max_connections,
            config::limits::advice(&cfg, ceiling)
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

/// `sluice run`: load, lock the pid file (when `global.pid_file` is set; a second `run`
/// with it fails naming the holder's pid), bind, write the pid, tell systemd
/// READY=1, serve until `shutdown` completes (reloading `path` on each SIGHUP), send
/// STOPPING=1, drain, return. SIGQUIT returns at once instead: no grace period, every
/// listener and connection closes with the runtime (exit status 0).
pub async fn run(path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), CliError> {
    let cfg = config::load::load_file(path)?;
    check_tls(path, &cfg)?;
    // Locked before binding: a second `run` of this config stops here, naming the first
    // one's pid, before it can touch the file or the ports. Written once listening.
    let pid_file = match &cfg.global.pid_file {
        Some(p) => Some(
            PidFile::lock(Path::new(p))
                .map_err(|e| CliError::Reload(format!("global.pid_file: {e}")))?,
        ),
        None => None,
    };
    let threads = cfg.global.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let server = Server::bind_with(cfg.clone(), Accept::Threads(threads))
        .await
        .map_err(|e| locate(path, &cfg, e))?;
    let hup = reload::spawn_sighup(path.to_path_buf(), server.reload_handle())
        .map_err(CliError::Signal)?;
    if let Some(pf) = &pid_file {
        pf.write().map_err(|e| {
            CliError::Reload(format!(
                "global.pid_file: cannot write {}: {e}",
                pf.path().display()
            ))
        })?;
    }
    let quit = sluice::process::signals::quit().map_err(CliError::Signal)?;
    sluice::process::notify::ready();
    let shutdown = async move {
        shutdown.await;
        sluice::process::notify::stopping();
    };
    let result = tokio::select! {
        r = server.run(shutdown) => r,
        () = quit => {
            sluice::process::notify::stopping();
            Ok(())
        }
    };
    hup.abort();
    drop(pid_file);
    result?;
    Ok(())
}

/// A bind that failed, positioned at its address in the config file (nginx names the
/// directive's file:line); other errors as they are.
fn locate(path: &Path, cfg: &Config, e: BuildError) -> CliError {
    match &e {
        BuildError::Bind { frontend, addr, .. } => {
            match config::load::locate_bind(path, cfg, frontend, addr, e.to_string()) {
                Some(located) => CliError::Config(located),
                None => CliError::Server(e),
            }
        }
        _ => CliError::Server(e),
    }
}

/// `sluice reload`: validates `path` as `check` does, finds the running process (`pid`, else
/// the file's `global.pid_file`) and sends it SIGHUP. Returns a line to print.
pub fn reload(path: &Path, pid: Option<i32>) -> Result<String, CliError> {
    let (cfg, _) = check(path)?;
    let pid = match (pid, &cfg.global.pid_file) {
        (Some(pid), _) => pid,
        (None, Some(file)) => reload::read_pid(Path::new(file)).map_err(|e| {
            CliError::Reload(format!(
                "cannot read the pid file {file} (global.pid_file): {e}; is sluice running?"
            ))
        })?,
        (None, None) => {
            return Err(CliError::Reload(format!(
                "{}: no global.pid_file to find the running sluice; pass --pid PID \
                 (or send SIGHUP yourself: kill -HUP PID)",
                path.display()
            )))
        }
    };
    reload::send_reload_signal(pid)
        .map_err(|e| CliError::Reload(format!("cannot signal pid {pid}: {e}")))?;
    Ok(format!(
        "{}: OK; sent SIGHUP to pid {pid} (it logs the outcome of the reload)",
        path.display()
    ))
}

/// Completes on the first SIGTERM or SIGINT (`sluice::process::signals::terminate`, the one
/// handler of the process). `sluice run` and `sluice demo` share it.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    sluice::process::signals::terminate()
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
        let cli = Cli::try_parse_from(["sluice", "reload", "-c", "c.toml", "--pid", "42"]).unwrap();
        assert!(matches!(cli.command, Command::Reload { pid: Some(42), .. }));
        let cli = Cli::try_parse_from(["sluice", "reload", "--config", "c.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Reload { pid: None, .. }));
        assert_eq!(cli.log_format, LogFormat::Text);
        let cli = Cli::try_parse_from(["sluice", "run", "-c", "a.toml", "--log-format", "json"]);
        assert_eq!(cli.unwrap().log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["sluice", "--log-format", "xml", "run", "-c", "a"]).is_err());
    }
}
