//! Per-connection state of the edge: what is known about the client connection (real
//! client, TLS session) and the count of requests in flight, which drives the keep-alive
//! idle timeout. No I/O and no HTTP handling here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::tls::SessionInfo;
use crate::upstream::Scheme;

/// What the edge knows about one client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The real client: a trusted PROXY header's source, else the TCP peer.
    pub client: ClientAddr,
    /// The TCP peer (possibly a trusted balancer).
    pub peer: PeerAddr,
    /// The address the client reached (the PROXY destination when one was accepted).
    pub local: LocalAddr,
    pub scheme: Scheme,
    /// The TLS session, after its handshake; None on plain HTTP.
    pub tls: Option<SessionInfo>,
}

/// Requests in flight on a connection and since when it has been idle.
#[derive(Debug)]
pub struct ConnState {
    inner: Mutex<(usize, Instant)>,
    changed: Notify,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            inner: Mutex::new((0, Instant::now())),
            changed: Notify::new(),
        }
    }
}

impl ConnState {
    /// Marks a request as started; dropping the guard marks it done.
    /// Only the step from idle to busy wakes the idle timer: waking it (and with it the
    /// connection task that polls it) for every request costs a task poll and a timer
    /// re-arm per request on a busy HTTP/2 connection.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        let was_idle = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0 += 1;
            g.0 == 1
        };
        if was_idle {
            self.changed.notify_waiters();
        }
        RequestGuard(self.clone())
    }

    /// Number of requests in flight.
    pub fn active(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Completes once the connection has had no request in flight for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        // Each pass waits for a state change or the deadline, so it loops once per request.
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (active, since) = *self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if active > 0 {
                notified.await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(since + idle) => return,
                _ = &mut notified => {}
            }
        }
    }
}

/// One request in flight; its drop ends it (when the response body is done).
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Only the last request ending starts the idle period (and wakes the timer).
        let now_idle = {
            let mut g = self.0.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0 = g.0.saturating_sub(1);
            if g.0 == 0 {
                g.1 = Instant::now();
            }
            g.0 == 0
        };
        if now_idle {
            self.0.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_timer_waits_for_requests_and_restarts_after_each() {
        let st = Arc::new(ConnState::default());
        let start = Instant::now();
        let g = st.begin();
        let st2 = st.clone();
        let waiter = tokio::spawn(async move { st2.idle_for(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!waiter.is_finished(), "a request in flight is not idle");
        assert_eq!(st.active(), 1);
        drop(g);
        waiter.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(25));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_period_starts_when_the_last_of_overlapping_requests_ends() {
        let st = Arc::new(ConnState::default());
        let start = Instant::now();
        let a = st.begin();
        let b = st.begin();
        let st2 = st.clone();
        let waiter = tokio::spawn(async move { st2.idle_for(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiter.is_finished(), "one request still in flight");
        assert_eq!(st.active(), 1);
        drop(b);
        // A new request during the idle period restarts it when it ends.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let c = st.begin();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiter.is_finished(), "busy again");
        drop(c);
        waiter.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(38));
    }
}
