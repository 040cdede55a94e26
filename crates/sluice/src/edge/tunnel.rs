//! The relay of an upgraded connection (WebSocket): bytes both ways between the client's
//! upgraded stream and the app's socket, a half-close passed on (EOF from one side shuts the
//! other's write side; the tunnel ends when both directions did), one idle timeout for no byte
//! either way, a forced stop, byte counts. It never looks at the bytes (no frame parsing).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest read, hence largest write, per pass.
const BUF: usize = 16 * 1024;

/// The client's side of a tunnel: an HTTP/1 stream handed over by `h1::H1`, or an HTTP/2
/// extended CONNECT stream from hyper's upgrade API.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Both sides closed their direction.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// A read or write failed (reset, broken pipe).
    Error,
    /// Shutdown's grace period ended.
    Forced,
}

/// What went through a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Bytes from the client to the app.
    pub up: u64,
    /// Bytes from the app to the client (`first` included).
    pub down: u64,
    pub end: End,
}

/// Relays between `client` and `app` until both directions closed, `idle` passed with no
/// byte either way, an I/O error, or `force`. `first` (what the app sent right after its
/// answer head) goes to the client before anything else.
pub(crate) async fn relay<C, A>(
    client: C,
    app: A,
    first: bytes::Bytes,
    idle: Duration,
    force: &CancellationToken,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ar, mut aw) = tokio::io::split(app);
    let base = Instant::now();
    // Milliseconds since `base` of the last byte moved, either way.
    let last = AtomicU64::new(0);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let touch = || {
        let ms = u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let upward = pump(&mut cr, &mut aw, &[], &up, &touch);
    let downward = pump(&mut ar, &mut cw, &first, &down, &touch);
    let both = async {
        let (u, d) = tokio::join!(upward, downward);
        if u.is_err() || d.is_err() {
            End::Error
        } else {
            End::Closed
        }
    };
    let watchdog = async {
        // Bounded: each pass sleeps until the newest activity plus `idle`.
        loop {
            let at = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if at <= Instant::now() {
                return End::Idle;
            }
            tokio::time::sleep_until(at).await;
        }
    };
    let end = tokio::select! {
        e = both => e,
        e = watchdog => e,
        _ = force.cancelled() => End::Forced,
    };
    Outcome {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        end,
    }
}

/// Copies `r` to `w` (after `first`) until EOF, then shuts `w` down (the half-close).
async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    first: &[u8],
    count: &AtomicU64,
    touch: &impl Fn(),
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !first.is_empty() {
        w.write_all(first).await?;
        w.flush().await?;
        count.fetch_add(first.len() as u64, Ordering::Relaxed);
        touch();
    }
    let mut buf = vec![0u8; BUF];
    // Bounded by the peer: each pass moves at least one byte or ends at EOF; stalls are the
    // caller's idle timeout.
    loop {
        let n = r.read(&mut buf).await?;
        touch();
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_passes_on() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (app, mut app_peer) = tokio::io::duplex(1024);
        let force = CancellationToken::new();
        let relay = tokio::spawn(async move {
            relay(
                client,
                app,
                bytes::Bytes::from_static(b"hi"),
                Duration::from_secs(30),
                &force,
            )
            .await
        });
        let mut b = [0u8; 2];
        client_peer.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hi");
        client_peer.write_all(b"ping").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        app_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "EOF reached the app after the bytes");
        // The other direction still works after the client's half-close.
        app_peer.write_all(b"pong").await.unwrap();
        app_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pong");
        let out = relay.await.unwrap();
        assert_eq!(
            out,
            Outcome {
                up: 4,
                down: 6,
                end: End::Closed
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnels_end() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (app, _app_peer) = tokio::io::duplex(64);
        let force = CancellationToken::new();
        let out = relay(
            client,
            app,
            bytes::Bytes::new(),
            Duration::from_secs(60),
            &force,
        )
        .await;
        assert_eq!(out.end, End::Idle);
    }
}
