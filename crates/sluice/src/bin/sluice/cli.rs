//! The `sluice` command line: `run --config FILE` (until SIGTERM/SIGINT; SIGHUP reloads;
//! handlers in `sluice::process::signals`), `check --config FILE` (the file, every TLS file it
//! names, the fd limit), `reload`/`upgrade --config FILE` (check, then ask the running
//! process over its control socket and report the outcome) and, with the `demo` feature,
//! `demo` (logic in `crate::demo`); `--version` from clap. `main.rs` sets up tracing and the runtime.

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
        /// Set by `sluice upgrade` on the new process: the running one's control socket, from
        /// which it takes the listening sockets and the pid file.
        #[arg(long, hide = true)]
        upgrade_from: Option<PathBuf>,
    },
    /// Validate the configuration and exit 0, or print the first error and exit non-zero.
    Check {
        /// The TOML configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate the configuration like `check`, then tell the running sluice to reload it
    /// and wait for the outcome: exit 0 with what changed, or non-zero with why it was
    /// refused (the running configuration stays). Like `nginx -t && nginx -s reload`. The
    /// process is found through the control socket next to `global.pid_file`; with `--pid`
    /// it is sent SIGHUP instead and logs the outcome itself.
    Reload {
        /// The TOML configuration file (the one the running process was started with).
        #[arg(short, long)]
        config: PathBuf,
        /// Send SIGHUP to this process instead (the outcome is only in its log).
        #[arg(long)]
        pid: Option<i32>,
    },
    /// Replace the running sluice with a new binary without refusing a connection: the new
    /// process takes over the listening sockets and the pid file, then the old one stops
    /// accepting and drains for `global.grace`. Exits non-zero with the reason when the new
    /// process cannot start (the old one keeps serving). Needs `global.pid_file`.
    Upgrade {
        /// The TOML configuration file (the one the running process was started with).
        #[arg(short, long)]
        config: PathBuf,
        /// The binary to start; default: the path the running process was started from.
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Both tiers in one process, on loopback unless --listen/--edge say otherwise: a balancer
    /// in front of TLS edges (two by default) in front of a built-in app. No files needed;
    /// Ctrl-C stops it.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoOpts),
    /// Drain, ready or maint a server on several balancers at once (their `[admin]`
    /// endpoints), waiting for a drain to end; or print their merged view of the servers.
    Ctl(crate::ctl::CtlOpts),
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
    Ok(reload::check_tls(path, cfg)?)
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
    let mut summary = format!(
        "{}: OK ({} frontends, {} backends, max_connections {}, open files limit {limit})",
        path.display(),
        cfg.frontends.len(),
        cfg.backends.len(),
        cfg.global.max_connections
    );
    if cfg
        .frontends
        .iter()
        .any(|f| f.forward == sluice::spec::Forward::Sockmap)
    {
        match sluice::l4::sockmap::usable() {
            Ok(()) => summary.push_str("; forward = \"sockmap\": usable here"),
            Err(why) => summary.push_str(&format!(
                "; forward = \"sockmap\": NOT usable here ({why}), those frontends will copy/splice"
            )),
        }
    }
    Ok((cfg, summary))
}

/// How `run` was started, for the control socket and `sluice upgrade`.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// The running process's control socket, when this one upgrades it.
    pub upgrade_from: Option<PathBuf>,
}

/// `sluice run`: load, lock the pid file (when `global.pid_file` is set; a second `run`
/// with it fails naming the holder's pid), bind, open the control socket, write the pid,
/// tell systemd READY=1, serve until `shutdown` completes (reloading `path` on each SIGHUP
/// or control request), send STOPPING=1, drain, return. SIGQUIT returns at once instead:
/// no grace period, every listener and connection closes with the runtime (exit status 0).
/// With `upgrade_from`, the listening sockets and the pid file are taken from the running
/// process, which is told the outcome; it stops accepting once this one serves.
pub async fn run(
    path: &Path,
    shutdown: impl Future<Output = ()>,
    opts: RunOpts,
) -> Result<(), CliError> {
    // Resolved now: after a package upgrade `/proc/self/exe` names a deleted file.
    let exe = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("sluice"));
    let mut successor = match &opts.upgrade_from {
        Some(sock) => {
            let sock = sock.clone();
            let taken = tokio::task::spawn_blocking(move || reload::Successor::take_over(&sock))
                .await
                .map_err(|e| CliError::Reload(e.to_string()))?;
            Some(taken.map_err(|e| {
                CliError::Reload(format!(
                    "upgrade: cannot take over the listening sockets: {e}"
                ))
            })?)
        }
        None => None,
    };
    let result = serve(path, shutdown, exe, successor.as_mut()).await;
    if let (Err(e), Some(s)) = (&result, &successor) {
        s.failed(&e.to_string());
    }
    result
}

