//! One TCP socket's kernel counters through NETLINK_SOCK_DIAG (`ss -ti` reads the same):
//! the send queue (`idiag_wqueue`) and `struct tcp_info`'s byte counts and last-receive
//! time. The sockmap forward needs them because the kernel, not sluice, moves the bytes.
//! Safe Rust over socket2; the reply parser checks every length and never panics.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const INET_DIAG_INFO: u16 = 2;
const TCP_TIME_WAIT: u8 = 6;
const NLMSG_HDR: usize = 16;
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;
/// Most bytes read for one reply: header, message and a `tcp_info` with room to grow.
const REPLY_MAX: usize = 4096;

/// What sluice needs of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct TcpCounters {
    /// Bytes received and not yet read (by sluice or the program), `SIOCINQ`.
    pub rqueue: u32,
    /// Bytes written to the socket and not yet acknowledged by the peer (`SIOCOUTQ`).
    pub wqueue: u32,
    /// `tcpi_bytes_acked`: bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`: bytes received from the peer.
    pub bytes_received: u64,
    /// `tcpi_last_data_recv`: milliseconds since data last arrived (`u32::MAX` in
    /// TIME_WAIT, where the counters are all zero).
    pub last_data_recv_ms: u32,
}

impl TcpCounters {
    /// Bytes written to this socket so far: acknowledged plus still queued.
    pub(super) fn written(&self) -> u64 {
        self.bytes_acked + u64::from(self.wqueue)
    }
}

/// Asks the kernel for the counters of the TCP socket `local` <-> `peer` with `cookie`.
pub(super) fn query(local: SocketAddr, peer: SocketAddr, cookie: u64) -> io::Result<TcpCounters> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    sock.send(&request(local, peer, cookie))?;
    let mut buf = vec![0u8; REPLY_MAX];
    let n = io::Read::read(&mut &sock, &mut buf)?;
    parse(&buf[..n])
}

/// The `inet_diag_req_v2` for one socket, with its netlink header.
fn request(local: SocketAddr, peer: SocketAddr, cookie: u64) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut out = [0u8; NLMSG_HDR + REQ_LEN];
    let total = (NLMSG_HDR + REQ_LEN) as u32;
    out[0..4].copy_from_slice(&total.to_ne_bytes());
    out[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    let r = &mut out[NLMSG_HDR..];
    r[0] = match local {
        SocketAddr::V4(_) => libc::AF_INET as u8,
        SocketAddr::V6(_) => libc::AF_INET6 as u8,
    };
    r[1] = libc::IPPROTO_TCP as u8;
    r[2] = 1 << (INET_DIAG_INFO - 1);
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: sport, dport (big endian), src[16], dst[16], if, cookie[2].
    r[8..10].copy_from_slice(&local.port().to_be_bytes());
    r[10..12].copy_from_slice(&peer.port().to_be_bytes());
    put_ip(&mut r[12..28], local);
    put_ip(&mut r[28..44], peer);
    r[48..52].copy_from_slice(&(cookie as u32).to_ne_bytes());
    r[52..56].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
    out
}

fn put_ip(out: &mut [u8], addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => out[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.copy_from_slice(&a.ip().octets()),
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses one reply: an `inet_diag_msg` and its `INET_DIAG_INFO` attribute, or the error
/// the kernel sent instead.
fn parse(reply: &[u8]) -> io::Result<TcpCounters> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag reply");
    let len = u32_at(reply, 0).ok_or_else(bad)? as usize;
    let kind = u16_at(reply, 4).ok_or_else(bad)?;
    let msg = reply.get(..len).ok_or_else(bad)?;
    if kind == NLMSG_ERROR {
        let code = u32_at(msg, NLMSG_HDR).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(
            code.checked_neg().unwrap_or(libc::EIO),
        ));
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink message",
        ));
    }
    let body = msg.get(NLMSG_HDR..).ok_or_else(bad)?;
    let rqueue = u32_at(body, 56).ok_or_else(bad)?;
    let wqueue = u32_at(body, 60).ok_or_else(bad)?;
    let mut at = MSG_LEN;
    while let (Some(alen), Some(atype)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let alen = usize::from(alen);
        if alen < 4 {
            break;
        }
        if atype == INET_DIAG_INFO {
            let info = body.get(at + 4..at + alen).ok_or_else(bad)?;
            return Ok(TcpCounters {
                rqueue,
                wqueue,
                bytes_acked: u64_at(info, 120).ok_or_else(bad)?,
                bytes_received: u64_at(info, 128).ok_or_else(bad)?,
                last_data_recv_ms: u32_at(info, 52).ok_or_else(bad)?,
            });
        }
        at += (alen + 3) & !3;
    }
    // A socket that went to TIME_WAIT (both FINs exchanged after our shutdown) is reported
    // as its timewait stub, without tcp_info: nothing is left to receive or send.
    if body.get(1) == Some(&TCP_TIME_WAIT) {
        return Ok(TcpCounters {
            rqueue,
            wqueue,
            last_data_recv_ms: u32::MAX,
            ..TcpCounters::default()
        });
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no tcp_info in sock_diag reply",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn the_request_names_the_socket() {
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let peer: SocketAddr = "127.0.0.2:40000".parse().expect("addr");
        let req = request(local, peer, 0x1122_3344_5566_7788);
        assert_eq!(u32_at(&req, 0), Some(72));
        assert_eq!(u16_at(&req, 4), Some(SOCK_DIAG_BY_FAMILY));
        let r = &req[NLMSG_HDR..];
        assert_eq!(r[0], libc::AF_INET as u8);
        assert_eq!(r[2], 2, "INET_DIAG_INFO asked for");
        assert_eq!(&r[8..12], &[0x1f, 0x90, 0x9c, 0x40]);
        assert_eq!(&r[12..16], &[127, 0, 0, 1]);
        assert_eq!(&r[28..32], &[127, 0, 0, 2]);
        assert_eq!(u32_at(r, 48), Some(0x5566_7788));
        assert_eq!(u32_at(r, 52), Some(0x1122_3344));
    }

    #[test]
    fn a_reply_gives_the_counters_and_bad_ones_give_errors() {
        let mut body = vec![0u8; MSG_LEN];
        body[60..64].copy_from_slice(&7u32.to_ne_bytes());
        let mut info = vec![0u8; 232];
        info[52..56].copy_from_slice(&9u32.to_ne_bytes());
        info[120..128].copy_from_slice(&100u64.to_ne_bytes());
        info[128..136].copy_from_slice(&200u64.to_ne_bytes());
        body.extend_from_slice(&((info.len() + 4) as u16).to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        body.extend_from_slice(&info);
        let got = parse(&reply(SOCK_DIAG_BY_FAMILY, &body)).expect("parse");
        assert_eq!(
            got,
            TcpCounters {
                rqueue: 0,
                wqueue: 7,
                bytes_acked: 100,
                bytes_received: 200,
                last_data_recv_ms: 9
            }
        );
        assert_eq!(got.written(), 107);
        // Every truncation is an error, never a panic.
        let full = reply(SOCK_DIAG_BY_FAMILY, &body);
        for cut in 0..full.len() {
            let mut short = full[..cut].to_vec();
            if short.len() >= 4 {
                short[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            assert!(parse(&short).is_err(), "cut at {cut}");
        }
        let err = parse(&reply(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes())).expect_err("error");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
