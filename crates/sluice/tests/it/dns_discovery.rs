//! Servers from DNS (issue #7), end to end: a tiny DNS responder on 127.0.0.1 answers
//! `app.test` from a list the test changes; sluice re-resolves every 200ms. New addresses are
//! health-checked before use, vanished ones get no new connections while open ones keep
//! working, and a failing resolver keeps the last good set.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{client, wait_until, within};
use sluice::balance::ServerState;
use sluice::reload::Live;
use sluice::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

/// Answers A queries for `app.test` with `ips` (AAAA: no records; other names: NXDOMAIN;
/// SERVFAIL for everything while `fail` is set).
struct Dns {
    addr: SocketAddr,
    ips: Arc<Mutex<Vec<Ipv4Addr>>>,
    fail: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    async fn start(ips: &[Ipv4Addr]) -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let list = Arc::new(Mutex::new(ips.to_vec()));
        let fail = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (l, f, q) = (list.clone(), fail.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                q.fetch_add(1, Ordering::SeqCst);
                let ips = l.lock().unwrap().clone();
                if let Some(reply) = respond(&buf[..n], &ips, f.load(Ordering::SeqCst)) {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
        Dns {
            addr,
            ips: list,
            fail,
            queries,
            task,
        }
    }

    fn set(&self, ips: &[Ipv4Addr]) {
        *self.ips.lock().unwrap() = ips.to_vec();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the reply to one query (None for garbage).
fn respond(q: &[u8], ips: &[Ipv4Addr], fail: bool) -> Option<Vec<u8>> {
    if q.len() < 17 {
        return None;
    }
    // The question: labels from offset 12 to the zero byte, then type and class.
    let mut pos = 12;
    let mut name = Vec::new();
    while *q.get(pos)? != 0 {
        let len = q[pos] as usize;
        name.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + len)?).to_ascii_lowercase());
        pos += 1 + len;
    }
    let qend = pos + 5;
    let qtype = u16::from_be_bytes([*q.get(pos + 1)?, *q.get(pos + 2)?]);
    let mut r = q.get(..qend)?.to_vec();
    r[2] = 0x81;
    r[3] = 0x80;
    r[6..12].fill(0);
    if fail {
        r[3] |= 2;
    } else if name.join(".") != "app.test" {
        r[3] |= 3;
    } else if qtype == 1 {
        r[7] = ips.len() as u8;
        for ip in ips {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
            r.extend_from_slice(&ip.octets());
        }
    }
    Some(r)
}