async fn serve(
    path: &Path,
    shutdown: impl Future<Output = ()>,
    exe: PathBuf,
    mut successor: Option<&mut reload::Successor>,
) -> Result<(), CliError> {
    let cfg = config::load::load_file(path)?;
    check_tls(path, &cfg)?;
    let (handed, handed_pid) = match successor.as_deref_mut() {
        Some(s) => (std::mem::take(&mut s.sockets), s.pid_file.take()),
        None => (Vec::new(), None),
    };
    // Locked before binding: a second `run` of this config stops here, naming the first
    // one's pid, before it can touch the file or the ports. Written once listening. An
    // upgrade takes over the running process's locked file instead.
    let pid_file = match (&cfg.global.pid_file, handed_pid) {
        (Some(p), Some((old, fd))) if Path::new(p) == old => Some(
            PidFile::adopt(Path::new(p), fd)
                .map_err(|e| CliError::Reload(format!("global.pid_file: {e}")))?,
        ),
        (Some(p), _) => Some(
            PidFile::lock(Path::new(p))
                .map_err(|e| CliError::Reload(format!("global.pid_file: {e}")))?,
        ),
        (None, _) => None,
    };
    let threads = cfg.global.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let server = Server::bind_inherited(cfg.clone(), Accept::Threads(threads), handed)
        .await
        .map_err(|e| locate(path, &cfg, e))?;
    let hup = reload::spawn_sighup(path.to_path_buf(), server.reload_handle())
        .map_err(CliError::Signal)?;
    if let Some(s) = &successor {
        // The old process stops accepting once it reads this.
        s.ready()
            .map_err(|e| CliError::Reload(format!("upgrade: handover failed: {e}")))?;
    }
    // Also the server's: its agent endpoint leaves the answering to the successor.
    let handed_over = server.handover_token();
    let _control = match &pid_file {
        Some(pf) => Some(control_server(path, pf, exe, &server, &handed_over)?),
        None => None,
    };
    if let Some(pf) = &pid_file {
        pf.write().map_err(|e| {
            CliError::Reload(format!(
                "global.pid_file: cannot write {}: {e}",
                pf.path().display()
            ))
        })?;
    }
    if let Some(s) = &successor {
        s.serving();
    }
    let quit = sluice::process::signals::quit().map_err(CliError::Signal)?;
    sluice::process::notify::ready();
    let gone = handed_over.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => sluice::process::notify::stopping(),
            // No STOPPING=1: the successor is the service's main process now.
            () = gone.cancelled() => tracing::info!("upgrade: the new process serves"),
        }
    };
    let result = tokio::select! {
        r = server.run(shutdown) => r,
        () = quit => {
            if !handed_over.is_cancelled() {
                sluice::process::notify::stopping();
            }
            Ok(())
        }
    };
    hup.abort();
    drop(pid_file);
    result?;
    Ok(())
}

/// The control socket next to the pid file: `sluice reload` and `sluice upgrade` ask here.
fn control_server(
    path: &Path,
    pf: &PidFile,
    exe: PathBuf,
    server: &Server,
    handed_over: &tokio_util::sync::CancellationToken,
) -> Result<reload::ControlServer, CliError> {
    let sock = reload::control_socket_path(pf.path());
    let args = successor_args(std::env::args_os().skip(1));
    let pid_fd = pf
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| CliError::Reload(format!("global.pid_file: {e}")))?;
    let upgrader = reload::Upgrader::new(
        exe,
        args,
        sock.clone(),
        Some((pf.path().to_path_buf(), pid_fd)),
        handed_over.clone(),
    );
    reload::ControlServer::start(&sock, path.to_path_buf(), server.reload_handle(), upgrader)
        .map_err(|e| CliError::Reload(format!("control socket {}: {e}", sock.display())))
}

/// The arguments that start a successor as this process was started (every global flag
/// and `run` option kept), without the `--upgrade-from` this one may have been given.
fn successor_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if a == "--upgrade-from" {
            skip_value = true;
        } else if !a.as_encoded_bytes().starts_with(b"--upgrade-from=") {
            out.push(a);
        }
    }
    out
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

