//! `sluice upgrade`, black-box: the running process starts a new binary on its listening
//! sockets and pid file, then drains and exits; a new process that cannot start leaves the
//! old one serving and the command fails with the reason; under load (keep-alive and
//! new-connection clients through a TCP balancer and an HTTP edge) not one request fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Whether `pid` has exited (no such process, or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn pid_in(file: &Path) -> Option<i32> {
    sluice::reload::read_pid(file).ok()
}

/// Stops whatever sluice the pid file names when the test ends (successors are not this
/// test's children, so no `ChildGuard` covers them).
struct Successors(PathBuf);

impl Drop for Successors {
    fn drop(&mut self) {
        if let Some(pid) = pid_in(&self.0) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sluice" {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// An HTTP/1.1 keep-alive app: answers `ok` to every request and, like nginx's
/// `keepalive_requests`, closes a connection after 20 (saying `Connection: close`).
async fn keepalive_app() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind((LO, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_keepalive(s, count.clone()));
        }
    });
    (addr, served)
}

async fn serve_keepalive(mut s: TcpStream, served: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for i in 1..=20 {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) if buf.len() + n < 64 * 1024 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return,
            }
        };
        let close = i == 20
            || buf[..end]
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"close\r"));
        buf.drain(..end);
        let conn = if close { "close" } else { "keep-alive" };
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: {conn}\r\n\r\nok");
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        if close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

fn config(pid: &Path, app: SocketAddr, grace: &str, binds: &[(&str, &str, &str)]) -> String {
    let mut s = format!(
        "[global]\nmax_connections = 1000\ngrace = \"{grace}\"\npid_file = \"{}\"\n\n",
        pid.display()
    );
    for (name, mode, bind) in binds {
        s += &format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"{bind}\"]\nmode = \"{mode}\"\nbackend = \"{mode}\"\naccess_log = \"{}/{name}.log\"\n\n",
            pid.parent().unwrap().display()
        );
    }
    s += &format!(
        "[[backend]]\nname = \"tcp\"\nservers = [{{ addr = \"{app}\" }}]\n\n\
         [[backend]]\nname = \"http\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{app}\"\n"
    );
    s
}

/// One request on a fresh connection (`Connection: close`): Ok when the answer is a 200.
async fn one_shot(to: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(to)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut resp))
        .await
        .map_err(|_| "read: timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let resp = String::from_utf8_lossy(&resp);
    match resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok") {
        true => Ok(()),
        false => Err(format!("answer {resp:?}")),
    }
}

type Pooled = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

/// A pooled keep-alive client, as a browser or an HTTP library keeps its connections.
fn pooled() -> Pooled {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http()
}

