//! Idle FastCGI connections kept after a request sent with FCGI_KEEP_CONN (nginx's upstream
//! `keepalive N` with `fastcgi_keep_conn on`): at most `max_idle` per server, newest reused
//! first, dropped after `idle_timeout` or when the app has closed them (checked without
//! blocking before reuse), one pool per worker thread (a socket stays on the worker that
//! opened it). It does not connect or retry; the client does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::worker::PerWorker;
use crate::net::Stream;
use crate::upstream::ServerAddr;

type Idle = Mutex<HashMap<ServerAddr, Vec<(Stream, Instant)>>>;

/// The idle connections of one frontend's FastCGI client, kept by the worker thread that
/// opened them (its reactor drives them), up to `max_idle` per server and worker as nginx's
/// `keepalive`. An app such as php-fpm ties a process to each open connection, so a worker
/// that connects closes an idle one another worker keeps (`close_elsewhere`): the app never
/// has more connections open than with one pool for all.
#[derive(Debug)]
pub(crate) struct IdlePool {
    max_idle: usize,
    idle_timeout: Duration,
    conns: PerWorker<Idle>,
}

impl IdlePool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        IdlePool {
            max_idle,
            idle_timeout,
            conns: PerWorker::default(),
        }
    }

    fn own(&self) -> &Idle {
        self.conns.get_or_init(Idle::default)
    }

    /// A live idle connection to `addr`, if one is kept; stale and closed ones are dropped.
    pub(crate) fn take(&self, addr: &ServerAddr) -> Option<Stream> {
        let mut conns = self.own().lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.get_mut(addr)?;
        // Bounded: each pass removes one entry.
        while let Some((s, since)) = list.pop() {
            if since.elapsed() < self.idle_timeout && is_open(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Closes the oldest idle connection to `addr` that another worker keeps, so that the
    /// caller's new one does not exceed what the app had open before (call before
    /// connecting, after a miss of `take`).
    pub(crate) fn close_elsewhere(&self, addr: &ServerAddr) {
        let own: *const Idle = self.own();
        for other in self.conns.made() {
            if std::ptr::eq(other, own) {
                continue;
            }
            let mut conns = other.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = conns.get_mut(addr).filter(|l| !l.is_empty()) {
                drop(list.remove(0));
                return;
            }
        }
    }

    /// Keeps `s` for the next request to `addr`, unless the server has `max_idle` already
    /// (then the oldest goes).
    pub(crate) fn put(&self, addr: &ServerAddr, s: Stream) {
        if self.max_idle == 0 {
            return;
        }
        let mut conns = self.own().lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.entry(addr.clone()).or_default();
        list.retain(|(_, since)| since.elapsed() < self.idle_timeout);
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push((s, Instant::now()));
    }

    #[cfg(test)]
    pub(crate) fn idle(&self, addr: &ServerAddr) -> usize {
        let conns = self.own().lock().unwrap_or_else(|e| e.into_inner());
        conns.get(addr).map_or(0, Vec::len)
    }
}

/// Whether an idle connection is still open: a non-blocking peek (a system call, not the
/// reactor's cached readiness) finds nothing to read. End of stream (the app closed it), an
/// error or unexpected bytes all mean it cannot be reused.
fn is_open(s: &Stream) -> bool {
    let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    let r = match s {
        Stream::Tcp(t) => socket2::SockRef::from(t).peek(&mut b),
        Stream::Unix(u) => socket2::SockRef::from(u).peek(&mut b),
    };
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a = tokio::net::UnixStream::from_std(a).unwrap();
        (Stream::Unix(a), b)
    }

    #[tokio::test]
    async fn keeps_live_connections_and_drops_closed_ones() {
        let addr = ServerAddr::Unix("/nonexistent/app.sock".into());
        let pool = IdlePool::new(2, Duration::from_secs(60));
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (s, peer) = pair();
            peers.push(peer);
            pool.put(&addr, s);
        }
        assert_eq!(pool.idle(&addr), 2, "the oldest went beyond max_idle");
        assert!(pool.take(&addr).is_some(), "the newest is live");
        // The app closes the remaining one (peers[1]): it is not handed out.
        drop(peers.remove(1));
        assert!(pool.take(&addr).is_none());
        assert_eq!(pool.idle(&addr), 0);
        // Bytes the app sent unasked make a connection unusable too.
        let (s, mut peer) = pair();
        pool.put(&addr, s);
        std::io::Write::write_all(&mut peer, b"x").unwrap();
        assert!(pool.take(&addr).is_none());
        // Expired ones are dropped.
        // A worker that connects closes the idle one another worker keeps.
        crate::net::worker::starting(2);
        let pool2 = IdlePool::new(2, Duration::from_secs(60));
        let (s, mut peer2) = pair();
        pool2.put(&addr, s);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                crate::net::worker::set_current(1);
                assert!(pool2.take(&addr).is_none(), "worker 1 has none of its own");
                pool2.close_elsewhere(&addr);
            });
        });
        assert_eq!(pool2.idle(&addr), 0, "worker 0's idle one was closed");
        let mut b = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut peer2, &mut b).unwrap(),
            0,
            "closed"
        );
        let pool = IdlePool::new(2, Duration::ZERO);
        let (s, _peer) = pair();
        pool.put(&addr, s);
        assert!(pool.take(&addr).is_none());
    }
}
