//! Request and response buffering on the edge (nginx's `uwsgi_request_buffering` and
//! `uwsgi_buffering`): bodies in memory up to a bound, then in unlinked temp files, so the
//! app server is contacted only with a whole request and released as soon as it answered.
//! Here: the process-wide cap on open temp files (`global.max_temp_files`) and the temp
//! file itself; the bodies are in `request`, `response` and `spool`.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod spool;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Default `global.max_temp_files`.
pub(crate) use crate::spec::DEFAULT_MAX_TEMP_FILES;

/// Largest read from a temp file, hence largest frame a spooled body yields.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Idle temp files the process keeps open for reuse: creating a file costs the filesystem
/// an inode (most of a 64 KiB upload's CPU on ext4), rewriting one from offset 0 does not.
pub(crate) const KEEP_IDLE: usize = 32;
/// Files that grew beyond this are closed (their blocks freed) instead of kept.
pub(crate) const KEEP_MAX_BYTES: u64 = 1 << 20;

/// A cap on temp files open at once, shared by request and response spooling, with a few
/// idle ones kept for reuse (they hold their slots; at the cap one is closed for a new
/// directory). `global()` is the process's; tests make their own.
#[derive(Debug)]
pub(crate) struct TempFiles {
    open: AtomicUsize,
    limit: AtomicUsize,
    freed: Notify,
    keep: usize,
    idle: Mutex<Vec<Inner>>,
}

static GLOBAL: LazyLock<Arc<TempFiles>> =
    LazyLock::new(|| TempFiles::with_idle(DEFAULT_MAX_TEMP_FILES, KEEP_IDLE));

impl TempFiles {
    /// A cap of `limit` files, none kept idle.
    #[cfg(test)]
    pub(crate) fn new(limit: usize) -> Arc<TempFiles> {
        TempFiles::with_idle(limit, 0)
    }

    /// A cap of `limit` files, up to `keep` of them kept open for reuse.
    pub(crate) fn with_idle(limit: usize, keep: usize) -> Arc<TempFiles> {
        Arc::new(TempFiles {
            open: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            freed: Notify::new(),
            keep,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The process-wide cap (`global.max_temp_files`, set by the server at start and reload).
    pub(crate) fn global() -> &'static Arc<TempFiles> {
        &GLOBAL
    }

    /// Changes the cap; files already open stay open (a lower cap applies as they close).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    /// Temp files open now (idle ones included).
    pub(crate) fn in_use(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Idle temp files kept for reuse.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle_list().len()
    }

    fn idle_list(&self) -> MutexGuard<'_, Vec<Inner>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot if one is free now.
    fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.load(Ordering::SeqCst);
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// A temp file in `dir` now (a kept one, or a new one when a slot is free, closing an
    /// idle file of another directory if that is what holds the last slot); None at the cap.
    pub(crate) fn try_open(self: &Arc<Self>, dir: &Path) -> Option<io::Result<TempFile>> {
        let evicted = {
            let mut idle = self.idle_list();
            if let Some(i) = idle.iter().position(|f| f.dir == dir) {
                let inner = idle.swap_remove(i);
                return Some(Ok(TempFile::from(inner)));
            }
            // Close one outside the lock: its slot goes back to the cap.
            if self.in_use() >= self.limit.load(Ordering::SeqCst) {
                idle.pop()
            } else {
                None
            }
        };
        drop(evicted);
        let slot = self.try_acquire()?;
        Some(tempfile::tempfile_in(dir).map(|file| {
            TempFile::from(Inner {
                file,
                dir: dir.to_path_buf(),
                _slot: slot,
            })
        }))
    }

    /// Waits for a temp file in `dir` (callers bound the wait with a timeout).
    pub(crate) async fn open(self: &Arc<Self>, dir: &Path) -> io::Result<TempFile> {
        // Bounded by the caller's timeout; each pass follows a release or a new limit.
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.try_open(dir) {
                return r;
            }
            notified.await;
        }
    }
}

/// One temp file's place under the cap; released when dropped.
#[derive(Debug)]
struct Slot(Arc<TempFiles>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        // A waiter that gives up (timeout) passes the wake-up on (tokio's Notified does).
        self.0.freed.notify_one();
    }
}

#[derive(Debug)]
struct Inner {
    file: File,
    dir: PathBuf,
    _slot: Slot,
}

/// An unlinked temp file holding its slot; back to the idle list when dropped (if small).
/// Reads and writes are positional and blocking, as nginx's are: they hit the page cache,
/// and a spooled body is read in 64 KiB chunks. A reused file may hold older bytes past
/// what this user wrote; users only read what they wrote.
#[derive(Debug)]
pub(crate) struct TempFile {
    inner: Option<Inner>,
    /// Highest offset written (decides whether the file is kept).
    high: AtomicU64,
}

