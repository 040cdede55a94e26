//! Server selection for one backend (after pingora-load-balancing): roundrobin (smooth
//! weighted), leastconn, source (consistent hash ring) and random (two choices), honouring
//! health, backup, weight (with the agent's % and slow start), per-server max_connections and a
//! bounded FIFO wait queue. Lock-free selection (ArcSwap snapshot of the server set +
//! atomics); health and agent checks live in `health`.

mod admin;
mod algo;
mod maglev;
mod reconfigure;
mod server;
mod snapshot;
mod steer;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::addr::ClientAddr;
pub use crate::addr::ServerAddr;
use crate::spec::{self, Balance};
pub use admin::{AdminMode, ChangeRefused};
pub use reconfigure::PoolDiff;
pub use server::CheckReport;
use server::{ServerEntry, Transition};
use snapshot::Snapshot;
pub use steer::{AgentAdmin, AgentOp, AgentReply};

/// Default of the most connections waiting for a free slot per backend (`backend.max_queue`);
/// beyond it `acquire` fails at once.
pub const QUEUE_LIMIT: usize = spec::DEFAULT_MAX_QUEUE;

/// A server's position in its backend's configuration (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub usize);

/// Why `acquire` found no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoServer {
    /// No server is up (or every up server was already tried on this connection).
    #[error("no server available")]
    Unavailable,
    /// All candidate servers are full and the wait queue is at its limit.
    #[error("all servers full and the queue is full")]
    QueueFull,
    /// All candidate servers stayed full until the deadline.
    #[error("all servers full until the deadline")]
    Timeout,
}

/// Up or down, as health checks (and passive failures) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Up,
    Down,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerState::Up => "UP",
            ServerState::Down => "DOWN",
        })
    }
}

/// A point-in-time copy of one server's state and counters, for status pages and metrics.
#[derive(Debug, Clone)]
pub struct ServerSnapshot {
    pub id: ServerId,
    pub name: String,
    pub addr: ServerAddr,
    pub state: ServerState,
    /// Operator state from the admin API (ready unless drained or in maintenance).
    pub admin: AdminMode,
    /// Current weight (the admin API may have changed the configured one).
    pub weight: u32,
    /// The agent's last weight, in percent (100 without an agent or before it sent one).
    pub agent_pct: u32,
    /// Where `slow_start` has the weight, in percent of the full one (100 when not ramping).
    pub ramp_pct: u32,
    /// The weight selection uses now, in configured units: `weight` x agent % x ramp %
    /// (HAProxy's effective weight).
    pub effective_weight: f64,
    pub backup: bool,
    pub max_connections: usize,
    /// Connections currently holding a lease.
    pub active: usize,
    /// Leases ever handed out.
    pub total: u64,
    /// Live connections that failed to connect.
    pub connect_failures: u64,
    pub checks_ok: u64,
    pub checks_failed: u64,
    /// Duration of the last passing health check.
    pub last_check_latency: Option<Duration>,
    /// Reason of the last failure while a failure streak is running.
    pub last_error: Option<String>,
    /// Since when the server is in its current state (up/down or operator state).
    pub since: std::time::Instant,
    /// Times it went from up to down.
    pub downs: u64,
    /// The last completed active check (None without `[health]` or before the first).
    pub last_check: Option<CheckReport>,
}

/// The wait queue: waiters register on `notify`; a dropped lease wakes the oldest one.
#[derive(Debug, Default)]
struct WaitQueue {
    notify: Notify,
    waiting: AtomicUsize,
    /// Most waiters (`backend.max_queue`).
    limit: usize,
}

