//! Worker threads (HAProxy's `nbthread`, nginx's worker processes): each runs its own
//! single-threaded tokio runtime and the accept loops of its share of the listening sockets,
//! so a connection lives on the thread that accepted it (no work stealing, no cross-thread
//! wake-ups). Control work (reloads, health checks, admin, signals) stays on the caller's
//! runtime. What a worker runs is up to `server`.

use std::io;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Where accept loops (and so connections) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// On the runtime that runs the server, one socket per bind for each of its workers
    /// (tests, the demo).
    Inline,
    /// On this many worker threads, one socket per bind for each (`sluice run`).
    Threads(usize),
}

/// Running worker threads. Dropping it stops them without waiting.
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
    done: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts `n` (at least 1) threads named `sluice-worker-I`, each idle until given work.
    pub(crate) fn start(n: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n.max(1));
        let mut done = Vec::with_capacity(n.max(1));
        crate::net::worker::starting(n);
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (tx, rx) = oneshot::channel();
            done.push(rx);
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("sluice-worker-{i}"))
                .spawn(move || {
                    crate::net::worker::set_current(i);
                    rt.block_on(stop.cancelled());
                    // Whatever is left (only after the grace period) is dropped here.
                    drop(rt);
                    let _ = tx.send(());
                })?;
        }
        Ok(Workers {
            handles,
            stop,
            done,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    /// The runtime of worker `i % len`.
    pub(crate) fn handle(&self, i: usize) -> &Handle {
        &self.handles[i % self.handles.len()]
    }

    /// Runs `fut` on worker `i % len`.
    #[cfg(test)]
    pub(crate) fn spawn<F>(&self, i: usize, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle(i).spawn(fut)
    }

    /// Stops every worker (dropping what still runs on them) and waits up to `wait` for the
    /// threads to finish.
    pub(crate) async fn shutdown(mut self, wait: Duration) {
        self.stop.cancel();
        let done = std::mem::take(&mut self.done);
        let _ = tokio::time::timeout(wait, async {
            for rx in done {
                let _ = rx.await;
            }
        })
        .await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_named_worker_threads_and_shutdown_ends_them() {
        let w = Workers::start(2).unwrap();
        assert_eq!(w.len(), 2);
        let names: Vec<String> = futures_names(&w).await;
        assert_eq!(names, ["sluice-worker-0", "sluice-worker-1"]);
        // A task still pending at shutdown is dropped with its runtime.
        let pending = w.spawn(0, std::future::pending::<()>());
        w.shutdown(Duration::from_secs(5)).await;
        assert!(pending.await.unwrap_err().is_cancelled());
    }

    async fn futures_names(w: &Workers) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..w.len() {
            let name = w
                .spawn(i, async {
                    std::thread::current().name().unwrap_or("").to_string()
                })
                .await
                .unwrap();
            out.push(name);
        }
        out
    }
}
