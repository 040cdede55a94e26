//! Per-connection state of the edge: what is known about the client connection (real
//! client, TLS session), the count of requests in flight, which drives the keep-alive
//! idle timeout, and the count of requests served, which ends the connection after
//! `keepalive_requests`. No I/O and no HTTP handling here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::proxy_protocol::ConnId;
use crate::tls::SessionInfo;
use crate::upstream::{ClientCert, Scheme};

/// What the edge knows about one client connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The real client: a trusted PROXY header's source, else the TCP peer.
    pub client: ClientAddr,
    /// Whoever opened the TCP connection (nginx's `$realip_remote_addr`).
    pub peer: PeerAddr,
    /// The source address of an accepted PROXY header (`$proxy_protocol_addr`); None when
    /// no header (or one without addresses: LOCAL, UNKNOWN) was received.
    pub proxy_protocol: Option<ClientAddr>,
    /// The connection's serial number in this process (nginx's `$connection`).
    pub id: u64,
    /// The connection id shared with the balancer (`$connection_id`): an accepted PROXY
    /// header's UNIQUE_ID, else a fresh one. Request ids derive from it (`request_id.rs`).
    pub conn_id: ConnId,
    /// The address the client reached (the PROXY destination when one was accepted).
    pub local: LocalAddr,
    pub scheme: Scheme,
    /// The TLS session, after its handshake; None on plain HTTP.
    pub tls: Option<SessionInfo>,
    /// The client certificate's verdict and fields; None unless the frontend asks for one.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The TLVs of the accepted PROXY v2 header (`$proxy_protocol_tlv_*`).
    pub proxy_tlvs: crate::upstream::ProxyTlvs,
    /// TLS: set once the body of the connection's last HTTP/1 response has ended, so that
    /// its end leaves with the close_notify (`Coalesce`); None on plain HTTP.
    pub close_hint: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The forwarding decision when it is the same for every request of the connection
    /// (`forwarded::decide_cached`); set by the first request.
    pub forwarding: std::sync::OnceLock<Option<super::forwarded::Decision>>,
}

/// The next connection serial number (from 1).
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Requests in flight on a connection, since when it has been idle, and how many it served.
#[derive(Debug)]
pub(super) struct ConnState {
    /// (in flight, idle since, started so far, the last request to end left the
    /// connection ready for another: see [`RequestGuard::reusable`]).
    inner: Mutex<(usize, Instant, u64, bool)>,
    changed: Notify,
    /// Requests a connection serves before it is closed (`keepalive_requests`).
    limit: u64,
    /// Signalled (once, with a stored permit) when the request number `limit` starts.
    spent: Notify,
    /// The connection's upgraded tunnels (`edge/upgrade.rs`): it ends after them.
    pub(super) tunnels: tokio_util::task::TaskTracker,
    /// 1 + the requests started when [`ConnState::idle_stage`] last said [`Idle::Park`]
    /// (0: never): one park per idle period.
    parked_in: AtomicU64,
    /// HTTP/1 (`h1::H1`): an upgraded stream goes to its tunnel through here, not through
    /// hyper's upgrade API; empty while no 101 is on its way.
    handoff: HandoffSlot,
}

/// The hand-over waiting for its 101 (`ConnState::handoff`).
struct HandoffSlot(Mutex<Option<Handoff>>);

impl std::fmt::Debug for HandoffSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandoffSlot")
    }
}

/// What an idle period reached ([`ConnState::idle_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idle {
    /// Idle long enough to let go of per-request state (`h1::H1::park`).
    Park,
    /// Idle for the keep-alive timeout: close.
    Close,
}

/// Where `h1::H1` sends the client's stream once hyper has written the 101.
pub(super) type Handoff = tokio::sync::oneshot::Sender<Box<dyn super::tunnel::ClientIo>>;

impl Default for ConnState {
    /// No limit on requests per connection.
    fn default() -> Self {
        ConnState::new(u64::MAX)
    }
}

impl ConnState {
    /// State of a new connection that serves at most `keepalive_requests` requests.
    pub(super) fn new(keepalive_requests: u64) -> Self {
        ConnState {
            inner: Mutex::new((0, Instant::now(), 0, false)),
            changed: Notify::new(),
            limit: keepalive_requests.max(1),
            spent: Notify::new(),
            tunnels: tokio_util::task::TaskTracker::new(),
            parked_in: AtomicU64::new(0),
            handoff: HandoffSlot(Mutex::new(None)),
        }
    }