impl From<Inner> for TempFile {
    fn from(inner: Inner) -> TempFile {
        TempFile {
            inner: Some(inner),
            high: AtomicU64::new(0),
        }
    }
}

impl TempFile {
    fn file(&self) -> io::Result<&File> {
        self.inner
            .as_ref()
            .map(|i| &i.file)
            .ok_or_else(|| io::Error::other("temp file closed"))
    }

    pub(crate) fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file()?.write_all_at(data, offset)?;
        self.high
            .fetch_max(offset + data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Exactly `len` bytes from `offset` (which the caller wrote before).
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        // Not `BytesMut::zeroed`: a zeroed allocation of this size is a calloc, which jemalloc
        // serves by MADV_DONTNEED on a reused extent, so every 64 KiB chunk cost a madvise, 17
        // page faults and the kernel's page clearing; a memset of cached pages is cheaper.
        let mut buf = BytesMut::with_capacity(len);
        buf.resize(len, 0);
        self.file()?.read_exact_at(&mut buf, offset)?;
        Ok(buf.freeze())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let owner = inner._slot.0.clone();
        if owner.keep == 0 || *self.high.get_mut() > KEEP_MAX_BYTES {
            return;
        }
        let mut idle = owner.idle_list();
        if idle.len() < owner.keep {
            idle.push(inner);
            drop(idle);
            // A waiter at the cap can take it.
            owner.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_and_a_release_wakes_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let cap = TempFiles::new(2);
        let a = cap.try_open(&d).unwrap().unwrap();
        let _b = cap.try_open(&d).unwrap().unwrap();
        assert!(cap.try_open(&d).is_none());
        assert_eq!(cap.in_use(), 2);
        let waiter = {
            let (cap, d) = (cap.clone(), d.clone());
            tokio::spawn(async move { cap.open(&d).await.unwrap() })
        };
        // A waiter that times out gives nothing away.
        let timed_out = tokio::time::timeout(std::time::Duration::from_secs(1), cap.open(&d)).await;
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
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(0);
        assert!(cap.try_open(dir.path()).is_none());
        let waiter = {
            let (cap, d) = (cap.clone(), dir.path().to_path_buf());
            tokio::spawn(async move { cap.open(&d).await.unwrap() })
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
        let f = cap.try_open(dir.path()).unwrap().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        f.write_at(b"hello world", 0).unwrap();
        f.write_at(b"W", 6).unwrap();
        assert_eq!(&f.read_at(6, 5).unwrap()[..], b"World");
        assert!(f.read_at(6, 50).is_err());
        assert_eq!(cap.in_use(), 1);
        assert!(cap.try_open(dir.path()).is_none(), "at the cap");
        drop(f);
        assert_eq!(cap.in_use(), 0);
    }

    fn inode(f: &TempFile) -> u64 {
        use std::os::unix::fs::MetadataExt;
        f.file().unwrap().metadata().unwrap().ino()
    }

    #[test]
    fn small_files_are_kept_and_reused_big_ones_closed() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cap = TempFiles::with_idle(2, 1);
        let f = cap.try_open(a.path()).unwrap().unwrap();
        f.write_at(b"0123456789", 0).unwrap();
        let ino = inode(&f);
        drop(f);
        assert_eq!((cap.in_use(), cap.idle()), (1, 1), "kept, slot and all");
        let f = cap.try_open(a.path()).unwrap().unwrap();
        assert_eq!(inode(&f), ino, "reused");
        assert_eq!(cap.idle(), 0);
        // Too big to keep: closed.
        f.write_at(b"x", KEEP_MAX_BYTES).unwrap();
        drop(f);
        assert_eq!((cap.in_use(), cap.idle()), (0, 0));
        // Only one kept; at the cap, an idle file of another directory is closed for b.
        let (f, g) = (
            cap.try_open(a.path()).unwrap().unwrap(),
            cap.try_open(a.path()).unwrap().unwrap(),
        );
        drop((f, g));
        assert_eq!((cap.in_use(), cap.idle()), (1, 1));
        let h = cap.try_open(b.path()).unwrap().unwrap();
        let i = cap.try_open(b.path()).unwrap().unwrap();
        assert_eq!((cap.in_use(), cap.idle()), (2, 0));
        assert!(cap.try_open(a.path()).is_none());
        drop((h, i));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_file_goes_to_a_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::with_idle(1, 1);
        let f = cap.try_open(dir.path()).unwrap().unwrap();
        let waiter = {
            let (cap, dir) = (cap.clone(), dir.path().to_path_buf());
            tokio::spawn(async move { cap.open(&dir).await.map(|f| inode(&f)) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let ino = inode(&f);
        drop(f);
        assert_eq!(waiter.await.unwrap().unwrap(), ino);
    }
}
