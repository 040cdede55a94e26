//! `sluice ctl` against two real balancers (issue #17): `drain` sets the server to drain on
//! both, new connections avoid it, and the command waits until the connections held on it
//! end everywhere (exit 0) or reports the ones left at its timeout (exit 1); `state` prints
//! both balancers' view; `ready` undoes the drain; bad targets are refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::admin::{backends, start, state_of};
use crate::support::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A balancer in `dir` over servers s1 and s2, with an admin endpoint.
async fn balancer(dir: &Path, s1: SocketAddr, s2: SocketAddr) -> (SluiceProcess, SocketAddr) {
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"lb\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n\
         servers = [{{ name = \"s1\", addr = \"{s1}\" }}, {{ name = \"s2\", addr = \"{s2}\" }}]\n"
    );
    start(dir, &toml, 1).await
}

/// Connects through `lb` and returns the connection with the server's name.
async fn through(lb: SocketAddr) -> (TcpStream, String) {
    let mut c = within("connect", TcpStream::connect(lb)).await.unwrap();
    let mut name = Vec::new();
    let mut b = [0u8; 1];
    while within("name", c.read(&mut b)).await.unwrap() == 1 && b[0] != b'\n' {
        name.push(b[0]);
    }
    (c, String::from_utf8(name).unwrap())
}

/// Connections through `lb` until one reaches s1 (roundrobin: within two).
async fn hold_s1(lb: SocketAddr) -> TcpStream {
    for _ in 0..4 {
        let (c, name) = through(lb).await;
        if name == "s1" {
            return c;
        }
    }
    panic!("no connection reached s1 through {lb}");
}

fn ctl(admins: &[SocketAddr], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(sluice_bin());
    cmd.arg("ctl");
    for a in admins {
        cmd.args(["--admin", &a.to_string()]);
    }
    cmd.args(args).kill_on_drop(true);
    cmd
}

async fn run(admins: &[SocketAddr], args: &[&str]) -> (bool, String) {
    let out = within("sluice ctl", ctl(admins, args).output())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_both_balancers_and_state_shows_them() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = NamedServer::start(LO, "s1").await;
    let s2 = NamedServer::start(LO, "s2").await;
    let (a, admin_a) = balancer(dir_a.path(), s1.addr, s2.addr).await;
    let (b, admin_b) = balancer(dir_b.path(), s1.addr, s2.addr).await;
    let admins = [admin_a, admin_b];
    let held = [hold_s1(a.addr("lb")).await, hold_s1(b.addr("lb")).await];

    let drain = ctl(
        &admins,
        &["drain", "be/s1", "--timeout", "30s", "--every", "50ms"],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    for admin in admins {
        let mut drained = false;
        for _ in 0..200 {
            if state_of(&backends(admin).await, "be", "s1") == "drain" {
                drained = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(drained, "{admin} never showed s1 draining");
    }
    // New connections avoid the draining server on both balancers.
    for lb in [a.addr("lb"), b.addr("lb")] {
        for _ in 0..3 {
            assert_eq!(through(lb).await.1, "s2");
        }
    }
    let (ok, table) = run(&admins, &["state"]).await;
    assert!(ok, "{table}");
    for admin in admins {
        let line = table
            .lines()
            .find(|l| l.starts_with("be/s1") && l.contains(&admin.to_string()))
            .unwrap_or_else(|| panic!("no be/s1 line for {admin}:\n{table}"));
        assert!(line.contains(" drain "), "{line}");
    }
    // The drain command is still waiting; ending the held connections lets it finish.
    drop(held);
    let out = within("drain to finish", drain.wait_with_output())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("be/s1: drained on 2 balancer(s)"), "{text}");

    let (ok, text) = run(&admins, &["ready", "be/s1"]).await;
    assert!(ok, "{text}");
    for admin in admins {
        assert_eq!(state_of(&backends(admin).await, "be", "s1"), "up");
    }

    // A connection that stays: the drain gives up at its timeout and says where.
    let _stays = hold_s1(a.addr("lb")).await;
    let (ok, text) = run(&admins, &["drain", "be/s1", "--timeout", "300ms"]).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("{admin_a} be/s1: still 1 active")),
        "{text}"
    );
    for (args, why) in [
        (&["drain", "be"][..], "write BACKEND/SERVER"),
        (&["maint", "be/s9"][..], "404"),
    ] {
        let (ok, text) = run(&admins, args).await;
        assert!(!ok && text.contains(why), "{args:?}: {text}");
    }
}
