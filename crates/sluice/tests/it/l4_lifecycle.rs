//! Connection lifecycle details: per-server max_connections queues until a slot frees, the
//! idle timeout ends quiet connections, the grace deadline force-closes what is left, and
//! SIGUSR1 reopens access_log files, L4 and HTTP (rotation); the JSON log format.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support::edge::{raw_request, status_of};
use crate::support::*;
use tokio::io::AsyncWriteExt;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(
    global: &str,
    frontend: &str,
    backend: &str,
    server: SocketAddr,
    server_extra: &str,
) -> String {
    format!(
        "[global]\nmax_connections = 100\n{global}\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n{frontend}\n\n\
         [[backend]]\nname = \"be\"\n{backend}\n\
         [[backend.servers]]\nname = \"s1\"\naddr = \"{server}\"\n{server_extra}\n"
    )
}

#[tokio::test]
async fn full_server_queues_the_next_client_until_a_slot_frees() {
    let srv = NamedServer::start(LOOP, "s1").await;
    let cfg = config(
        "grace = \"1s\"",
        "",
        "timeouts = { connect = \"5s\" }",
        srv.addr,
        "max_connections = 1",
    );
    let sl = Sluice::start(&cfg).await;
    let mut c1 = client(sl.addr("fe")).await;
    assert_eq!(read_line(&mut c1).await.unwrap(), "s1");
    let mut c2 = client(sl.addr("fe")).await;
    // The second client waits in the server's queue (the reason it is not served), not
    // connected: nothing to read, the server saw one connection.
    let pool = sl.pool("be");
    wait_until("the second client queued", || pool.queued() == 1).await;
    let mut b = [0u8; 4];
    assert!(
        matches!(c2.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "server above its max_connections"
    );
    assert_eq!(srv.accepted(), 1);
    drop(c1);
    assert_eq!(read_line(&mut c2).await.unwrap(), "s1");
    sl.shutdown().await;
}

#[tokio::test]
async fn full_server_past_the_connect_timeout_closes_the_client() {
    let srv = NamedServer::start(LOOP, "s1").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let cfg = config(
        "grace = \"1s\"",
        &format!("access_log = \"{}\"", log.display()),
        "timeouts = { connect = \"200ms\" }",
        srv.addr,
        "max_connections = 1",
    );
    let sl = Sluice::start(&cfg).await;
    let mut c1 = client(sl.addr("fe")).await;
    assert_eq!(read_line(&mut c1).await.unwrap(), "s1");
    let mut c2 = client(sl.addr("fe")).await;
    assert!(closed_without_data(&mut c2).await);
    let line = wait_for_log_line(&log, &["end=no_server"]).await;
    assert!(line.starts_with("127.0.0.2:"), "{line}");
    drop(c1);
    sl.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_logged_as_timeout() {
    let echo = echo_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let cfg = config(
        "grace = \"1s\"",
        &format!("access_log = \"{}\"", log.display()),
        "timeouts = { idle = \"300ms\" }",
        echo,
        "",
    );
    let sl = Sluice::start(&cfg).await;
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"ping\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "ping");
    // Then silence: sluice closes after the idle timeout.
    assert!(closed_without_data(&mut c).await);
    let line = wait_for_log_line(&log, &["end=timeout"]).await;
    assert!(line.contains("bytes_in=5 bytes_out=5"), "{line}");
    sl.shutdown().await;
}

#[tokio::test]
async fn grace_deadline_force_closes_remaining_connections() {
    let echo = echo_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let cfg = config(
        "grace = \"300ms\"",
        &format!(
            "access_log = \"{}\"\naccess_log_format = \"json\"",
            log.display()
        ),
        "",
        echo,
        "",
    );
    let sl = Sluice::start(&cfg).await;
    let mut c = client(sl.addr("fe")).await;
    c.write_all(b"x\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "x");
    // shutdown() returns only after run() has: stopped accepting, waited 300ms, forced.
    sl.shutdown().await;
    assert!(closed_without_data(&mut c).await);
    let line = wait_for_log_line(&log, &["\"end\":\"shutdown\""]).await;
    assert!(line.starts_with("{\"client\":\"127.0.0.2:"), "{line}");
}

/// SIGUSR1 reopens every access log after rotation, the L4 connection log and the HTTP
/// access log alike (edge_curl's `sigusr1_reopens_the_access_log` merged here): old files
/// keep their one line, new lines go to the recreated files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_l4_and_http_access_logs() {
    let srv = NamedServer::start(LOOP, "s1").await;
    let app = crate::support::edge::uwsgi_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (log, access) = (dir.path().join("conn.log"), dir.path().join("access.log"));
    let mut cfg = config(
        "grace = \"1s\"",
        &format!("access_log = \"{}\"", log.display()),
        "",
        srv.addr,
        "",
    );
    cfg.push_str(&format!(
        "\n[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         backend = \"app\"\naccess_log = \"{}\"\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        access.display()
    ));
    let path = write_file(dir.path(), "sluice.toml", &cfg);
    let proc = tokio::task::block_in_place(|| SluiceProcess::start(&path, 2));
    let (fe, web) = (proc.addr("fe"), proc.addr("web"));
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (rotated, access_rotated) = (
        dir.path().join("conn.log.1"),
        dir.path().join("access.log.1"),
    );

    let mut c = client(fe).await;
    assert_eq!(read_line(&mut c).await.unwrap(), "s1");
    drop(c);
    let r = raw_request(web, get("/before").as_bytes()).await;
    assert_eq!(status_of(&r), "200", "{r}");
    wait_for_log_line(&log, &["server=s1"]).await;
    wait_for_log_line(&access, &["GET /before "]).await;
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::rename(&access, &access_rotated).unwrap();
    proc.signal(rustix::process::Signal::USR1).unwrap();
    wait_until("sluice to recreate both log files", || {
        log.exists() && access.exists()
    })
    .await;

    let mut c = client(fe).await;
    assert_eq!(read_line(&mut c).await.unwrap(), "s1");
    drop(c);
    wait_for_log_line(&log, &["server=s1"]).await;
    let r = raw_request(web, get("/after").as_bytes()).await;
    assert_eq!(status_of(&r), "200", "{r}");
    let line = wait_for_log_line(&access, &["GET /after "]).await;
    assert!(line.starts_with("127.0.0.2 - - ["), "{line}");
    for old in [&rotated, &access_rotated] {
        let old = std::fs::read_to_string(old).unwrap();
        assert_eq!(old.lines().count(), 1, "rotated file got new lines: {old}");
    }
}