/// One backend: its servers, algorithm, live snapshot and counters.
pub struct Pool {
    me: Weak<Pool>,
    name: String,
    balance: Balance,
    /// The servers (shared with the successor pool after a reload, `reconfigure`: state
    /// survives) and the selection data over them, swapped as one.
    snap: ArcSwap<Snapshot>,
    /// Serializes snapshot rebuilds (health flips, admin changes, `update`).
    rebuild: Mutex<()>,
    /// roundrobin position / leastconn tie-break rotation.
    rr: AtomicUsize,
    /// (rise, fall) when health checks are configured; None = passive failures never mark
    /// a server down (as HAProxy without `check`).
    rise_fall: Option<(u32, u32)>,
    queue: WaitQueue,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("balance", &self.balance)
            .field("servers", &self.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Builds the pool over the servers of `cfg`, in configuration order (host names already
    /// expanded, see `discovery`).
    pub fn new(cfg: &spec::Backend) -> Arc<Pool> {
        let entries: Vec<Arc<ServerEntry>> = cfg
            .servers
            .iter()
            .map(|s| {
                let e = ServerEntry::new(
                    s.name.clone(),
                    s.addr.clone(),
                    s.weight,
                    s.backup,
                    s.max_connections,
                );
                e.set_slow_start(s.slow_start);
                Arc::new(e)
            })
            .collect();
        Pool::from_entries(cfg, entries)
    }

    /// A pool over already-built (possibly shared) server entries, registered with each of
    /// them so a state change seen through any pool refreshes every pool holding the server.
    pub(crate) fn from_entries(cfg: &spec::Backend, entries: Vec<Arc<ServerEntry>>) -> Arc<Pool> {
        Arc::new_cyclic(|me| Pool {
            me: subscribe(&entries, me),
            name: cfg.name.clone(),
            balance: cfg.balance,
            snap: ArcSwap::from_pointee(Snapshot::build(Arc::new(entries), cfg.balance)),
            rebuild: Mutex::new(()),
            rr: AtomicUsize::new(0),
            rise_fall: cfg.health.as_ref().map(|h| (h.rise, h.fall)),
            queue: WaitQueue {
                limit: cfg.max_queue,
                ..WaitQueue::default()
            },
        })
    }

    /// The current servers, in configuration order (positions are the [`ServerId`]s).
    pub(crate) fn members(&self) -> Arc<Vec<Arc<ServerEntry>>> {
        self.snap.load().servers.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// Number of configured servers (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.snap.load().servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snap.load().servers.is_empty()
    }

    /// Pick a server for this client, skipping `tried` (ids already failed on this connection),
    /// honouring health (down servers never chosen), backup (only when no primary is up),
    /// weight, and per-server max_connections (full servers skipped). None = no server available.
    pub fn select(&self, client: &ClientAddr, tried: &[ServerId]) -> Option<Lease> {
        self.select_keyed(client, None, tried)
    }

    /// [`Pool::select`] with the key `balance = "hash"` hashes instead of the client's IP
    /// (`hash_key = "sni"`: the SNI, lower case); None: the client's IP.
    pub fn select_keyed(
        &self,
        client: &ClientAddr,
        key: Option<&[u8]>,
        tried: &[ServerId],
    ) -> Option<Lease> {
        let pool = self.me.upgrade()?;
        let snap = self.snap.load();
        let id = algo::pick(self, &snap, algo::Key { client, key }, tried)?;
        let entry = snap.servers[id].clone();
        Some(Lease { pool, entry, id })
    }

    /// Like `select`, but when servers are up and all are full, wait in a bounded FIFO queue
    /// (at most `backend.max_queue` waiters) until a slot frees or `deadline` passes.
    pub async fn acquire(
        &self,
        client: &ClientAddr,
        tried: &[ServerId],
        deadline: tokio::time::Instant,
    ) -> Result<Lease, NoServer> {
        self.acquire_keyed(client, None, tried, deadline).await
    }

    /// [`Pool::acquire`] with a hash key (see [`Pool::select_keyed`]).
    pub async fn acquire_keyed(
        &self,
        client: &ClientAddr,
        key: Option<&[u8]>,
        tried: &[ServerId],
        deadline: tokio::time::Instant,
    ) -> Result<Lease, NoServer> {
        if let Some(lease) = self.select_keyed(client, key, tried) {
            return Ok(lease);
        }
        if !self.has_candidate(tried) {
            return Err(NoServer::Unavailable);
        }
        let _waiting = WaitingGuard::enter(&self.queue.waiting, self.queue.limit)
            .ok_or(NoServer::QueueFull)?;
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            // Registered before re-checking, so a lease dropped in between is not missed.
            notified.as_mut().enable();
            if let Some(lease) = self.select_keyed(client, key, tried) {
                return Ok(lease);
            }
            if !self.has_candidate(tried) {
                return Err(NoServer::Unavailable);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return Err(NoServer::Timeout),
            }
        }
    }

    /// A point-in-time copy of every server's state and counters, in configuration order.
    pub fn servers(&self) -> Vec<ServerSnapshot> {
        let now = tokio::time::Instant::now();
        self.members()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (since, downs, last_check) = s.history();
                let (agent_pct, ramp_pct, effective_weight) = s.weight_view(now);
                ServerSnapshot {
                    id: ServerId(i),
                    name: s.name.clone(),
                    addr: s.addr.clone(),
                    state: if s.is_up() && !s.agent_down() {
                        ServerState::Up
                    } else {
                        ServerState::Down
                    },
                    admin: s.admin_mode(),
                    weight: s.weight(),
                    agent_pct,
                    ramp_pct,
                    effective_weight,
                    backup: s.backup,
                    max_connections: s.max_connections,
                    active: s.active.load(Ordering::Relaxed),
                    total: s.total.load(Ordering::Relaxed),
                    connect_failures: s.connect_failures.load(Ordering::Relaxed),
                    checks_ok: s.checks_ok.load(Ordering::Relaxed),
                    checks_failed: s.checks_failed.load(Ordering::Relaxed),
                    last_check_latency: s.last_latency(),
                    last_error: s.last_error(),
                    since,
                    downs,
                    last_check,
                }
            })
            .collect()
    }

    /// Requests or connections waiting in the queue for a free server slot right now.
    pub fn queued(&self) -> usize {
        self.queue.waiting.load(Ordering::Relaxed)
    }

    /// True when at least one server can be selected (an up primary, else an up backup).
    pub fn any_up(&self) -> bool {
        !self.snap.load().eligible.is_empty()
    }

    /// True when traffic goes to backup servers because no primary is up.
    pub fn backup_active(&self) -> bool {
        self.snap.load().backup_mode
    }

    /// The name and address of a server, for the health checker.
    pub(crate) fn server_addr(&self, id: ServerId) -> Option<(String, ServerAddr)> {
        let members = self.members();
        let s = members.get(id.0)?;
        Some((s.name.clone(), s.addr.clone()))
    }

    /// Records the outcome of one active health check of server `id` (tests; the checker
    /// uses `record_check_named`).
    #[cfg(test)]
    pub(crate) fn record_check(&self, id: ServerId, outcome: Result<Duration, String>) {
        let members = self.members();
        if let Some(s) = members.get(id.0) {
            self.record_check_on(s, outcome);
        }
    }

    /// Records a check of server `id` made for the server named `name`: when an in-place
    /// update moved or removed that server meanwhile, the result goes to it or nowhere.
    pub(crate) fn record_check_named(
        &self,
        id: ServerId,
        name: &str,
        outcome: Result<Duration, String>,
    ) {
        let members = self.members();
        let found = match members.get(id.0) {
            Some(s) if s.name == name => Some(s),
            _ => members.iter().find(|s| s.name == name),
        };
        if let Some(s) = found {
            self.record_check_on(s, outcome);
        }
    }

    /// Keeps the detail of a check of server `id` (named `name`, as `record_check_named`).
    pub(crate) fn set_last_check(&self, id: ServerId, name: &str, report: CheckReport) {
        let members = self.members();
        let found = match members.get(id.0) {
            Some(s) if s.name == name => Some(s),
            _ => members.iter().find(|s| s.name == name),
        };
        if let Some(s) = found {
            s.set_last_check(report);
        }
    }

    fn record_check_on(&self, s: &ServerEntry, outcome: Result<Duration, String>) {
        let (rise, fall) = self.rise_fall.unwrap_or((1, 1));
        let t = match &outcome {
            Ok(latency) => {
                s.checks_ok.fetch_add(1, Ordering::Relaxed);
                s.record_latency(*latency);
                s.observe(Ok(()), rise, fall)
            }
            Err(why) => {
                s.checks_failed.fetch_add(1, Ordering::Relaxed);
                s.observe(Err(why), rise, fall)
            }
        };
        if let Some(t) = t {
            self.changed(s, t);
        }
    }

    /// A live connection to `s` failed: counts as a failed check when checks are configured.
    fn passive_failure(&self, s: &ServerEntry, why: &str) {
        s.connect_failures.fetch_add(1, Ordering::Relaxed);
        if let Some((rise, fall)) = self.rise_fall {
            if let Some(t) = s.observe(Err(why), rise, fall) {
                self.changed(s, t);
            }
        }
    }

    /// Logs a state flip once, rebuilds the snapshot and wakes waiters to re-evaluate.
    fn changed(&self, s: &ServerEntry, t: Transition) {
        match t {
            Transition::Down { reason, failures } => tracing::warn!(
                backend = %self.name, server = %s.name,
                "server {}/{} DOWN: {}, {} consecutive failures", self.name, s.name, reason, failures
            ),
            Transition::Up { successes } => {
                tracing::info!(
                    backend = %self.name, server = %s.name,
                    "server {}/{} UP: {} consecutive successes", self.name, s.name, successes
                );
                s.start_warmup();
            }
        }
        self.refresh_sharing(s);
    }

    /// After a change to the shared entry `s`: rebuild the snapshot of this pool and of every
    /// other live pool holding `s` (after a reload the old and new pools share kept servers,
    /// and a passive failure seen on the old one must take the server out of the new one),
    /// and wake their waiters.
    fn refresh_sharing(&self, s: &ServerEntry) {
        self.rebuild_snapshot();
        self.queue.notify.notify_waiters();
        for pool in s.pools() {
            if !std::ptr::eq(Arc::as_ptr(&pool), self) {
                pool.rebuild_snapshot();
                pool.queue.notify.notify_waiters();
            }
        }
    }

    fn rebuild_snapshot(&self) {
        let _g = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let members = self.members();
        self.snap
            .store(Arc::new(Snapshot::build(members, self.balance)));
    }

    /// Puts `servers` in place of the current set (the rebuild lock serializes this with
    /// health flips, so no flip is lost), registering this pool with each of them.
    fn replace_members(&self, servers: Vec<Arc<ServerEntry>>) {
        subscribe(&servers, &self.me);
        let _g = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        self.snap
            .store(Arc::new(Snapshot::build(Arc::new(servers), self.balance)));
    }

    /// True when some selectable server was not tried yet (it may be full right now).
    fn has_candidate(&self, tried: &[ServerId]) -> bool {
        self.snap
            .load()
            .eligible
            .iter()
            .any(|&i| !tried.contains(&ServerId(i)))
    }

    fn rr_next(&self) -> usize {
        self.rr.fetch_add(1, Ordering::Relaxed)
    }
}

