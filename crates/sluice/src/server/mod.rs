//! Accepting and draining (mini-redis shape): an [`Acceptor`] runs one accept loop per
//! socket (inline or on worker threads), holds the global connection limit and tracks every
//! connection; at shutdown it stops accepting, waits the grace period, force-closes the rest.
//! Connections go out through the [`Frontend`] trait; what serves them is the runtime's.

pub(crate) mod frontend;
pub(crate) mod listen;
pub(crate) mod shutdown;
pub(crate) mod workers;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

pub(crate) use frontend::{Conn, Frontend, FrontendSlot};
pub(crate) use listen::Listener;
pub(crate) use shutdown::Shutdown;
pub use workers::Accept;
use workers::Workers;

/// After the grace period, how long force-closed connections get to log and go.
pub(crate) const FORCE_WAIT: Duration = Duration::from_secs(2);

/// The accept loops, the connection limit and the connections of a running server.
#[derive(Debug)]
pub(crate) struct Acceptor {
    limit: Arc<Semaphore>,
    /// What `limit` was sized for (`global.max_connections`).
    max_connections: usize,
    tracker: TaskTracker,
    loops: JoinSet<()>,
    /// Worker threads for [`Accept::Threads`]; None: accept on the caller's runtime.
    workers: Option<Workers>,
    /// Sockets (and accept loops) per bind.
    sockets_per_bind: usize,
    shutdown: Shutdown,
}

impl Acceptor {
    /// Ready to accept where `accept` says, at most `max_connections` connections at once
    /// (at least 1). Starts the worker threads of [`Accept::Threads`]. Call inside a runtime.
    pub(crate) fn new(
        accept: Accept,
        max_connections: usize,
        shutdown: Shutdown,
    ) -> io::Result<Acceptor> {
        let (workers, sockets_per_bind) = match accept {
            Accept::Inline => (None, runtime_workers()),
            Accept::Threads(n) => {
                let w = Workers::start(n)?;
                let n = w.len();
                (Some(w), n)
            }
        };
        Ok(Acceptor {
            limit: Arc::new(Semaphore::new(max_connections.max(1))),
            max_connections,
            tracker: TaskTracker::new(),
            loops: JoinSet::new(),
            workers,
            sockets_per_bind,
            shutdown,
        })
    }

    /// SO_REUSEPORT sockets (and accept loops) to bind per address: one per worker thread.
    pub(crate) fn sockets_per_bind(&self) -> usize {
        self.sockets_per_bind
    }

    /// Starts an accept loop for each of `listeners`. Socket `shard` of a bind goes to
    /// worker `shard`: every worker accepts on every bind.
    pub(crate) fn start(&mut self, listeners: Vec<Listener>) {
        for l in listeners {
            let shard = l.shard;
            let task = listen::accept_loop(
                l,
                self.limit.clone(),
                self.tracker.clone(),
                self.shutdown.stop_accepting.clone(),
            );
            match &self.workers {
                Some(w) => self.loops.spawn_on(task, w.handle(shard)),
                None => self.loops.spawn(task),
            };
        }
    }

    /// Waits for one accept loop to end (a removed listener finished draining its queue);
    /// never completes while none runs.
    pub(crate) async fn reap(&mut self) {
        match self.loops.join_next().await {
            Some(_) => {}
            None => std::future::pending().await,
        }
    }

    /// Moves the connection limit to `want` (at least 1): more permits at once; fewer as
    /// connections close (a background task takes the surplus permits out of circulation).
    pub(crate) fn set_limit(&mut self, want: usize) {
        let have = self.max_connections.max(1);
        let want_permits = want.max(1);
        self.max_connections = want;
        if want_permits > have {
            self.limit.add_permits(want_permits - have);
        } else if want_permits < have {
            let surplus = u32::try_from(have - want_permits).unwrap_or(u32::MAX);
            let limit = self.limit.clone();
            let stop = self.shutdown.stop_background.clone();
            tokio::spawn(async move {
                tokio::select! {
                    p = limit.acquire_many_owned(surplus) => if let Ok(p) = p { p.forget() },
                    _ = stop.cancelled() => {}
                }
            });
        }
    }

    /// Stops accepting (closing the listeners), lets open connections finish for up to
    /// `grace`, then force-closes the rest and gives them [`FORCE_WAIT`] to go.
    pub(crate) async fn drain(&mut self, grace: Duration) {
        tracing::info!(
            "shutting down: stopped accepting, {} connections open, grace {:?}",
            self.tracker.len(),
            grace
        );
        self.shutdown.stop_accepting.cancel();
        while self.loops.join_next().await.is_some() {}
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over: closing {} connections",
                self.tracker.len()
            );
            self.shutdown.force_close.cancel();
            let _ = tokio::time::timeout(FORCE_WAIT, self.tracker.wait()).await;
        }
    }

    /// Ends the worker threads (after [`Acceptor::drain`]), dropping whatever still runs there.
    pub(crate) async fn stop_workers(&mut self) {
        if let Some(w) = self.workers.take() {
            w.shutdown(FORCE_WAIT).await;
        }
    }
}

/// Inline accepting: one SO_REUSEPORT socket per worker thread of the runtime the server
/// runs on (1 on a current-thread runtime), so every core accepts.
fn runtime_workers() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_workers()
        .max(1)
}

/// Logs each newly bound address once (not once per socket of its group of `sockets`).
pub(crate) fn log_listening(listeners: &[Listener], sockets: usize) {
    for l in listeners.iter().filter(|l| l.shard == 0) {
        // Fields, not text: the text log reads "listening frontend=NAME addr=ADDR" as
        // before, and --log-format json gets them as JSON fields.
        tracing::info!(frontend = %l.kind.load().name(), addr = %l.addr, sockets, "listening");
    }
}
