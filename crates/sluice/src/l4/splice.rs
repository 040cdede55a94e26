//! Zero-copy plumbing for the L4 pump: a non-blocking pipe and the splice(2) calls that move
//! bytes socket -> pipe -> socket without copying them through user space (Linux only).
//! It does no waiting and no readiness bookkeeping (that is `forward`'s job, via tokio's
//! `try_io`). The system calls go through rustix's safe wrappers.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pipe capacity we ask for, and the most bytes we ever keep in one pipe. 64 KiB is the
/// kernel default (16 pages); 256 KiB and 1 MiB pipes gave no gain beyond noise in
/// `benches/forward.rs` on loopback, and cost more of the per-user pipe quota
/// (`/proc/sys/fs/pipe-user-pages-soft`, beyond which new pipes shrink to 2 pages).
pub(super) const PIPE_SIZE: usize = 64 * 1024;

/// Most pipes open at once in the process (HAProxy's `maxpipes`). Beyond it a bulk direction
/// copies instead of splicing, so pipes cannot take the descriptors budgeted for
/// connections; `config::limits` budgets two descriptors for each.
pub(super) use crate::spec::MAX_PIPES;

/// Pipes open now (slots taken by `PipeSlot`).
static OPEN_PIPES: AtomicUsize = AtomicUsize::new(0);

/// One of the `MAX_PIPES` slots, given back when dropped.
#[derive(Debug)]
struct PipeSlot(());

impl PipeSlot {
    fn take() -> io::Result<PipeSlot> {
        if !take_slot(&OPEN_PIPES, MAX_PIPES) {
            return Err(io::Error::other(format!(
                "{MAX_PIPES} splice pipes already open"
            )));
        }
        Ok(PipeSlot(()))
    }
}

/// Counts one more in `open` unless `limit` are taken already.
fn take_slot(open: &AtomicUsize, limit: usize) -> bool {
    if open.fetch_add(1, Ordering::AcqRel) >= limit {
        open.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

impl Drop for PipeSlot {
    fn drop(&mut self) {
        OPEN_PIPES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One direction's pipe: bytes spliced in from the source socket wait here until they are
/// spliced out to the destination. Both ends are non-blocking and close-on-exec, and are
/// closed when the `Pipe` is dropped.
#[derive(Debug)]
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    _slot: PipeSlot,
}

/// Whether a splice error means "splice cannot be used on these descriptors" (so the caller
/// should fall back to copying) rather than a failure of the connection itself.
pub(super) fn is_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    ) || err.kind() == io::ErrorKind::Unsupported
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// Creates a pipe with `O_NONBLOCK | O_CLOEXEC` and asks for `size` bytes of capacity.
    /// A refused resize (per-user pipe quota) is not an error: the pipe keeps the size the
    /// kernel gave it, and `capacity()` reports that size (capped at `size`). Fails when
    /// `MAX_PIPES` pipes are open.
    pub(super) fn new(size: usize) -> io::Result<Pipe> {
        use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, PipeFlags};
        let slot = PipeSlot::take()?;
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let got = match fcntl_setpipe_size(&write, size) {
            Ok(n) if n > 0 => n,
            _ => fcntl_getpipe_size(&write)?,
        };
        if got == 0 {
            return Err(io::Error::other("pipe has no capacity"));
        }
        Ok(Pipe {
            read,
            write,
            capacity: got.min(size),
            _slot: slot,
        })
    }

    /// The most bytes this pipe may hold: callers never splice in more than this minus what
    /// is already in the pipe, so a splice in never fails because the pipe is full.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `max` bytes from the socket `src` into the pipe. `Ok(0)` means end of
    /// stream; `WouldBlock` means the socket has nothing to read (the pipe has room, since
    /// callers respect `capacity()`).
    pub(super) fn fill_from(&self, src: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        Ok(rustix::pipe::splice(
            src,
            None,
            &self.write,
            None,
            max,
            splice_flags(),
        )?)
    }

    /// Moves up to `max` bytes from the pipe to the socket `dst`. Callers only call this
    /// with bytes in the pipe, so `WouldBlock` means the socket's send buffer is full.
    pub(super) fn drain_to(&self, dst: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        Ok(rustix::pipe::splice(
            &self.read,
            None,
            dst,
            None,
            max,
            splice_flags(),
        )?)
    }

    /// Reads bytes out of the pipe into `buf` (used to rescue bytes already in the pipe when
    /// splicing out turns out to be unsupported and the pump falls back to copying).
    pub(super) fn read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(&self.read, buf)?)
    }
}

