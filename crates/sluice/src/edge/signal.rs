//! SIGHUP for TLS frontends: each signal re-reads the frontend's certificates, keys and
//! ticket keys (`TlsEdge::reload`); a failed reload is logged and the old state kept.
//! It does not reopen log files (SIGUSR1, in `server`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::tls::TlsEdge;

/// Starts the reloader for `edge` until `shutdown`; logs and does nothing when SIGHUP
/// cannot be watched.
pub(crate) fn spawn_reload_on_hup(
    edge: Arc<TlsEdge>,
    frontend: String,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "frontend {frontend}: cannot listen for SIGHUP (no TLS reload on signal): {e}"
            );
            return;
        }
    };
    tokio::spawn(async move {
        // One pass per signal, until shutdown.
        loop {
            tokio::select! {
                got = sig.recv() => if got.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            let edge = edge.clone();
            match tokio::task::spawn_blocking(move || edge.reload()).await {
                Ok(Ok(())) => tracing::info!(
                    "frontend {frontend}: SIGHUP: TLS certificates and ticket keys reloaded"
                ),
                Ok(Err(e)) => tracing::warn!(
                    "frontend {frontend}: SIGHUP: TLS reload failed, keeping the old state: {e}"
                ),
                Err(e) => {
                    tracing::warn!("frontend {frontend}: SIGHUP: TLS reload task failed: {e}")
                }
            }
        }
    });
}
