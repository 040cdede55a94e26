//! Tests of `net`: SO_REUSEPORT binding and inherited TCP_NODELAY, the probe that refuses an
//! address another socket listens on, draining a removed listener, the accept loop's
//! back-off, and connecting (unix first bytes, timeouts).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::bind::bind_listener;
use super::*;
use crate::addr::ServerAddr;

#[tokio::test]
async fn port_zero_binds_a_real_port_twice_with_reuseport() {
    let a = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = a.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    // SO_REUSEPORT: a second socket may bind the same address (multi-process accept).
    let b = bind_listener(addr).unwrap();
    assert_eq!(b.local_addr().unwrap(), addr);
    // Connections accepted from it have TCP_NODELAY without a setsockopt of their own.
    // The kernel hands the connection to either socket of the group (hash of the
    // 4-tuple), so accept on both.
    let _client = TcpStream::connect(addr).await.unwrap();
    let (accepted, _) = tokio::select! {
        r = a.accept() => r.unwrap(),
        r = b.accept() => r.unwrap(),
    };
    assert!(
        accepted.nodelay().unwrap(),
        "TCP_NODELAY inherited from the listener"
    );
    let v6 = bind_listener("[::1]:0".parse().unwrap());
    if let Ok(v6) = v6 {
        assert!(v6.local_addr().unwrap().is_ipv6());
    }
}

