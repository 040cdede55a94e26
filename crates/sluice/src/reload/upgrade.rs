//! `sluice upgrade`, both sides: the running process (`Upgrader`) starts the new binary with
//! `--upgrade-from SOCKET`; the new one (`Successor`) takes the pid file and every listening
//! socket over that control socket (SCM_RIGHTS), says `ready` or why not; only then the old
//! one writes its pid, sends `MAINPID=` and stops accepting. Draining and building: callers'.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::control::answer;
use super::ReloadHandle;
use crate::process::{fdpass, notify};
use crate::runtime::{HandedSocket, SocketRole};

/// How long the new process has to connect, build its server and say `ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Caps on what the successor accepts from the running process.
const MAX_HANDOVER_BYTES: usize = 1 << 20;
const MAX_HANDOVER_FDS: usize = 4096;

/// The running process's side: starts successors and hands its sockets to one.
pub struct Upgrader {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    socket: PathBuf,
    pid_file: Option<(PathBuf, OwnedFd)>,
    pending: Mutex<Option<Pending>>,
    handed_over: CancellationToken,
}

struct Pending {
    pid: u32,
    done: oneshot::Sender<Result<(), String>>,
}

impl Upgrader {
    /// `exe`: the binary started when `sluice upgrade` names none (resolve it at start: after
    /// a package upgrade `/proc/self/exe` names a deleted file). `args`: the arguments that
    /// start it as this process was (`run --config FILE` ...), `--upgrade-from SOCKET` is
    /// added. `pid_file`: the locked pid file, handed over so the lock is never released.
    /// `handed_over` is cancelled once a successor serves: stop accepting and drain.
    pub fn new(
        exe: PathBuf,
        args: Vec<std::ffi::OsString>,
        socket: PathBuf,
        pid_file: Option<(PathBuf, OwnedFd)>,
        handed_over: CancellationToken,
    ) -> Upgrader {
        Upgrader {
            exe,
            args,
            socket,
            pid_file,
            pending: Mutex::new(None),
            handed_over,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `binary` (empty: the binary this process was started from) and waits until it
    /// serves (Ok: a line saying so) or fails (Err: why; this process keeps serving).
    pub(super) async fn upgrade(&self, binary: &str) -> Result<String, String> {
        let exe = if binary.is_empty() {
            self.exe.clone()
        } else {
            PathBuf::from(binary)
        };
        let me = std::process::id();
        if self.handed_over.is_cancelled() || self.pending().is_some() {
            return Err(format!("pid {me}: an upgrade is already under way"));
        }
        let mut child = tokio::process::Command::new(&exe)
            .args(&self.args)
            .arg("--upgrade-from")
            .arg(&self.socket)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e}; pid {me} keeps serving",
                    exe.display()
                )
            })?;
        let pid = child.id().unwrap_or(0);
        let (tx, mut rx) = oneshot::channel();
        *self.pending() = Some(Pending { pid, done: tx });
        tracing::info!("upgrade: started {} as pid {pid}", exe.display());
        let outcome = tokio::select! {
            r = &mut rx => r.unwrap_or_else(|_| Err("the handover was abandoned".into())),
            st = child.wait() => {
                // Its reason, when it sent one before exiting, says more than the status.
                match tokio::time::timeout(Duration::from_secs(1), &mut rx).await {
                    Ok(Ok(Err(why))) => Err(why),
                    _ => Err(format!(
                        "the new process exited before it was ready ({})",
                        st.map_or_else(|e| e.to_string(), |s| s.to_string())
                    )),
                }
            }
            () = tokio::time::sleep(START_TIMEOUT) => {
                Err(format!("the new process was not ready within {START_TIMEOUT:?}"))
            }
        };
        self.pending().take();
        match outcome {
            Ok(()) => {
                tracing::info!("upgrade: pid {pid} serves; stopping accepting and draining");
                Ok(format!(
                    "pid {pid} ({}) serves; pid {me} stopped accepting and drains for global.grace",
                    exe.display()
                ))
            }
            Err(why) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                tracing::error!("upgrade failed, this process keeps serving: {why}");
                Err(format!(
                    "upgrade to {} failed, pid {me} keeps serving: {why}",
                    exe.display()
                ))
            }
        }
    }

    /// A successor asks for the sockets: only the child started by `upgrade` gets them.
    pub(super) async fn takeover(&self, stream: tokio::net::UnixStream, handle: &ReloadHandle) {
        let peer = stream.peer_cred().ok().and_then(|c| c.pid());
        let expected = self.pending().as_ref().map(|p| p.pid);
        let Some(pid) = expected.filter(|&p| peer == Some(p as i32)) else {
            answer(stream, Err("no upgrade under way for this process".into())).await;
            return;
        };
        let outcome = self.hand_over(stream, handle, pid).await;
        if outcome.is_ok() {
            self.handed_over.cancel();
        }
        if let Some(p) = self.pending().take() {
            let _ = p.done.send(outcome);
        }
    }

    async fn hand_over(
        &self,
        stream: tokio::net::UnixStream,
        handle: &ReloadHandle,
        pid: u32,
    ) -> Result<(), String> {
        let sockets = match handle.control.export().await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("cannot duplicate the listening sockets: {e}")),
            Err(_) => return Err("the server is not running".into()),
        };
        let pid_file = match &self.pid_file {
            Some((path, fd)) => Some((
                path.clone(),
                fd.try_clone().map_err(|e| format!("pid file: {e}"))?,
            )),
            None => None,
        };
        let pid_file_fd = match &self.pid_file {
            Some((_, fd)) => Some(std::fs::File::from(
                fd.try_clone().map_err(|e| format!("pid file: {e}"))?,
            )),
            None => None,
        };
        let conn = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|e| format!("control socket: {e}"))?;
        tokio::task::spawn_blocking(move || {
            send_sockets(&conn, pid_file, sockets).map_err(|e| format!("handover: {e}"))?;
            let said = read_reply(&conn, START_TIMEOUT)
                .map_err(|e| format!("the new process did not say it was ready: {e}"))?;
            match said.split_once(' ').unwrap_or((&said, "")) {
                ("ready", _) => {
                    // The pid file names the new process before anyone is told it serves.
                    if let Some(file) = &pid_file_fd {
                        if let Err(e) = super::pidfile::write_pid(file, pid) {
                            tracing::warn!("upgrade: cannot write pid {pid} to the pid file: {e}");
                        }
                    }
                    notify::main_pid(pid);
                    (&conn)
                        .write_all(b"ok\n")
                        .map_err(|e| format!("handover: {e}"))?;
                    // Answered once its control socket is up, so that the next `sluice
                    // reload` reaches it; it serves already, so a silence only delays. But
                    // a closed connection means it ended: this process keeps accepting
                    // and takes its pid file back.
                    match read_reply(&conn, Duration::from_secs(10)) {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            let me = std::process::id();
                            if let Some(file) = &pid_file_fd {
                                if let Err(e) = super::pidfile::write_pid(file, me) {
                                    tracing::warn!("upgrade: cannot write pid {me} back: {e}");
                                }
                            }
                            notify::main_pid(me);
                            Err(format!(
                                "the new process (pid {pid}) ended after it was ready, before it said it serves"
                            ))
                        }
                        Err(e) => {
                            tracing::warn!(
                                "upgrade: pid {pid} did not confirm its control socket: {e}"
                            );
                            Ok(())
                        }
                    }
                }
                ("err", why) => Err(why.to_string()),
                _ => Err(format!("unexpected answer {said:?}")),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// One line per descriptor, the descriptor attached: `pidfile PATH`, `frontend BIND ADDR
/// NAME`, `admin BIND ADDR`; then `end`.
fn send_sockets(
    conn: &UnixStream,
    pid_file: Option<(PathBuf, OwnedFd)>,
    sockets: Vec<HandedSocket>,
) -> io::Result<()> {
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    if let Some((path, fd)) = pid_file {
        let path = path.to_string_lossy();
        if !path.contains('\n') {
            fdpass::send(conn, format!("pidfile {path}\n").as_bytes(), &[fd.as_fd()])?;
        }
    }
    for s in &sockets {
        let line = match &s.role {
            SocketRole::Frontend { bind, frontend } => {
                format!(
                    "frontend {bind} {} {}\n",
                    s.addr,
                    frontend.replace('\n', " ")
                )
            }
            SocketRole::Admin { bind } => format!("admin {bind} {}\n", s.addr),
            SocketRole::Agent { bind } => format!("agent {bind} {}\n", s.addr),
        };
        fdpass::send(conn, line.as_bytes(), &[s.fd.as_fd()])?;
    }
    fdpass::send(conn, b"end\n", &[])
}

/// Reads one line (at most 4 KiB) within `wait`.
fn read_reply(conn: &UnixStream, wait: Duration) -> io::Result<String> {
    conn.set_read_timeout(Some(wait))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while buf.len() <= super::control::MAX_REQUEST {
        match (&*conn).read(&mut byte)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            _ => buf.push(byte[0]),
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
}

/// The new process's side of `sluice upgrade`: what the running process handed over,
/// and the connection to tell it the outcome.
pub struct Successor {
    conn: UnixStream,
    /// The running process's pid file (path as it configured it, and its locked file).
    pub pid_file: Option<(PathBuf, OwnedFd)>,
    /// Every listening socket, to give to `Server::bind_inherited`.
    pub sockets: Vec<HandedSocket>,
}

impl Successor {
    /// Connects to the control socket at `path` and receives the pid file and sockets.
    /// Blocking (with timeouts).
    pub fn take_over(path: &Path) -> io::Result<Successor> {
        let conn = UnixStream::connect(path)?;
        conn.set_write_timeout(Some(Duration::from_secs(10)))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        (&conn).write_all(b"takeover\n")?;
        let (mut buf, mut fds) = (Vec::new(), Vec::new());
        while !buf.ends_with(b"end\n") {
            let n = fdpass::recv(
                &conn,
                &mut buf,
                MAX_HANDOVER_BYTES,
                &mut fds,
                MAX_HANDOVER_FDS,
            )?;
            if n == 0 {
                let text = String::from_utf8_lossy(&buf);
                return Err(io::Error::other(format!(
                    "the running process refused: {}",
                    text.trim().strip_prefix("err ").unwrap_or(&text)
                )));
            }
        }
        let text = String::from_utf8(buf)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "handover: not UTF-8"))?;
        let lines: Vec<&str> = text.lines().filter(|l| *l != "end").collect();
        if lines.len() != fds.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "handover: {} descriptors for {} entries",
                    fds.len(),
                    lines.len()
                ),
            ));
        }
        let mut me = Successor {
            conn,
            pid_file: None,
            sockets: Vec::new(),
        };
        let bad = |l: &str| io::Error::new(io::ErrorKind::InvalidData, format!("handover: {l:?}"));
        for (line, fd) in lines.into_iter().zip(fds) {
            let mut words = line.splitn(4, ' ');
            let kind = words.next().unwrap_or("");
            if kind == "pidfile" {
                let path = line.strip_prefix("pidfile ").ok_or_else(|| bad(line))?;
                me.pid_file = Some((PathBuf::from(path), fd));
                continue;
            }
            let mut addr = || -> io::Result<SocketAddr> {
                words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| bad(line))
            };
            let (bind, at) = (addr()?, addr()?);
            let role = match kind {
                "frontend" => SocketRole::Frontend {
                    frontend: words.next().unwrap_or("").to_string(),
                    bind,
                },
                "admin" => SocketRole::Admin { bind },
                "agent" => SocketRole::Agent { bind },
                _ => return Err(bad(line)),
            };
            me.sockets.push(HandedSocket { role, addr: at, fd });
        }
        Ok(me)
    }

    /// Tells the running process why this one cannot take over (it keeps serving).
    pub fn failed(&self, why: &str) {
        let line = format!("err {}\n", why.replace('\n', " "));
        let _ = (&self.conn).write_all(line.as_bytes());
    }

    /// Tells the running process this one serves, and waits until it has handed over (it
    /// then stops accepting and names this process in the pid file).
    pub fn ready(&self) -> io::Result<()> {
        (&self.conn).write_all(b"ready\n")?;
        match read_reply(&self.conn, Duration::from_secs(30))?.as_str() {
            "ok" => Ok(()),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// Tells the running process this one's control socket is up: `sluice upgrade`
    /// returns then, and the next `sluice reload` reaches this process.
    pub fn serving(&self) {
        let _ = (&self.conn).write_all(b"serving\n");
    }
}