async fn keepalive_get(client: &Pooled, to: SocketAddr) -> Result<(), String> {
    let uri: hyper::Uri = format!("http://{to}/").parse().unwrap();
    let fut = async {
        let resp = client.get(uri).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        match (status.as_u16(), &body.to_bytes()[..]) {
            (200, b"ok") => Ok(()),
            (s, b) => Err(format!("answer {s} {b:?}")),
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test]
async fn a_failed_start_keeps_the_old_process_and_a_good_one_takes_over() {
    let (app, _) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let _cleanup = Successors(pid.clone());
    let (keep, drop_bind, add) = (
        format!("127.0.0.1:{}", free_port(LO)),
        format!("127.0.0.1:{}", free_port(LO)),
        format!("127.0.0.1:{}", free_port(LO)),
    );
    let v1 = config(
        &pid,
        app,
        "2s",
        &[("keep", "tcp", &keep), ("gone", "http", &drop_bind)],
    );
    // The admin endpoint is bound without SO_REUSEPORT: only a handed-over socket serves it
    // in the new process while the old one still holds it.
    let admin_at = format!("127.0.0.1:{}", free_port(LO));
    let admin = format!("\n[admin]\nbind = \"{admin_at}\"\n");
    let path = write_file(dir.path(), "lb.toml", &(v1 + &admin));
    // systemd's notify socket: the old process hands MAINPID= over, the new one says READY=1.
    let notify = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify")).unwrap();
    notify.set_read_timeout(Some(DEADLINE)).unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).expect("an sd_notify datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["run", "--config"]).arg(&path);
    cmd.env("NOTIFY_SOCKET", dir.path().join("notify"));
    let mut old = SluiceProcess::start_with(cmd, 2);
    let first = old.pid();
    assert!(recv().starts_with("READY=1"));
    wait_until("the pid file", || pid_in(&pid) == Some(first)).await;
    let (keep, drop_bind): (SocketAddr, SocketAddr) =
        (keep.parse().unwrap(), drop_bind.parse().unwrap());
    one_shot(keep).await.unwrap();

    // A binary that exits at once: the reason comes back, the old process serves on.
    let out = sluice_cli(&["upgrade", "--binary", "/bin/false"], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("exited before it was ready") && said.contains("keeps serving"),
        "{said}"
    );
    assert_eq!(pid_in(&pid), Some(first));
    one_shot(keep).await.unwrap();

    // A new configuration the new process cannot put in place (a bind another program
    // holds): its own error comes back.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    std::fs::write(
        &path,
        config(
            &pid,
            app,
            "2s",
            &[("keep", "tcp", &keep.to_string()), ("busy", "tcp", &busy)],
        ) + &admin,
    )
    .unwrap();
    let out = sluice_cli(&["upgrade"], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&busy) && said.contains("keeps serving"),
        "{said}"
    );
    assert_eq!(pid_in(&pid), Some(first));
    one_shot(keep).await.unwrap();
    one_shot(drop_bind).await.unwrap();
    drop(taken);

    // A new process that takes the sockets and says it is ready, then ends before it says
    // it serves: the old process keeps accepting and names itself in the pid file again.
    let quitter = write_file(dir.path(), "quitter.py", QUITTER);
    std::fs::set_permissions(&quitter, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = sluice_cli(&["upgrade", "--binary", quitter.to_str().unwrap()], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("ended after it was ready") && said.contains("keeps serving"),
        "{said}"
    );
    assert!(
        recv().starts_with("MAINPID="),
        "the quitter was named first"
    );
    let back = recv();
    assert!(back.starts_with(&format!("MAINPID={first}\n")), "{back}");
    assert_eq!(pid_in(&pid), Some(first));
    one_shot(keep).await.unwrap();
    one_shot(drop_bind).await.unwrap();

    // `keep` adopted, `gone` closed, `added` bound fresh; the old process exits 0.
    let v2 = config(
        &pid,
        app,
        "2s",
        &[("keep", "tcp", &keep.to_string()), ("added", "http", &add)],
    );
    std::fs::write(&path, v2 + &admin).unwrap();
    let out = sluice_cli(&["upgrade"], &path);
    assert!(out.status.success(), "{}", output_text(&out));
    let second = pid_in(&pid).expect("pid file");
    assert_ne!(second, first);
    assert!(
        output_text(&out).contains(&format!("pid {second}")),
        "{}",
        output_text(&out)
    );
    let said = recv();
    assert!(said.starts_with(&format!("MAINPID={second}\n")), "{said}");
    let said = recv();
    assert!(
        said.starts_with("READY=1"),
        "the new process is ready: {said}"
    );
    assert!(old.wait_exit().expect("the old process exits").success());
    assert_eq!(
        pid_in(&pid),
        Some(second),
        "the pid file stays the new one's"
    );
    one_shot(keep).await.unwrap();
    one_shot(add.parse().unwrap()).await.unwrap();
    let mut a = TcpStream::connect(&admin_at).await.expect("admin endpoint");
    a.write_all(b"GET /stats HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    within("admin answer", a.read_to_end(&mut resp))
        .await
        .unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 "),
        "the new process serves the admin endpoint"
    );
    wait_until("the dropped bind closed", || {
        std::net::TcpStream::connect(drop_bind).is_err()
    })
    .await;

    // Stopping the new process removes the pid file and the control socket.
    let p = rustix::process::Pid::from_raw(second).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::TERM).unwrap();
    assert!(
        recv().starts_with("STOPPING=1"),
        "the old process sent no STOPPING=1"
    );
    wait_until("the new process gone", || gone(second)).await;
    assert!(!pid.exists() && !dir.path().join("sluice.sock").exists());
}

