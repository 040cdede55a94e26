//! Bodyless HTTP/2 streams (issue #12): 9 connections x 128 `POST` streams declaring
//! `content-length: 1000` that never send DATA, against a TLS edge in front of the real
//! uWSGI and in front of a 4-worker HTTP app; while held, a normal request on a new
//! connection succeeds. Then the same against `sluice run` under `prlimit --nofile=1024`
//! (max_connections = 100): its descriptors stay below the limit, the normal request
//! succeeds and the log never says `Too many open files`. No timing is asserted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::shield_peers::*;
use crate::support::edge::tls_table;
use crate::support::{open_fds, sluice_bin, tool, write_file, Sluice, SluiceProcess, DEADLINE};

const CONNS: usize = 9;
const STREAMS: usize = 128;
/// The descriptor limit of the process test (`prlimit --nofile`).
const NOFILE: usize = 1024;
/// Descriptors are sampled at least this long while the attack is held.
const HOLD: Duration = Duration::from_secs(1);

type Outcomes = Arc<Mutex<BTreeMap<String, usize>>>;

/// The attack, held: its connections, the send halves of every stream, and what went wrong
/// while opening it (an edge out of descriptors stops answering handshakes).
struct Held {
    _conns: Vec<H2Conn>,
    _streams: Vec<h2::SendStream<Bytes>>,
    outcomes: Outcomes,
    errors: Vec<String>,
}

/// Opens `CONNS` x `STREAMS` bodyless streams and waits until the edge has read them all
/// (a PING answered after the last HEADERS on each connection).
async fn attack(to: SocketAddr, der: &[u8]) -> Held {
    let outcomes = Outcomes::default();
    let (mut conns, mut streams, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CONNS {
        let mut c = match h2_connect(to, der).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("attack connection {i}: {e}"));
                continue;
            }
        };
        match bodyless_streams(&mut c, STREAMS, &outcomes).await {
            Ok(s) => streams.extend(s),
            Err(e) => errors.push(format!("attack connection {i}: {e}")),
        }
        conns.push(c);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = ping_pong(c).await {
            errors.push(format!("attack connection {i}: {e}"));
        }
    }
    if !errors.is_empty() {
        eprintln!("the attack met errors: {errors:?}");
    }
    Held {
        _conns: conns,
        _streams: streams,
        outcomes,
        errors,
    }
}

/// A normal `GET /` on a new HTTP/2 connection, waited for at most `NORMAL_WAIT`.
async fn normal_get(to: SocketAddr, der: &[u8]) -> Result<(u16, String), String> {
    match tokio::time::timeout(NORMAL_WAIT, h2_once(to, der, "GET", "/", None)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {NORMAL_WAIT:?}")),
    }
}

/// Runs the attack against a TLS edge in front of `backend` (protocol, server address) and
/// checks a normal request; `want` is a piece of the app's answer to `GET /`.
async fn held_streams_leave_room(protocol: &str, server: &str, want: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (tls_line, der) = tls_table(dir.path());
    let cfg = global() + &frontend("tls", "app", &tls_line) + &backend("app", protocol, server);
    let sl = Sluice::start(&cfg).await;
    let to = sl.addr("tls");
    let held = attack(to, &der).await;
    let normal = normal_get(to, &der).await;
    let outcomes = held.outcomes.lock().unwrap().clone();
    let n = CONNS * STREAMS;
    match normal {
        Ok((200, body)) => assert!(body.contains(want), "{what}: {body}"),
        other => panic!(
            "{what}: a normal GET / on a new connection while {CONNS} x {STREAMS} bodyless \
             streams were held got {other:?} (answers to the {n} attack streams so far: \
             {outcomes:?}; attack errors: {:?})",
            held.errors
        ),
    }
    drop(held);
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodyless_h2_streams_leave_room_uwsgi() {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = Uwsgi::start(dir.path()).await else {
        return;
    };
    held_streams_leave_room(
        "uwsgi",
        &app.addr(),
        "hello from the seed app",
        "uWSGI (1 process, 4 threads, --listen 4)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodyless_h2_streams_leave_room_http_app() {
    let app = worker_app(4, 4).await;
    held_streams_leave_room(
        "http",
        &app.addr.to_string(),
        "len=0",
        "HTTP app (4 workers, backlog 4)",
    )
    .await;
}

// ---------------------------------------------------------------- the real process

/// `prlimit --nofile=N -- sluice run --config <path>` (prlimit execs sluice, so the pid is
/// sluice's); waits for its listening line like `SluiceProcess::start`.
fn start_limited(prlimit: &std::path::Path, config: &std::path::Path) -> SluiceProcess {
    let mut cmd = Command::new(prlimit);
    cmd.arg(format!("--nofile={NOFILE}"))
        .arg("--")
        .arg(sluice_bin())
        .args(["run", "--config"])
        .arg(config);
    SluiceProcess::start_with(cmd, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodyless_h2_streams_do_not_exhaust_descriptors() {
    let Some(prlimit) = tool("prlimit", &["/usr/bin/prlimit", "prlimit"]) else {
        return;
    };
    // An app that takes every connection (an async app): nothing but the edge limits them.
    let app = worker_app(4096, 2048).await;
    let dir = tempfile::tempdir().unwrap();
    let (tls_line, der) = tls_table(dir.path());
    // Under 1024 descriptors the temp-file cap must shrink too (`sluice check` says so).
    let cfg = global().replace("[global]\n", "[global]\nmax_temp_files = 64\n")
        + &frontend("tls", "app", &tls_line)
        + &backend("app", "http", &app.addr.to_string());
    let path = write_file(dir.path(), "shield.toml", &cfg);
    let sl = start_limited(&prlimit, &path);
    let (to, pid) = (sl.addr("tls"), sl.pid());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "sluice", "prlimit exec'd sluice");

    let base = open_fds(pid);
    let held = attack(to, &der).await;
    // Sample the descriptors while the attack is held and the normal request runs.
    let peak = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            let end = tokio::time::Instant::now() + DEADLINE;
            let min_end = tokio::time::Instant::now() + HOLD;
            loop {
                peak.fetch_max(open_fds(pid), Ordering::SeqCst);
                let now = tokio::time::Instant::now();
                if now >= end || (now >= min_end && stop.load(Ordering::SeqCst)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let normal = normal_get(to, &der).await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    let outcomes = held.outcomes.lock().unwrap().clone();
    let emfile: Vec<String> = sl
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("Too many open files"))
        .take(3)
        .cloned()
        .collect();
    eprintln!(
        "sluice under --nofile={NOFILE}: {base} descriptors before the attack, peak {peak}; \
         app accepted {}; normal request: {normal:?}; attack answers: {outcomes:?}",
        app.accepted.load(Ordering::SeqCst)
    );
    let ok = matches!(&normal, Ok((200, body)) if body.contains("len=0"));
    assert!(
        ok && peak < NOFILE && emfile.is_empty(),
        "while {CONNS} x {STREAMS} bodyless streams were held: normal request {normal:?}; \
         peak descriptors {peak} (limit {NOFILE}); log: {emfile:?}; attack errors: {:?}",
        held.errors
    );
    drop(held);
}
