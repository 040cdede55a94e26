//! Shared helpers for sluice's black-box tests: run sluice in-process or as the real binary
//! from a TOML text, learn its bound addresses, tiny loopback servers (named, echo, PROXY
//! capture), clients bound to 127.0.0.2, free ports, condition polling, peer-tool skip logic.
//! `edge` adds TLS and HTTP app helpers, `admin` the admin API client, `seed` runs uWSGI
//! with the seed Flask app, `capture` the server that decodes what sluice sends, `peers`
//! starts peer programs (haproxy, nginx, uwsgi) and waits until they are ready.

pub mod admin;
mod capture;
mod dnsmasq;
pub mod edge;
mod peers;
mod seed;
pub mod ws;

pub use capture::*;
pub use dnsmasq::*;
pub use peers::*;
pub use seed::*;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::balance::Pool;
use sluice::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// The address every test client connects from, to prove the real client travels.
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Generous upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- peers and tools

/// True when interop peers are mandatory (CI).
pub fn interop_required() -> bool {
    std::env::var("SLUICE_REQUIRE_INTEROP")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// A missing prerequisite: a loud SKIP line, or a panic when interop is required.
pub fn skip(what: &str) {
    if interop_required() {
        panic!("{what} not found and SLUICE_REQUIRE_INTEROP=1");
    }
    eprintln!("\n========== SKIP: {what} not found ==========\n");
}

/// The first existing path among `candidates` (absolute paths, or names looked up in PATH).
/// Missing: prints a loud SKIP line and returns None, or panics when interop is required.
pub fn tool(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.exists() {
                return Some(p.to_path_buf());
            }
        } else if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let full = dir.join(c);
                if full.exists() {
                    return Some(full);
                }
            }
        }
    }
    if interop_required() {
        panic!("{name} not found (looked for {candidates:?}) and SLUICE_REQUIRE_INTEROP=1");
    }
    eprintln!("\n========== SKIP: {name} not found (looked for {candidates:?}) ==========\n");
    None
}

/// A port that was free a moment ago on `ip` (for peers that cannot bind port 0).
pub fn free_port(ip: IpAddr) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind port 0");
    l.local_addr().unwrap().port()
}

/// Open descriptors of process `pid` (0 once it is gone).
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- polling

/// Polls `cond` every 20ms until it holds; panics with `what` after `DEADLINE`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` for at most `DEADLINE`.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Awaits `fut` (loopback I/O) while a paused tokio clock stays still; panics after `DEADLINE`
/// of real time. Tokio auto-advances a paused clock whenever the runtime looks idle, and under
/// load a loopback byte can still be in the kernel then, so a timer fires early; a task that
/// is always ready (it yields) keeps the runtime from looking idle.
pub async fn hold_clock<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let end = std::time::Instant::now() + DEADLINE;
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            v = &mut fut => return v,
            () = tokio::task::yield_now() => {}
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out (real time): {what}"
        );
    }
}

