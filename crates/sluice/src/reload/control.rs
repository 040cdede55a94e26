//! The control socket (HAProxy's master socket idea): a unix socket next to `global.pid_file`
//! (mode 0600; peers of this user or root only) on which `sluice reload` and `sluice upgrade`
//! ask the running process. One request line per connection, read with a size cap and a
//! timeout; the answer is `ok TEXT` or `err TEXT`, then the socket closes.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::upgrade::Upgrader;
use super::ReloadHandle;

/// Longest request line read.
pub(super) const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request line.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The control socket path of a pid file: `sluice.pid` → `sluice.sock` (`.sock` appended
/// when the pid file has no extension or already ends in `.sock`).
pub fn control_socket_path(pid_file: &Path) -> PathBuf {
    match pid_file.extension() {
        Some(ext) if ext != "sock" => pid_file.with_extension("sock"),
        _ => {
            let mut p = pid_file.as_os_str().to_owned();
            p.push(".sock");
            PathBuf::from(p)
        }
    }
}

/// A bound control socket, serving until dropped or `stop`; its path is removed on drop
/// when it is still ours (an upgraded successor puts its own socket in its place).
pub struct ControlServer {
    path: PathBuf,
    ino: (u64, u64),
    stop: CancellationToken,
}

impl ControlServer {
    /// Binds `path` (mode 0600, atomically replacing a stale socket left there) and serves
    /// `reload` (re-reading `config`) and, with `upgrader`, `upgrade` and the successor's
    /// `takeover`. Must run inside a tokio runtime.
    pub fn start(
        path: &Path,
        config: PathBuf,
        handle: ReloadHandle,
        upgrader: Upgrader,
    ) -> io::Result<ControlServer> {
        let tmp = {
            let mut t = path.as_os_str().to_owned();
            t.push(format!(".{}.tmp", std::process::id()));
            PathBuf::from(t)
        };
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)?;
        let meta = std::fs::metadata(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        let stop = CancellationToken::new();
        let state = Arc::new(State {
            config,
            handle,
            upgrader,
        });
        tokio::spawn(serve(listener, state, stop.clone()));
        tracing::info!("control socket {}", path.display());
        Ok(ControlServer {
            path: path.to_path_buf(),
            ino: (meta.dev(), meta.ino()),
            stop,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.cancel();
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct State {
    config: PathBuf,
    handle: ReloadHandle,
    upgrader: Upgrader,
}

async fn serve(listener: UnixListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            () = stop.cancelled() => return,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(handle_conn(stream, state.clone()));
            }
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                // EMFILE and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request line (at most [`MAX_REQUEST`] bytes, within [`REQUEST_TIMEOUT`]).
pub(super) async fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                buf.truncate(end);
                return Ok(());
            }
            if buf.len() > MAX_REQUEST {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too long",
                ));
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Writes the answer (`ok TEXT` or `err TEXT`) and closes.
pub(super) async fn answer(mut stream: UnixStream, outcome: Result<String, String>) {
    let text = match outcome {
        Ok(t) => format!("ok {t}\n"),
        Err(t) => format!("err {t}\n"),
    };
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write).await;
}

async fn handle_conn(mut stream: UnixStream, state: Arc<State>) {
    // Mode 0600 already keeps others out; this also covers the moment between binding the
    // socket and setting its mode. `upgrade` runs a binary the caller names.
    let me = rustix::process::geteuid().as_raw();
    match stream.peer_cred().map(|c| c.uid()) {
        Ok(uid) if uid == me || uid == 0 => {}
        other => {
            tracing::warn!("control socket: refused a client (uid {other:?})");
            return answer(stream, Err("permission denied".into())).await;
        }
    }
    let line = match read_line(&mut stream).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("control socket: bad request: {e}");
            return;
        }
    };
    let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
    match verb {
        "reload" => {
            tracing::info!("control socket: reloading {}", state.config.display());
            let outcome = match state.handle.reload_file(state.config.clone()).await {
                Ok(summary) => {
                    tracing::info!("reload done: {summary}");
                    Ok(format!("{}: reloaded: {summary}", state.config.display()))
                }
                Err(e) => {
                    tracing::error!(
                        "reload refused, the running configuration stays in effect: {e}"
                    );
                    Err(format!(
                        "reload refused, the running configuration stays in effect: {e}"
                    ))
                }
            };
            answer(stream, outcome).await;
        }
        "upgrade" => {
            let outcome = state.upgrader.upgrade(arg.trim()).await;
            answer(stream, outcome).await;
        }
        "takeover" => state.upgrader.takeover(stream, &state.handle).await,
        _ => answer(stream, Err(format!("unknown request {verb:?}"))).await,
    }
}

/// `sluice reload` / `sluice upgrade`: sends `line` to the control socket at `path` and
/// waits up to `wait` for the answer (at most 64 KiB): Ok(Ok(text)) for `ok`, Ok(Err(text))
/// for `err`. Err when no process answers (no socket, a stale socket, a timeout).
pub fn request(path: &Path, line: &str, wait: Duration) -> io::Result<Result<String, String>> {
    use std::io::{Read, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(path)?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    conn.set_read_timeout(Some(wait))?;
    conn.write_all(format!("{line}\n").as_bytes())?;
    let mut text = String::new();
    conn.take(64 * 1024).read_to_string(&mut text)?;
    let text = text.trim_end();
    match text.split_once(' ').unwrap_or((text, "")) {
        ("ok", rest) => Ok(Ok(rest.to_string())),
        ("err", rest) => Ok(Err(rest.to_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {text:?} (the process closed the connection early?)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::control_socket_path;
    use std::path::Path;

    #[test]
    fn socket_path_beside_the_pid_file() {
        let p = |s: &str| control_socket_path(Path::new(s));
        assert_eq!(
            p("/run/sluice/sluice.pid"),
            Path::new("/run/sluice/sluice.sock")
        );
        assert_eq!(p("run/sluice"), Path::new("run/sluice.sock"));
        assert_eq!(p("x.sock"), Path::new("x.sock.sock"));
    }
}