/// A server that greets with its name and then echoes lines.
async fn named_echo(addr: SocketAddr, name: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind(addr)
        .await
        .expect("bind named echo server");
    let addr = l.local_addr().unwrap();
    let hello = format!("{name}\n");
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let hello = hello.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                if wr.write_all(hello.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if wr.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

const IP21: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
const IP22: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
const IP23: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 23);

/// One connection through sluice: (the greeting, the open connection's reader/writer).
async fn greet(
    to: SocketAddr,
) -> (
    String,
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let (rd, wr) = client(to).await.into_split();
    let mut lines = BufReader::new(rd).lines();
    let name = within("greeting", lines.next_line())
        .await
        .unwrap()
        .unwrap_or_default();
    (name, lines, wr)
}

fn state_of(live: &Live, server: &str) -> Option<ServerState> {
    let pool = live.pool("be")?;
    pool.servers()
        .into_iter()
        .find(|s| s.name == server)
        .map(|s| s.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_follow_dns_answers() {
    // The same port on .21 and .22; .23's port is taken later (it starts absent).
    let (a21, t21) = named_echo(SocketAddr::new(IP21.into(), 0), "s21").await;
    let port = a21.port();
    let (_, t22) = named_echo(SocketAddr::new(IP22.into(), port), "s22").await;
    let dns = Dns::start(&[IP21, IP22]).await;

    let toml = format!(
        r#"
[global]
resolvers = ["{dns}"]
grace = "1s"
max_connections = 1000

[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"

[[backend]]
name = "be"
resolve_interval = "200ms"
health = {{ kind = "tcp", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}
servers = [{{ name = "app", addr = "app.test:{port}" }}]
"#,
        dns = dns.addr
    );
    let cfg = sluice::config::load::load_str(&toml, "dns.toml").expect("config");
    let server = Server::bind(cfg).await.expect("bind");
    let live = server.live();
    let fe = server.local_addrs()[0].1;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    // Both addresses are servers, named NAME-IP, and both get connections.
    let names: Vec<String> = live
        .pool("be")
        .unwrap()
        .servers()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["app-127.0.0.21", "app-127.0.0.22"]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(greet(fe).await.0);
    }
    assert!(
        seen.contains(&"s21".into()) && seen.contains(&"s22".into()),
        "{seen:?}"
    );

    // Hold a connection to .22, then let .22 vanish and .23 appear (nothing listens there yet).
    let (mut held, mut held_wr) = loop {
        let (name, lines, wr) = greet(fe).await;
        if name == "s22" {
            break (lines, wr);
        }
    };
    dns.set(&[IP21, IP23]);
    wait_until("app-127.0.0.23 in the pool and app-127.0.0.22 gone", || {
        state_of(&live, "app-127.0.0.23").is_some() && state_of(&live, "app-127.0.0.22").is_none()
    })
    .await;
    // New addresses are checked before use: .23 refuses connections, so it stays down and
    // every new connection goes to .21.
    assert_eq!(state_of(&live, "app-127.0.0.23"), Some(ServerState::Down));
    for _ in 0..6 {
        assert_eq!(greet(fe).await.0, "s21");
    }
    // The open connection to the vanished server keeps working.
    held_wr.write_all(b"still there\n").await.unwrap();
    assert_eq!(
        within("echo", held.next_line()).await.unwrap().as_deref(),
        Some("still there")
    );

    // .23 comes up: one passing check and it gets connections.
    let (_, t23) = named_echo(SocketAddr::new(IP23.into(), port), "s23").await;
    wait_until("app-127.0.0.23 up", || {
        state_of(&live, "app-127.0.0.23") == Some(ServerState::Up)
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(greet(fe).await.0);
    }
    assert!(
        seen.contains(&"s23".into()) && !seen.contains(&"s22".into()),
        "{seen:?}"
    );

    // The resolver fails: the last good set stays and keeps serving.
    dns.fail.store(true, Ordering::SeqCst);
    let before = dns.queries.load(Ordering::SeqCst);
    wait_until("two more queries", || {
        dns.queries.load(Ordering::SeqCst) >= before + 4
    })
    .await;
    let names: Vec<String> = live
        .pool("be")
        .unwrap()
        .servers()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["app-127.0.0.21", "app-127.0.0.23"]);
    assert!(["s21", "s23"].contains(&greet(fe).await.0.as_str()));

    held_wr.write_all(b"bye\n").await.unwrap();
    assert_eq!(
        within("echo", held.next_line()).await.unwrap().as_deref(),
        Some("bye")
    );
    drop((held, held_wr));
    let _ = stop_tx.send(());
    within("shutdown", run).await.unwrap().unwrap();
    for t in [t21, t22, t23] {
        t.abort();
    }
}

#[tokio::test]
async fn unresolvable_name_refuses_to_start() {
    let dns = Dns::start(&[]).await;
    let toml = format!(
        r#"
[global]
resolvers = ["{}"]
max_connections = 1000
[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"
[[backend]]
name = "be"
servers = [{{ addr = "nowhere.test:80" }}]
"#,
        dns.addr
    );
    let cfg = sluice::config::load::load_str(&toml, "dns.toml").expect("config");
    let err = Server::bind(cfg)
        .await
        .err()
        .expect("bind must fail")
        .to_string();
    assert!(
        err.contains("nowhere.test:80") && err.contains("NXDOMAIN"),
        "{err}"
    );
}
