//! Faulty L4 servers behind a real sluice listener: a server killed mid-transfer (only its
//! connections end, promptly; the others finish byte-exact; it is marked down), one that
//! blackholes connects, one that accepts and never answers, one that resets. Each bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::support::*;
use rand::RngCore;
use sluice::balance::{Pool, ServerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(servers: &[(&str, SocketAddr)], backend_extra: &str, log: &std::path::Path) -> String {
    let mut s = format!(
        "[global]\nmax_connections = 500\ngrace = \"1s\"\n\n[[frontend]]\nname = \"fe\"\n\
         bind = [\"127.0.0.1:0\"]\nbackend = \"be\"\naccess_log = \"{}\"\n\n[[backend]]\n\
         name = \"be\"\n{backend_extra}\n",
        log.display()
    );
    for (name, addr) in servers {
        s.push_str(&format!(
            "[[backend.servers]]\nname = \"{name}\"\naddr = \"{addr}\"\n"
        ));
    }
    s
}

fn state(pool: &Pool, name: &str) -> ServerState {
    pool.servers()
        .into_iter()
        .find(|s| s.name == name)
        .expect("server")
        .state
}

fn active_total(pool: &Pool) -> usize {
    pool.servers().iter().map(|s| s.active).sum()
}

/// An echo server that first sends `"<name>\n"`; `kill()` closes the listener and every
/// connection at once, as a crashing process would.
struct KillableEcho {
    addr: SocketAddr,
    kill: CancellationToken,
}

impl KillableEcho {
    async fn start(name: &str) -> KillableEcho {
        let l = TcpListener::bind((LOOP, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let kill = CancellationToken::new();
        let (k, line) = (kill.clone(), format!("{name}\n"));
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    r = l.accept() => match r { Ok(x) => x, Err(_) => break },
                    _ = k.cancelled() => break,
                };
                let (k, line) = (k.clone(), line.clone());
                tokio::spawn(async move {
                    let echo = async {
                        s.write_all(line.as_bytes()).await?;
                        let mut buf = vec![0u8; 16 << 10];
                        loop {
                            let n = s.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            s.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = echo => {}
                        _ = k.cancelled() => {}
                    }
                });
            }
        });
        KillableEcho { addr, kill }
    }

    fn kill(&self) {
        self.kill.cancel();
    }
}

const CHUNK: usize = 16 << 10;
const CHUNKS: usize = 64;

/// One client: learns its server, signals after the first echoed chunk, waits for `go`,
/// then sends the rest. Returns (server name, Ok(bytes echoed) or Err(time to notice close)).
async fn transfer(
    fe: SocketAddr,
    started: tokio::sync::mpsc::Sender<()>,
    go: CancellationToken,
) -> (String, Result<usize, Duration>) {
    let mut s = client(fe).await;
    let name = read_line(&mut s).await.expect("server name");
    let mut data = vec![0u8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let mut echoed = 0;
    for i in 0..CHUNKS {
        rand::thread_rng().fill_bytes(&mut data);
        let t0 = Instant::now();
        let round = async {
            s.write_all(&data).await?;
            s.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(())
        };
        match within("a chunk round trip", round).await {
            Ok(()) => assert!(back == data, "{name}: bytes changed in transit"),
            Err(_) => return (name, Err(t0.elapsed())),
        }
        echoed += CHUNK;
        if i == 0 {
            started.send(()).await.unwrap();
            go.cancelled().await;
        }
    }
    (name, Ok(echoed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_ends_only_its_connections_and_is_marked_down() {
    let a = KillableEcho::start("a").await;
    let b = KillableEcho::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let health = "health = { interval = \"100ms\", timeout = \"200ms\", rise = 1, fall = 2 }";
    let sl = Sluice::start(&config(&[("a", a.addr), ("b", b.addr)], health, &log)).await;
    let (fe, pool) = (sl.addr("fe"), sl.pool("be"));

    let clients = 8;
    let (tx, mut rx) = tokio::sync::mpsc::channel(clients);
    let go = CancellationToken::new();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(transfer(fe, tx.clone(), go.clone())))
        .collect();
    for _ in 0..clients {
        within("every client mid-transfer", rx.recv())
            .await
            .unwrap();
    }
    b.kill();
    go.cancel();
    let mut on = (0, 0);
    for t in tasks {
        let (name, outcome) = within("client task", t).await.unwrap();
        match (name.as_str(), outcome) {
            ("a", Ok(n)) => {
                assert_eq!(n, CHUNK * CHUNKS);
                on.0 += 1;
            }
            ("b", Err(noticed)) => {
                assert!(
                    noticed < Duration::from_secs(2),
                    "close seen after {noticed:?}"
                );
                on.1 += 1;
            }
            (n, o) => panic!("client on {n}: unexpected {o:?}"),
        }
    }
    assert_eq!(on, (4, 4), "roundrobin spread 8 clients 4/4");
    wait_until("b marked down by the checks", || {
        state(&pool, "b") == ServerState::Down
    })
    .await;
    assert_eq!(state(&pool, "a"), ServerState::Up);
    // New clients all land on a; nothing is left holding a lease.
    for _ in 0..4 {
        let mut c = client(fe).await;
        assert_eq!(read_line(&mut c).await.as_deref(), Some("a"));
    }
    wait_until("no leases left", || active_total(&pool) == 0).await;
    a.kill();
    sl.shutdown().await;
}

#[tokio::test]
async fn passive_failures_alone_mark_a_dead_server_down() {
    let a = NamedServer::start(LOOP, "a").await;
    let b = KillableEcho::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    // Checks every hour: only live traffic can notice b is gone.
    let health = "retries = 2\nhealth = { interval = \"1h\", rise = 1, fall = 1 }";
    let sl = Sluice::start(&config(&[("a", a.addr), ("b", b.addr)], health, &log)).await;
    let pool = sl.pool("be");
    b.kill();
    for _ in 0..4 {
        let mut c = client(sl.addr("fe")).await;
        assert_eq!(read_line(&mut c).await.as_deref(), Some("a"));
    }
    assert_eq!(state(&pool, "b"), ServerState::Down);
    let b_snap = pool.servers().into_iter().find(|s| s.name == "b").unwrap();
    assert_eq!(
        b_snap.connect_failures, 1,
        "down after one failure, then skipped"
    );
    wait_for_log_line(&log, &["server=a", "retries=1"]).await;
    sl.shutdown().await;
}

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs,
/// so connects hang (a blackhole on loopback). Returns the address and what keeps it full.
async fn blackhole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(LOOP, 0).into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("blackhole filler: {e}"),
            Err(_) => return (addr, sock, fillers),
        }
    }
    panic!("the accept queue never filled up");
}

