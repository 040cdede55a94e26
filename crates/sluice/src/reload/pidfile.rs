//! The pid file (`global.pid_file`): `sluice run` locks it (flock) before binding, writes its
//! pid once listening and removes it on exit; a second `run` finds it locked and stops,
//! naming the holder. `sluice reload` reads it and sends SIGHUP. Reading is size-limited and
//! strict (one positive decimal pid). It does not signal or wait for the holder.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// Longest pid file content read (a pid and a newline fit easily).
const MAX_PID_FILE: u64 = 64;

/// A locked pid file, held (flock) for the life of the process and removed when dropped (if
/// it holds our pid, or nothing yet).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
    /// The open, locked file: closing it releases the lock.
    file: File,
}

/// Why the pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another live process holds the lock: a sluice already runs with this pid file.
    #[error("{path} is locked by a running sluice (pid {pid}); stop it first, or give this instance another global.pid_file")]
    Held { path: String, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: String, source: io::Error },
}

impl PidFile {
    /// Locks `path` (created if missing, its content left as it is) without waiting: a
    /// file another process holds is refused with that process's pid, untouched. A file
    /// left by a process that died is not locked and is taken over. Write the pid with
    /// [`PidFile::write`].
    pub fn lock(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |source| PidFileError::Io {
            path: path.display().to_string(),
            source,
        };
        // The holder may remove the file between our open and our lock: we would then
        // hold a lock on a file nobody sees. Retry on the file now at `path`.
        for _ in 0..8 {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io_err)?;
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(PidFileError::Held {
                        path: path.display().to_string(),
                        // Empty while the holder is still starting (it writes once
                        // listening).
                        pid: read_pid(path)
                            .map_or_else(|_| "not written yet".into(), |p| p.to_string()),
                    });
                }
                Err(e) => return Err(io_err(e.into())),
            }
            if is_at(&file, path) {
                return Ok(PidFile {
                    path: path.to_path_buf(),
                    pid: std::process::id(),
                    file,
                });
            }
        }
        Err(io_err(io::Error::other("the file keeps being replaced")))
    }

    /// Takes over the pid file an upgrading sluice handed over (`file`: its open, locked
    /// file, so the lock stays held throughout). Refused when `file` is not the file at
    /// `path`. Write the pid with [`PidFile::write`] once ready.
    pub fn adopt(path: &Path, file: std::os::fd::OwnedFd) -> Result<PidFile, PidFileError> {
        let file = File::from(file);
        if !is_at(&file, path) {
            return Err(PidFileError::Io {
                path: path.display().to_string(),
                source: io::Error::other("the handed-over pid file is not the file at this path"),
            });
        }
        Ok(PidFile {
            path: path.to_path_buf(),
            pid: std::process::id(),
            file,
        })
    }

    /// The open, locked file (handed to the new process by `sluice upgrade`).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// Writes this process's pid into the locked file (in place: the lock is on this file).
    pub fn write(&self) -> io::Result<()> {
        write_pid(&self.file, self.pid)
    }

    /// `lock` then `write`.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let pf = PidFile::lock(path)?;
        pf.write().map_err(|source| PidFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(pf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked (the lock goes with the file when it closes). A file
        // put in its place, or another pid written into it by hand, is left alone.
        // Positional: the file offset is shared with every process this file was handed
        // to by `sluice upgrade`.
        let mut buf = [0u8; MAX_PID_FILE as usize];
        let n = self.file.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = text.trim();
        let ours = text.is_empty() || text.parse::<u32>().ok() == Some(self.pid);
        if ours && is_at(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `pid` into the open pid file `file` so that a reader never sees it empty or
/// mixed: one write over the old content (padded with spaces, which readers trim), then the
/// file is cut to length when the old content was longer. The running sluice writes its
/// successor's pid this way on upgrade. A file that needs no cut is written once: a reader
/// that saw the pid sees the file change no more (its mtime included).
pub(crate) fn write_pid(file: &File, pid: u32) -> io::Result<()> {
    let text = format!("{pid}\n");
    let old = file.metadata()?.len().min(MAX_PID_FILE) as usize;
    let padded = format!("{text:<old$}");
    file.write_all_at(padded.as_bytes(), 0)?;
    if padded.len() != text.len() {
        file.set_len(text.len() as u64)?;
    }
    Ok(())
}

/// Whether `file` is the file now at `path` (not one removed or replaced since it opened).
fn is_at(file: &File, path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| {
        file.metadata()
            .is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev())
    })
}

/// Reads a pid file: one positive decimal number, surrounding whitespace allowed.
pub fn read_pid(path: &Path) -> io::Result<i32> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_PID_FILE + 1)
        .read_to_string(&mut text)?;
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if text.len() as u64 > MAX_PID_FILE {
        return Err(bad("too long for a pid file"));
    }
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(bad(&format!("not a pid: {:?}", text.trim()))),
    }
}

/// Whether some process holds the lock of the pid file at `path` (a running sluice does
/// from start to exit). A file nobody holds was left by a process that is gone.
pub fn is_held(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Sends SIGHUP (reload) to `pid`.
pub fn send_reload_signal(pid: i32) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid must be positive"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_back_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.pid");
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path).unwrap(), std::process::id() as i32);
        assert_eq!(pf.path(), path);
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn someone_elses_pid_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.pid");
        let pf = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pf);
        assert_eq!(read_pid(&path).unwrap(), 1);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.pid");
        let first = PidFile::create(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = PidFile::lock(&path).unwrap_err();
        assert!(matches!(err, PidFileError::Held { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "untouched");
        drop(first);
        assert!(!path.exists(), "the holder removes it");
        // A stale file (its writer died: nobody holds the lock) is taken over.
        std::fs::write(&path, "999999\n").unwrap();
        let pf = PidFile::lock(&path).unwrap();
        pf.write().unwrap();
        assert_eq!(read_pid(&path).unwrap(), std::process::id() as i32);
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn held_and_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.pid");
        let pf = PidFile::create(&path).unwrap();
        assert!(is_held(&path).unwrap());
        let fd = pf.as_fd().try_clone_to_owned().unwrap();
        let mut other = PidFile::adopt(&path, fd).unwrap();
        other.pid += 1;
        other.write().unwrap();
        drop(pf);
        assert!(path.exists(), "the successor's pid is in it: left alone");
        assert!(
            is_held(&path).unwrap(),
            "the adopted descriptor keeps the lock"
        );
        drop(other);
        assert!(!path.exists());
        std::fs::write(&path, "1\n").unwrap();
        assert!(!is_held(&path).unwrap(), "stale");
    }

    #[test]
    fn a_file_put_in_its_place_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.pid");
        let pf = PidFile::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        drop(pf);
        assert!(path.exists(), "not the file it locked");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        for bad in ["", "abc", "-5", "0", "12 34", &"9".repeat(100)] {
            std::fs::write(&path, bad).unwrap();
            assert!(read_pid(&path).is_err(), "{bad:?} accepted");
        }
        std::fs::write(&path, " 4242\n").unwrap();
        assert_eq!(read_pid(&path).unwrap(), 4242);
        assert!(read_pid(&dir.path().join("missing")).is_err());
    }
}
