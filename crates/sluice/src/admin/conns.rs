//! The admin endpoint's open connections and which of them are idle between requests, so
//! that taking the last free slot closes the longest-idle keep-alive connection and the next
//! scrape always finds one. It does not accept, time out or serve connections (`mod.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

struct Entry {
    /// Since when no request is in flight; None while one is.
    idle_since: Option<Instant>,
    /// Cancelled to ask the connection to close once idle.
    evict: CancellationToken,
}

/// Every open admin connection by id.
#[derive(Default)]
pub(crate) struct Conns {
    inner: Mutex<(u64, HashMap<u64, Entry>)>,
}

/// One connection's registration; removes it when dropped.
pub(crate) struct Registered {
    conns: Arc<Conns>,
    id: u64,
    pub(crate) evict: CancellationToken,
}

impl Conns {
    /// Registers a new connection, idle until its first request.
    pub(crate) fn register(self: &Arc<Self>) -> Registered {
        let evict = CancellationToken::new();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        g.1.insert(
            id,
            Entry {
                idle_since: Some(Instant::now()),
                evict: evict.clone(),
            },
        );
        Registered {
            conns: self.clone(),
            id,
            evict,
        }
    }

    /// Asks the connection idle the longest (other than `keep`) to close; false when every
    /// other connection has a request in flight.
    pub(crate) fn evict_idlest(&self, keep: u64) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let victim =
            g.1.iter()
                .filter(|(id, e)| **id != keep && !e.evict.is_cancelled())
                .filter_map(|(_, e)| Some((e.idle_since?, &e.evict)))
                .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }

    fn set_idle(&self, id: u64, idle: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.get_mut(&id) {
            e.idle_since = idle.then(Instant::now);
        }
    }
}

impl Registered {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        self.conns.set_idle(self.id, false);
        Busy {
            conns: self.conns.clone(),
            id: self.id,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut g = self.conns.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.remove(&self.id);
    }
}

/// A request in flight on one connection.
pub(crate) struct Busy {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conns.set_idle(self.id, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_longest_idle_never_a_busy_one() {
        let conns = Arc::new(Conns::default());
        let a = conns.register();
        let b = conns.register();
        let c = conns.register();
        let _busy = a.busy();
        assert!(conns.evict_idlest(c.id()));
        assert!(b.evict.is_cancelled() && !a.evict.is_cancelled() && !c.evict.is_cancelled());
        assert!(!conns.evict_idlest(c.id()), "a is busy, b already asked");
        drop(b);
        assert_eq!(conns.inner.lock().unwrap().1.len(), 2);
    }
}
