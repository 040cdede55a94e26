//! The process's shutdown tokens, each named for what it stops: `stop_accepting` (listeners
//! close; HTTP connections finish their request and close), `force_close` (the grace period
//! is over: close what is still open) and `stop_background` (health checks, TLS watchers,
//! the admin endpoint, DNS refresh). Only tokens: who cancels them when is `server`'s drain.

use tokio_util::sync::CancellationToken;

/// Named cancellation tokens shared by everything the server runs. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown {
    /// Stop accepting (shutdown began); parent of each listener's removal token.
    pub stop_accepting: CancellationToken,
    /// The grace period ended: force open connections closed.
    pub force_close: CancellationToken,
    /// Stop background work: health checks, TLS watchers, admin, DNS refresh; parent of
    /// each backend's health-check token and each TLS edge's watcher token.
    pub stop_background: CancellationToken,
}

impl Shutdown {
    pub(crate) fn new() -> Shutdown {
        Shutdown::default()
    }
}