/// [`wait_until`] for paused-time tests: polls `cond` with the clock held ([`hold_clock`]).
pub async fn hold_until(what: &str, mut cond: impl FnMut() -> bool) {
    hold_clock(what, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// `sluice_proxy_rejected` of `frontend` (the process-wide metrics: use a frontend name no
/// other test uses) whose reason starts with `reason` ("" for every reason).
pub fn proxy_rejections(frontend: &str, reason: &str) -> u64 {
    let fe = format!("frontend=\"{frontend}\"");
    let why = format!("reason=\"{reason}");
    sluice::metrics::global()
        .encode(&[])
        .lines()
        .filter(|l| l.starts_with("sluice_proxy_rejected") && l.contains(&fe) && l.contains(&why))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until `path` contains a line with every one of `parts`; returns that line.
pub async fn wait_for_log_line(path: &Path, parts: &[&str]) -> String {
    let mut found = None;
    wait_until(
        &format!("a line with {parts:?} in {}", path.display()),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            found = text
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned);
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

// ---------------------------------------------------------------- clients

/// Connects to `to` from `from` (port chosen by the kernel).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if from.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Thousands of test connections from one source address leave their ports in
    // TIME_WAIT; SO_REUSEADDR lets bind(port 0) pick such a port again (connect still
    // refuses a 4-tuple that is really in use), so the port range is not exhausted.
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(to).await
}

/// Connects from 127.0.0.2.
pub async fn client(to: SocketAddr) -> TcpStream {
    within("connect", connect_from(CLIENT_IP, to))
        .await
        .expect("connect to sluice")
}

/// Reads one '\n'-terminated line (at most 4 KiB); None on EOF before any byte.
pub async fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while out.len() < 4096 {
        match within("read_line", s.read(&mut b)).await {
            Ok(0) | Err(_) => break,
            Ok(_) if b[0] == b'\n' => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(_) => out.push(b[0]),
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

/// True when the peer closes `s` (EOF or reset) within `DEADLINE` without sending data.
/// Connections waiting in the kernel's accept queue of the IPv4 listening socket(s) bound to
/// `addr` (the `rx_queue` of LISTEN rows in /proc/net/tcp): handshakes completed that
/// nobody has accepted yet. Lets a test see "not accepted" as a positive fact.
pub fn accept_queue(addr: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = addr else {
        panic!("accept_queue: IPv4 only, got {addr}");
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, state 0A = LISTEN, tx_queue:rx_queue
            (f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(4)?.split(':').nth(1))
                .flatten()
                .and_then(|rx| usize::from_str_radix(rx, 16).ok())
        })
        .sum()
}

pub async fn closed_without_data(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(within("close", s.read(&mut b)).await, Ok(0) | Err(_))
}

// ---------------------------------------------------------------- sluice in-process

/// A sluice `Server` running on the test's runtime.
pub struct Sluice {
    pub addrs: Vec<(String, SocketAddr)>,
    pub pools: HashMap<String, Arc<Pool>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sluice {
    /// Loads `toml` (as config::load would a file) and runs it.
    pub async fn start(toml: &str) -> Sluice {
        let cfg = sluice::config::load::load_str(toml, "test.toml")
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n{toml}"));
        let backends: Vec<String> = cfg.backends.iter().map(|b| b.name.clone()).collect();
        let server = Server::bind(cfg).await.expect("Server::bind");
        let addrs = server.local_addrs();
        let pools = backends
            .iter()
            .filter_map(|b| Some((b.clone(), server.pool(b)?)))
            .collect();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("Server::run");
        });
        Sluice {
            addrs,
            pools,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The first address bound by `frontend`.
    pub fn addr(&self, frontend: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(f, _)| f == frontend)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no frontend {frontend} in {:?}", self.addrs))
    }

    pub fn pool(&self, backend: &str) -> Arc<Pool> {
        self.pools
            .get(backend)
            .cloned()
            .unwrap_or_else(|| panic!("no backend {backend}"))
    }

    /// Triggers the graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within("sluice shutdown", task).await.expect("sluice task");
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------- sluice binary

/// `sluice run` as a child process; stderr is collected line by line.
pub struct SluiceProcess {
    pub child: ChildGuard,
    pub addrs: Vec<(String, SocketAddr)>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// The `Content-Length` of an HTTP/1 response head (status line and headers), if present.
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Parses `listening frontend=NAME addr=ADDR` from a log line.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let rest = &line[line.find("listening frontend=")? + "listening frontend=".len()..];
    let (name, rest) = rest.split_once(' ')?;
    let addr = rest.strip_prefix("addr=")?.split_whitespace().next()?;
    Some((name.to_string(), addr.parse().ok()?))
}

/// Path of the sluice binary under test.
pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// Runs `sluice <args...> --config <config>` to completion (a CLI command such as `reload`).
pub fn sluice_cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(sluice_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run sluice")
}

/// A finished command's stdout and stderr as one text, for assertions on what it printed.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl SluiceProcess {
    /// Starts `sluice run --config <path>` and waits until `listeners` listening lines appear.
    pub fn start(config: &Path, listeners: usize) -> SluiceProcess {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["run", "--config"]).arg(config);
        SluiceProcess::start_with(cmd, listeners)
    }

    /// Runs `cmd` (sluice itself, or a wrapper that execs it, such as prlimit), stderr
    /// captured (`RUST_LOG=info` unless `cmd` sets it), and waits until `listeners` listening lines appear.
    pub fn start_with(mut cmd: Command, listeners: usize) -> SluiceProcess {
        // `info` unless the caller chose a filter (the listening lines are info).
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[sluice] {line}");
                let listening = parse_listening(&line);
                // Recorded before it is reported: once `start` returns, `stderr` has it.
                sink.lock().unwrap().push(line);
                if let Some(l) = listening {
                    let _ = tx.send(l);
                }
            }
        });
        let guard = ChildGuard(child);
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            match rx.recv_timeout(DEADLINE) {
                Ok(a) => addrs.push(a),
                Err(_) => panic!(
                    "sluice did not report {listeners} listeners: {:?}",
                    lines.lock().unwrap()
                ),
            }
        }
        SluiceProcess {
            child: guard,
            addrs,
            stderr: lines,
        }
    }

    pub fn addr(&self, frontend: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(f, _)| f == frontend)
            .map(|(_, a)| *a)
            .expect("frontend")
    }

    pub fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// Sends `sig` (e.g. `Signal::TERM`, `Signal::USR1`) to the process. The pid is our own
    /// unreaped child, so it cannot have been recycled.
    pub fn signal(&self, sig: rustix::process::Signal) -> std::io::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("child pid is positive");
        rustix::process::kill_process(pid, sig).map_err(std::io::Error::from)
    }

    /// Polls for exit; None if still running after `DEADLINE`.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < end {
            if let Some(st) = self.child.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

// ---------------------------------------------------------------- backend servers

/// A loopback server that answers every connection with `"<name>\n"` and then holds the
/// connection open until the client closes it. Counts accepted and currently open.
pub struct NamedServer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl NamedServer {
    pub async fn start(ip: IpAddr, name: &str) -> NamedServer {
        Self::start_on(SocketAddr::new(ip, 0), name).await
    }

    pub async fn start_on(addr: SocketAddr, name: &str) -> NamedServer {
        let l = TcpListener::bind(addr).await.expect("bind named server");
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, op, line) = (accepted.clone(), open.clone(), format!("{name}\n"));
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                op.fetch_add(1, Ordering::SeqCst);
                let (op, line) = (op.clone(), line.clone());
                tokio::spawn(async move {
                    let _ = s.write_all(line.as_bytes()).await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        NamedServer {
            addr,
            accepted,
            open,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Stops listening (existing connections keep going until their client closes).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A loopback echo server that honours half-close: after EOF it shuts down its write side.
pub async fn echo_server(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.expect("bind echo");
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}
