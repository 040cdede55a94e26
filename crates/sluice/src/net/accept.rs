//! The one accept loop of the crate, generic over the listener (TCP or unix): one permit of
//! a connection limit per accepted connection, back-off on resource errors (EMFILE, ENFILE,
//! ENOBUFS) logged once per burst, and draining a removed listener's queue. What a
//! connection does is the caller's `on_conn`; binding is `bind`'s.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::bind::BACKLOG;

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most connections taken from a removed listener's queue before it closes.
const DRAIN_MAX: usize = 4 * BACKLOG as usize;
/// How long draining a removed listener may wait for a connection slot.
const DRAIN_PERMIT_WAIT: Duration = Duration::from_secs(5);

/// Errors that concern one pending connection only: accept the next one at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// What an accept loop went through (for tests and the final log line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptStats {
    pub accepted: u64,
    /// Resource errors (EMFILE, ENFILE, ENOBUFS, ...) that caused a back-off.
    pub errors: u64,
    /// Warnings logged: one per burst of consecutive errors.
    pub warnings: u64,
}

/// Accepts until `stop` is cancelled (or `limit` is closed), handing each connection with
/// its permit of `limit` to `on_conn`; the permit is held until the connection ends. A
/// resource error backs off (10 ms doubling up to 1 s, restarting small after a success)
/// and logs `accept failed on {label}: ...` once per burst, `accept recovered on {label}`
/// after it. Generic over the accept call (`|| listener.accept()`), so any listener fits.
pub async fn accept_loop<S, P, Fut>(
    label: &str,
    mut accept: impl FnMut() -> Fut,
    mut on_conn: impl FnMut(S, P, OwnedSemaphorePermit),
    limit: Arc<Semaphore>,
    stop: &CancellationToken,
) -> AcceptStats
where
    Fut: Future<Output = io::Result<(S, P)>>,
{
    let mut stats = AcceptStats::default();
    let mut backoff = BACKOFF_MIN;
    let mut burst = 0u64;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = accept() => r,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if burst > 0 {
                    tracing::info!("accept recovered on {label} after {burst} errors");
                    burst = 0;
                    backoff = BACKOFF_MIN;
                }
                stats.accepted += 1;
                on_conn(stream, peer, permit);
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                if burst == 0 {
                    stats.warnings += 1;
                    tracing::warn!("accept failed on {label}: {e}; backing off");
                }
                burst += 1;
                stats.errors += 1;
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    stats
}

/// Accepts everything queued on `listener` (until the kernel says EAGAIN, at most
/// 4 x [`BACKLOG`]), handing each with a permit of `limit` to `on_conn`, then closes it.
/// Returns how many were served. A reload's removed listener ends this way, so no
/// connection already queued is refused by the close.
pub(crate) async fn drain(
    listener: TcpListener,
    mut on_conn: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
    limit: &Arc<Semaphore>,
) -> usize {
    // Out of the reactor: a plain non-blocking accept asks the kernel queue itself.
    let std = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot drain a removed listener: {e}");
            return 0;
        }
    };
    let mut served = 0;
    for _ in 0..DRAIN_MAX {
        let (sock, peer) = match std.accept() {
            Ok(pair) => pair,
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!("draining a removed listener: {e}");
                }
                break;
            }
        };
        let permit = tokio::time::timeout(DRAIN_PERMIT_WAIT, limit.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            tracing::warn!("draining a removed listener: no connection slot freed in time");
            break;
        };
        let stream = sock
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(sock));
        match stream {
            Ok(s) => {
                on_conn(s, peer, permit);
                served += 1;
            }
            Err(e) => tracing::debug!("draining a removed listener: {peer}: {e}"),
        }
    }
    served
}