/// Registers the pool under construction (`me`) with each of its servers, so a state change
/// seen through any pool refreshes every pool sharing that server; returns `me` for the field.
pub(crate) fn subscribe(entries: &[Arc<ServerEntry>], me: &Weak<Pool>) -> Weak<Pool> {
    for e in entries {
        e.subscribe(me.clone());
    }
    me.clone()
}

/// Counts a waiter in the queue for as long as it lives; refuses beyond `limit`.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize, limit: usize) -> Option<Self> {
        let guard = WaitingGuard(counter);
        if counter.fetch_add(1, Ordering::SeqCst) >= limit {
            return None; // the guard's drop undoes the increment
        }
        Some(guard)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection's claim on a server: +1 active while alive; dropping it frees the slot and
/// wakes the oldest queued waiter. It holds the server itself, so it stays valid when an
/// in-place update removes the server from the pool (the connection drains).
pub struct Lease {
    pool: Arc<Pool>,
    entry: Arc<ServerEntry>,
    /// The server's position when it was selected.
    id: usize,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease({}/{})", self.pool.name, self.name())
    }
}

impl Lease {
    pub fn id(&self) -> ServerId {
        ServerId(self.id)
    }

    pub fn name(&self) -> &str {
        &self.entry.name
    }

    pub fn addr(&self) -> &ServerAddr {
        &self.entry.addr
    }

    /// The server's name and address as text, for access records (made once per server).
    pub(crate) fn log_names(&self) -> (Arc<str>, Arc<str>) {
        self.entry.log_names().clone()
    }

    /// The backend this lease belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Passive health: the connection to this server failed. Counts as a failed check when
    /// the backend has health checks (without them a server is never marked down).
    pub fn connect_failed(&self, why: &str) {
        self.pool.passive_failure(&self.entry, why);
    }

    /// The connection to this server succeeded: clears a running failure streak.
    pub fn connected(&self) {
        self.entry.clear_failures();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.entry.release();
        if self.pool.queue.waiting.load(Ordering::SeqCst) > 0 {
            self.pool.queue.notify.notify_one();
        }
    }
}
