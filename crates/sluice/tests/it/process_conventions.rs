//! Process conventions (issue #7) on the real binary: sd_notify datagrams (READY=1 once
//! listening, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM) to
//! a socket in a temp dir and to an abstract one, SIGQUIT stops at once even with a
//! connection open, and `--log-format json` writes one JSON object per stderr line.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::support;
use crate::support::{echo_server, parse_listening, sluice_bin, write_file, ChildGuard, DEADLINE};
use rustix::process::Signal;

/// `sluice [--log-format F] run -c CONFIG` with `env`; returns the child, its first listening
/// address and its stderr lines.
fn spawn(
    config: &Path,
    json: bool,
    env: &[(&str, &str)],
) -> (ChildGuard, std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new(sluice_bin());
    if json {
        cmd.args(["--log-format", "json"]);
    }
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sluice");
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[sluice] {line}");
            let _ = tx.send(line.clone());
            sink.lock().unwrap().push(line);
        }
    });
    let guard = ChildGuard(child);
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no listening line: {:?}", lines.lock().unwrap()));
        let addr = if json {
            serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .filter(|v| v["message"] == "listening")
                .and_then(|v| v["addr"].as_str()?.parse().ok())
        } else {
            parse_listening(&line).map(|(_, a)| a)
        };
        if let Some(a) = addr {
            return (guard, a, lines);
        }
    }
}

fn config(dir: &Path, backend: std::net::SocketAddr) -> std::path::PathBuf {
    write_file(
        dir,
        "sluice.toml",
        &format!(
            r#"
[global]
max_connections = 100
grace = "5s"

[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"

[[backend]]
name = "be"
servers = [{{ addr = "{backend}" }}]
"#
        ),
    )
}

fn kill(child: &ChildGuard, sig: Signal) {
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).expect("signal sluice");
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("an sd_notify datagram within the deadline");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn wait_exit(child: &mut ChildGuard) -> std::process::ExitStatus {
    let end = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < end {
        if let Some(st) = child.0.try_wait().unwrap() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sluice did not exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_reloading_stopping() {
    let backend = echo_server("127.0.0.10".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), backend);
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut child, _, _) = spawn(&cfg, false, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    tokio::task::block_in_place(|| {
        assert!(recv(&sock).starts_with("READY=1"));
        kill(&child, Signal::HUP);
        let reloading = recv(&sock);
        assert!(reloading.starts_with("RELOADING=1\n"), "{reloading:?}");
        let usec: u64 = reloading
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC")
            .parse()
            .unwrap();
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        assert!(usec > 0 && usec / 1_000_000 <= now.tv_sec as u64);
        assert!(recv(&sock).starts_with("READY=1"));
        kill(&child, Signal::TERM);
        assert!(recv(&sock).starts_with("STOPPING=1"));
        assert!(wait_exit(&mut child).success());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let backend = echo_server("127.0.0.10".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), backend);
    let name = format!("sluice-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let at = format!("@{name}");
    let (mut child, _, _) = spawn(&cfg, false, &[("NOTIFY_SOCKET", &at)]);
    tokio::task::block_in_place(|| {
        assert!(recv(&sock).starts_with("READY=1"));
        kill(&child, Signal::TERM);
        assert!(recv(&sock).starts_with("STOPPING=1"));
        assert!(wait_exit(&mut child).success());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_stops_at_once_with_connections_open() {
    let backend = echo_server("127.0.0.10".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    // grace = 60s: SIGTERM would wait for the open connection; SIGQUIT does not.
    let cfg = config(dir.path(), backend);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("grace = \"5s\"", "grace = \"60s\"")).unwrap();
    let (mut child, fe, _) = spawn(&cfg, false, &[]);
    let mut conn = support::client(fe).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    support::within("echo", conn.read_exact(&mut buf))
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    kill(&child, Signal::QUIT);
    let status = tokio::task::block_in_place(|| wait_exit(&mut child));
    assert!(status.success(), "{status:?}");
    // Far below the grace period (wait_exit gives up after DEADLINE anyway).
    assert!(sent.elapsed() < DEADLINE, "took {:?}", sent.elapsed());
    // The connection was closed, the listener too.
    let n = support::within("close", conn.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(tokio::net::TcpStream::connect(fe).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format() {
    let backend = echo_server("127.0.0.10".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), backend);
    let (mut child, fe, lines) = spawn(&cfg, true, &[]);
    assert_eq!(fe.ip().to_string(), "127.0.0.1");
    kill(&child, Signal::TERM);
    tokio::task::block_in_place(|| assert!(wait_exit(&mut child).success()));
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    let listening = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "listening")
        .expect("a listening line");
    // Flat: the event's fields beside timestamp, level, target and message.
    assert_eq!(listening["frontend"], "fe");
    assert_eq!(listening["addr"], fe.to_string());
    assert_eq!(listening["target"], "sluice::server");
}
