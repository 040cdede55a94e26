//! Agent-check both ways (issue #17): a sluice balancer follows a scripted agent (`drain`,
//! `ready 50%`, `down`, `up 100%`: new connections follow each state, an open one stays),
//! and a sluice edge's `[agent]` endpoint reports its load, `down` and `drain`, read
//! directly and by a real HAProxy (`agent-check`, `show servers state` on its stats socket).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::edge::{read_all, status_of};
use crate::support::*;

// ---------------------------------------------------------------- balancer side

/// An agent answering each connection with the current `reply` line; counts answers.
struct ScriptedAgent {
    addr: SocketAddr,
    reply: Arc<Mutex<String>>,
    answered: Arc<AtomicUsize>,
}

impl ScriptedAgent {
    async fn start(addr: SocketAddr, reply: &str) -> std::io::Result<ScriptedAgent> {
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let reply = Arc::new(Mutex::new(reply.to_owned()));
        let answered = Arc::new(AtomicUsize::new(0));
        let (r, n) = (reply.clone(), answered.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let line = format!("{}\n", r.lock().unwrap());
                let _ = s.write_all(line.as_bytes()).await;
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(ScriptedAgent {
            addr,
            reply,
            answered,
        })
    }

    /// Says `reply` from now on and waits until the balancer has applied it: two more
    /// answers (the checks of one server run one after another, so the first answer with
    /// the new line was applied before the second connection).
    async fn say(&self, reply: &str) {
        *self.reply.lock().unwrap() = reply.to_owned();
        let seen = self.answered.load(Ordering::SeqCst);
        wait_until(&format!("two agent answers of {reply:?}"), || {
            self.answered.load(Ordering::SeqCst) >= seen + 2
        })
        .await;
    }
}

/// Opens `n` connections through the balancer and counts which server greeted each.
async fn spread(to: SocketAddr, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        let mut c = client(to).await;
        match read_line(&mut c).await.as_deref() {
            Some("A") => a += 1,
            Some("B") => b += 1,
            other => panic!("unexpected greeting {other:?}"),
        }
    }
    (a, b)
}

#[tokio::test]
async fn a_sluice_balancer_follows_a_scripted_agent() {
    // Server A and its agent on 127.0.0.10, server B and an always-up agent on 127.0.0.11,
    // both agents on one port (the agent port is the backend's, as HAProxy's agent-port).
    let (a_ip, b_ip) = (
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
    );
    let (agent_a, _agent_b) = loop {
        let a = ScriptedAgent::start(SocketAddr::new(a_ip, 0), "up ready 100%")
            .await
            .unwrap();
        if let Ok(b) = ScriptedAgent::start(SocketAddr::new(b_ip, a.addr.port()), "up").await {
            break (a, b);
        }
    };
    let (srv_a, srv_b) = (
        NamedServer::start(a_ip, "A").await,
        NamedServer::start(b_ip, "B").await,
    );
    let sluice = Sluice::start(&format!(
        r#"
[global]
max_connections = 100

[[frontend]]
name = "agent-fe"
bind = ["127.0.0.1:0"]
backend = "agent-be"

[[backend]]
name = "agent-be"
servers = [{{ name = "A", addr = "{}" }}, {{ name = "B", addr = "{}" }}]
[backend.health]
interval = "100ms"
agent = {{ port = {}, interval = "50ms" }}
"#,
        srv_a.addr,
        srv_b.addr,
        agent_a.addr.port()
    ))
    .await;
    let fe = sluice.addr("agent-fe");
    let pool = sluice.pool("agent-be");
    agent_a.say("up ready 100%").await;
    assert_eq!(spread(fe, 10).await, (5, 5));

    // drain: no new connection to A; the one open on A stays open.
    let mut held = loop {
        let mut c = client(fe).await;
        if read_line(&mut c).await.as_deref() == Some("A") {
            break c;
        }
    };
    agent_a.say("drain").await;
    assert_eq!(spread(fe, 10).await, (0, 10));
    assert_eq!(srv_a.open(), 1, "the connection open on A was kept");
    held.write_all(b"still here").await.unwrap();

    // ready 50%: A back, with half of B's weight. (A weight alone would not end the drain:
    // HAProxy changes only what the agent says.)
    agent_a.say("ready 50%").await;
    assert_eq!(spread(fe, 30).await, (10, 20));
    // What the status pages and /metrics show: the weight as configured, the agent's
    // percentage, and the weight selection uses.
    let a = &pool.servers()[0];
    assert_eq!((a.weight, a.agent_pct, a.ramp_pct), (1, 50, 100));
    assert_eq!(a.effective_weight, 0.5);

    // down: A out, reported down.
    agent_a.say("down #maintenance window").await;
    assert_eq!(spread(fe, 10).await, (0, 10));
    let state = |p: &sluice::balance::Pool| p.servers()[0].state;
    assert_eq!(state(&pool), sluice::balance::ServerState::Down);

    // up 100%: A back at full weight.
    agent_a.say("up 100%").await;
    assert_eq!(state(&pool), sluice::balance::ServerState::Up);
    assert_eq!(spread(fe, 10).await, (5, 5));
    drop(held);
    sluice.shutdown().await;
}

