//! What serves the connections of a listener (pingora's `ServerApp` pattern): a small trait
//! the TCP and HTTP frontends implement, and the accepted connection it is handed. `server`
//! dispatches through it and knows nothing of what a frontend does with the bytes.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
    /// The task is the served future itself, polled in place next to the permit: an
    /// `async` block around it kept the stream and peer it was made from (64 bytes) or a
    /// second copy of the future for the connection's whole life, and those bytes decide
    /// the allocator's size class of every connection's task (scenario 4: 3 072 or 2 560).
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
        tracker.spawn(Holding {
            served: serve(stream, peer, stop_accepting),
            _permit: permit,
        });
    }
}

pin_project_lite::pin_project! {
    /// A connection's future and its slot of the connection limit, released together when
    /// the task ends (tokio drops a finished task's future at once).
    struct Holding<F> {
        #[pin]
        served: F,
        _permit: OwnedSemaphorePermit,
    }
}

impl<F: Future<Output = ()>> Future for Holding<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().served.poll(cx)
    }
}