const LOAD_FOR: Duration = Duration::from_secs(20);
const UPGRADES: usize = 5;

/// The issue's acceptance: keep-alive and new-connection clients through a TCP frontend
/// and an HTTP edge for 20 s while `sluice upgrade` runs 5 times: 0 failed requests, a new
/// pid serving after each, every old pid gone after its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_upgrades_under_load_fail_no_request() {
    let (app, served) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let _cleanup = Successors(pid.clone());
    let binds = [
        ("l4", "tcp", "127.0.0.1:0"),
        ("edge", "http", "127.0.0.1:0"),
    ];
    let path = write_file(dir.path(), "lb.toml", &config(&pid, app, "3s", &binds));
    // Not a line per connection: the reload, upgrade and listening lines are enough.
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["run", "--config"]).arg(&path);
    cmd.env("RUST_LOG", "info,sluice::conn=warn,sluice::edge=warn");
    let mut first = SluiceProcess::start_with(cmd, 2);
    let (l4, edge) = (first.addr("l4"), first.addr("edge"));
    wait_until("the pid file", || pid_in(&pid) == Some(first.pid())).await;
    // Port 0 is bound once; the upgraded processes must serve the same ports.
    let fixed = [
        ("l4", "tcp", l4.to_string()),
        ("edge", "http", edge.to_string()),
    ];
    let fixed: Vec<(&str, &str, &str)> =
        fixed.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    std::fs::write(&path, config(&pid, app, "3s", &fixed)).unwrap();

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for (name, to) in [("l4", l4), ("edge", edge)] {
        for keepalive in [true, false] {
            for _ in 0..2 {
                let (done, ok, failures) = (done.clone(), ok.clone(), failures.clone());
                clients.push(tokio::spawn(async move {
                    let client = pooled();
                    let mut mine = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let r = match keepalive {
                            true => keepalive_get(&client, to).await,
                            false => one_shot(to).await,
                        };
                        match r {
                            Ok(()) => mine += 1,
                            Err(e) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{name} keepalive={keepalive}: {e}")),
                        }
                    }
                    ok.fetch_add(mine, Ordering::Relaxed);
                    mine
                }));
            }
        }
    }

    let mut pids = vec![first.pid()];
    let every = LOAD_FOR / (UPGRADES as u32 + 1);
    for i in 1..=UPGRADES {
        tokio::time::sleep_until((started + every * i as u32).into()).await;
        let p = path.clone();
        let out = tokio::task::spawn_blocking(move || sluice_cli(&["upgrade"], &p))
            .await
            .unwrap();
        assert!(out.status.success(), "upgrade {i}: {}", output_text(&out));
        let now = pid_in(&pid).expect("pid file");
        assert!(
            !pids.contains(&now),
            "upgrade {i}: a new pid serves ({now})"
        );
        pids.push(now);
    }
    tokio::time::sleep_until((started + LOAD_FOR).into()).await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        let n = within("client ends", c).await.unwrap();
        assert!(n > 0, "every client got answers");
    }
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "upgrade under load: {} requests ok, {} failed, {} served by the app, pids {pids:?}",
        ok.load(Ordering::Relaxed),
        failures.len(),
        served.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );

    // Each new process took over both binds (the first one configured as port 0, then
    // written out): nothing bound fresh, no handed socket closed with connections queued.
    let logged = first.stderr.lock().unwrap().join("\n");
    assert_eq!(
        logged.matches("upgrade: adopted").count(),
        2 * UPGRADES,
        "{logged}"
    );
    assert!(!logged.contains("not in the new configuration"), "{logged}");

    // Every old pid is gone (grace 3s, then at most DEADLINE more); the last one serves.
    assert!(first
        .wait_exit()
        .expect("the first process exits")
        .success());
    let last = *pids.last().unwrap();
    for &p in &pids[..pids.len() - 1] {
        wait_until("an old process gone", || gone(p)).await;
    }
    assert!(!gone(last) && pid_in(&pid) == Some(last));
    one_shot(l4).await.unwrap();
    one_shot(edge).await.unwrap();
}

