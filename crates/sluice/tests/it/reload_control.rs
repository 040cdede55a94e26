//! `sluice reload` waits for the running process's answer (control socket beside
//! `global.pid_file`), black-box: a refused bind or a bad certificate makes it exit non-zero
//! with the reason (file:line) while the old config serves; a stale pid file or a `--pid`
//! that is not sluice is reported, not signalled; the README's seed flow works.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::edge::tls_table;
use crate::support::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    1 + text.lines().position(|l| l.contains(needle)).expect(needle)
}

/// A balancer frontend `main` in front of `server`, plus `extra` frontends, with a pid file.
fn config(pid: &Path, server: SocketAddr, extra: &str) -> String {
    format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\npid_file = \"{}\"\n\n\
         [[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n{extra}\
         [[backend]]\nname = \"be\"\nservers = [{{ name = \"s\", addr = \"{server}\" }}]\n",
        pid.display()
    )
}

async fn name_via(to: SocketAddr) -> String {
    let mut s = client(to).await;
    read_line(&mut s).await.expect("server name")
}

/// Starts `sluice run` on `path` and waits until its pid file names it.
async fn start(path: &Path, pid_path: &Path, listeners: usize) -> SluiceProcess {
    let sl = SluiceProcess::start(path, listeners);
    wait_until("the pid file", || {
        sluice::reload::read_pid(pid_path).ok() == Some(sl.pid())
    })
    .await;
    sl
}

#[tokio::test]
async fn a_refused_bind_fails_the_reload_with_file_and_line_and_the_old_config_serves() {
    let a = NamedServer::start(LO, "a").await;
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let path = write_file(dir.path(), "lb.toml", &config(&pid, a.addr, ""));
    let sl = start(&path, &pid, 1).await;
    let main = sl.addr("main");

    // A new bind on a port another program holds: `check` passes, the process refuses.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let extra = format!("[[frontend]]\nname = \"busy\"\nbind = [\"{busy}\"]\nbackend = \"be\"\n\n");
    let v2 = config(&pid, a.addr, &extra);
    std::fs::write(&path, &v2).unwrap();
    let out = sluice_cli(&["reload"], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("reload refused"), "{said}");
    let at = format!("{}:{}:", path.display(), line_of(&v2, &busy.to_string()));
    assert!(said.contains(&at), "positioned at the bind ({at}): {said}");
    assert_eq!(name_via(main).await, "a", "the old config serves");

    // Freed: the same file now reloads, and the answer says what changed.
    drop(taken);
    let out = sluice_cli(&["reload"], &path);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("reloaded"),
        "{}",
        output_text(&out)
    );
    assert_eq!(name_via(busy).await, "a");
}

#[tokio::test]
async fn a_bad_certificate_fails_the_reload_and_the_sighup_log_names_its_line() {
    let app = crate::support::edge::http_echo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let (tls, der) = tls_table(dir.path());
    let edge = |tls: &str| {
        format!(
            "[global]\nmax_connections = 100\ngrace = \"1s\"\npid_file = \"{}\"\n\n\
             [[frontend]]\nname = \"edge\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"app\"\n{tls}\n\n\
             [[backend]]\nname = \"app\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{app}\"\n",
            pid.display()
        )
    };
    let path = write_file(dir.path(), "edge.toml", &edge(&tls));
    let sl = start(&path, &pid, 1).await;
    let fe = sl.addr("edge");
    let get = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let ok = |resp: String| assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    ok(crate::support::edge::tls_request(LO, fe, b"", &der, get)
        .await
        .unwrap());

    let bad = write_file(
        dir.path(),
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nnot one\n",
    );
    let v2 = edge(&tls.replacen(
        &dir.path().join("cert.pem").display().to_string(),
        &bad.display().to_string(),
        1,
    ));
    std::fs::write(&path, &v2).unwrap();
    let at = format!("{}:{}:", path.display(), line_of(&v2, "bad.pem"));
    let out = sluice_cli(&["reload"], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&at) && said.contains("tls.cert"),
        "{at}: {said}"
    );

    // SIGHUP (what `kill -HUP` and older units send) refuses it too, logged at its line.
    sl.signal(rustix::process::Signal::HUP).unwrap();
    let lines = sl.stderr.clone();
    wait_until("the refusal logged", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("reload refused"))
    })
    .await;
    let logged = lines.lock().unwrap().join("\n");
    assert!(logged.contains(&at), "{at}: {logged}");
    ok(crate::support::edge::tls_request(LO, fe, b"", &der, get)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_stale_pid_file_or_a_pid_that_is_not_sluice_is_reported_not_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("sluice.pid");
    let path = write_file(dir.path(), "lb.toml", &config(&pid, edge_dead(), ""));

    let out = sluice_cli(&["reload"], &path);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("is sluice running?"),
        "{}",
        output_text(&out)
    );

    // A pid file left by a process that is gone (nobody holds its lock).
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::write(&pid, format!("{}\n", gone.id())).unwrap();
    let out = sluice_cli(&["reload"], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("stale") && said.contains(&gone.id().to_string()),
        "{said}"
    );

    // `--pid` of another program: refused, and the program is not hung up on.
    let mut other = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
    let out = sluice_cli(&["reload", "--pid", &other.0.id().to_string()], &path);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("not sluice"), "{said}");
    assert!(
        other.0.try_wait().unwrap().is_none(),
        "sleep was not signalled"
    );
}

fn edge_dead() -> SocketAddr {
    crate::support::edge::dead_addr()
}

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

/// The README's `sluice reload --config examples/seed/lb.toml`: the seed names a pid file,
/// so the command finds the process (here a copy on loopback with its own pid file: the
/// seed binds *:443 and balances to 10.0.0.x) and prints what changed.
#[tokio::test]
async fn the_readme_reload_of_the_seed_config_works() {
    let seed_text = std::fs::read_to_string(seed("lb.toml")).unwrap();
    assert!(seed_text.contains("\npid_file = \"/tmp/sluice-lb.pid\""));
    // Nothing running from the seed itself: the answer names the pid file.
    let out = sluice_cli(&["reload"], &seed("lb.toml"));
    if !Path::new("/tmp/sluice-lb.pid").exists() {
        assert!(!out.status.success());
        let said = output_text(&out);
        assert!(
            said.contains("/tmp/sluice-lb.pid") && said.contains("running?"),
            "{said}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("lb.pid");
    let copy = seed_text
        .replace("0.0.0.0:443", "127.0.0.1:0")
        .replace("/tmp/sluice-lb.pid", &pid.display().to_string())
        .replace("max_connections = 20000", "max_connections = 1000")
        .replace("10.0.0.11:443", &edge_dead().to_string())
        .replace("10.0.0.12:443", &edge_dead().to_string());
    let path = write_file(dir.path(), "lb.toml", &copy);
    let _sl = start(&path, &pid, 1).await;
    let out = sluice_cli(&["reload"], &path);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("reloaded: listeners kept=1"),
        "{}",
        output_text(&out)
    );
}
