//! The L4 byte pump: once a client and a server connection exist, move bytes both ways
//! unmodified (a reused buffer, switching to splice(2) zero-copy once a direction carries
//! bulk data, like HAProxy's `splice-auto`), honour half-close,
//! end on idle timeout, errors or a forced stop, and report the byte counts and why it ended.
//! It writes no PROXY header and reads nothing itself: the caller does that beforehand.

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bufpool;
pub use super::pumpable::Pumpable;
use super::splice::{is_unsupported, Pipe, PIPE_SIZE};

/// Size of the copy buffer (one per direction while it has bytes in flight, from a
/// per-thread free list, see `l4::bufpool`). Also bounds the bytes rescued from a pipe.
pub const COPY_BUF: usize = bufpool::BUF_SIZE;

// Bytes rescued from a pipe must fit the copy buffer in one go.
const _: () = assert!(PIPE_SIZE <= COPY_BUF);

/// How `forward` behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOpts {
    /// End the pair when no byte moved in either direction for this long.
    /// `Duration::ZERO` disables the idle timeout.
    pub idle: Duration,
    /// Use splice(2) zero-copy for bulk data: each direction starts copying and switches to
    /// splice once one read fills the whole copy buffer; falls back to copying where splice
    /// does not apply. Small exchanges (requests, short responses) never create a pipe.
    pub splice: bool,
}

impl Default for ForwardOpts {
    fn default() -> Self {
        ForwardOpts {
            idle: Duration::from_secs(300),
            splice: true,
        }
    }
}

/// Why the pair ended. `ClientClosed`/`ServerClosed`: both directions reached end of stream
/// cleanly, and this side sent its end of stream (FIN) first. An error after one side's
/// clean close (e.g. writing to a server that already closed) is reported as the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    ServerClosed,
    IdleTimeout,
    /// Reading from or writing to the client failed (e.g. `ConnectionReset`, `BrokenPipe`).
    ClientError(io::ErrorKind),
    /// Reading from or writing to the server failed.
    ServerError(io::ErrorKind),
    /// The cancellation token passed to `forward` fired.
    Shutdown,
}

/// What `forward` did: bytes delivered to each side and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes written to the server (read from the client).
    pub to_server: u64,
    /// Bytes written to the client (read from the server).
    pub to_client: u64,
    pub end: End,
}