#[cfg(target_os = "linux")]
fn splice_flags() -> rustix::pipe::SpliceFlags {
    rustix::pipe::SpliceFlags::MOVE | rustix::pipe::SpliceFlags::NONBLOCK
}

#[cfg(not(target_os = "linux"))]
impl Pipe {
    /// splice(2) is Linux-only: elsewhere the pump always copies.
    pub fn new(_size: usize) -> io::Result<Pipe> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "splice(2) is Linux-only",
        ))
    }
    /// Unreachable elsewhere: no `Pipe` can be built.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Unreachable elsewhere: no `Pipe` can be built.
    pub fn fill_from(&self, _src: BorrowedFd<'_>, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Unreachable elsewhere: no `Pipe` can be built.
    pub fn drain_to(&self, _dst: BorrowedFd<'_>, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Unreachable elsewhere: no `Pipe` can be built.
    pub fn read_into(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn pipe_has_the_requested_capacity() {
        let pipe = Pipe::new(PIPE_SIZE).expect("pipe");
        assert_eq!(pipe.capacity(), PIPE_SIZE);
        let small = Pipe::new(4096).expect("pipe");
        assert_eq!(small.capacity(), 4096);
    }

    #[test]
    fn splice_moves_bytes_through_the_pipe_unmodified() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let (c, mut d) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        c.set_nonblocking(true).expect("nonblocking");
        let pipe = Pipe::new(PIPE_SIZE).expect("pipe");

        let err = pipe
            .fill_from(b.as_fd(), pipe.capacity())
            .expect_err("nothing to read yet");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        let payload: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        a.write_all(&payload).expect("write");
        let mut moved = 0;
        let mut got = Vec::new();
        for _ in 0..1000 {
            if got.len() == payload.len() {
                break;
            }
            if moved < payload.len() {
                moved += pipe.fill_from(b.as_fd(), pipe.capacity()).unwrap_or(0);
            }
            let n = pipe.drain_to(c.as_fd(), PIPE_SIZE).unwrap_or(0);
            let mut buf = vec![0; n];
            d.read_exact(&mut buf).expect("read");
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, payload);

        drop(a);
        assert_eq!(pipe.fill_from(b.as_fd(), pipe.capacity()).expect("eof"), 0);
    }

    #[test]
    fn bytes_left_in_the_pipe_can_be_read_back() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let pipe = Pipe::new(PIPE_SIZE).expect("pipe");
        a.write_all(b"rescue me").expect("write");
        assert_eq!(
            pipe.fill_from(b.as_fd(), pipe.capacity()).expect("splice"),
            9
        );
        let mut buf = [0u8; 32];
        assert_eq!(pipe.read_into(&mut buf).expect("read"), 9);
        assert_eq!(&buf[..9], b"rescue me");
    }

    #[test]
    fn slots_beyond_the_limit_are_refused() {
        let open = AtomicUsize::new(0);
        assert!((0..3).all(|_| take_slot(&open, 3)));
        assert!(!take_slot(&open, 3), "no slot beyond the limit");
        assert_eq!(open.load(Ordering::Acquire), 3, "a refusal takes nothing");
        open.fetch_sub(1, Ordering::AcqRel);
        assert!(take_slot(&open, 3), "a freed slot can be taken again");
    }

    #[test]
    fn a_pipe_holds_a_slot_until_dropped() {
        // Other tests open pipes concurrently, so only a lower bound can be checked.
        let pipe = Pipe::new(4096).expect("pipe");
        assert!(OPEN_PIPES.load(Ordering::Acquire) >= 1);
        drop(pipe);
    }

    #[test]
    fn unsupported_errors_are_recognised() {
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::ENOSYS)));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(
            libc::ECONNRESET
        )));
        assert!(!is_unsupported(&io::Error::from(io::ErrorKind::WouldBlock)));
    }
}
