//! Peer programs as child processes: `spawn_peer` runs one (killed on drop), `wait_ready`
//! polls until its socket accepts (panicking with its log if it exits), and `start_haproxy` /
//! `start_nginx` are the one way tests launch those two, `start_uwsgi_wsgi` the one way to run
//! a WSGI file under the real uWSGI. Configs stay with each test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{skip, tool, wait_unix, write_file, ChildGuard};

/// Upper bound for a peer to come up (uWSGI imports Flask; the machine is shared).
pub const STARTUP: Duration = Duration::from_secs(30);

/// What tells that a starting peer is ready: its socket accepts.
pub enum Probe {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Probe {
    pub async fn ready(&self) -> bool {
        match self {
            Probe::Tcp(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
            Probe::Unix(p) => tokio::net::UnixStream::connect(p).await.is_ok(),
        }
    }
}

/// Polls `probe` until it holds; panics with the peer's `log` if it exits or stalls.
pub async fn wait_ready(what: &str, child: &mut ChildGuard, log: &Path, probe: Probe) {
    let end = tokio::time::Instant::now() + STARTUP;
    loop {
        if probe.ready().await {
            return;
        }
        let text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("{what} exited ({st}):\n{}", text());
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{what} not ready within {STARTUP:?}:\n{}",
            text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `program args` as a child process killed on drop; stdout/stderr go to `log`.
pub fn spawn_peer(program: &Path, args: &[&str], log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).expect("peer log file");
    let err = out.try_clone().expect("dup peer log");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    ChildGuard(child)
}

/// HAProxy with `cfg` (written to `dir`/haproxy.cfg, output in `dir`/haproxy.out), ready once
/// `addr` (a frontend it binds) accepts. Returns the child and its output file.
pub async fn start_haproxy(
    haproxy: &Path,
    dir: &Path,
    cfg: &str,
    addr: SocketAddr,
) -> (ChildGuard, PathBuf) {
    let path = write_file(dir, "haproxy.cfg", cfg);
    let out = dir.join("haproxy.out");
    let mut child = spawn_peer(haproxy, &["-f", path.to_str().unwrap(), "-db"], &out);
    wait_ready("haproxy", &mut child, &out, Probe::Tcp(addr)).await;
    (child, out)
}

/// nginx with the config file `conf`, prefix `dir` (error log `dir`/error.log, output in
/// `dir`/nginx.out), ready once `addr` accepts.
pub async fn start_nginx(nginx: &Path, dir: &Path, conf: &Path, addr: SocketAddr) -> ChildGuard {
    let prefix = format!("{}/", dir.display());
    let err = format!("{prefix}error.log");
    let conf = conf.display().to_string();
    let mut child = spawn_peer(
        nginx,
        &["-p", &prefix, "-c", &conf, "-e", &err],
        &dir.join("nginx.out"),
    );
    wait_ready("nginx", &mut child, Path::new(&err), Probe::Tcp(addr)).await;
    child
}

/// The real uWSGI (Debian's python3 plugin) serving the WSGI source `app` (written to `dir`)
/// on `<dir>/app.sock`, one process, `extra` arguments appended; ready once the socket
/// accepts. None, after a SKIP line, when uwsgi or its python3 plugin is missing.
pub async fn start_uwsgi_wsgi(
    dir: &Path,
    app: &str,
    extra: &[&str],
) -> Option<(ChildGuard, PathBuf)> {
    let uwsgi = tool("uwsgi", &["/usr/bin/uwsgi", "uwsgi"])?;
    if !Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists() {
        skip("uwsgi python3 plugin (/usr/lib/uwsgi/plugins/python3_plugin.so)");
        return None;
    }
    let app = write_file(dir, "app.py", app);
    let sock = dir.join("app.sock");
    let (s, a) = (sock.display().to_string(), app.display().to_string());
    let mut args = vec![
        "--plugin",
        "python3",
        "--socket",
        &s,
        "--wsgi-file",
        &a,
        "--processes",
        "1",
        "--need-app",
        "--die-on-term",
    ];
    args.extend_from_slice(extra);
    let mut child = spawn_peer(&uwsgi, &args, &dir.join("uwsgi.log"));
    wait_unix(&sock, &mut child, dir).await;
    Some((child, sock))
}
