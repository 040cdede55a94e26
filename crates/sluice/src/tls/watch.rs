//! Polls the edge's certificate, key and ticket key files and reloads the edge when one
//! changes (mtime, length or SHA-256 of the content), so key rotation needs no restart.
//! It does not handle SIGHUP (a reload re-reads TLS through `runtime`) or use inotify.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::certs::{read_limited, MAX_PEM_FILE};
use super::TlsEdge;

/// What we remember about one file; `None` when it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    len: u64,
    mtime: Option<SystemTime>,
    sha256: Vec<u8>,
}

fn fingerprint(path: &str) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = read_limited(path, MAX_PEM_FILE).ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    Some(Fingerprint {
        len: meta.len(),
        mtime: meta.modified().ok(),
        sha256: digest.as_ref().to_vec(),
    })
}

pub(crate) fn fingerprints(files: &[String]) -> Vec<Option<Fingerprint>> {
    files.iter().map(|f| fingerprint(f)).collect()
}

/// Checks the edge's files every `every` and calls [`TlsEdge::reload`] when any changed. A
/// failed reload is logged and the old state kept; it is retried on the next change. The
/// baseline is what the edge last loaded. Ends when `shutdown` is cancelled.
pub fn spawn_watcher(
    edge: Arc<TlsEdge>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let files = edge.watched_files();
        // Start from what the edge actually loaded, so a change made between load and now
        // is still noticed.
        let mut seen = edge.loaded_fingerprints();
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (edge2, files2, prev) = (edge.clone(), files.clone(), seen.clone());
            let checked = tokio::task::spawn_blocking(move || {
                let now = fingerprints(&files2);
                if now == prev {
                    return (now, None);
                }
                let result = edge2.reload();
                (now, Some(result))
            })
            .await;
            let Ok((now, outcome)) = checked else { return };
            match outcome {
                None => {}
                Some(Ok(())) => {
                    tracing::info!("tls: files changed, certificates and ticket keys reloaded")
                }
                Some(Err(e)) => tracing::warn!(
                    "tls: files changed but reload failed, keeping the old state: {e}"
                ),
            }
            seen = now;
        }
    })
}