/// After a package upgrade the running binary's file is replaced (`/proc/self/exe` then
/// names a deleted inode): `sluice upgrade` starts the new file at the path the process was
/// started from; `--binary` names another.
#[tokio::test]
async fn the_default_binary_is_the_path_started_from_even_once_replaced() {
    let (app, _) = keepalive_app().await;
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let _cleanup = Successors(pid.clone());
    let installed = dir.path().join("bin").join("sluice");
    std::fs::create_dir(installed.parent().unwrap()).unwrap();
    std::fs::copy(sluice_bin(), &installed).unwrap();
    let at = format!("127.0.0.1:{}", free_port(LO));
    let path = write_file(
        dir.path(),
        "lb.toml",
        &config(&pid, app, "1s", &[("fe", "tcp", &at)]),
    );
    let mut cmd = Command::new(&installed);
    cmd.args(["run", "--config"]).arg(&path);
    let mut old = SluiceProcess::start_with(cmd, 1);
    wait_until("the pid file", || pid_in(&pid) == Some(old.pid())).await;
    let exe = |p: i32| std::fs::read_link(format!("/proc/{p}/exe")).unwrap();

    // The package manager writes the new binary beside it and renames it into place.
    let staged = dir.path().join("bin").join("sluice.dpkg-new");
    std::fs::copy(sluice_bin(), &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    assert!(exe(old.pid()).to_string_lossy().ends_with(" (deleted)"));
    let out = sluice_cli(&["upgrade"], &path);
    assert!(out.status.success(), "{}", output_text(&out));
    let second = pid_in(&pid).unwrap();
    assert_eq!(exe(second), installed, "the new file at the same path");
    assert!(old.wait_exit().expect("old exits").success());
    one_shot(at.parse().unwrap()).await.unwrap();

    // --binary: that file instead.
    // (Named `sluice`: the clean-up stops only a process of that name.)
    let other = dir.path().join("other").join("sluice");
    std::fs::create_dir(other.parent().unwrap()).unwrap();
    std::fs::copy(sluice_bin(), &other).unwrap();
    let out = sluice_cli(
        &["upgrade", "--binary", &other.display().to_string()],
        &path,
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let third = pid_in(&pid).unwrap();
    assert_eq!(exe(third), other);
    wait_until("the second process gone", || gone(second)).await;
    one_shot(at.parse().unwrap()).await.unwrap();
}

/// A successor that takes the sockets, says `ready`, reads `ok` and exits without saying
/// `serving` (as one that crashed right after its listeners were up).
const QUITTER: &str = r#"#!/usr/bin/python3
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[sys.argv.index("--upgrade-from") + 1])
s.sendall(b"takeover\n")
got = b""
while not got.endswith(b"end\n"):
    data, fds, _, _ = socket.recv_fds(s, 65536, 16)
    if not data:
        sys.exit(1)
    got += data
s.sendall(b"ready\n")
reply = b""
while not reply.endswith(b"\n"):
    c = s.recv(1)
    if not c:
        sys.exit(1)
    reply += c
sys.exit(0 if reply == b"ok\n" else 1)
"#;
