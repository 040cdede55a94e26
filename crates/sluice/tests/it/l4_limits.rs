//! Limits and lifecycle: global max_connections pauses accepting, SIGTERM on the real binary
//! drains open connections during the grace period and exits 0, `sluice check` exit codes and
//! message format, `--version`, and the machine-findable listening line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use tokio::io::AsyncWriteExt;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(global: &str, server: SocketAddr) -> String {
    format!(
        "[global]\n{global}\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n[[backend.servers]]\naddr = \"{server}\"\n"
    )
}

#[tokio::test]
async fn global_max_connections_pauses_accept_until_one_closes() {
    let srv = NamedServer::start(LOOP, "s").await;
    let sl = Sluice::start(&config("max_connections = 2\ngrace = \"1s\"", srv.addr)).await;
    let fe = sl.addr("fe");
    let mut c1 = client(fe).await;
    let mut c2 = client(fe).await;
    assert_eq!(read_line(&mut c1).await.unwrap(), "s");
    assert_eq!(read_line(&mut c2).await.unwrap(), "s");
    // The third TCP handshake completes in the kernel backlog, but sluice does not take it:
    // it stays in the listener's accept queue (sluice waits for a permit before accept(2)).
    let mut c3 = client(fe).await;
    wait_until("the third connection to wait in the accept queue", || {
        accept_queue(fe) == 1
    })
    .await;
    assert_eq!(
        srv.accepted(),
        2,
        "third connection served above max_connections"
    );
    // A slot frees: the waiting connection is accepted and served.
    drop(c1);
    assert_eq!(read_line(&mut c3).await.unwrap(), "s");
    assert_eq!(srv.accepted(), 3);
    drop((c2, c3));
    sl.shutdown().await;
}

#[test]
fn sigterm_drains_open_connections_then_exits_zero() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt.block_on(echo_server(LOOP));
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "sluice.toml",
        &config("max_connections = 100\ngrace = \"10s\"", echo),
    );
    let mut proc = SluiceProcess::start(&path, 1);
    let fe = proc.addr("fe");
    rt.block_on(async {
        let mut c = client(fe).await;
        c.write_all(b"before\n").await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), "before");
        proc.signal(rustix::process::Signal::TERM).unwrap();
        // Listeners close at once: new connections are refused.
        let mut refused = false;
        for _ in 0..250 {
            if connect_from(CLIENT_IP, fe).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "sluice kept accepting after SIGTERM");
        // The open connection keeps working during the grace period.
        c.write_all(b"during grace\n").await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), "during grace");
        drop(c);
    });
    let status = proc
        .wait_exit()
        .expect("sluice did not exit after its last connection closed");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let log = proc.stderr.lock().unwrap().join("\n");
    assert!(
        log.contains("127.0.0.2:"),
        "connection line missing:\n{log}"
    );
}

#[test]
fn check_accepts_good_files_and_reports_file_line_col_for_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(
        dir.path(),
        "good.toml",
        &config("max_connections = 100", "127.0.0.1:9".parse().unwrap()),
    );
    let out = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let broken_text = "[global]\nmax_connections = 100\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"nope\"\n\n[[backend]]\nname = \"be\"\n[[backend.servers]]\naddr = \"127.0.0.1:9\"\n";
    let broken = write_file(dir.path(), "broken.toml", broken_text);
    let out = Command::new(sluice_bin())
        .args(["check", "-c"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{}:7:", broken.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains("backend")),
        "stderr: {err}"
    );

    let bad_syntax = write_file(
        dir.path(),
        "syntax.toml",
        "[global]\nmax_connections = \"many\"\n",
    );
    let out = Command::new(sluice_bin())
        .args(["check", "-c"])
        .arg(&bad_syntax)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", bad_syntax.display())),
        "stderr: {err}"
    );

    let huge = write_file(
        dir.path(),
        "huge.toml",
        &config(
            "max_connections = 100000000",
            "127.0.0.1:9".parse().unwrap(),
        ),
    );
    let out = Command::new(sluice_bin())
        .args(["check", "-c"])
        .arg(&huge)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "100M connections cannot fit RLIMIT_NOFILE"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_connections"));

    // `run` refuses the same file with the same message instead of starting.
    let out = Command::new(sluice_bin())
        .args(["run", "-c"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with(&prefix)),
        "run stderr: {err}"
    );

    let missing = Command::new(sluice_bin())
        .args(["check", "-c", "/nonexistent/sluice.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn version_and_listening_line() {
    let out = Command::new(sluice_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sluice "));
    // The documented shape parses...
    assert_eq!(
        parse_listening(
            "2026-01-01T00:00:00Z  INFO sluice::server: listening frontend=fe addr=127.0.0.1:43567"
        ),
        Some(("fe".to_string(), "127.0.0.1:43567".parse().unwrap()))
    );
    // ...and the real binary prints it: one INFO line per bound address, naming the port it
    // bound for port 0, where it then serves.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(NamedServer::start(LOOP, "s"));
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "sluice.toml",
        &config("max_connections = 100\ngrace = \"1s\"", srv.addr),
    );
    let proc = SluiceProcess::start(&path, 1);
    let lines = proc.stderr.lock().unwrap().clone();
    let listening: Vec<_> = lines
        .iter()
        .filter_map(|l| Some((l, parse_listening(l)?)))
        .collect();
    assert_eq!(listening.len(), 1, "{lines:#?}");
    let (line, (name, addr)) = &listening[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains("listening frontend=fe addr=127.0.0.1:"),
        "{line}"
    );
    assert_eq!((name.as_str(), addr.port() == 0), ("fe", false), "{line}");
    rt.block_on(async {
        let mut c = client(*addr).await;
        assert_eq!(read_line(&mut c).await.as_deref(), Some("s"));
    });
}
