//! Accepting on every core: `sluice run` starts `global.threads` worker threads and each
//! bind gets one SO_REUSEPORT listening socket per worker (in process: per runtime worker);
//! every one of them accepts, and a reload that drops the bind closes the whole group.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support::*;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Listening TCP sockets on `addr` in this network namespace (/proc/net/tcp, state 0A).
fn listening_sockets(addr: SocketAddr) -> usize {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "0A"
        })
        .count()
}

/// `n` clients each read the server's name line through the balancer: with several
/// sockets in the group, the kernel hashes each client to one of them, so a socket without
/// a working accept loop would leave clients hanging (and the read would time out).
async fn all_answered(fe: SocketAddr, n: usize) {
    for i in 0..n {
        let mut c = client(fe).await;
        assert_eq!(read_line(&mut c).await.as_deref(), Some("s1"), "client {i}");
    }
}

/// Threads of process `pid` named `sluice-worker-*`.
fn worker_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("sluice-worker-"))
        .count()
}

fn config(threads: &str, server: SocketAddr) -> String {
    format!(
        "[global]\nmax_connections = 500\ngrace = \"1s\"\n{threads}\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n[[backend.servers]]\nname = \"s1\"\naddr = \"{server}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_one_socket_per_runtime_worker_all_accepting() {
    let srv = NamedServer::start(LOOP, "s1").await;
    let sl = Sluice::start(&config("", srv.addr)).await;
    let fe = sl.addr("fe");
    assert_eq!(listening_sockets(fe), 2, "two workers, two sockets on {fe}");
    all_answered(fe, 100).await;
    assert_eq!(srv.accepted(), 100);
    sl.shutdown().await;
    wait_until("listeners closed at shutdown", || {
        listening_sockets(fe) == 0
    })
    .await;
}

#[tokio::test]
async fn global_threads_sizes_the_group_and_a_reload_closes_all_of_it() {
    let srv = NamedServer::start(LOOP, "s1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "lb.toml", &config("threads = 3", srv.addr));
    let sl = SluiceProcess::start(&path, 1);
    let fe = sl.addr("fe");
    assert_eq!(
        listening_sockets(fe),
        3,
        "threads = 3: three sockets on {fe}"
    );
    let logged = sl.stderr.lock().unwrap().join("\n");
    assert!(
        logged.contains("sockets=3"),
        "one listening line per bind: {logged}"
    );
    assert_eq!(
        worker_threads(sl.pid()),
        3,
        "threads = 3: three worker threads"
    );
    all_answered(fe, 100).await;

    // Move the frontend to another port: the old group drains and closes, all three.
    let moved = config("threads = 3", srv.addr).replace("127.0.0.1:0", "127.0.0.3:0");
    std::fs::write(&path, moved).unwrap();
    sl.signal(rustix::process::Signal::HUP).unwrap();
    wait_until("old group closed after reload", || {
        listening_sockets(fe) == 0
    })
    .await;
    let stderr = sl.stderr.clone();
    wait_until("new bind listening", || {
        stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("addr=127.0.0.3:") && l.contains("sockets=3"))
    })
    .await;
}

#[test]
fn threads_zero_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "lb.toml",
        &config("threads = 0", "127.0.0.1:9".parse().unwrap()),
    );
    let out = std::process::Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lb.toml:4") && err.contains("threads") && err.contains("between 1 and"),
        "{err}"
    );
}