// ---------------------------------------------------------------- edge side

/// An HTTP app on `addr` that holds every request until `release` is true, then answers
/// 200 and closes. Returns how many requests arrived so far.
async fn held_app(addr: SocketAddr, release: watch::Receiver<bool>) -> Arc<AtomicUsize> {
    let l = TcpListener::bind(addr).await.expect("bind app");
    let arrived = Arc::new(AtomicUsize::new(0));
    let n = arrived.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (n, mut release) = (n.clone(), release.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&b[..k]),
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|r| *r).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    arrived
}

/// `sluice run` as an edge in front of the HTTP app at `app`, `[agent]` on `agent_port`
/// with capacity 4; with `health`, the app backend is checked every 100 ms (rise = fall = 1).
fn start_edge(dir: &Path, agent_port: u16, app: SocketAddr, health: bool) -> SluiceProcess {
    SluiceProcess::start(&edge_config(dir, agent_port, app, health, ""), 1)
}

/// The configuration file `start_edge` runs, `global` keys added.
fn edge_config(
    dir: &Path,
    agent_port: u16,
    app: SocketAddr,
    health: bool,
    global: &str,
) -> std::path::PathBuf {
    let health = if health {
        "[backend.health]\ninterval = \"100ms\"\nrise = 1\nfall = 1\n"
    } else {
        ""
    };
    write_file(
        dir,
        "edge.toml",
        &format!(
            r#"
[global]
max_connections = 100
grace = "30s"
threads = 1
{global}

[agent]
bind = "127.0.0.1:{agent_port}"
capacity = 4

[[frontend]]
name = "edge"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "app"

[[backend]]
name = "app"
protocol = "http"
servers = [{{ addr = "{app}" }}]
{health}"#
        ),
    )
}

/// The agent's line (without its end), or None when nobody answers yet.
async fn ask(agent: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(agent).await.ok()?;
    let mut out = Vec::new();
    let mut b = [0u8; 256];
    loop {
        match within("agent reply", s.read(&mut b)).await {
            Ok(0) | Err(_) => break,
            Ok(n) if out.len() + n <= 1024 => out.extend_from_slice(&b[..n]),
            Ok(_) => panic!("agent reply longer than 1 KiB"),
        }
    }
    let text = String::from_utf8(out).expect("ASCII reply");
    Some(text.strip_suffix('\n')?.to_owned())
}

