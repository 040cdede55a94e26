//! Per-frontend figures the stats page shows besides the Prometheus counters: most sessions
//! open at once, the session rate over the last second (HAProxy's `freq_ctr`: this second's
//! count plus the previous second's, prorated) and its peak, denied and failed connections.
//! Kept in memory only, never exported as series; the counters themselves live in `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Events per second over a sliding second.
#[derive(Debug, Default)]
struct Freq {
    /// The second (since `epoch()`) `curr` counts.
    sec: u64,
    curr: u64,
    prev: u64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// (whole seconds, thousandths into the current one) since `epoch()`.
fn now_ms() -> (u64, u64) {
    let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
    (ms / 1000, ms % 1000)
}

impl Freq {
    /// Moves the window to second `now`.
    fn rotate(&mut self, now: u64) {
        if now != self.sec {
            self.prev = if now == self.sec + 1 { self.curr } else { 0 };
            self.curr = 0;
            self.sec = now;
        }
    }

    /// This second's events plus the previous second's in the share of it still inside
    /// the one-second window.
    fn rate(&self, into_ms: u64) -> u64 {
        self.curr + self.prev * (1000 - into_ms.min(1000)) / 1000
    }
}

/// The page-only figures of one frontend.
#[derive(Debug, Default)]
pub(crate) struct FrontendStats {
    max_current: AtomicU64,
    sessions: Mutex<Freq>,
    rate_max: AtomicU64,
    /// Connections refused for who they came from (PROXY header from an untrusted peer).
    denied: AtomicU64,
    /// Connections closed for a bad PROXY header (malformed, too slow, too long).
    proxy_errors: AtomicU64,
}

impl FrontendStats {
    /// A session opened; `current` counts it already.
    pub(crate) fn opened(&self, current: u64) {
        self.max_current.fetch_max(current, Ordering::Relaxed);
        let (sec, ms) = now_ms();
        let rate = {
            let mut f = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            f.rotate(sec);
            f.curr += 1;
            f.rate(ms)
        };
        self.rate_max.fetch_max(rate, Ordering::Relaxed);
    }

    /// A connection was closed because of its PROXY header (`reason`: `Rejected::code`).
    pub(crate) fn rejected(&self, reason: &str) {
        if reason == "untrusted" {
            self.denied.fetch_add(1, Ordering::Relaxed);
        } else {
            self.proxy_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sessions per second now.
    pub(crate) fn rate(&self) -> u64 {
        let (sec, ms) = now_ms();
        let mut f = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        f.rotate(sec);
        f.rate(ms)
    }

    pub(crate) fn max_current(&self) -> u64 {
        self.max_current.load(Ordering::Relaxed)
    }

    pub(crate) fn rate_max(&self) -> u64 {
        self.rate_max.load(Ordering::Relaxed)
    }

    pub(crate) fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    pub(crate) fn proxy_errors(&self) -> u64 {
        self.proxy_errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_slides_over_one_second() {
        let mut f = Freq::default();
        f.rotate(10);
        f.curr = 8;
        assert_eq!(f.rate(500), 8);
        f.rotate(11);
        assert_eq!((f.prev, f.curr), (8, 0));
        // A quarter into second 11: three quarters of second 10 still count.
        assert_eq!(f.rate(250), 6);
        f.curr = 2;
        assert_eq!(f.rate(999), 2);
        // A gap: nothing from before.
        f.rotate(13);
        assert_eq!(f.rate(0), 0);
    }

    #[test]
    fn counts_sessions_peaks_and_rejections() {
        let s = FrontendStats::default();
        s.opened(1);
        s.opened(2);
        s.opened(1);
        assert_eq!(s.max_current(), 2);
        assert!(
            s.rate() >= 1 && s.rate_max() >= 1,
            "three sessions just now"
        );
        s.rejected("untrusted");
        s.rejected("v1_bad_port");
        s.rejected("timeout");
        assert_eq!((s.denied(), s.proxy_errors()), (1, 2));
    }
}
