//! Every Unix signal sluice handles, in one place: SIGTERM/SIGINT (graceful stop), SIGQUIT
//! (immediate stop), SIGHUP (reload, used by `reload`) and SIGUSR1 (reopen log files, used by
//! `runtime`). Each function installs its handler at once, so a signal arriving before the
//! future or stream is polled is not lost. What a signal does is up to the caller.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Completes on the first SIGTERM or SIGINT (logged).
pub fn terminate() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Completes on the first SIGQUIT: the caller stops at once, without a grace period
/// (listeners and open connections close as the runtime goes away).
pub fn quit() -> io::Result<impl Future<Output = ()>> {
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        if quit.recv().await.is_some() {
            tracing::warn!("SIGQUIT received: stopping immediately, closing every connection");
        } else {
            std::future::pending::<()>().await;
        }
    })
}

/// Every SIGHUP (reload the configuration file).
pub fn hangups() -> io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Every SIGUSR1 (reopen the log files).
pub fn reopen_requests() -> io::Result<Signal> {
    signal(SignalKind::user_defined1())
}