/// Pumps bytes between `client` and `server` until both directions reached end of stream,
/// nothing moved for `opts.idle`, either side failed, or `shutdown` fired. On end of stream
/// from one side the other side's write half is shut down and the other direction keeps
/// going. Both streams are closed (dropped) when this returns. Never panics on I/O errors.
pub async fn forward<C: Pumpable, S: Pumpable>(
    client: C,
    server: S,
    opts: &ForwardOpts,
    shutdown: Option<CancellationToken>,
) -> Outcome {
    // Best effort: a failure here (e.g. the peer already left) shows up in the pump. A
    // client accepted by sluice has TCP_NODELAY already (inherited from the listener).
    let _ = server.set_nodelay();
    let activity = Activity::new();
    let mut up = Dir::new(opts.splice);
    let mut down = Dir::new(opts.splice);
    let end = {
        let up_pump = pump(&client, &server, &mut up, &activity);
        let down_pump = pump(&server, &client, &mut down, &activity);
        let idle = activity.expired(opts.idle);
        let stop = async {
            match &shutdown {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(up_pump, down_pump, idle, stop);
        let (mut up_done, mut down_done) = (false, false);
        let mut first_close = None;
        loop {
            tokio::select! {
                biased;
                r = &mut up_pump, if !up_done => match r {
                    Ok(()) => {
                        up_done = true;
                        first_close.get_or_insert(End::ClientClosed);
                    }
                    Err(Failure::Src(kind)) => break End::ClientError(kind),
                    Err(Failure::Dst(kind)) => break End::ServerError(kind),
                },
                r = &mut down_pump, if !down_done => match r {
                    Ok(()) => {
                        down_done = true;
                        first_close.get_or_insert(End::ServerClosed);
                    }
                    Err(Failure::Src(kind)) => break End::ServerError(kind),
                    Err(Failure::Dst(kind)) => break End::ClientError(kind),
                },
                () = &mut stop => break End::Shutdown,
                () = &mut idle => break End::IdleTimeout,
            }
            if up_done && down_done {
                break first_close.unwrap_or(End::ClientClosed);
            }
        }
    };
    tracing::trace!(
        to_server = up.bytes,
        to_client = down.bytes,
        ?end,
        "forward done"
    );
    Outcome {
        to_server: up.bytes,
        to_client: down.bytes,
        end,
    }
}

/// Last time a byte moved, shared by both directions: each transfer stores a tick (no timer
/// is touched per read); one sleep re-arms itself to "last activity + idle" until that
/// deadline has really passed.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// Set by the first direction to reach end of stream.
    one_ended: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            one_ended: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    async fn expired(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Which end of a direction failed.
#[derive(Debug)]
enum Failure {
    Src(io::ErrorKind),
    Dst(io::ErrorKind),
}

/// One direction's state. The pipe is created when the direction turns bulk; the copy
/// buffer is borrowed from `bufpool` only while bytes are in flight, so a connection that
/// never sends (or waits between messages) holds neither.
struct Dir {
    bytes: u64,
    try_splice: bool,
    pipe: Option<Pipe>,
    in_pipe: usize,
}

impl Dir {
    fn new(try_splice: bool) -> Self {
        Dir {
            bytes: 0,
            try_splice,
            pipe: None,
            in_pipe: 0,
        }
    }

    fn delivered(&mut self, n: usize, activity: &Activity) {
        self.bytes += n as u64;
        activity.touch();
    }
}

/// How the splice loop stopped without failing.
enum Flow {
    Eof,
    Fallback,
}

/// How the copy loop stopped without failing.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    Eof,
    /// A read filled the whole buffer (and it was written out): time to splice.
    Bulk,
}

/// Moves `src` -> `dst` until end of stream, then shuts down `dst`'s write half.
async fn pump<R: Pumpable, W: Pumpable>(
    src: &R,
    dst: &W,
    dir: &mut Dir,
    activity: &Activity,
) -> Result<(), Failure> {
    // splice-auto: copy until a read fills the whole buffer, then splice; once splice
    // turned out not to apply, copy to the end.
    if copy_phase(src, dst, dir, activity, dir.try_splice).await? == Copied::Bulk
        && matches!(splice_loop(src, dst, dir, activity).await?, Flow::Fallback)
    {
        copy_loop(src, dst, dir, activity).await?;
    }
    // Half-close: the peer of `dst` sees end of stream, the other direction goes on. An
    // error here (the peer already left) surfaces in the other direction. When the other
    // direction already ended, both sockets are closed right after this, and close sends
    // the FIN itself: no shutdown(2) call.
    if !activity.one_ended.swap(true, Ordering::Relaxed) {
        let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    }
    Ok(())
}

/// Splices `src` -> pipe -> `dst`, draining the pipe completely before reading more, so end
/// of stream is only reported with an empty pipe. Returns `Fallback` when splice does not
/// apply (any bytes already in the pipe stay there for `copy_loop` to rescue).
async fn splice_loop<R: Pumpable, W: Pumpable>(
    src: &R,
    dst: &W,
    dir: &mut Dir,
    activity: &Activity,
) -> Result<Flow, Failure> {
    let pipe = match Pipe::new(PIPE_SIZE) {
        Ok(p) => &*dir.pipe.insert(p),
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for splice, copying instead");
            return Ok(Flow::Fallback);
        }
    };
    loop {
        if dir.in_pipe > 0 {
            dst.writable().await.map_err(|e| Failure::Dst(e.kind()))?;
            let want = dir.in_pipe;
            match dst.try_io(Interest::WRITABLE, || pipe.drain_to(dst.as_fd(), want)) {
                Ok(0) => return Err(Failure::Dst(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    dir.in_pipe -= n;
                    dir.bytes += n as u64;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_unsupported(&e) => return Ok(Flow::Fallback),
                Err(e) => return Err(Failure::Dst(e.kind())),
            }
            continue;
        }
        src.readable().await.map_err(|e| Failure::Src(e.kind()))?;
        match src.try_io(Interest::READABLE, || {
            pipe.fill_from(src.as_fd(), pipe.capacity())
        }) {
            Ok(0) => return Ok(Flow::Eof),
            Ok(n) => {
                dir.in_pipe += n;
                activity.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if is_unsupported(&e) => return Ok(Flow::Fallback),
            Err(e) => return Err(Failure::Src(e.kind())),
        }
    }
}

/// Copies `src` -> `dst` through the direction's buffer until end of stream, first writing
/// out any bytes a failed splice left in the pipe.
async fn copy_loop<R: Pumpable, W: Pumpable>(
    src: &R,
    dst: &W,
    dir: &mut Dir,
    activity: &Activity,
) -> Result<(), Failure> {
    copy_phase(src, dst, dir, activity, false).await.map(drop)
}

/// `copy_loop`, stopping with `Copied::Bulk` after a full-buffer read when `stop_on_bulk`.
async fn copy_phase<R: Pumpable, W: Pumpable>(
    src: &R,
    dst: &W,
    dir: &mut Dir,
    activity: &Activity,
    stop_on_bulk: bool,
) -> Result<Copied, Failure> {
    let mut held = Held(None);
    let mut end = 0usize;
    // Rescue bytes already spliced into the pipe: at most PIPE_SIZE <= COPY_BUF of them.
    if let Some(pipe) = dir.pipe.take() {
        let buf = held.get();
        while dir.in_pipe > 0 && end < buf.len() {
            match pipe.read_into(&mut buf[end..]) {
                Ok(0) => break,
                Ok(n) => {
                    end += n;
                    dir.in_pipe = dir.in_pipe.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Src(e.kind())),
            }
        }
        dir.in_pipe = 0;
    }
    copy_with(src, dst, dir, activity, &mut held, end, stop_on_bulk).await
}

/// The copy buffer a direction holds while bytes are in flight, taken from the thread's
/// free list and given back when the bytes are written out or the direction ends (also
/// when the pump is dropped mid-way: idle timeout, shutdown, the other side failing).
struct Held(Option<Box<[u8]>>);

impl Held {
    fn get(&mut self) -> &mut [u8] {
        self.0.get_or_insert_with(bufpool::take)
    }

    fn release(&mut self) {
        if let Some(buf) = self.0.take() {
            bufpool::give(buf);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// A non-blocking read through tokio's readiness. A read that returns less than `buf` means
/// the socket is drained for now, so readiness is cleared (as tokio's own `poll_read` does)
/// and the next read waits for the reactor instead of first failing with EAGAIN: one
/// syscall saved per message on request/response traffic.
pub(crate) fn read_drained<R: Pumpable>(src: &R, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    let mut short = None;
    let res = src.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(src)).read(buf)?;
        if n > 0 && n < len {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => res,
    }
}

/// The copy loop proper, `held` holding `[..end]` not yet written. With `stop_on_bulk`,
/// returns `Copied::Bulk` once a read that filled the buffer is written out. The buffer is
/// taken only once the reactor reports the source readable and given back as soon as it is
/// written out (or the read found nothing), so a waiting direction holds no memory.
async fn copy_with<R: Pumpable, W: Pumpable>(
    src: &R,
    dst: &W,
    dir: &mut Dir,
    activity: &Activity,
    held: &mut Held,
    mut end: usize,
    stop_on_bulk: bool,
) -> Result<Copied, Failure> {
    let mut start = 0;
    let mut bulk = false;
    let mut last = false;
    loop {
        if start < end {
            dst.writable().await.map_err(|e| Failure::Dst(e.kind()))?;
            let out = &held.get()[start..end];
            let wrote = if last {
                dst.try_write_last(out)
            } else {
                dst.try_write(out)
            };
            match wrote {
                Ok(0) => return Err(Failure::Dst(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    start += n;
                    dir.delivered(n, activity);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Failure::Dst(e.kind())),
            }
            if start == end {
                (start, end) = (0, 0);
                held.release();
                if bulk {
                    return Ok(Copied::Bulk);
                }
            }
            continue;
        }
        let ready = src
            .ready(Interest::READABLE)
            .await
            .map_err(|e| Failure::Src(e.kind()))?;
        let buf = held.get();
        match read_drained(src, buf) {
            Ok(0) => return Ok(Copied::Eof),
            Ok(n) => {
                end = n;
                bulk = stop_on_bulk && n == buf.len();
                // The source's FIN had arrived and this short read drained what preceded
                // it: these bytes are the last before shutdown/close, which can carry the
                // FIN in the same segment (HAProxy's MSG_MORE before shutdown).
                last = ready.is_read_closed() && n < buf.len();
                activity.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => held.release(),
            Err(e) => return Err(Failure::Src(e.kind())),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    /// When splice turns out not to apply mid-stream, bytes already in the pipe are written
    /// out before anything read later: none lost, none reordered.
    #[tokio::test]
    async fn copy_fallback_rescues_bytes_left_in_the_pipe() {
        let (mut feeder, src) = UnixStream::pair().expect("pair");
        let (dst, mut sink) = UnixStream::pair().expect("pair");
        let activity = Activity::new();
        let mut dir = Dir::new(true);
        let pipe = Pipe::new(PIPE_SIZE).expect("pipe");
        feeder
            .write_all(b"already in the pipe|")
            .await
            .expect("write");
        src.readable().await.expect("readable");
        let n = src
            .try_io(Interest::READABLE, || {
                pipe.fill_from(src.as_fd(), pipe.capacity())
            })
            .expect("splice in");
        assert_eq!(n, 20);
        dir.pipe = Some(pipe);
        dir.in_pipe = n;

        feeder
            .write_all(b"read after fallback")
            .await
            .expect("write");
        drop(feeder);
        copy_loop(&src, &dst, &mut dir, &activity)
            .await
            .expect("copy");
        drop(dst);
        let mut got = Vec::new();
        sink.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"already in the pipe|read after fallback");
        assert_eq!(dir.bytes, got.len() as u64);
        assert!(dir.pipe.is_none(), "the pipe is released after the rescue");
    }

    /// splice-auto: a short message is copied (no pipe is ever made); a read that fills the
    /// whole buffer hands the direction over to splice after writing those bytes out.
    #[tokio::test]
    async fn copies_small_messages_and_turns_bulk_on_a_full_buffer() {
        let (mut feeder, src) = UnixStream::pair().expect("pair");
        let (dst, mut sink) = UnixStream::pair().expect("pair");
        let activity = Activity::new();
        let mut dir = Dir::new(true);
        feeder
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        feeder.shutdown().await.expect("shutdown");
        let got = copy_phase(&src, &dst, &mut dir, &activity, true).await;
        assert_eq!(got.expect("copy"), Copied::Eof);
        assert!(dir.pipe.is_none(), "no pipe for a short exchange");
        assert_eq!(dir.bytes, 18);

        let (mut feeder, src) = UnixStream::pair().expect("pair");
        let mut dir = Dir::new(true);
        let big = vec![7u8; COPY_BUF * 2];
        let writer = tokio::spawn(async move {
            feeder.write_all(&big).await.expect("write");
            feeder
        });
        let got = copy_phase(&src, &dst, &mut dir, &activity, true).await;
        assert_eq!(got.expect("copy"), Copied::Bulk);
        assert_eq!(
            dir.bytes, COPY_BUF as u64,
            "the full buffer is written before splicing"
        );
        let mut head = vec![0u8; 18 + COPY_BUF];
        sink.read_exact(&mut head).await.expect("read");
        drop(writer.await.expect("writer"));
    }

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_idle_deadline() {
        let activity = Activity::new();
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(7)).await;
        activity.touch();
        activity.expired(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed().as_secs(), 17);
    }
}