/// How long `sluice reload` waits for the outcome (a reload resolves names, loads TLS
/// files and binds).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `sluice reload`: validates `path` as `check` does, asks the running process (found
/// through the control socket beside the file's `global.pid_file`) to reload and returns
/// its answer: what changed, or an error with why it refused. With `pid`, sends SIGHUP
/// instead (after checking that the pid is a running sluice).
pub fn reload(path: &Path, pid: Option<i32>) -> Result<String, CliError> {
    let cfg = precheck(path)?;
    match (pid, &cfg.global.pid_file) {
        (None, Some(file)) => ask(Path::new(file), "reload", RELOAD_WAIT),
        (Some(pid), _) => {
            running_sluice(pid)?;
            reload::send_reload_signal(pid)
                .map_err(|e| CliError::Reload(format!("cannot signal pid {pid}: {e}")))?;
            Ok(format!(
                "{}: OK; sent SIGHUP to pid {pid} (it logs the outcome of the reload; with \
                 global.pid_file, `sluice reload` reports it)",
                path.display()
            ))
        }
        (None, None) => Err(CliError::Reload(format!(
            "{}: no global.pid_file to find the running sluice; set one (its control socket \
             is next to it) or pass --pid PID to send SIGHUP",
            path.display()
        ))),
    }
}

/// `sluice upgrade`: validates `path`, asks the running process to start `binary` (default:
/// its own) on its listening sockets, and returns the answer.
pub fn upgrade(path: &Path, binary: Option<&Path>) -> Result<String, CliError> {
    let cfg = precheck(path)?;
    let Some(file) = &cfg.global.pid_file else {
        return Err(CliError::Reload(format!(
            "{}: sluice upgrade needs global.pid_file (the control socket is next to it)",
            path.display()
        )));
    };
    let binary = match binary {
        Some(b) => std::fs::canonicalize(b)
            .map_err(|e| CliError::Reload(format!("--binary {}: {e}", b.display())))?
            .display()
            .to_string(),
        None => String::new(),
    };
    let wait = reload::START_TIMEOUT + std::time::Duration::from_secs(30);
    ask(
        Path::new(file),
        format!("upgrade {binary}").trim_end(),
        wait,
    )
}

/// What `reload` and `upgrade` check before asking: the file and its TLS files, as `check`
/// does, but not the open-file limit: that is the running process's (systemd's
/// `LimitNOFILE=`), not this shell's, and the process checks it when it applies the file.
fn precheck(path: &Path) -> Result<Config, CliError> {
    let opts = config::LoadOptions {
        check_fd_limit: false,
        ..config::LoadOptions::default()
    };
    let cfg = config::load_file_with(path, &opts)?;
    check_tls(path, &cfg)?;
    Ok(cfg)
}

/// Sends `line` to the control socket of the sluice holding `pid_file`; its `ok` answer is
/// the result, its `err` answer the error. No answer says why (no process, a stale file).
fn ask(pid_file: &Path, line: &str, wait: std::time::Duration) -> Result<String, CliError> {
    let sock = reload::control_socket_path(pid_file);
    match reload::request(&sock, line, wait) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(text)) => Err(CliError::Reload(text)),
        Err(e) => {
            let file = pid_file.display();
            Err(CliError::Reload(match reload::is_held(pid_file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("no pid file {file} (global.pid_file): is sluice running?")
                }
                Ok(false) => format!(
                    "{file} is stale: no process holds it (pid {} is gone); is sluice running?",
                    reload::read_pid(pid_file).map_or_else(|_| "?".into(), |p| p.to_string())
                ),
                _ => format!("cannot reach the running sluice on {}: {e}", sock.display()),
            }))
        }
    }
}

/// Refuses a pid that is not a running sluice (gone, or another program).
fn running_sluice(pid: i32) -> Result<(), CliError> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|_| CliError::Reload(format!("pid {pid} is not running")))?;
    if comm.trim() != "sluice" {
        return Err(CliError::Reload(format!(
            "pid {pid} is {:?}, not sluice; nothing signalled",
            comm.trim()
        )));
    }
    Ok(())
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
        assert!(
            matches!(cli.command, Command::Run { config, upgrade_from: None } if config == Path::new("a.toml"))
        );
        let args = [
            "--log-format",
            "json",
            "run",
            "-c",
            "a",
            "--upgrade-from",
            "s",
            "--x",
        ];
        let kept = successor_args(args.map(std::ffi::OsString::from).into_iter());
        assert_eq!(kept, ["--log-format", "json", "run", "-c", "a", "--x"]);
        let cli = Cli::try_parse_from(["sluice", "upgrade", "-c", "a.toml", "--binary", "b"]);
        assert!(matches!(
            cli.unwrap().command,
            Command::Upgrade {
                binary: Some(_),
                ..
            }
        ));
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
