//! Unit tests of selection: SWRR order, backup, leastconn, consistent hashing, two choices,
//! max_connections and the wait queue, and the rise/fall state machine. No I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::*;
use crate::addr::PeerAddr;
use crate::config::Backend;

/// The spec of a `[backend]` table written in TOML (as a loaded configuration converts it).
pub(super) fn backend_spec(toml_src: &str) -> spec::Backend {
    let cfg: Backend = toml::from_str(toml_src).expect("backend toml");
    cfg.spec().expect("backend spec")
}

/// Builds a pool from a TOML backend; servers get fake addresses 127.0.0.10:(8000+i).
fn pool(toml_src: &str) -> Arc<Pool> {
    let mut cfg: Backend = toml::from_str(toml_src).expect("backend toml");
    for (i, s) in cfg.servers.iter_mut().enumerate() {
        s.addr = SocketAddr::from(([127, 0, 0, 10], 8000 + i as u16)).to_string();
    }
    Pool::new(&cfg.spec().expect("backend spec"))
}

fn client(last: u8) -> ClientAddr {
    ClientAddr::direct(PeerAddr(SocketAddr::from(([127, 0, 0, last], 40000))))
}

fn pick_name(p: &Pool) -> String {
    p.select(&client(2), &[])
        .expect("a server")
        .name()
        .to_owned()
}

fn mark(p: &Pool, id: usize, up: bool, times: usize) {
    for _ in 0..times {
        let outcome = if up {
            Ok(Duration::from_millis(1))
        } else {
            Err("connection refused".into())
        };
        p.record_check(ServerId(id), outcome);
    }
}

const HEALTH: &str = "[health]\nkind = \"tcp\"\nrise = 2\nfall = 3\n";

#[test]
fn roundrobin_is_smooth_weighted() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", weight = 5 },
                   { name = "b", addr = "x" }, { name = "c", addr = "x" }]"#,
    );
    let got: Vec<String> = (0..14).map(|_| pick_name(&p)).collect();
    assert_eq!(got.concat(), "aabacaaaabacaa");

    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", weight = 3 }, { name = "b", addr = "x", weight = 2 }]"#,
    );
    let got: Vec<String> = (0..10).map(|_| pick_name(&p)).collect();
    assert_eq!(got.concat(), "ababaababa");
}

#[test]
fn tried_servers_are_skipped_and_exhaustion_is_none() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x" }, { name = "b", addr = "x" }]"#,
    );
    for _ in 0..4 {
        let l = p.select(&client(2), &[ServerId(0)]).unwrap();
        assert_eq!(l.name(), "b");
    }
    assert!(p.select(&client(2), &[ServerId(0), ServerId(1)]).is_none());
}

#[test]
fn backup_only_when_no_primary_is_up() {
    let p = pool(&format!(
        r#"name = "b"
        servers = [{{ name = "p1", addr = "x" }}, {{ name = "p2", addr = "x" }},
                   {{ name = "bk", addr = "x", backup = true }}]
        {HEALTH}"#
    ));
    for _ in 0..10 {
        assert_ne!(pick_name(&p), "bk");
    }
    mark(&p, 0, false, 3);
    for _ in 0..10 {
        assert_eq!(pick_name(&p), "p2");
    }
    mark(&p, 1, false, 3);
    assert!(p.any_up());
    for _ in 0..5 {
        assert_eq!(pick_name(&p), "bk");
    }
    mark(&p, 2, false, 3);
    assert!(!p.any_up());
    assert!(p.select(&client(2), &[]).is_none());
    // One primary back (after `rise` successes): the backup stops getting traffic.
    mark(&p, 1, true, 2);
    for _ in 0..5 {
        assert_eq!(pick_name(&p), "p2");
    }
}

