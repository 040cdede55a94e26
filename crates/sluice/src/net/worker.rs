//! Which worker thread runs the current code, and [`PerWorker`]: one value per worker, for
//! upstream pools whose connections are driven by the worker that opened them (nginx's
//! per-worker `keepalive`). `server::workers` sets the index; this file starts no threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The most worker threads any server in this process has started (at least 1).
static STARTED: AtomicUsize = AtomicUsize::new(1);

/// Records that `n` worker threads are starting, so that [`PerWorker`]s made from now on
/// have a slot for each. Called before the workers run anything.
pub(crate) fn starting(n: usize) {
    STARTED.fetch_max(n.max(1), Ordering::Relaxed);
}

/// Marks the calling thread as worker `i` (for the rest of its life).
pub(crate) fn set_current(i: usize) {
    CURRENT.with(|c| c.set(Some(i)));
}

/// The index of the worker thread running this code; 0 on any other thread (the control
/// runtime, `Accept::Inline` servers, tests).
pub(crate) fn current() -> usize {
    CURRENT.with(Cell::get).unwrap_or(0)
}

/// Whether this thread is a worker thread (`server::workers`).
pub(crate) fn on_worker() -> bool {
    CURRENT.with(Cell::get).is_some()
}

/// One `T` per worker thread, each made on first use on its worker and then used only
/// there (by index: worker `i` gets slot `i % slots`, so with more workers than slots some
/// share, which is correct, only slower). Off the workers, slot 0.
#[derive(Debug)]
pub(crate) struct PerWorker<T> {
    slots: Box<[OnceLock<T>]>,
}

impl<T> Default for PerWorker<T> {
    fn default() -> Self {
        let n = STARTED.load(Ordering::Relaxed);
        PerWorker {
            slots: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// This worker's value, made by `make` the first time.
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        self.slots[current() % self.slots.len()].get_or_init(make)
    }

    /// How many slots (workers started in this process when it was made, at least 1).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The values made so far, in worker order (for views and tests).
    pub(crate) fn made(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(OnceLock::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_index_gets_its_own_slot() {
        starting(2);
        let p: PerWorker<usize> = PerWorker::default();
        assert!(p.slots.len() >= 2);
        assert_eq!(*p.get_or_init(|| 10), 10, "off the workers: slot 0");
        std::thread::scope(|s| {
            s.spawn(|| {
                set_current(1);
                assert_eq!(current(), 1);
                assert_eq!(*p.get_or_init(|| 11), 11);
                assert_eq!(*p.get_or_init(|| 99), 11, "made once");
            });
        });
        assert_eq!(*p.get_or_init(|| 99), 10);
        assert_eq!(p.made().copied().collect::<Vec<_>>(), [10, 11]);
    }
}
