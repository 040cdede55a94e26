//! End-of-stream and error events of sockmap connections: one epoll instance for the
//! process, registered for `EPOLLRDHUP` only (plus the implied `EPOLLERR`/`EPOLLHUP`), so
//! the kernel's data wake-ups are filtered out before they wake anyone. A thread blocks in
//! epoll_wait(2) and hands each event to its connection's task; it reads no socket.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::event::epoll;
use tokio::sync::Notify;

/// A side reached end of stream (or both directions closed).
pub(super) const EOF: u8 = 1;
/// A side failed (`SO_ERROR` says how).
pub(super) const ERR: u8 = 2;

/// What a connection's task waits on: event bits per side (client: bits 0-1, server: 2-3).
#[derive(Debug, Default)]
struct Signal {
    bits: AtomicU8,
    notify: Notify,
}

struct Watcher {
    ep: OwnedFd,
    conns: Mutex<HashMap<u64, Arc<Signal>>>,
    next: AtomicU64,
}

fn watcher() -> io::Result<&'static Watcher> {
    static WATCHER: OnceLock<Result<Watcher, String>> = OnceLock::new();
    WATCHER
        .get_or_init(|| {
            let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| e.to_string())?;
            Ok(Watcher {
                ep,
                conns: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            })
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
        .inspect(|_| start_thread())
}

/// Starts the thread that waits on the epoll instance (once).
fn start_thread() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("sluice-sockmap".into())
            .spawn(|| {
                if let Ok(w) = watcher() {
                    run(w);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("no sockmap event thread: {e}");
        }
    });
}

fn run(w: &Watcher) {
    let mut events = Vec::with_capacity(64);
    loop {
        events.clear();
        match epoll::wait(&w.ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!("sockmap epoll_wait failed: {e}");
                return;
            }
        }
        let conns = w.conns.lock().unwrap_or_else(|p| p.into_inner());
        for ev in &events {
            let (data, flags) = (ev.data, ev.flags);
            let token = data.u64();
            let Some(sig) = conns.get(&(token >> 1)) else {
                continue;
            };
            let mut bits = 0;
            if flags.intersects(epoll::EventFlags::RDHUP | epoll::EventFlags::HUP) {
                bits |= EOF;
            }
            if flags.contains(epoll::EventFlags::ERR) {
                bits |= ERR;
            }
            sig.bits
                .fetch_or(bits << ((token & 1) * 2), Ordering::AcqRel);
            sig.notify.notify_one();
        }
    }
}

/// One connection's registration; dropping it forgets the connection (its sockets leave
/// the epoll instance when they are closed).
#[derive(Debug)]
pub(super) struct Watch {
    id: u64,
    sig: Arc<Signal>,
}

impl Watch {
    /// Watches `client` (side 0) and `server` (side 1).
    pub(super) fn new(client: impl AsFd, server: impl AsFd) -> io::Result<Watch> {
        let w = watcher()?;
        let id = w.next.fetch_add(1, Ordering::Relaxed);
        let sig = Arc::new(Signal::default());
        w.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, sig.clone());
        let watch = Watch { id, sig };
        let flags = epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        epoll::add(&w.ep, client, epoll::EventData::new_u64(id << 1), flags)?;
        epoll::add(
            &w.ep,
            server,
            epoll::EventData::new_u64((id << 1) | 1),
            flags,
        )?;
        Ok(watch)
    }

    /// Waits for events; returns `[client bits, server bits]`.
    pub(super) async fn next(&self) -> [u8; 2] {
        loop {
            let bits = self.sig.bits.swap(0, Ordering::AcqRel);
            if bits != 0 {
                return [bits & 3, (bits >> 2) & 3];
            }
            self.sig.notify.notified().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(w) = watcher() {
            w.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}