    /// For an HTTP/1 101 about to be sent: where `h1::H1` will send the client's stream
    /// once hyper has written it.
    pub(super) fn expect_handoff(
        &self,
    ) -> tokio::sync::oneshot::Receiver<Box<dyn super::tunnel::ClientIo>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.handoff.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Takes the waiting hand-over, if a 101 was sent.
    pub(super) fn take_handoff(&self) -> Option<Handoff> {
        self.handoff
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// (requests in flight, requests started so far, the last one to end left the
    /// connection ready for another).
    pub(super) fn load(&self) -> (usize, u64, bool) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.2, g.3)
    }

    /// Marks a request as started; dropping the guard marks it done.
    /// Only the step from idle to busy wakes the idle timer: waking it (and with it the
    /// connection task that polls it) for every request costs a task poll and a timer
    /// re-arm per request on a busy HTTP/2 connection.
    pub(super) fn begin(self: &Arc<Self>) -> RequestGuard {
        let (was_idle, last, number) = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0 += 1;
            g.2 = g.2.saturating_add(1);
            (g.0 == 1, g.2 == self.limit, g.2)
        };
        if was_idle {
            self.changed.notify_waiters();
        }
        if last {
            self.spent.notify_one();
        }
        RequestGuard {
            state: self.clone(),
            last,
            number,
            reusable: false,
        }
    }

    /// Completes once the request number `keepalive_requests` has started: the connection
    /// should then close gracefully (HTTP/1: after that response; HTTP/2: GOAWAY).
    pub(super) async fn spent(&self) {
        self.spent.notified().await
    }

    /// Number of requests in flight.
    #[cfg(test)]
    pub(super) fn active(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Completes once a request is in flight (at once if one is).
    pub(super) async fn busy(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock().unwrap_or_else(|p| p.into_inner()).0 > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Completes once the connection has had no request in flight for `park` (once per
    /// idle period: [`Idle::Park`]) or for `close` ([`Idle::Close`]). One timer per idle
    /// period, moved from the first deadline to the second.
    pub(super) async fn idle_stage(&self, park: Option<Duration>, close: Duration) -> Idle {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (active, since, started, _) = *self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if active > 0 {
                notified.await;
                continue;
            }
            let parked = self.parked_in.load(Ordering::Relaxed) == started.wrapping_add(1);
            let (stage, after) = match park {
                Some(p) if !parked && p < close => (Idle::Park, p),
                _ => (Idle::Close, close),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(since + after) => {
                    if stage == Idle::Park {
                        self.parked_in.store(started.wrapping_add(1), Ordering::Relaxed);
                    }
                    return stage;
                }
                _ = &mut notified => {}
            }
        }
    }

    /// Completes once the connection has had no request in flight for `idle`.
    pub(super) async fn idle_for(&self, idle: Duration) {
        self.idle_stage(None, idle).await;
    }
}

/// One request in flight; its drop ends it (when the response body is done).
#[derive(Debug)]
pub(super) struct RequestGuard {
    state: Arc<ConnState>,
    last: bool,
    /// This request's number on its connection, from 1 (`$connection_requests`).
    number: u64,
    /// Set by [`RequestGuard::reusable`].
    reusable: bool,
}

impl RequestGuard {
    /// This is the connection's last request (`keepalive_requests`): its HTTP/1 response
    /// says `Connection: close`.
    pub(super) fn is_last(&self) -> bool {
        self.last
    }

    /// This request's number on its connection, from 1.
    pub(super) fn number(&self) -> u64 {
        self.number
    }

    /// When this request ends, HTTP/1 is known to be ready for the next one: the client
    /// keeps the connection alive, this is not the last request, and no request body can
    /// be left unread. Only then may `h1::H1` let go of hyper's connection; hyper may
    /// still be reading or draining a body, or about to close, otherwise.
    pub(super) fn reusable(&mut self, yes: bool) {
        self.reusable = yes;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Only the last request ending starts the idle period (and wakes the timer).
        let now_idle = {
            let mut g = self.state.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0 = g.0.saturating_sub(1);
            g.3 = self.reusable;
            if g.0 == 0 {
                g.1 = Instant::now();
            }
            g.0 == 0
        };
        if now_idle {
            self.state.changed.notify_waiters();
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

    #[tokio::test(start_paused = true)]
    async fn busy_waits_for_a_request_to_start() {
        let st = Arc::new(ConnState::default());
        let st2 = st.clone();
        let waiter = tokio::spawn(async move { st2.busy().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "idle: not busy");
        let g = st.begin();
        waiter.await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), st.busy())
            .await
            .expect("a request in flight: busy at once");
        drop(g);
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_number_keepalive_requests_is_the_last() {
        let st = Arc::new(ConnState::new(3));
        let a = st.begin();
        let b = st.begin();
        assert!(!a.is_last() && !b.is_last());
        let waiter = {
            let st = st.clone();
            tokio::spawn(async move { st.spent().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop((a, b));
        let c = st.begin();
        assert!(c.is_last());
        waiter.await.unwrap();
        // Signalled once; a waiter that comes later still sees it (stored permit).
        let d = st.begin();
        assert!(!d.is_last(), "beyond the limit is not 'the last' again");
        let st2 = Arc::new(ConnState::new(1));
        let only = st2.begin();
        assert!(only.is_last());
        tokio::time::timeout(Duration::from_secs(1), st2.spent())
            .await
            .expect("the permit was stored");
    }
}
