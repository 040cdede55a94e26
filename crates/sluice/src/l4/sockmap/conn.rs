//! One connection forwarded by the kernel: link both sockets into the maps, move by hand
//! the bytes that were queued before the program saw them, then only watch for end of
//! stream, errors, idle and shutdown (`watch`, which reports no data events),
//! and pass each FIN on once the kernel has written everything before it. No copying loop.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::diag::{self, TcpCounters};
use super::watch::{self, Watch};
use super::{kernel, Kernel};
use crate::l4::bufpool;
use crate::l4::forward::{End, Outcome};

/// Rounds of "stop the program, copy what is queued, start it again" before giving up on
/// a connection whose socket keeps showing unprocessed bytes.
const SETTLE_ROUNDS: usize = 4;
/// Longest pause between two looks at a send queue being drained by the kernel.
const DRAIN_POLL_MAX: Duration = Duration::from_millis(20);

/// How long a drain may make no progress: the idle timeout, or 5 minutes without one.
fn patience(idle: Duration) -> Duration {
    if idle.is_zero() {
        Duration::from_secs(300)
    } else {
        idle
    }
}

/// One socket of the pair.
struct Side {
    cookie: u64,
    local: SocketAddr,
    peer: SocketAddr,
    /// Bytes written to the socket before the kernel took over (PROXY header, early data).
    written0: u64,
    /// Bytes sluice copied into this socket itself while settling.
    copied_in: u64,
}

impl Side {
    fn new(s: &TcpStream) -> io::Result<Side> {
        let (local, peer) = (s.local_addr()?, s.peer_addr()?);
        let cookie = rustix::net::sockopt::socket_cookie(s)?;
        let written0 = diag::query(local, peer, cookie)?.written();
        Ok(Side {
            cookie,
            local,
            peer,
            written0,
            copied_in: 0,
        })
    }

    fn counters(&self) -> io::Result<TcpCounters> {
        diag::query(self.local, self.peer, self.cookie)
    }
}

/// Forwards `client` <-> `server` in the kernel until both sides ended, either failed, the
/// connection was idle for `idle` (`ZERO`: never) or `shutdown` fired. `Err` hands both
/// streams back untouched (sockmap unusable here, or the maps refused them) so the caller
/// can pump them itself; once bytes moved through the kernel the outcome is always `Ok`.
pub(crate) async fn forward(
    client: TcpStream,
    server: TcpStream,
    idle: Duration,
    shutdown: Option<CancellationToken>,
) -> Result<Outcome, (TcpStream, TcpStream, String)> {
    let Ok(k) = kernel() else {
        return Err((client, server, "sockmap unavailable".into()));
    };
    let _ = server.set_nodelay(true);
    let sides = Side::new(&client).and_then(|c| Ok((c, Side::new(&server)?)));
    let (mut c, mut s) = match sides {
        Ok(pair) => pair,
        Err(e) => return Err((client, server, format!("socket counters: {e}"))),
    };
    if let Err(e) = k.pair((c.cookie, &client), (s.cookie, &server)) {
        k.unlink(c.cookie, s.cookie);
        return Err((client, server, format!("linking the sockets: {e}")));
    }
    let mut eof = [false, false];
    let settled = async {
        eof[0] = settle(k, &client, &mut c, &server, &mut s, patience(idle)).await?;
        eof[1] = settle(k, &server, &mut s, &client, &mut c, patience(idle)).await?;
        Ok::<_, End>(())
    };
    let end = match settled.await {
        Ok(()) => watch(k, client, &c, server, &s, idle, shutdown, eof).await,
        Err(end) => end,
    };
    let outcome = Outcome {
        to_server: s.copied_in + k.redirected(c.cookie),
        to_client: c.copied_in + k.redirected(s.cookie),
        end,
    };
    k.unlink(c.cookie, s.cookie);
    Ok(outcome)
}

/// Starts the program on `src` (whose peer is `dst`) without losing or reordering bytes
/// that reached `src` before it: they sit in its receive queue, where the program only
/// looks when more arrive. Those are copied by hand, the program stopped meanwhile and
/// the kernel's earlier redirects drained first. Returns whether `src` already ended.
async fn settle(
    k: &Kernel,
    src: &TcpStream,
    src_side: &mut Side,
    dst: &TcpStream,
    dst_side: &mut Side,
    patience: Duration,
) -> Result<bool, End> {
    let fail = |e: io::Error| End::ClientError(e.kind());
    for round in 0..SETTLE_ROUNDS {
        if round > 0 {
            k.verdict(src_side.cookie, src, false).map_err(fail)?;
            drained(k, src_side, dst_side, false, patience).await?;
        }
        let (n, eof) = copy_queued(src, dst).await?;
        dst_side.copied_in += n;
        if eof {
            return Ok(true);
        }
        if let Err(e) = k.verdict(src_side.cookie, src, true) {
            // The map takes only established sockets: a FIN that arrived after the copy
            // (a fast server answering and closing) makes it refuse `src`. What is queued
            // then is all there will be: take it by hand.
            let (n, eof) = copy_queued(src, dst).await?;
            dst_side.copied_in += n;
            return if eof { Ok(true) } else { Err(fail(e)) };
        }
        if src_side.counters().map_err(fail)?.rqueue == 0 {
            return Ok(false);
        }
    }
    Err(End::ClientError(io::ErrorKind::WouldBlock))
}

