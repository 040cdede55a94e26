//! The channel into a running server's run loop: a configuration to put in effect, or a
//! request for duplicates of the listening sockets (`sluice upgrade`), and where to send
//! the outcome. `reload` builds its `ReloadHandle` (and SIGHUP) on it; the run loop (`run`)
//! is the only receiver.

use tokio::sync::{mpsc, oneshot};

use super::handover::HandedSocket;
use super::summary::ReloadSummary;
use super::BuildError;
use crate::spec::Spec;

/// One request and where to send its outcome.
pub(crate) enum Request {
    /// Put a new configuration in effect.
    Apply(
        Box<Spec>,
        oneshot::Sender<Result<ReloadSummary, BuildError>>,
    ),
    /// Duplicates of every listening socket, for a successor process.
    Export(oneshot::Sender<std::io::Result<Vec<HandedSocket>>>),
}

/// Sends configurations to a running server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    tx: mpsc::Sender<Request>,
}

/// The server is not running (it shut down, or `run` was never called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRunning;

impl Control {
    /// A control channel and the run loop's end of it.
    pub(crate) fn channel() -> (Control, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(4);
        (Control { tx }, rx)
    }

    /// Puts `cfg` in effect and waits for the outcome. Requests are applied one at a time,
    /// in order; waits until the server's `run` is running.
    pub async fn apply(&self, cfg: Spec) -> Result<Result<ReloadSummary, BuildError>, NotRunning> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Apply(Box::new(cfg), tx))
            .await
            .map_err(|_| NotRunning)?;
        rx.await.map_err(|_| NotRunning)
    }

    /// Duplicates of every listening socket (frontends, admin) with what each is.
    pub async fn export(&self) -> Result<std::io::Result<Vec<HandedSocket>>, NotRunning> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Export(tx))
            .await
            .map_err(|_| NotRunning)?;
        rx.await.map_err(|_| NotRunning)
    }
}
