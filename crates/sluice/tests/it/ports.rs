//! Ports and the pid file, black-box with the real binary: a second `sluice run` on a bound
//! address, or on one HAProxy holds with SO_REUSEPORT, is refused with the config's
//! file:line (as is a reload adding such a bind); a second `run` with a live pid file names
//! the holder; `check` refuses binds `run` cannot use (IPv4-mapped IPv6...).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A config whose frontend `web` binds `bind` (value at column 9), with 4 worker threads
/// (4 SO_REUSEPORT sockets of its own on that address).
fn config(bind: &str, server: SocketAddr, global_extra: &str) -> String {
    format!(
        "[global]\nthreads = 4\nmax_connections = 1000\ngrace = \"1s\"\n{global_extra}[[frontend]]\nname = \"web\"\n\
         bind = [\"{bind}\"]\nbackend = \"be\"\n\n[[backend]]\nname = \"be\"\n\
         servers = [{{ addr = \"{server}\" }}]\n"
    )
}

/// Line of `bind = ` in `text`, 1-based.
fn bind_line(text: &str) -> usize {
    text.lines().position(|l| l.starts_with("bind = ")).unwrap() + 1
}

/// Runs `sluice ARGS CONFIG` to its end; one that still runs after `DEADLINE` (it started
/// serving) is killed and reported.
fn sluice_to_end(args: &[&str], config: &Path) -> Output {
    let child = Command::new(sluice_bin())
        .args(args)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let mut guard = ChildGuard(child);
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < end,
            "sluice {args:?} is still running: it started instead of refusing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    use std::io::Read;
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A socket of our own on `addr` with SO_REUSEPORT, as an old sluice would have bound it.
fn reuseport_bind(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// The refusal names the frontend, the address, "Address already in use" and the file:line
/// of the bind.
fn assert_refused_at(err: &str, path: &Path, text: &str, addr: SocketAddr) {
    let at = format!(
        "{}:{}:9: frontend[0].bind[0]: frontend web: cannot bind {addr}: Address already in use",
        path.display(),
        bind_line(text)
    );
    assert!(err.contains(&at), "expected {at:?} in:\n{err}");
}

#[tokio::test]
async fn a_second_run_on_the_same_address_is_refused_with_file_line() {
    let server = NamedServer::start(LO, "first").await;
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::new(LO, free_port(LO));
    let text = config(&addr.to_string(), server.addr, "");
    let path = write_file(dir.path(), "a.toml", &text);
    // 4 threads: the first one's own group of 4 sockets shares the port.
    let first = SluiceProcess::start(&path, 1);
    assert_eq!(first.addr("web"), addr);

    let second = write_file(dir.path(), "b.toml", &text);
    let out = sluice_to_end(&["run", "--config"], &second);
    assert!(!out.status.success(), "{out:?}");
    assert_refused_at(&stderr(&out), &second, &text, addr);

    // Every connection still reaches the first one.
    for _ in 0..20 {
        let mut s = client(addr).await;
        assert_eq!(read_line(&mut s).await.as_deref(), Some("first"));
    }
    drop(first);
}

#[tokio::test]
async fn an_address_haproxy_holds_with_reuseport_is_refused() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return;
    };
    let server = NamedServer::start(LO, "app").await;
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::new(LO, free_port(LO));
    let hcfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fe\n  bind {addr}\n  default_backend be\n\n\
         backend be\n  server s1 {}\n",
        server.addr
    );
    let (_haproxy, _log) = start_haproxy(&haproxy, dir.path(), &hcfg, addr).await;
    // HAProxy listens with SO_REUSEPORT: a socket that sets it too may share the port,
    // which is what sluice's group did before.
    reuseport_bind(addr).expect("HAProxy's listener shares with SO_REUSEPORT");

    let text = config(&addr.to_string(), server.addr, "");
    let path = write_file(dir.path(), "sluice.toml", &text);
    let out = sluice_to_end(&["run", "--config"], &path);
    assert!(!out.status.success(), "{out:?}");
    assert_refused_at(&stderr(&out), &path, &text, addr);
    // A wildcard bind over it is refused too.
    let wild = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
    let text = config(&wild.to_string(), server.addr, "");
    std::fs::write(&path, &text).unwrap();
    let out = sluice_to_end(&["run", "--config"], &path);
    assert_refused_at(&stderr(&out), &path, &text, wild);
}

