//! Harness for the interop tests: find peer binaries (loud SKIP, or panic under
//! SLUICE_REQUIRE_INTEROP=1), free loopback ports, child processes killed on drop, polling
//! waits with deadlines, clients bound to a chosen source address. No assertions on peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

pub const DEADLINE: Duration = Duration::from_secs(10);

/// True when `path` exists; otherwise prints a loud SKIP (or panics when interop is required).
pub fn have(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("SLUICE_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{path} not found and SLUICE_REQUIRE_INTEROP=1");
    }
    eprintln!("SKIP: {path} not found");
    false
}

/// A port that was free a moment ago (for peers that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A child process killed (and reaped) when dropped; its stderr goes to `log`.
pub struct Peer {
    child: Child,
    pub log: std::path::PathBuf,
}

impl Peer {
    pub fn spawn(cmd: &mut Command, log: std::path::PathBuf) -> Peer {
        let err = std::fs::File::create(&log).expect("create peer log");
        let out = err.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn peer");
        Peer { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until `addr` accepts a connection; panics with the peer's log on deadline/exit.
    pub fn wait_listening(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "peer exited with {st} before listening:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "peer not listening on {addr} after {DEADLINE:?}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `to` from `from_ip` (port chosen by the kernel).
pub fn connect_from(from_ip: &str, to: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{from_ip}:0").parse().expect("source address");
    sock.bind(&from.into()).expect("bind client source");
    sock.connect_timeout(&to.into(), DEADLINE).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    s.set_write_timeout(Some(DEADLINE)).expect("write timeout");
    s
}

/// Accepts one connection within the deadline.
pub fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).expect("nonblocking");
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    panic!("no connection within {DEADLINE:?}");
}

/// Sends `request` and reads the reply until EOF (bounded by size and the read timeout).
pub fn exchange(mut s: TcpStream, request: &[u8]) -> String {
    s.write_all(request).expect("write request");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while reply.len() < 1 << 20 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// Polls `path` until it contains `needle` (e.g. a log line written after the reply).
pub fn wait_for_text(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || start.elapsed() > DEADLINE {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