#[test]
fn leastconn_follows_long_lived_leases() {
    let p = pool(
        r#"name = "b"
        balance = "leastconn"
        servers = [{ name = "a", addr = "x" }, { name = "b", addr = "x" }, { name = "c", addr = "x" }]"#,
    );
    // Ties rotate: three picks land on three different servers.
    let mut held: Vec<Lease> = (0..3).map(|_| p.select(&client(2), &[]).unwrap()).collect();
    let mut names: Vec<&str> = held.iter().map(|l| l.name()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    // Free b's slot: the next connection goes to b, the only one with 0 active.
    let pos = held.iter().position(|l| l.name() == "b").unwrap();
    held.remove(pos);
    let l = p.select(&client(2), &[]).unwrap();
    assert_eq!(l.name(), "b");
    held.push(l);
    // Load spreads evenly under long-lived connections.
    for _ in 0..30 {
        held.push(p.select(&client(2), &[]).unwrap());
    }
    for s in p.servers() {
        assert_eq!(s.active, 11, "{}", s.name);
    }
    drop(held);
    assert!(p.servers().iter().all(|s| s.active == 0));
}

#[test]
fn leastconn_respects_weight() {
    let p = pool(
        r#"name = "b"
        balance = "leastconn"
        servers = [{ name = "a", addr = "x", weight = 3 }, { name = "b", addr = "x" }]"#,
    );
    let held: Vec<Lease> = (0..40)
        .map(|_| p.select(&client(2), &[]).unwrap())
        .collect();
    let a = held.iter().filter(|l| l.name() == "a").count();
    assert_eq!(a, 30);
}

fn random_ips(n: usize) -> Vec<ClientAddr> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let ip = Ipv4Addr::from(rng.gen::<u32>());
            ClientAddr::direct(PeerAddr(SocketAddr::new(IpAddr::V4(ip), rng.gen())))
        })
        .collect()
}

#[test]
fn source_hash_is_consistent_when_a_server_goes() {
    let p = pool(&format!(
        r#"name = "b"
        balance = "source"
        servers = [{{ addr = "x" }}, {{ addr = "x" }}, {{ addr = "x" }}, {{ addr = "x" }}, {{ addr = "x" }}]
        {HEALTH}"#
    ));
    let ips = random_ips(10_000);
    let place = |p: &Pool| -> Vec<usize> {
        ips.iter()
            .map(|c| p.select(c, &[]).unwrap().id().0)
            .collect()
    };
    let before = place(&p);
    // Same client, other port: same server.
    let again = ClientAddr::direct(PeerAddr(SocketAddr::new(ips[0].addr().ip(), 1)));
    assert_eq!(p.select(&again, &[]).unwrap().id().0, before[0]);
    // Every server gets a fair share (10 000 / 5 = 2 000, within 30%).
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for &s in &before {
        *counts.entry(s).or_default() += 1;
    }
    for (&s, &n) in &counts {
        assert!((1400..=2600).contains(&n), "server {s} got {n} of 10000");
    }
    mark(&p, 2, false, 3);
    let after = place(&p);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!(*b, 2, "a client of a remaining server moved");
            moved += 1;
        }
        assert_ne!(*a, 2);
    }
    assert_eq!(moved, counts[&2]);
    assert!((1400..=2600).contains(&moved), "{moved} moved");
    // Back up: everyone returns to where they were.
    mark(&p, 2, true, 2);
    assert_eq!(place(&p), before);
}

#[test]
fn random_two_choices_prefers_less_loaded() {
    let p = pool(
        r#"name = "b"
        balance = "random"
        servers = [{ name = "a", addr = "x" }, { name = "b", addr = "x" }]"#,
    );
    let _held: Vec<Lease> = (0..10)
        .map(|_| p.select(&client(2), &[ServerId(1)]).unwrap())
        .collect();
    let mut b = 0;
    for _ in 0..1000 {
        if p.select(&client(2), &[]).unwrap().name() == "b" {
            b += 1;
        }
    }
    // b wins unless both draws hit a (1/4): expect ~750, a plain coin would give ~500.
    assert!(b > 650, "b chosen {b} of 1000");
}

#[test]
fn random_respects_weight() {
    let p = pool(
        r#"name = "b"
        balance = "random"
        servers = [{ name = "a", addr = "x", weight = 4 }, { name = "b", addr = "x" }]"#,
    );
    let held: Vec<Lease> = (0..1000)
        .map(|_| p.select(&client(2), &[]).unwrap())
        .collect();
    let a = held.iter().filter(|l| l.name() == "a").count();
    assert!((700..=900).contains(&a), "a got {a} of 1000 at weight 4:1");
}

