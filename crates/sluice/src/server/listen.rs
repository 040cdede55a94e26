//! A frontend's listeners: the frontend slot a reload swaps (each accept reads it; a removed
//! listener drains its queue before closing) and handing each connection to its frontend
//! through the `Frontend` trait. Binding, the accept loop, its limit and back-off are
//! `net`'s; what a connection does is not known here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frontend::{Conn, Frontend, FrontendSlot};
use crate::net;

/// One bound listening socket of a frontend.
#[derive(Debug)]
pub(crate) struct Listener {
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
pub(crate) async fn accept_loop(
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
        let current: Arc<dyn Frontend> = Arc::clone(&kind.load());
        serve_conn(current, stream, peer, permit, &tracker, &stop);
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
    let current: Arc<dyn Frontend> = Arc::clone(&kind.load());
    let drained = net::drain(
        listener,
        |stream, peer, permit| serve_conn(current.clone(), stream, peer, permit, &tracker, &stop),
        &limit,
    )
    .await;
    tracing::info!(
        "closed listener frontend={name} addr={addr} (reload), {drained} queued connections served"
    );
}

/// Hands one accepted connection to its frontend (which serves it on a tracked task).
fn serve_conn(
    fe: Arc<dyn Frontend>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    fe.serve(Conn::new(stream, peer, permit, tracker, stop));
}