/// Asks until the agent says `want`; panics with the last answer after the deadline.
async fn until_agent_says(agent: SocketAddr, want: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while tokio::time::Instant::now() < end {
        last = ask(agent).await;
        if last.as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent did not say {want:?}; last: {last:?}");
}

/// Sends a GET to the edge and leaves it waiting for the answer.
async fn hold_request(edge: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(edge).await.expect("connect edge");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        .await
        .unwrap();
    s
}

#[tokio::test]
async fn an_edge_agent_reports_down_load_and_drain() {
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (agent_port, app) = (free_port(lo), SocketAddr::new(lo, free_port(lo)));
    let edge = start_edge(dir.path(), agent_port, app, true);
    let agent = SocketAddr::new(lo, agent_port);
    // No app yet: its one server fails its check.
    until_agent_says(agent, "down #no app server up").await;

    let (release, rx) = watch::channel(false);
    let arrived = held_app(app, rx).await;
    until_agent_says(agent, "up ready 100%").await;

    // Two requests in flight of a capacity of 4: 100 - 100 x 2/4.
    let held = [
        hold_request(edge.addr("edge")).await,
        hold_request(edge.addr("edge")).await,
    ];
    wait_until("two requests at the app", || {
        arrived.load(Ordering::SeqCst) == 2
    })
    .await;
    until_agent_says(agent, "up ready 50%").await;

    // SIGTERM: the edge drains its two requests, and says so.
    let mut edge = edge;
    edge.signal(rustix::process::Signal::TERM).unwrap();
    until_agent_says(agent, "drain").await;
    release.send(true).unwrap();
    for mut s in held {
        let resp = within("held response", read_all(&mut s)).await;
        assert_eq!(status_of(&resp), "200", "{resp}");
    }
    assert!(edge.wait_exit().is_some_and(|st| st.success()));
}

/// HAProxy's view of server `be/edge` over its stats socket: (admin state, user weight).
async fn haproxy_server_state(sock: &Path) -> Option<(u32, u32)> {
    let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
    s.write_all(b"show servers state be\n").await.ok()?;
    let mut out = String::new();
    within("stats socket", s.read_to_string(&mut out))
        .await
        .ok()?;
    let f: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 8 && f[1] == "be" && f[3] == "edge")?;
    Some((f[6].parse().ok()?, f[7].parse().ok()?))
}

/// Polls HAProxy until `ok(admin state, weight)` holds; panics with the last state.
async fn until_haproxy(sock: &Path, what: &str, ok: impl Fn(u32, u32) -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while tokio::time::Instant::now() < end {
        last = haproxy_server_state(sock).await;
        if last.is_some_and(|(a, w)| ok(a, w)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("haproxy never showed {what}; last (admin state, weight): {last:?}");
}

/// HAProxy's SRV_ADMF_FDRAIN: drain forced (by the agent or the CLI).
const ADMF_FDRAIN: u32 = 0x08;

#[tokio::test]
async fn haproxy_agent_check_follows_a_sluice_edge() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return skip("haproxy_agent_check_follows_a_sluice_edge: haproxy not installed");
    };
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (agent_port, app) = (free_port(lo), SocketAddr::new(lo, free_port(lo)));
    let (release, rx) = watch::channel(false);
    let arrived = held_app(app, rx).await;
    let edge = start_edge(dir.path(), agent_port, app, false);
    let agent = SocketAddr::new(lo, agent_port);
    until_agent_says(agent, "up ready 100%").await;

    let hport = free_port(lo);
    let sock = dir.path().join("admin.sock");
    let hcfg = format!(
        "global\n  stats socket {sock} level admin\n\
         defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{hport}\n  default_backend be\n\
         backend be\n  server edge {edge} weight 100 check inter 200ms agent-check agent-port {agent_port} agent-inter 200ms\n",
        sock = sock.display(),
        edge = edge.addr("edge"),
    );
    let _haproxy = start_haproxy(&haproxy, dir.path(), &hcfg, SocketAddr::new(lo, hport)).await;
    until_haproxy(&sock, "weight 100, ready", |a, w| a == 0 && w == 100).await;

    // Three requests in flight of 4 (two straight to the edge, one through HAProxy): 25 %.
    let mut held = vec![
        hold_request(edge.addr("edge")).await,
        hold_request(edge.addr("edge")).await,
        hold_request(SocketAddr::new(lo, hport)).await,
    ];
    wait_until("three requests at the app", || {
        arrived.load(Ordering::SeqCst) == 3
    })
    .await;
    until_haproxy(&sock, "weight 25", |_, w| w == 25).await;
    // One finishes: 50 %.
    let one = held.pop().unwrap();
    drop(one);
    until_haproxy(&sock, "weight 50", |_, w| w == 50).await;

    // SIGTERM with two requests still in flight: HAProxy puts the edge in DRAIN.
    let mut edge = edge;
    edge.signal(rustix::process::Signal::TERM).unwrap();
    until_haproxy(&sock, "DRAIN", |a, _| a & ADMF_FDRAIN != 0).await;
    release.send(true).unwrap();
    for mut s in held {
        let resp = within("held response", read_all(&mut s)).await;
        assert_eq!(status_of(&resp), "200", "{resp}");
    }
    assert!(edge.wait_exit().is_some_and(|st| st.success()));
}

