//! Hot reload, black-box: servers diffed (kept ones keep counters, removed ones finish their
//! connections), binds kept/added/removed, a bad file refused with file:line while the old
//! config serves, and the binary's SIGHUP, `global.pid_file` and `sluice reload`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::support::*;
use sluice::reload::{BackendChange, Live, ReloadError, ReloadHandle};
use sluice::Server;
use tokio::sync::oneshot;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An in-process server with its reload handle.
struct Running {
    handle: ReloadHandle,
    live: Arc<Live>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(toml: &str) -> Running {
        let cfg = sluice::config::load_str(toml, "test.toml").expect("config");
        let server = Server::bind(cfg).await.expect("bind");
        let (handle, live) = (server.reload_handle(), server.live());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("run");
        });
        Running {
            handle,
            live,
            stop: Some(tx),
            task,
        }
    }

    fn addr(&self, frontend: &str) -> SocketAddr {
        self.live
            .local_addrs()
            .into_iter()
            .find(|(f, _)| f == frontend)
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("no frontend {frontend}"))
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        within("shutdown", self.task).await.expect("run task");
    }
}

fn config(servers: &str, frontends: &str) -> String {
    format!(
        r#"[global]
grace = "2s"
max_connections = 1000

{frontends}

[[backend]]
name = "be"
servers = [{servers}]
"#
    )
}

fn frontend(name: &str, bind: &str) -> String {
    format!("[[frontend]]\nname = \"{name}\"\nbind = [\"{bind}\"]\nbackend = \"be\"\n")
}

/// Opens a connection through `to` and returns it with the name of the server it reached.
async fn named(to: SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut s = client(to).await;
    let name = read_line(&mut s).await.expect("server name");
    (s, name)
}

#[tokio::test]
async fn servers_are_diffed_binds_follow_and_open_connections_finish_on_the_old_config() {
    let (a, b, c) = (
        NamedServer::start(LO, "a").await,
        NamedServer::start(LO, "b").await,
        NamedServer::start(LO, "c").await,
    );
    let (extra_bind, new_bind) = (
        format!("127.0.0.1:{}", free_port(LO)),
        format!("127.0.0.1:{}", free_port(LO)),
    );
    let v1 = config(
        &format!(
            r#"{{ name = "a", addr = "{}" }}, {{ name = "b", addr = "{}" }}"#,
            a.addr, b.addr
        ),
        &(frontend("main", "127.0.0.1:0") + &frontend("extra", &extra_bind)),
    );
    let sl = Running::start(&v1).await;
    let main = sl.addr("main");
    let extra = sl.addr("extra");

    // Four connections: two on each server; keep one on b open across the reload.
    let mut held_b = None;
    for _ in 0..4 {
        let (s, name) = named(main).await;
        if name == "b" && held_b.is_none() {
            held_b = Some(s);
        }
    }
    let mut held_b = held_b.expect("roundrobin reached b");
    let before = sl.live.pool("be").unwrap().servers();
    assert_eq!(before[0].total, 2);

    // a re-weighted, b removed, c added; "extra" bind removed, "new" bind added.
    let v2 = config(
        &format!(
            r#"{{ name = "a", addr = "{}", weight = 3 }}, {{ name = "c", addr = "{}" }}"#,
            a.addr, c.addr
        ),
        &(frontend("main", "127.0.0.1:0") + &frontend("new", &new_bind)),
    );
    let cfg = sluice::config::load_str(&v2, "v2.toml").unwrap();
    let summary = sl.handle.reload(cfg).await.expect("reload");
    assert_eq!(summary.listeners_kept, vec![main]);
    assert_eq!(summary.listeners_removed, vec![extra]);
    assert_eq!(summary.listeners_added.len(), 1);
    match summary.backend("be") {
        Some(BackendChange::Changed(d)) => {
            assert_eq!(d.reweighted, vec!["a"]);
            assert_eq!(d.added, vec!["c"]);
            assert_eq!(d.removed, vec!["b"]);
        }
        other => panic!("backend be: {other:?}"),
    }

    // The same socket serves the new config; a keeps its counters, c is new.
    let after = sl.live.pool("be").unwrap().servers();
    assert_eq!(after[0].name, "a");
    assert_eq!(after[0].total, 2, "a kept its counters");
    assert_eq!(after[0].weight, 3);
    assert_eq!(after[1].name, "c");
    let mut seen = Vec::new();
    for _ in 0..8 {
        let (_s, name) = named(main).await;
        seen.push(name);
    }
    assert!(!seen.contains(&"b".to_string()), "b removed: {seen:?}");
    assert_eq!(
        seen.iter().filter(|n| *n == "a").count(),
        6,
        "3:1: {seen:?}"
    );
    let (_s, name) = named(sl.addr("new")).await;
    assert!(name == "a" || name == "c");
    wait_until("the removed bind to refuse", || {
        std::net::TcpStream::connect(extra).is_err()
    })
    .await;

    // The connection to b started before the reload is still open, end to end.
    assert_eq!(b.open(), 1);
    use tokio::io::AsyncWriteExt;
    held_b.write_all(b"still here\n").await.unwrap();
    drop(held_b);
    wait_until("b's connection to close", || b.open() == 0).await;
    sl.shutdown().await;
}