/// Copies what `src` has queued now to `dst`; true when `src` reached end of stream.
async fn copy_queued(src: &TcpStream, dst: &TcpStream) -> Result<(u64, bool), End> {
    let mut buf = bufpool::take();
    let mut total = 0u64;
    let res = loop {
        let n = match (&*SockRef::from(src)).read(&mut buf) {
            Ok(0) => break Ok((total, true)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok((total, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(End::ClientError(e.kind())),
        };
        let mut at = 0;
        while at < n {
            if let Err(e) = dst.writable().await {
                return Err(End::ServerError(e.kind()));
            }
            match dst.try_io(Interest::WRITABLE, || {
                SockRef::from(dst).send_with_flags(&buf[at..n], libc::MSG_NOSIGNAL)
            }) {
                Ok(w) => at += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(End::ServerError(e.kind())),
            }
        }
        total += n as u64;
    };
    bufpool::give(buf);
    res
}

/// Waits until the kernel has written into `dst` every byte it took from `src` and, with
/// `src_ended`, `src` has nothing left unprocessed but its FIN (the program counts the bytes
/// it redirects; `written` is the peer's acknowledged plus queued bytes). Gives up with
/// `IdleTimeout` when neither figure moved for `patience`.
async fn drained(
    k: &Kernel,
    src: &Side,
    dst: &Side,
    src_ended: bool,
    patience: Duration,
) -> Result<(), End> {
    let mut pause = Duration::from_micros(50);
    let (mut seen, mut since) = (None, Instant::now());
    loop {
        let want = dst.written0 + dst.copied_in + k.redirected(src.cookie);
        let d = dst.counters().map_err(|e| End::ServerError(e.kind()))?;
        // An ended source that sock_diag no longer lists (both FINs done: TIME_WAIT under
        // its fd) has nothing left unprocessed.
        let src_rqueue = match src.counters() {
            Ok(sq) => sq.rqueue,
            Err(e) if src_ended && e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(End::ClientError(e.kind())),
        };
        if d.written() >= want && (!src_ended || src_rqueue <= 1) {
            return Ok(());
        }
        let now = (d.written(), src_rqueue, want);
        if seen != Some(now) {
            (seen, since) = (Some(now), Instant::now());
        } else if since.elapsed() >= patience {
            return Err(End::IdleTimeout);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(DRAIN_POLL_MAX);
    }
}

/// After setup: waits for end of stream (passing each FIN on once drained), errors, idle
/// and shutdown. Index 0 is the client, 1 the server.
#[allow(clippy::too_many_arguments)]
async fn watch(
    k: &Kernel,
    client: TcpStream,
    c: &Side,
    server: TcpStream,
    s: &Side,
    idle: Duration,
    shutdown: Option<CancellationToken>,
    mut eof: [bool; 2],
) -> End {
    // Out of tokio's reactor: it would be woken by every data event on these sockets.
    let (client, server) = match (client.into_std(), server.into_std()) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) => return End::ClientError(e.kind()),
        (_, Err(e)) => return End::ServerError(e.kind()),
    };
    let watch = match Watch::new(&client, &server) {
        Ok(w) => w,
        Err(e) => return End::ClientError(e.kind()),
    };
    let socks = [&client, &server];
    let sides = [c, s];
    let mut shut = [false, false];
    let mut first = None;
    let mut deadline = Instant::now() + idle;
    let stop = async {
        match &shutdown {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    loop {
        // Pass on each end of stream once everything before it was written.
        for from in 0..2 {
            let to = 1 - from;
            if eof[from] && !shut[to] {
                if let Err(end) = drained(k, sides[from], sides[to], true, patience(idle)).await {
                    return end;
                }
                let _ = socks[to].shutdown(Shutdown::Write);
                shut[to] = true;
                first.get_or_insert(if from == 0 {
                    End::ClientClosed
                } else {
                    End::ServerClosed
                });
            }
        }
        if shut == [true, true] {
            return first.unwrap_or(End::ClientClosed);
        }
        let idle_at = async {
            if idle.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(deadline).await;
        };
        tokio::select! {
            bits = watch.next() => {
                for (i, b) in bits.into_iter().enumerate() {
                    if b & watch::EOF != 0 {
                        eof[i] = true;
                    }
                }
                for (i, b) in bits.into_iter().enumerate() {
                    if b & watch::ERR == 0 {
                        continue;
                    }
                    let kind = SockRef::from(socks[i])
                        .take_error()
                        .ok()
                        .flatten()
                        .map(|e| e.kind());
                    // The kernel redirects the peer's (empty) FIN segment too, and its send
                    // of zero bytes reports EPIPE on this socket: not a failure.
                    if kind == Some(io::ErrorKind::BrokenPipe) && eof[1 - i] {
                        continue;
                    }
                    let kind = kind.unwrap_or(io::ErrorKind::ConnectionReset);
                    return if i == 0 { End::ClientError(kind) } else { End::ServerError(kind) };
                }
            }
            () = idle_at => {
                let last = [c, s].iter().map(|side| side.counters().map(|t| t.last_data_recv_ms)).collect::<Result<Vec<_>, _>>();
                let Ok(last) = last else { return End::IdleTimeout };
                let since = Duration::from_millis(u64::from(last.into_iter().min().unwrap_or(0)));
                if since >= idle {
                    return End::IdleTimeout;
                }
                deadline = Instant::now() + (idle - since);
            }
            () = &mut stop => return End::Shutdown,
        }
    }
}
