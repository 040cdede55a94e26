//! The pid file (`global.pid_file`): `sluice run` writes it once listening and removes it on
//! exit; `sluice reload` reads it and sends SIGHUP. Reading is size-limited and strict
//! (one positive decimal pid). It does not lock the file or detect a stale pid's reuse.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Longest pid file content read (a pid and a newline fit easily).
const MAX_PID_FILE: u64 = 64;

/// A written pid file, removed when dropped (if it still holds our pid).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path` (via a temporary file and rename, so a reader
    /// never sees half a pid).
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{pid}\n"))?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another instance may have taken the file over: leave its pid alone.
        if read_pid(&self.path).ok() == Some(self.pid as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
