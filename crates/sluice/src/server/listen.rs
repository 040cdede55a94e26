//! A frontend's listeners: the frontend slot a reload swaps (each accept reads it; a removed
//! listener drains its queue before closing) and handing each connection to its frontend.
//! Binding, the accept loop, its limit and back-off are `net`'s; what a connection does is
//! up to its frontend.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::edge::{self, HttpFrontend};
use crate::l4::frontend::{self, TcpFrontend};
use crate::net;

/// What serves the connections of one listener. The HTTP edge adds its variant here.
#[derive(Debug, Clone)]
pub enum FrontendKind {
    Tcp(Arc<TcpFrontend>),
    Http(Arc<HttpFrontend>),
}

impl FrontendKind {
    pub fn name(&self) -> &str {
        match self {
            FrontendKind::Tcp(fe) => &fe.name,
            FrontendKind::Http(fe) => &fe.name,
        }
    }
}

/// The frontend a listener serves: each accepted connection takes the current one and
/// keeps it to its end; a reload stores a new one for the connections after it.
pub type FrontendSlot = Arc<ArcSwap<FrontendKind>>;

/// One bound listening socket of a frontend.
#[derive(Debug)]
pub struct Listener {
    pub kind: FrontendSlot,
    /// Registered with the runtime of the accept loop that takes it.
    pub listener: std::net::TcpListener,
    pub addr: SocketAddr,
    /// Which socket of its bind's SO_REUSEPORT group this is (0 = the first, which logs).
    pub shard: usize,
    /// Cancelled when a reload removes this bind (or at shutdown, as a child of the stop
    /// token): stop accepting. Removal first accepts what is already queued.
    pub remove: CancellationToken,
}

/// Accepts until `stop` (shutdown) or `l.remove` (a reload dropped this bind) is cancelled.
/// At shutdown the socket is dropped at once; on removal the connections already queued are
/// accepted and served first, so none is refused by the close. Each connection holds one
/// permit of `limit` (the global max_connections) for its whole life.
pub async fn accept_loop(
    l: Listener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let Listener {
        kind,
        listener,
        addr,
        remove,
        ..
    } = l;
    let name = kind.load().name().to_string();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot accept on frontend={name} addr={addr}: {e}");
            return;
        }
    };
    let on_conn = |stream, peer, permit| {
        let current = kind.load_full();
        serve_conn(&current, stream, peer, permit, &tracker, &stop);
    };
    net::accept_loop(
        &format!("frontend={name} addr={addr}"),
        || listener.accept(),
        on_conn,
        limit.clone(),
        &remove,
    )
    .await;
    if stop.is_cancelled() {
        drop(listener);
        tracing::info!("stopped accepting frontend={name} addr={addr}");
        return;
    }
    let current = kind.load_full();
    let drained = net::drain(
        listener,
        |stream, peer, permit| serve_conn(&current, stream, peer, permit, &tracker, &stop),
        &limit,
    )
    .await;
    tracing::info!(
        "closed listener frontend={name} addr={addr} (reload), {drained} queued connections served"
    );
}

/// Hands one accepted connection to its frontend on a tracked task.
fn serve_conn(
    kind: &FrontendKind,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    match kind {
        FrontendKind::Tcp(fe) => {
            let fe = fe.clone();
            tracker.spawn(async move {
                frontend::handle(fe, stream, peer).await;
                drop(permit);
            });
        }
        FrontendKind::Http(fe) => {
            let (fe, stop) = (fe.clone(), stop.clone());
            tracker.spawn(async move {
                edge::handle(fe, stream, peer, stop).await;
                drop(permit);
            });
        }
    }
}