#[test]
fn max_connections_skips_full_servers() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", max_connections = 2 }, { name = "b", addr = "x", max_connections = 1 }]"#,
    );
    let held: Vec<Lease> = (0..3).map(|_| p.select(&client(2), &[]).unwrap()).collect();
    assert!(p.select(&client(2), &[]).is_none());
    let snap = p.servers();
    assert_eq!((snap[0].active, snap[1].active), (2, 1));
    drop(held);
    assert!(p.select(&client(2), &[]).is_some());
}

#[tokio::test(start_paused = true)]
async fn queued_waiter_gets_the_freed_slot() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", max_connections = 1 }]"#,
    );
    let first = p.select(&client(2), &[]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let p2 = p.clone();
    let waiter = tokio::spawn(async move {
        p2.acquire(&client(2), &[], deadline)
            .await
            .map(|l| l.name().to_owned())
    });
    // Let the waiter queue up, then free the slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    let start = tokio::time::Instant::now();
    drop(first);
    assert_eq!(waiter.await.unwrap(), Ok("a".to_owned()));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn queued_waiter_times_out_at_deadline() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", max_connections = 1 }]"#,
    );
    let _first = p.select(&client(2), &[]).unwrap();
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(3);
    let err = p.acquire(&client(2), &[], deadline).await.unwrap_err();
    assert_eq!(err, NoServer::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // Tried everything: no waiting at all.
    let err = p
        .acquire(
            &client(2),
            &[ServerId(0)],
            deadline + Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert_eq!(err, NoServer::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn queue_is_fifo_and_bounded() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x", max_connections = 1 }]"#,
    );
    let first = p.select(&client(2), &[]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..3 {
        let (p, tx) = (p.clone(), tx.clone());
        tokio::spawn(async move {
            let lease = p.acquire(&client(2), &[], deadline).await.unwrap();
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(lease);
        });
        tokio::time::sleep(Duration::from_millis(1)).await; // enqueue in order 0, 1, 2
    }
    drop(first);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(rx.recv().await.unwrap());
    }
    assert_eq!(order, [0, 1, 2]);

    // The last one releases its lease 10 ms (virtual) later.
    for _ in 0..100 {
        if p.servers()[0].active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Bound: with QUEUE_LIMIT waiters parked, the next one is refused at once.
    let _hold = p.select(&client(2), &[]).unwrap();
    let mut parked = Vec::new();
    for _ in 0..QUEUE_LIMIT {
        let p = p.clone();
        parked.push(tokio::spawn(async move {
            p.acquire(&client(2), &[], deadline).await.map(drop)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let err = p.acquire(&client(2), &[], deadline).await.unwrap_err();
    assert_eq!(err, NoServer::QueueFull);
    for h in parked {
        h.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_fail_fast_when_servers_go_down() {
    let p = pool(&format!(
        r#"name = "b"
        servers = [{{ name = "a", addr = "x", max_connections = 1 }}]
        {HEALTH}"#
    ));
    let _first = p.select(&client(2), &[]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { p2.acquire(&client(2), &[], deadline).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(1)).await;
    mark(&p, 0, false, 3);
    assert_eq!(waiter.await.unwrap(), Err(NoServer::Unavailable));
}

#[test]
fn fall_and_rise_with_passive_failures() {
    let p = pool(&format!(
        r#"name = "b"
        servers = [{{ name = "a", addr = "x" }}, {{ name = "b", addr = "x" }}]
        {HEALTH}"#
    ));
    // Two check failures and one passive failure: 3 consecutive -> down.
    mark(&p, 0, false, 2);
    assert_eq!(p.servers()[0].state, ServerState::Up);
    let l = p.select(&client(2), &[ServerId(1)]).unwrap();
    l.connect_failed("connection refused");
    drop(l);
    let s = &p.servers()[0];
    assert_eq!(s.state, ServerState::Down);
    assert_eq!((s.checks_failed, s.connect_failures), (2, 1));
    assert_eq!(s.last_error.as_deref(), Some("connection refused"));
    // A success in between resets the rise streak.
    mark(&p, 0, true, 1);
    mark(&p, 0, false, 1);
    mark(&p, 0, true, 1);
    assert_eq!(p.servers()[0].state, ServerState::Down);
    mark(&p, 0, true, 1);
    let s = &p.servers()[0];
    assert_eq!(s.state, ServerState::Up);
    assert_eq!(s.last_check_latency, Some(Duration::from_millis(1)));
    // A success in between resets the fall streak too; connected() also clears it.
    mark(&p, 0, false, 2);
    p.select(&client(2), &[ServerId(1)]).unwrap().connected();
    mark(&p, 0, false, 2);
    assert_eq!(p.servers()[0].state, ServerState::Up);
}

#[test]
fn passive_failures_alone_never_mark_down_without_checks() {
    let p = pool(
        r#"name = "b"
        servers = [{ name = "a", addr = "x" }]"#,
    );
    for _ in 0..10 {
        p.select(&client(2), &[])
            .unwrap()
            .connect_failed("connection refused");
    }
    let s = &p.servers()[0];
    assert_eq!(s.state, ServerState::Up);
    assert_eq!(s.connect_failures, 10);
    assert_eq!(s.total, 10);
}

#[test]
fn unnamed_servers_are_srv_n_and_zero_weight_is_unused() {
    let p = pool(
        r#"name = "web"
        servers = [{ addr = "x" }, { addr = "x", weight = 0 }]"#,
    );
    let names: Vec<String> = p.servers().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["srv1", "srv2"]);
    for _ in 0..5 {
        assert_eq!(pick_name(&p), "srv1");
    }
    assert_eq!(p.name(), "web");
}

/// Collects formatted log output for `state_changes_are_logged_once`.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn state_changes_are_logged_once() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let p = pool(&format!(
            r#"name = "https-servers"
            servers = [{{ addr = "x" }}, {{ addr = "x" }}]
            {HEALTH}"#
        ));
        mark(&p, 1, false, 7);
        mark(&p, 1, true, 4);
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0]
            .contains("server https-servers/srv2 DOWN: connection refused, 3 consecutive failures"),
        "{text}"
    );
    assert!(lines[0].contains("WARN"), "{text}");
    assert!(
        lines[1].contains("server https-servers/srv2 UP: 2 consecutive successes"),
        "{text}"
    );
}

#[test]
fn hash_by_source_agrees_across_pools_and_passes_full_servers_on() {
    let cfg = r#"name = "h"
        balance = "hash"
        servers = [{ name = "a", addr = "x" }, { name = "b", addr = "x" },
                   { name = "c", addr = "x" }, { name = "d", addr = "x" }]"#;
    let (one, two) = (pool(cfg), pool(cfg));
    let ip = |i: u32| {
        ClientAddr::direct(PeerAddr(SocketAddr::from((
            Ipv4Addr::from(0x0a00_0000 + i),
            40000,
        ))))
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..1000 {
        let a = one.select(&ip(i), &[]).unwrap();
        let b = two.select(&ip(i), &[]).unwrap();
        assert_eq!(a.name(), b.name(), "client {i}");
        *counts.entry(a.name().to_owned()).or_default() += 1;
        // The same client again (another port) goes to the same server.
        assert_eq!(one.select(&ip(i), &[]).unwrap().name(), a.name());
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    // A tried server hands the key to another one, the same on both pools.
    let first = one.select(&ip(7), &[]).unwrap();
    let tried = [first.id()];
    let next_one = one.select(&ip(7), &tried).unwrap();
    let next_two = two.select(&ip(7), &tried).unwrap();
    assert_ne!(next_one.name(), first.name());
    assert_eq!(next_one.name(), next_two.name());
    // An SNI key is hashed instead of the address.
    let by_sni = |name: &str| {
        let l = one
            .select_keyed(&ip(1), Some(name.as_bytes()), &[])
            .unwrap();
        l.name().to_owned()
    };
    let names: std::collections::HashSet<String> =
        (0..64).map(|i| by_sni(&format!("h{i}.example"))).collect();
    assert!(names.len() > 1, "every SNI on one server: {names:?}");
}