#[tokio::test]
async fn a_bad_config_is_refused_with_file_line_and_the_old_one_keeps_serving() {
    let a = NamedServer::start(LO, "a").await;
    let good = config(
        &format!(r#"{{ name = "a", addr = "{}" }}"#, a.addr),
        &frontend("main", "127.0.0.1:0"),
    );
    let sl = Running::start(&good).await;
    let main = sl.addr("main");
    let dir = tempfile::tempdir().unwrap();

    // A file that does not load: refused with FILE:LINE:COL.
    let bad = write_file(
        dir.path(),
        "bad.toml",
        &good.replace("name = \"be\"", "name = \"be\"\nbalance = \"fastest\""),
    );
    let err = sl.handle.reload_file(bad.clone()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ReloadError::Config(ref e) if e.line > 0),
        "{text}"
    );
    assert!(text.starts_with(&format!("{}:", bad.display())), "{text}");
    assert!(text.contains("balance"), "{text}");

    // A file that loads but cannot be applied (its new bind is taken): refused too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = good.clone() + &frontend("busy", &taken.local_addr().unwrap().to_string());
    let cfg = sluice::config::load_str(&busy, "busy.toml").unwrap();
    let err = sl.handle.reload(cfg).await.unwrap_err();
    assert!(matches!(err, ReloadError::Apply(_)), "{err}");
    assert_eq!(sl.live.local_addrs().len(), 1, "nothing half-applied");

    let (_s, name) = named(main).await;
    assert_eq!(name, "a", "the old config still serves");
    // And the next good reload goes through.
    let path = write_file(dir.path(), "good.toml", &good);
    sl.handle.reload_file(path).await.expect("good reload");
    let (_s, name) = named(main).await;
    assert_eq!(name, "a");
    sl.shutdown().await;
}

fn sluice_cmd(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(sluice_bin())
        .args(args)
        .arg(config)
        .output()
        .expect("run sluice")
}

#[tokio::test]
async fn binary_sighup_pid_file_and_reload_subcommand() {
    let (a, c) = (
        NamedServer::start(LO, "a").await,
        NamedServer::start(LO, "c").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("sluice.pid");
    let with_pid = |servers: &str, frontends: &str| {
        config(servers, frontends).replace(
            "[global]\n",
            &format!("[global]\npid_file = \"{}\"\n", pid_path.display()),
        )
    };
    let only_a = format!(r#"{{ name = "a", addr = "{}" }}"#, a.addr);
    let path = write_file(
        dir.path(),
        "sluice.toml",
        &with_pid(&only_a, &frontend("main", "127.0.0.1:0")),
    );
    let mut sl = SluiceProcess::start(&path, 1);
    let main = sl.addr("main");
    wait_until("the pid file", || {
        sluice::reload::read_pid(&pid_path).ok() == Some(sl.pid())
    })
    .await;

    // `sluice reload` with a broken file: error with file:line, nothing signalled.
    let broken = write_file(dir.path(), "broken.toml", "[global]\nmax_connections = 0\n");
    let out = sluice_cmd(
        &["reload", "--pid", &sl.pid().to_string(), "--config"],
        &broken,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", broken.display())), "{err}");

    // A valid new file: `sluice reload --config` finds the process through the pid file.
    let new_bind = format!("127.0.0.1:{}", free_port(LO));
    let only_c = format!(r#"{{ name = "c", addr = "{}" }}"#, c.addr);
    let v2 = with_pid(
        &only_c,
        &(frontend("main", "127.0.0.1:0") + &frontend("new", &new_bind)),
    );
    std::fs::write(&path, v2).unwrap();
    let out = sluice_cmd(&["reload", "--config"], &path);
    assert!(out.status.success(), "{out:?}");
    let lines = sl.stderr.clone();
    let logged = |part: &'static str| {
        let lines = lines.clone();
        move || lines.lock().unwrap().iter().any(|l| l.contains(part))
    };
    wait_until("reload done", logged("reload done")).await;
    let (_s, name) = named(main).await;
    assert_eq!(name, "c", "same socket, new backend servers");
    let (_s, name) = named(new_bind.parse().unwrap()).await;
    assert_eq!(name, "c");

    // kill -HUP with a broken file: refused (file:line logged), the running config stays.
    std::fs::write(&path, "[global]\nmax_connections = 0\n").unwrap();
    sl.signal(rustix::process::Signal::HUP).unwrap();
    wait_until("reload refused", logged("reload refused")).await;
    let refused = lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("reload refused"))
        .cloned()
        .unwrap();
    assert!(
        refused.contains(&format!("{}:2:", path.display())),
        "{refused}"
    );
    let (_s, name) = named(main).await;
    assert_eq!(name, "c");

    sl.signal(rustix::process::Signal::TERM).unwrap();
    assert!(sl.wait_exit().expect("exit").success());
    assert!(!pid_path.exists(), "pid file removed on exit");
}
