//! Every server down, on the real binary: L4 clients closed at once, the edge answers 503,
//! the process stays near idle (CPU from /proc/PID/stat) and recovers when servers return.
//! Flapping health: rise/fall damp it and each real change is logged exactly once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A tiny HTTP/1.1 server: answers every request head with the status `status()` gives,
/// then closes. Counts requests.
async fn http_server(
    addr: SocketAddr,
    status: impl Fn() -> u16 + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let l = TcpListener::bind(addr).await.expect("bind http server");
    let count = Arc::new(AtomicUsize::new(0));
    let (n, status) = (count.clone(), Arc::new(status));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (n, status) = (n.clone(), status.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match tokio::time::timeout(DEADLINE, s.read(&mut b)).await {
                        Ok(Ok(k)) if k > 0 => head.extend_from_slice(&b[..k]),
                        _ => return,
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let code = status();
                let resp = format!(
                    "HTTP/1.1 {code} X\r\ncontent-length: 3\r\nconnection: close\r\n\r\n{code}"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    count
}

/// GET / on `fe`; the status code, or None when the connection closed without one.
async fn get_status(fe: SocketAddr) -> Option<u16> {
    let mut s = client(fe).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    let _ = within("edge response", s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_sec() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_down_fails_fast_stays_idle_and_recovers() {
    let l4_addr = SocketAddr::new(LOOP, free_port(LOOP));
    let app_addr = SocketAddr::new(LOOP, free_port(LOOP));
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"l4\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"tcp\"\n\n\
         [[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\n\
         [[backend]]\nname = \"tcp\"\nhealth = {{ interval = \"100ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
         [[backend.servers]]\nname = \"s\"\naddr = \"{l4_addr}\"\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\nhealth = {{ interval = \"100ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
         [[backend.servers]]\nname = \"a\"\naddr = \"{app_addr}\"\n"
    );
    let path = write_file(dir.path(), "down.toml", &cfg);
    let sl = SluiceProcess::start(&path, 2);
    let (l4, web) = (sl.addr("l4"), sl.addr("web"));
    let logged = |what: &str| {
        let what = what.to_owned();
        let lines = sl.stderr.clone();
        move || lines.lock().unwrap().iter().any(|l| l.contains(&what))
    };
    wait_until("both servers marked down", || {
        logged("server tcp/s DOWN")() && logged("server app/a DOWN")()
    })
    .await;

    // Down: L4 closes at once, the edge says 503.
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut c = client(l4).await;
        assert!(closed_without_data(&mut c).await);
        // Far below the 5 s connect timeout: no connect is tried (loose for a loaded machine).
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t0.elapsed()
        );
        let t0 = Instant::now();
        assert_eq!(get_status(web).await, Some(503));
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "{:?}",
            t0.elapsed()
        );
    }

    // No busy loop while down: over 2 s (a measurement window, not a wait for readiness)
    // the process uses well under a third of a core (a busy loop takes a whole one; the
    // figure printed is a few %). Checks run every 100 ms meanwhile.
    let before = cpu_ticks(sl.pid());
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = (cpu_ticks(sl.pid()) - before) as f64 / clock_ticks_per_sec() as f64;
    let share = used / window.elapsed().as_secs_f64();
    eprintln!(
        "CPU while every server is down: {:.1}% of a core",
        share * 100.0
    );
    assert!(
        share < 0.30,
        "CPU {:.1}% of a core while down",
        share * 100.0
    );

    // Recovery: both servers come back on their addresses.
    let back = NamedServer::start_on(l4_addr, "back").await;
    let hits = http_server(app_addr, || 200).await;
    wait_until("both servers marked up", || {
        logged("server tcp/s UP")() && logged("server app/a UP")()
    })
    .await;
    let mut c = client(l4).await;
    assert_eq!(read_line(&mut c).await.as_deref(), Some("back"));
    assert_eq!(get_status(web).await, Some(200));
    assert!(hits.load(Ordering::SeqCst) >= 1);
    drop(back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_checks_are_damped_and_each_change_logged_once() {
    const ALTERNATE: u8 = 0;
    const FAIL: u8 = 1;
    const PASS: u8 = 2;
    let mode = Arc::new(AtomicU8::new(ALTERNATE));
    let flip = Arc::new(AtomicUsize::new(0));
    let addr = SocketAddr::new(LOOP, 0);
    let (m, f) = (mode.clone(), flip.clone());
    // Reserve the address first so the config can name it.
    let probe = std::net::TcpListener::bind(addr).unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let checks = http_server(addr, move || match m.load(Ordering::SeqCst) {
        ALTERNATE if f.fetch_add(1, Ordering::SeqCst) % 2 == 0 => 200,
        ALTERNATE | FAIL => 503,
        _ => 200,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"flap\"\n\n\
         [[backend]]\nname = \"flap\"\nhealth = {{ kind = \"http\", interval = \"40ms\", timeout = \"500ms\", rise = 3, fall = 3 }}\n\
         [[backend.servers]]\nname = \"s\"\naddr = \"{addr}\"\n"
    );
    let path = write_file(dir.path(), "flap.toml", &cfg);
    let sl = SluiceProcess::start(&path, 1);
    let count = |what: &str| {
        sl.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    let seen = |n: usize| {
        let c = checks.clone();
        move || c.load(Ordering::SeqCst) >= n
    };
    // Alternating pass/fail never makes 3 in a row: no state change at all.
    wait_until("30 alternating checks", seen(30)).await;
    assert_eq!(count("server flap/s DOWN"), 0);
    assert_eq!(count("server flap/s UP"), 0);
    // Failing for good: one DOWN line, however many failures follow.
    mode.store(FAIL, Ordering::SeqCst);
    wait_until("DOWN logged", || count("server flap/s DOWN") == 1).await;
    let now = checks.load(Ordering::SeqCst);
    wait_until("10 more failing checks", seen(now + 10)).await;
    assert_eq!(count("server flap/s DOWN"), 1);
    // Alternating again while down: still no change.
    mode.store(ALTERNATE, Ordering::SeqCst);
    let now = checks.load(Ordering::SeqCst);
    wait_until("10 alternating checks", seen(now + 10)).await;
    assert_eq!(count("server flap/s UP"), 0);
    // Passing for good: one UP line.
    mode.store(PASS, Ordering::SeqCst);
    wait_until("UP logged", || count("server flap/s UP") == 1).await;
    let now = checks.load(Ordering::SeqCst);
    wait_until("10 more passing checks", seen(now + 10)).await;
    assert_eq!(count("server flap/s UP"), 1);
    assert_eq!(count("server flap/s DOWN"), 1);
}
