//! Passing open file descriptors between processes over a unix stream socket (SCM_RIGHTS),
//! as HAProxy's `expose-fd listeners` does: `send` attaches descriptors to a chunk of bytes,
//! `recv` collects bytes and descriptors (as `OwnedFd`, close-on-exec) with a size cap. No
//! framing or meaning: the caller's protocol says what the bytes and descriptors are.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Descriptors per message: well under the kernel's SCM_MAX_FD (253).
pub const MAX_FDS_PER_MESSAGE: usize = 64;

/// Sends `data` (not empty) with `fds` (at most [`MAX_FDS_PER_MESSAGE`]) attached to its
/// first byte; the rest of `data` follows as plain bytes. Blocking, under the socket's own
/// send timeout.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if data.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fd passing: empty message or too many descriptors",
        ));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("fd passing: control buffer too small"));
    }
    let mut sent = sendmsg(
        &sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    while sent < data.len() {
        let mut none = SendAncillaryBuffer::default();
        let n = sendmsg(
            &sock,
            &[IoSlice::new(&data[sent..])],
            &mut none,
            SendFlags::NOSIGNAL,
        )?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// Receives once: appends the bytes read (at most `max_bytes` in `buf` in all) to `buf` and
/// the descriptors that came with them to `fds`. Returns the byte count (0: the peer
/// closed). More descriptors than `max_fds` in all is an error (the extra ones are closed).
/// Blocking, under the socket's own receive timeout.
pub fn recv(
    sock: impl AsFd,
    buf: &mut Vec<u8>,
    max_bytes: usize,
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> io::Result<usize> {
    let room = max_bytes.saturating_sub(buf.len());
    if room == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fd passing: message longer than {max_bytes} bytes"),
        ));
    }
    let mut chunk = vec![0u8; room.min(16 * 1024)];
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &sock,
        &mut [IoSliceMut::new(&mut chunk)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fd passing: descriptors truncated",
        ));
    }
    if fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fd passing: more than {max_fds} descriptors"),
        ));
    }
    buf.extend_from_slice(&chunk[..got.bytes]);
    Ok(got.bytes)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_crosses_and_still_works() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut p1, mut p2) = UnixStream::pair().unwrap();
        super::send(&a, b"one\n", &[std::os::fd::AsFd::as_fd(&p2)]).unwrap();
        let (mut buf, mut fds) = (Vec::new(), Vec::new());
        let n = super::recv(&b, &mut buf, 100, &mut fds, 4).unwrap();
        assert_eq!((n, &buf[..]), (4, &b"one\n"[..]));
        assert_eq!(fds.len(), 1);
        let mut received = UnixStream::from(fds.pop().unwrap());
        drop(p2.flush());
        received.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        p1.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        p2.write_all(b"y").unwrap();
    }

    #[test]
    fn limits_hold() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(super::send(&a, b"", &[]).is_err());
        super::send(&a, b"0123456789", &[]).unwrap();
        let (mut buf, mut fds) = (Vec::new(), Vec::new());
        super::recv(&b, &mut buf, 4, &mut fds, 0).unwrap();
        assert_eq!(buf, b"0123");
        assert!(
            super::recv(&b, &mut buf, 4, &mut fds, 0).is_err(),
            "cap reached"
        );
    }
}
