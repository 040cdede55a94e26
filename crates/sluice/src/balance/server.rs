//! One backend server's live state: address, weight, active-connection count, health streaks
//! and counters for metrics. All hot fields are atomics; the health streak (rarely touched)
//! sits behind a small mutex. Selection logic and the health checks themselves live elsewhere.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::steer::Steer;
use super::{Pool, ServerAddr};

/// Sentinel for "no check has completed yet" in `last_latency_us`.
const NO_LATENCY: u64 = u64::MAX;

/// A health state flip produced by [`ServerEntry::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// `fall` consecutive failures; `reason` is the last one.
    Down { reason: String, failures: u32 },
    /// `rise` consecutive successes.
    Up { successes: u32 },
}

#[derive(Debug)]
struct Streak {
    ok: u32,
    fail: u32,
    last_error: Option<String>,
    /// When the server last went up or down, or changed operator state (HAProxy's
    /// `lastchg`); its creation when it never did.
    changed_at: Instant,
    /// Times it went from up to down (HAProxy's `chkdown`).
    downs: u64,
    /// The last completed active check.
    last_check: Option<CheckReport>,
}

impl Default for Streak {
    fn default() -> Self {
        Streak {
            ok: 0,
            fail: 0,
            last_error: None,
            changed_at: Instant::now(),
            downs: 0,
            last_check: None,
        }
    }
}

/// One completed active health check, as a status page shows it (HAProxy's `check_status`,
/// `check_code`, `check_duration`, `check_desc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// HAProxy's short status: `L4OK`, `L4CON`, `L4TOUT`, `L6OK`, `L6RSP`, `L6TOUT`, `L7OK`,
    /// `L7STS`, `L7RSP`, `L7TOUT`, `SOCKERR`.
    pub status: &'static str,
    /// The HTTP status an http(s) check got.
    pub code: Option<u16>,
    /// What happened, in words (`connection refused`, `HTTP status 503, expected 200`).
    pub detail: String,
    /// How long the check took.
    pub took: Duration,
    /// When it ended.
    pub at: Instant,
}

/// Live state of one server. Constructed by `Pool::new`, shared by leases and health checks.
#[derive(Debug)]
pub(crate) struct ServerEntry {
    pub name: String,
    pub addr: ServerAddr,
    /// Current weight: the configured one until the admin API changes it.
    pub weight: AtomicU32,
    pub backup: bool,
    /// 0 = unlimited.
    pub max_connections: usize,
    /// Operator state set through the admin API (`AdminMode as u8`): ready, drain, maint.
    pub admin: AtomicU8,
    pub active: AtomicUsize,
    pub up: AtomicBool,
    /// Leases ever handed out for this server.
    pub total: AtomicU64,
    /// Connections from live traffic that failed (`Lease::connect_failed`).
    pub connect_failures: AtomicU64,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    last_latency_us: AtomicU64,
    streak: Mutex<Streak>,
    /// Whether `streak.fail` is non-zero, so a success (every request at the edge) clears it
    /// without taking the mutex all workers share when there is nothing to clear.
    failing: AtomicBool,
    /// The agent's words and the slow-start warm-up (`steer`).
    pub(crate) steer: Steer,
    /// Pools holding this entry (more than one for a while after a reload).
    pools: Mutex<Vec<Weak<Pool>>>,
    /// Its name and address as text for access records, made on first use (shared by every
    /// request's record instead of formatted for each).
    log_names: OnceLock<(Arc<str>, Arc<str>)>,
}

impl ServerEntry {
    pub(crate) fn new(
        name: String,
        addr: ServerAddr,
        weight: u32,
        backup: bool,
        max_connections: usize,
    ) -> Self {
        ServerEntry {
            name,
            addr,
            weight: AtomicU32::new(weight),
            backup,
            max_connections,
            admin: AtomicU8::new(0),
            active: AtomicUsize::new(0),
            // Documented choice (as HAProxy): servers start up; `fall` failed checks take
            // them down. Traffic is not refused for `rise * interval` after every restart.
            up: AtomicBool::new(true),
            total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            last_latency_us: AtomicU64::new(NO_LATENCY),
            streak: Mutex::new(Streak::default()),
            failing: AtomicBool::new(false),
            steer: Steer::default(),
            pools: Mutex::new(Vec::new()),
            log_names: OnceLock::new(),
        }
    }

