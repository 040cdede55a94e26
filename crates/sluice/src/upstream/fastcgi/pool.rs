//! Idle FastCGI connections kept after a request sent with FCGI_KEEP_CONN (nginx's upstream
//! `keepalive N` with `fastcgi_keep_conn on`): at most `max_idle` per server, newest reused
//! first, dropped after `idle_timeout` or when the app has closed them (checked without
//! blocking before reuse). It does not connect or retry; the client does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::Stream;
use crate::upstream::ServerAddr;

/// The idle connections of one frontend's FastCGI client.
#[derive(Debug)]
pub(crate) struct IdlePool {
    max_idle: usize,
    idle_timeout: Duration,
    conns: Mutex<HashMap<ServerAddr, Vec<(Stream, Instant)>>>,
}

impl IdlePool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        IdlePool {
            max_idle,
            idle_timeout,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// A live idle connection to `addr`, if one is kept; stale and closed ones are dropped.
    pub(crate) fn take(&self, addr: &ServerAddr) -> Option<Stream> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.get_mut(addr)?;
        // Bounded: each pass removes one entry.
        while let Some((s, since)) = list.pop() {
            if since.elapsed() < self.idle_timeout && is_open(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `s` for the next request to `addr`, unless the server has `max_idle` already
    /// (then the oldest goes).
    pub(crate) fn put(&self, addr: &ServerAddr, s: Stream) {
        if self.max_idle == 0 {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.entry(addr.clone()).or_default();
        list.retain(|(_, since)| since.elapsed() < self.idle_timeout);
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push((s, Instant::now()));
    }

    #[cfg(test)]
    pub(crate) fn idle(&self, addr: &ServerAddr) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
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
        let pool = IdlePool::new(2, Duration::ZERO);
        let (s, _peer) = pair();
        pool.put(&addr, s);
        assert!(pool.take(&addr).is_none());
    }
}
