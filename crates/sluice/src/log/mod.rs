//! Where access lines go (`LogSink`): files shared by both roles (`LogFiles`: each path opened
//! once, appended and flushed per line, reopened on SIGUSR1) or syslog (`syslog.rs`); the one
//! field escaper (`escape.rs`), timestamps (`time.rs`), the process log's JSON formatter
//! (`stderr.rs`). What a line says is its role's business: `l4::log`, `edge::access`.

mod escape;
mod stderr;
mod syslog;
pub(crate) mod time;
pub(crate) use escape::{json_str, push_var};
pub(crate) use stderr::json_records;
pub use stderr::{set_json_records, FlatJson};
pub(crate) use syslog::{Syslog, SyslogDest};

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An append-only log file, flushed after every line, reopenable for rotation.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

fn open_append(path: &Path) -> io::Result<BufWriter<File>> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(8 * 1024, f))
}

impl LogFile {
    pub(crate) fn open(path: impl Into<PathBuf>) -> io::Result<LogFile> {
        let path = path.into();
        let out = Mutex::new(open_append(&path)?);
        Ok(LogFile { path, out })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` plus a newline and flushes.
    pub(crate) fn write_line(&self, line: &str) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Reopens the path (after a rotation moved the old file away).
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = out.flush();
        *out = fresh;
        Ok(())
    }
}

/// Where one frontend's access lines go besides the process log.
#[derive(Debug, Clone)]
pub(crate) enum LogSink {
    File(Arc<LogFile>),
    Syslog(Arc<Syslog>),
}

impl LogSink {
    /// Writes one line (`msgid`: the syslog MSGID, `access` or `conn`); a failure is logged.
    pub(crate) fn write_line(&self, msgid: &str, line: &str) {
        match self {
            LogSink::File(f) => {
                if let Err(e) = f.write_line(line) {
                    tracing::warn!("cannot write to {}: {e}", f.path().display());
                }
            }
            LogSink::Syslog(s) => s.send(msgid, line),
        }
    }
}

/// All log files of a server, each path opened once even when frontends share it.
#[derive(Debug, Default)]
pub(crate) struct LogFiles {
    files: Mutex<HashMap<PathBuf, Arc<LogFile>>>,
}

impl LogFiles {
    pub(crate) fn open(&self, path: &Path) -> io::Result<Arc<LogFile>> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(LogFile::open(path)?);
        files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    /// Reopens every file; failures are logged and the old handle kept.
    pub(crate) fn reopen_all(&self) {
        let files: Vec<_> = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for f in files {
            match f.reopen() {
                Ok(()) => tracing::info!("reopened log file {}", f.path().display()),
                Err(e) => tracing::warn!("cannot reopen log file {}: {e}", f.path().display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_appended_shared_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        let files = LogFiles::default();
        let a = files.open(&path).unwrap();
        let b = files.open(&path).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        a.write_line("one").unwrap();
        std::fs::rename(&path, dir.path().join("conn.log.1")).unwrap();
        files.reopen_all();
        b.write_line("two").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("conn.log.1")).unwrap(),
            "one\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }
}