    /// The name and the address as text (`$upstream_name`, `$upstream_addr`).
    pub(crate) fn log_names(&self) -> &(Arc<str>, Arc<str>) {
        self.log_names
            .get_or_init(|| (self.name.as_str().into(), self.addr.to_string().into()))
    }

    /// Adds a pool holding this entry; forgets pools that are gone.
    pub(crate) fn subscribe(&self, pool: Weak<Pool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        if !pools.iter().any(|p| Weak::ptr_eq(p, &pool)) {
            pools.push(pool);
        }
    }

    /// The live pools holding this entry.
    pub(crate) fn pools(&self) -> Vec<Arc<Pool>> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.iter().filter_map(Weak::upgrade).collect()
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Takes one connection slot unless the server is full. Never exceeds `max_connections`.
    pub(crate) fn try_acquire(&self) -> bool {
        if self.max_connections == 0 {
            self.active.fetch_add(1, Ordering::AcqRel);
        } else {
            let mut cur = self.active.load(Ordering::Acquire);
            loop {
                if cur >= self.max_connections {
                    return false;
                }
                match self.active.compare_exchange_weak(
                    cur,
                    cur + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives back a slot taken by `try_acquire`.
    pub(crate) fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn last_latency(&self) -> Option<Duration> {
        match self.last_latency_us.load(Ordering::Relaxed) {
            NO_LATENCY => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.streak
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error
            .clone()
    }

    /// (since when in the current state, times gone down, the last check).
    pub(crate) fn history(&self) -> (Instant, u64, Option<CheckReport>) {
        let s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        (s.changed_at, s.downs, s.last_check.clone())
    }

    /// Keeps `report` as the last check's result.
    pub(crate) fn set_last_check(&self, report: CheckReport) {
        self.streak
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_check = Some(report);
    }

    /// The operator state changed: the server is in a new state from now on.
    pub(crate) fn mark_changed(&self) {
        self.streak
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changed_at = Instant::now();
    }

    /// Records a passing health check that took `latency`.
    pub(crate) fn record_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(NO_LATENCY - 1);
        self.last_latency_us
            .store(us.min(NO_LATENCY - 1), Ordering::Relaxed);
    }

    /// Feeds one observation (check result or passive connect failure) into the rise/fall
    /// state machine. Returns the transition when the state flips, exactly once per flip.
    pub(crate) fn observe(
        &self,
        outcome: Result<(), &str>,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        let up = self.up.load(Ordering::Acquire);
        match outcome {
            Ok(()) => {
                s.fail = 0;
                self.failing.store(false, Ordering::Relaxed);
                s.ok = s.ok.saturating_add(1);
                s.last_error = None;
                if !up && s.ok >= rise.max(1) {
                    self.up.store(true, Ordering::Release);
                    s.changed_at = Instant::now();
                    return Some(Transition::Up { successes: s.ok });
                }
            }
            Err(why) => {
                s.ok = 0;
                s.fail = s.fail.saturating_add(1);
                self.failing.store(true, Ordering::Relaxed);
                s.last_error = Some(why.to_owned());
                if up && s.fail >= fall.max(1) {
                    self.up.store(false, Ordering::Release);
                    s.changed_at = Instant::now();
                    s.downs += 1;
                    return Some(Transition::Down {
                        reason: why.to_owned(),
                        failures: s.fail,
                    });
                }
            }
        }
        None
    }

    /// A live connection succeeded: while up, this clears a failure streak in progress.
    /// No streak running (the usual case): one shared read, no lock. A failure recorded
    /// at the same time then simply counts as after this success.
    pub(crate) fn clear_failures(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        if self.up.load(Ordering::Acquire) {
            s.fail = 0;
            self.failing.store(false, Ordering::Relaxed);
        }
    }
}