#[tokio::test]
async fn after_an_upgrade_the_successor_answers_and_the_old_process_never_says_drain() {
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (agent_port, app) = (free_port(lo), SocketAddr::new(lo, free_port(lo)));
    let (release, rx) = watch::channel(false);
    let arrived = held_app(app, rx).await;
    let pid_file = dir.path().join("sluice.pid");
    let cfg = edge_config(
        dir.path(),
        agent_port,
        app,
        false,
        &format!("pid_file = \"{}\"", pid_file.display()),
    );
    let mut old = SluiceProcess::start(&cfg, 1);
    let agent = SocketAddr::new(lo, agent_port);
    until_agent_says(agent, "up ready 100%").await;
    // A request held in the old process keeps it draining after the handover.
    let mut held = hold_request(old.addr("edge")).await;
    wait_until("the request at the app", || {
        arrived.load(Ordering::SeqCst) == 1
    })
    .await;
    until_agent_says(agent, "up ready 75%").await;

    // Checks all through the handover: each is answered (none refused or closed without a
    // line), by the old process with its load or by the successor with its own, never
    // `drain` (the old one stops answering before it stops accepting).
    let (done, seen) = (watch::channel(false), Arc::new(Mutex::new(Vec::new())));
    let askers: Vec<_> = (0..3)
        .map(|_| {
            let (mut done, seen) = (done.1.clone(), seen.clone());
            tokio::spawn(async move {
                for _ in 0..5_000 {
                    if *done.borrow_and_update() {
                        break;
                    }
                    let said = ask(agent).await;
                    seen.lock().unwrap().push(said);
                }
            })
        })
        .collect();
    let path = cfg.clone();
    let out = tokio::task::spawn_blocking(move || sluice_cli(&["upgrade"], &path))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    done.0.send(true).unwrap();
    for a in askers {
        within("agent askers", a).await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(!seen.is_empty());
    for said in &seen {
        let ok = said
            .as_deref()
            .is_some_and(|s| s == "up ready 75%" || s == "up ready 100%");
        assert!(ok, "an agent check during the upgrade got {said:?}");
    }
    let new_pid = sluice::reload::read_pid(&pid_file).expect("the successor's pid");
    let _stop_new = StopOnDrop(new_pid);
    assert_ne!(new_pid, old.pid());
    // The successor answers for the edge (its own load: nothing in flight); the old
    // process, draining its request, answers nothing more.
    for _ in 0..20 {
        let said = ask(agent).await;
        assert_eq!(said.as_deref(), Some("up ready 100%"));
    }
    assert!(
        old.child.0.try_wait().unwrap().is_none(),
        "the old process still drains its request"
    );
    release.send(true).unwrap();
    let resp = within("held response", read_all(&mut held)).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    assert!(old.wait_exit().is_some_and(|st| st.success()));
}

/// Sends SIGTERM to a process this test did not start as its child (an upgrade's successor).
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.0)).unwrap_or_default();
        if comm.trim() == "sluice" {
            if let Some(p) = rustix::process::Pid::from_raw(self.0) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
        }
    }
}
