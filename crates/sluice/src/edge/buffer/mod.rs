//! Request and response buffering on the edge (nginx's `uwsgi_request_buffering` and
//! `uwsgi_buffering`): bodies in memory up to a bound, then in unlinked temp files, so the
//! app server is contacted only with a whole request and released as soon as it answered.
//! Here: the process-wide cap on open temp files (`global.max_temp_files`) and the temp
//! file itself; the bodies are in `request`, `response` and `spool`.

pub mod request;
pub mod response;
pub mod spool;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Default `global.max_temp_files`.
pub const DEFAULT_MAX_TEMP_FILES: usize = 1024;

/// Largest read from a temp file, hence largest frame a spooled body yields.
pub const READ_CHUNK: usize = 64 * 1024;

/// A cap on temp files open at once, shared by request and response spooling.
/// `global()` is the process's; tests make their own.
#[derive(Debug)]
pub struct TempFiles {
    open: AtomicUsize,
    limit: AtomicUsize,
    freed: Notify,
}

static GLOBAL: LazyLock<Arc<TempFiles>> = LazyLock::new(|| TempFiles::new(DEFAULT_MAX_TEMP_FILES));

impl TempFiles {
    pub fn new(limit: usize) -> Arc<TempFiles> {
        Arc::new(TempFiles {
            open: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            freed: Notify::new(),
        })
    }

    /// The process-wide cap (`global.max_temp_files`, set by the server at start and reload).
    pub fn global() -> &'static Arc<TempFiles> {
        &GLOBAL
    }

    /// Changes the cap; files already open stay open (a lower cap applies as they close).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    /// Temp files open now.
    pub fn in_use(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// A slot if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.load(Ordering::SeqCst);
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Waits for a free slot (callers bound the wait with a timeout).
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        // Bounded by the caller's timeout; each pass follows a release or a new limit.
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.try_acquire() {
                return s;
            }
            notified.await;
        }
    }
}

/// One temp file's place under the cap; released when dropped.
#[derive(Debug)]
pub struct Slot(Arc<TempFiles>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        // A waiter that gives up (timeout) passes the wake-up on (tokio's Notified does).
        self.0.freed.notify_one();
    }
}

/// An unlinked temp file holding its slot. Reads and writes are positional and blocking,
/// as nginx's are: they hit the page cache, and a spooled body is read in 64 KiB chunks.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    _slot: Slot,
}

impl TempFile {
    /// Creates an unlinked file in `dir` (O_TMPFILE where the filesystem has it).
    pub fn create(dir: &Path, slot: Slot) -> io::Result<TempFile> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(TempFile { file, _slot: slot })
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Exactly `len` bytes from `offset` (which the caller wrote before).
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(len);
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_and_a_release_wakes_a_waiter() {
        let cap = TempFiles::new(2);
        let a = cap.try_acquire().unwrap();
        let _b = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        assert_eq!(cap.in_use(), 2);
        let waiter = {
            let cap = cap.clone();
            tokio::spawn(async move { cap.acquire().await })
        };
        // A waiter that times out gives nothing away.
        let timed_out =
            tokio::time::timeout(std::time::Duration::from_secs(1), cap.acquire()).await;
        assert!(timed_out.is_err());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        let c = waiter.await.unwrap();
        assert_eq!(cap.in_use(), 2);
        drop(c);
        assert_eq!(cap.in_use(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_the_limit_wakes_waiters() {
        let cap = TempFiles::new(0);
        assert!(cap.try_acquire().is_none());
        let waiter = {
            let cap = cap.clone();
            tokio::spawn(async move { cap.acquire().await })
        };
        tokio::task::yield_now().await;
        cap.set_limit(1);
        let s = waiter.await.unwrap();
        assert_eq!(cap.in_use(), 1);
        drop(s);
        assert_eq!(cap.in_use(), 0);
    }

    #[test]
    fn temp_files_are_unlinked_and_positional() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(1);
        let f = TempFile::create(dir.path(), cap.try_acquire().unwrap()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        f.write_at(b"hello world", 0).unwrap();
        f.write_at(b"W", 6).unwrap();
        assert_eq!(&f.read_at(6, 5).unwrap()[..], b"World");
        assert!(f.read_at(6, 50).is_err());
        assert_eq!(cap.in_use(), 1);
        drop(f);
        assert_eq!(cap.in_use(), 0);
    }
}