#[tokio::test]
async fn the_probe_refuses_an_address_another_socket_listens_on_even_with_reuseport() {
    // A listener with SO_REUSEPORT (what a second sluice or HAProxy's group looks like).
    let held = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = held.local_addr().unwrap();
    let err = probe_unheld(addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("Address already in use"), "{err}");
    // The wildcard over it is taken too.
    let wild: SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().unwrap();
    assert_eq!(
        probe_unheld(wild).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    // And a specific address under someone else's wildcard.
    let wild_held = bind_listener("0.0.0.0:0".parse().unwrap()).unwrap();
    let under: SocketAddr = format!("127.0.0.1:{}", wild_held.local_addr().unwrap().port())
        .parse()
        .unwrap();
    assert_eq!(
        probe_unheld(under).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    drop(wild_held);
    // Once it closes, the probe passes, and probes never hold each other off (they do not
    // listen), so a config's overlapping binds can all be probed before any is bound.
    drop(held);
    probe_unheld(addr).unwrap();
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = std.local_addr().unwrap();
    drop(std);
    let a = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    a.set_reuse_address(true).unwrap();
    a.bind(&free.into()).unwrap();
    probe_unheld(free).unwrap();
}

#[test]
fn overlapping_addresses() {
    let o = |a: &str, b: &str| overlaps(a.parse().unwrap(), b.parse().unwrap());
    assert!(o("127.0.0.1:80", "127.0.0.1:80"));
    assert!(o("0.0.0.0:80", "127.0.0.1:80"));
    assert!(o("10.0.0.1:80", "0.0.0.0:80"));
    assert!(o("[::]:80", "[::1]:80"));
    assert!(!o("127.0.0.1:80", "127.0.0.2:80"));
    assert!(!o("127.0.0.1:80", "127.0.0.1:81"));
    assert!(!o("0.0.0.0:80", "[::]:80"), "[::] is bound V6ONLY");
}

#[tokio::test]
async fn a_single_bind_refuses_a_port_already_taken() {
    let a = bind_single("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = a.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let err = bind_single(addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
}

#[tokio::test]
async fn a_removed_listener_serves_its_queue_before_closing() {
    let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    // Five clients complete the handshake in the kernel queue; nobody accepted them yet.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    let limit = Arc::new(Semaphore::new(10));
    let mut got = Vec::new();
    let served = drain(l, |s, peer, _permit| got.push((s, peer)), &limit).await;
    assert_eq!(served, 5);
    assert_eq!(got.len(), 5);
    let mine: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    for (_, peer) in &got {
        assert!(mine.contains(peer), "{peer} is one of ours");
    }
    // Closed afterwards: a new connection is refused.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn resource_errors_back_off_and_log_once_per_burst() {
    let emfile = || Err::<((), SocketAddr), _>(io::Error::from_raw_os_error(libc::EMFILE));
    let peer: SocketAddr = "127.0.0.2:1".parse().unwrap();
    // 12 EMFILEs, one connection, 3 ENFILEs, one connection, then nothing more.
    let mut script: Vec<io::Result<((), SocketAddr)>> = (0..12).map(|_| emfile()).collect();
    script.push(Ok(((), peer)));
    script.extend((0..3).map(|_| Err(io::Error::from_raw_os_error(libc::ENFILE))));
    script.push(Ok(((), peer)));
    script.reverse();
    let calls = std::cell::Cell::new(0u32);
    let stop = CancellationToken::new();
    let start = tokio::time::Instant::now();
    let accept = || {
        calls.set(calls.get() + 1);
        let next = script.pop();
        if next.is_none() {
            stop.cancel();
        }
        async move {
            match next {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    };
    let mut got = 0;
    let limit = Arc::new(Semaphore::new(10));
    let on_conn = |(), _peer, _permit| got += 1;
    let stats = accept_loop("frontend=fe", accept, on_conn, limit, &stop).await;
    assert_eq!(
        stats,
        AcceptStats {
            accepted: 2,
            errors: 15,
            warnings: 2
        }
    );
    assert_eq!(got, 2);
    assert_eq!(
        calls.get(),
        18,
        "no extra accept calls: it slept instead of spinning"
    );
    // 10+20+40+80+160+320+640+1000*5 ms for the first burst, 10+20+40 ms for the second:
    // the back-off restarts small after a success and is capped at one second.
    assert_eq!(start.elapsed(), Duration::from_millis(6270 + 70));
}

#[tokio::test]
async fn each_connection_holds_a_permit_until_it_ends() {
    let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let limit = Arc::new(Semaphore::new(1));
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let (limit, stop) = (limit.clone(), stop.clone());
        tokio::spawn(async move {
            accept_loop(
                "test",
                || l.accept(),
                |s, _peer, permit| drop(tx.send((s, permit))),
                limit,
                &stop,
            )
            .await
        })
    };
    let _a = TcpStream::connect(addr).await.unwrap();
    let (first, permit) = rx.recv().await.unwrap();
    assert_eq!(
        limit.available_permits(),
        0,
        "the connection holds the only permit"
    );
    let _b = TcpStream::connect(addr).await.unwrap();
    // The second connection waits in the kernel queue until the first one's permit is back.
    drop((first, permit));
    let (second, _permit) = rx.recv().await.unwrap();
    assert_eq!(second.peer_addr().unwrap(), _b.local_addr().unwrap());
    stop.cancel();
    let stats = task.await.unwrap();
    assert_eq!(stats.accepted, 2);
}

#[tokio::test]
async fn unix_connect_is_usable_at_once_and_errors_stay_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let addr = ServerAddr::Unix(path.clone());
    // Nobody listening: a connect error, not a timeout.
    let err = connect(&addr, None, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(!is_connect_timeout(&err), "{err:?}");
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");

    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    });
    let mut c = connect(&addr, None, Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(c, Stream::Unix(_)),
        "a unix address gives a unix stream"
    );
    assert!(c.tcp_addrs().unwrap().is_none());
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    server.await.unwrap();
}

#[tokio::test]
async fn connect_send_puts_the_first_bytes_out_with_the_connect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let addr = ServerAddr::Unix(path.clone());
    let (conn, sent) = connect_send(&addr, None, Duration::from_secs(5), b"request")
        .await
        .unwrap();
    assert_eq!(sent, 7, "a unix socket takes a small request at once");
    // Already in the server's socket: readable without any further write from us.
    let (mut s, _) = l.accept().unwrap();
    let mut b = [0u8; 7];
    std::io::Read::read_exact(&mut s, &mut b).unwrap();
    assert_eq!(&b, b"request");
    drop(conn);
    // Over TCP nothing is sent early: the caller writes everything.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ServerAddr::Inet(tcp.local_addr().unwrap());
    let (_c, sent) = connect_send(&addr, None, Duration::from_secs(5), b"request")
        .await
        .unwrap();
    assert_eq!(sent, 0);
}

#[tokio::test]
async fn tcp_connects_from_the_source_and_reports_both_ends() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ServerAddr::Inet(l.local_addr().unwrap());
    let src = "127.0.0.3".parse().unwrap();
    let s = connect(&addr, Some(src), Duration::from_secs(5))
        .await
        .unwrap();
    let (local, peer) = s.tcp_addrs().unwrap().expect("a TCP stream has both ends");
    assert_eq!(local.ip(), src);
    assert_eq!(peer, l.local_addr().unwrap());
    let (_, from) = l.accept().unwrap();
    assert_eq!(from, local);
    // A name resolves at connect time; a source of the other family skips its addresses.
    let port = l.local_addr().unwrap().port();
    let by_name = ServerAddr::Host {
        host: "localhost".into(),
        port,
    };
    let s = connect(&by_name, Some(src), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(s.tcp_addrs().unwrap().unwrap().0.ip(), src);
}

#[tokio::test]
async fn running_out_of_time_is_a_connect_timeout() {
    // A listener with backlog 0 queues one connection; the kernel drops the next one's SYN,
    // so that connect can only run out of time.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).unwrap();
    sock.listen(0).unwrap();
    let target = sock.local_addr().unwrap().as_socket().unwrap();
    let addr = ServerAddr::Inet(target);
    let _queued = connect(&addr, None, Duration::from_secs(5)).await.unwrap();
    let err = connect(&addr, None, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(is_connect_timeout(&err), "{err:?}");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(err.to_string(), "connect timed out");
    let kernel = io::Error::from_raw_os_error(libc::ETIMEDOUT);
    assert!(!is_connect_timeout(&kernel));
}
