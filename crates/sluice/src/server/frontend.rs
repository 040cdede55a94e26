//! What serves the connections of a listener (pingora's `ServerApp` pattern): a small trait
//! the TCP and HTTP frontends implement, and the accepted connection it is handed. `server`
//! dispatches through it and knows nothing of what a frontend does with the bytes.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves the connections of one or more listeners.
pub(crate) trait Frontend: Send + Sync + fmt::Debug + 'static {
    /// The configured name (logs, metrics).
    fn name(&self) -> &str;
    /// Takes one accepted connection; normally `conn.spawn(|stream, peer, stop| ...)`.
    fn serve(self: Arc<Self>, conn: Conn<'_>);
}

/// The frontend a listener serves: each accepted connection takes the current one and
/// keeps it to its end; a reload stores a new one for the connections after it.
pub(crate) type FrontendSlot = Arc<ArcSwap<Arc<dyn Frontend>>>;

/// A new slot holding `fe`.
pub(crate) fn slot(fe: Arc<dyn Frontend>) -> FrontendSlot {
    Arc::new(ArcSwap::from_pointee(fe))
}

/// One accepted connection with its slot of the global connection limit. It borrows the
/// accept loop's tracker and token: nothing is cloned that the frontend does not ask for.
pub(crate) struct Conn<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tracker: &'a TaskTracker,
    stop_accepting: &'a CancellationToken,
}

impl<'a> Conn<'a> {
    pub(super) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        tracker: &'a TaskTracker,
        stop_accepting: &'a CancellationToken,
    ) -> Conn<'a> {
        Conn {
            stream,
            peer,
            permit,
            tracker,
            stop_accepting,
        }
    }

    /// Runs `serve(stream, peer, stop_accepting)` on a task the drain waits for; the
    /// connection holds its slot of `global.max_connections` until the task ends.
    /// `stop_accepting` is cancelled when shutdown begins (finish up and close).
    ///
    /// `serve` is called inside the task: a future made here and moved into the task's
    /// `async` block was kept there twice for the connection's whole life (the block's
    /// captured copy next to the one it awaits), +1.4 KiB per HTTP edge connection.
    pub(crate) fn spawn<S, F>(self, serve: S)
    where
        S: FnOnce(TcpStream, SocketAddr, &CancellationToken) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Conn {
            stream,
            peer,
            permit,
            tracker,
            stop_accepting,
        } = self;
        let stop = stop_accepting.clone();
        tracker.spawn(async move {
            serve(stream, peer, &stop).await;
            drop(permit);
        });
    }
}