#[tokio::test]
async fn blackholed_connect_times_out_and_is_retried_on_another_server() {
    let (hole, _listener, _fillers) = blackhole().await;
    let alive = NamedServer::start(LOOP, "alive").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let extra = "retries = 2\ntimeouts = { connect = \"300ms\" }";
    let sl = Sluice::start(&config(
        &[("hole", hole), ("alive", alive.addr)],
        extra,
        &log,
    ))
    .await;
    let pool = sl.pool("be");
    for _ in 0..4 {
        let t0 = Instant::now();
        let mut c = client(sl.addr("fe")).await;
        assert_eq!(read_line(&mut c).await.as_deref(), Some("alive"));
        // Three 300 ms connect attempts at most; 5 s is a hang, not a slow machine.
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    let line = wait_for_log_line(&log, &["server=alive", "retries=1"]).await;
    assert!(line.starts_with("127.0.0.2:"), "{line}");
    let hole_snap = pool
        .servers()
        .into_iter()
        .find(|s| s.name == "hole")
        .unwrap();
    assert!(hole_snap.connect_failures >= 1);
    wait_until("no stuck connections", || {
        alive.open() == 0 && active_total(&pool) == 0
    })
    .await;
    sl.shutdown().await;
}

#[tokio::test]
async fn silent_server_is_cut_at_the_idle_timeout_on_both_sides() {
    // Accepts, reads, never answers; reports when its side is closed.
    let silent = TcpListener::bind((LOOP, 0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = silent.accept().await {
            let tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let idle = "timeouts = { idle = \"400ms\" }";
    let sl = Sluice::start(&config(&[("silent", silent_addr)], idle, &log)).await;
    let pool = sl.pool("be");
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"hello?").await.unwrap();
    let t0 = Instant::now();
    assert!(closed_without_data(&mut c).await);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "closed before the idle timeout"
    );
    assert!(
        waited < Duration::from_secs(5),
        "idle timeout late: {waited:?}"
    );
    within("silent server saw the close", closed_rx.recv()).await;
    wait_for_log_line(&log, &["server=silent", "end=timeout"]).await;
    wait_until("no leases left", || active_total(&pool) == 0).await;
    sl.shutdown().await;
}

#[tokio::test]
async fn resetting_server_never_leaves_a_client_hanging() {
    // Accepts, then resets at once (SO_LINGER 0 + close).
    let reset = TcpListener::bind((LOOP, 0)).await.unwrap();
    let reset_addr = reset.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = reset.accept().await {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    let alive = NamedServer::start(LOOP, "alive").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let servers = [("reset", reset_addr), ("alive", alive.addr)];
    let sl = Sluice::start(&config(&servers, "retries = 2", &log)).await;
    let pool = sl.pool("be");
    // The reset usually lands while sluice is still connecting (then it retries on `alive`);
    // if it lands after, the client sees a prompt close. Never a hang.
    let (mut served, mut closed) = (0, 0);
    for _ in 0..6 {
        let t0 = Instant::now();
        let mut c = client(sl.addr("fe")).await;
        match read_line(&mut c).await.as_deref() {
            Some("alive") => served += 1,
            None => closed += 1,
            Some(other) => panic!("unexpected {other}"),
        }
        // Never a hang (sluice's connect timeout is 5 s; a reset ends an attempt at once).
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }
    assert_eq!(closed, 6 - served);
    // Each served client is one connection `alive` accepted: none was opened and dropped.
    assert_eq!(
        alive.accepted(),
        served,
        "alive accepted connections nobody got"
    );
    assert!(served >= 3, "alive served only {served} of 6");
    let snap = pool
        .servers()
        .into_iter()
        .find(|s| s.name == "reset")
        .unwrap();
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        snap.connect_failures >= 1 || lines.contains("server=reset"),
        "the reset server was never tried: {lines}"
    );
    wait_until("no stuck connections", || {
        alive.open() == 0 && active_total(&pool) == 0
    })
    .await;
    sl.shutdown().await;
}