#[tokio::test]
async fn a_reload_adding_a_held_address_is_refused_with_file_line_and_kept_binds_stay() {
    let server = NamedServer::start(LO, "app").await;
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("sluice.pid");
    let global = format!("pid_file = \"{}\"\n", pid_path.display());
    let text = config("127.0.0.1:0", server.addr, &global);
    let path = write_file(dir.path(), "sluice.toml", &text);
    let sl = SluiceProcess::start(&path, 1);
    let main = sl.addr("web");
    // The pid file is written once SIGHUP is handled.
    wait_until("the pid file", || {
        sluice::reload::read_pid(&pid_path).ok() == Some(sl.pid())
    })
    .await;
    // Another process's listener with SO_REUSEPORT on the address the new config adds.
    let held = reuseport_bind(SocketAddr::new(LO, 0)).unwrap();
    held.listen(16).unwrap();
    let held_addr = held.local_addr().unwrap().as_socket().unwrap();
    let v2 = text.replace(
        "bind = [\"127.0.0.1:0\"]",
        &format!("bind = [\"127.0.0.1:0\", \"{held_addr}\"]"),
    );
    std::fs::write(&path, &v2).unwrap();
    sl.signal(rustix::process::Signal::HUP).unwrap();
    let lines = sl.stderr.clone();
    wait_until("reload refused", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload refused"))
    })
    .await;
    let refused = lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("reload refused"))
        .cloned()
        .unwrap();
    let line = v2.lines().nth(bind_line(&v2) - 1).unwrap();
    let col = line.find(&format!("\"{held_addr}\"")).unwrap() + 1;
    let at = format!(
        "{}:{}:{col}: frontend[0].bind[1]: frontend web: cannot bind {held_addr}: Address already in use",
        path.display(),
        bind_line(&v2)
    );
    assert!(refused.contains(&at), "expected {at:?} in {refused}");
    // The kept bind (its own 4 sockets) keeps serving; a reload that only keeps it passes.
    let mut s = client(main).await;
    assert_eq!(read_line(&mut s).await.as_deref(), Some("app"));
    std::fs::write(&path, &text).unwrap();
    sl.signal(rustix::process::Signal::HUP).unwrap();
    wait_until("reload done", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload done"))
    })
    .await;
    drop(held);
}

#[tokio::test]
async fn a_second_run_with_a_live_pid_file_names_the_holder_and_leaves_the_file() {
    let server = NamedServer::start(LO, "app").await;
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("sluice.pid");
    let global = format!("pid_file = \"{}\"\n", pid_path.display());
    // Port 0: nothing but the pid file stands between the two.
    let text = config("127.0.0.1:0", server.addr, &global);
    let path = write_file(dir.path(), "sluice.toml", &text);
    let mut first = SluiceProcess::start(&path, 1);
    wait_until("the pid file", || {
        sluice::reload::read_pid(&pid_path).ok() == Some(first.pid())
    })
    .await;
    let before = std::fs::metadata(&pid_path).unwrap();

    let out = sluice_to_end(&["run", "--config"], &path);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains(&format!("(pid {})", first.pid())), "{err}");
    assert!(err.contains(&pid_path.display().to_string()), "{err}");
    let after = std::fs::metadata(&pid_path).unwrap();
    assert_eq!(sluice::reload::read_pid(&pid_path).unwrap(), first.pid());
    assert_eq!(
        (before.modified().unwrap(), before.len()),
        (after.modified().unwrap(), after.len()),
        "the second run did not touch the file"
    );

    // The first still removes it when it stops.
    first.signal(rustix::process::Signal::TERM).unwrap();
    assert!(first.wait_exit().expect("exits").success());
    assert!(!pid_path.exists());
}

#[test]
fn check_refuses_binds_run_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (bind, says) in [
        ("[::ffff:127.0.1.52]:8080", "IPv4-mapped"),
        ("[ff02::1]:8080", "multicast"),
        ("[fe80::1]:8080", "link-local"),
        ("224.0.0.1:8080", "multicast"),
    ] {
        let text = config(bind, server, "");
        let path = write_file(dir.path(), "c.toml", &text);
        let out = sluice_to_end(&["check", "--config"], &path);
        assert!(!out.status.success(), "{bind} passed check");
        let err = stderr(&out);
        let at = format!(
            "{}:{}:9: frontend[0].bind[0]: ",
            path.display(),
            bind_line(&text)
        );
        assert!(err.contains(&at) && err.contains(says), "{bind}: {err}");
    }
}

#[tokio::test]
async fn sluices_own_overlapping_sockets_still_share_at_start_and_on_reload() {
    let server = NamedServer::start(LO, "app").await;
    let port = free_port(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let frontend = |name: &str, ip: &str| {
        format!("[[frontend]]\nname = \"{name}\"\nbind = [\"{ip}:{port}\"]\nbackend = \"be\"\n")
    };
    let backend = format!(
        "[[backend]]\nname = \"be\"\nservers = [{{ addr = \"{}\" }}]\n",
        server.addr
    );
    let head = "[global]\nmax_connections = 100\ngrace = \"1s\"\n";
    // At start: a wildcard and a specific address on one port, each its own group.
    let both = format!(
        "{head}{}{}{backend}",
        frontend("wild", "0.0.0.0"),
        frontend("lo", "127.0.0.1")
    );
    let sl = Sluice::start(&both).await;
    let mut s = client(SocketAddr::new(LO, port)).await;
    assert_eq!(read_line(&mut s).await.as_deref(), Some("app"));
    sl.shutdown().await;

    // On reload: a specific address added next to this process's own wildcard.
    let one = format!("{head}{}{backend}", frontend("wild", "0.0.0.0"));
    let cfg = sluice::config::load_str(&one, "one.toml").unwrap();
    let server_rt = sluice::Server::bind(cfg).await.expect("bind");
    let handle = server_rt.reload_handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server_rt
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("run");
    });
    let cfg = sluice::config::load_str(&both, "both.toml").unwrap();
    let summary = handle
        .reload(cfg)
        .await
        .expect("our own wildcard does not block the reload");
    assert_eq!(summary.listeners_added.len(), 1, "{summary}");
    let mut s = client(SocketAddr::new(LO, port)).await;
    assert_eq!(read_line(&mut s).await.as_deref(), Some("app"));
    let _ = tx.send(());
    within("shutdown", task).await.unwrap();
}
