//! Process conventions (issue #7): systemd readiness notifications (`notify`) and the
//! immediate-stop signal. SIGTERM/SIGINT (graceful) live in `cli::shutdown_signal`, SIGHUP
//! in `reload`, SIGUSR1 (reopen logs) in `server`; this module only adds what they lack.

pub mod notify;

use std::future::Future;

/// Completes on the first SIGQUIT: the caller stops at once, without a grace period
/// (listeners and open connections close as the runtime goes away). Installs the handler
/// immediately, so a signal arriving before the future is polled is not lost.
pub fn sigquit() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        if quit.recv().await.is_some() {
            tracing::warn!("SIGQUIT received: stopping immediately, closing every connection");
        } else {
            std::future::pending::<()>().await;
        }
    })
}
