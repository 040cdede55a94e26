//! Black-box tests of `sluice demo`: the real binary, its banner, two TLS connections from
//! 127.0.0.2 through the balancer (both edges in turn, the second resumed on the other edge
//! thanks to the shared ticket keys), the printed config passing `sluice check`, SIGTERM
//! exiting 0 with the temporary directory gone, bind errors naming the flag, curl, and the
//! address flags (--listen, --edge, --source) moving it all elsewhere on loopback.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::interop_required;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const DEADLINE: Duration = Duration::from_secs(30);

/// A port free on both 127.0.0.11 and 127.0.0.12 right now (bounded attempts).
fn free_edge_port() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.11:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.12", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.11 and 127.0.0.12 after 50 attempts");
}

/// The running demo; killed on drop if the test did not stop it.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
    _stderr_dir: tempfile::TempDir,
}

impl Drop for Demo {
    /// SIGTERM first so the demo removes its temporary directory even when a test failed;
    /// SIGKILL if it has not exited after 5 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(BIN)
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn sluice demo");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            _stderr_dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (with a deadline) for a stdout line containing `part`; returns it.
    fn wait_line(&mut self, part: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(part)) {
            return l.clone();
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(part) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no stdout line with {part:?} ({e}); stdout so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for the process to exit (deadline), returning its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "demo did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("child pid");
        rustix::process::kill_process(pid, sig).expect("signal the demo");
    }
}

/// The banner's "ready" line names the balancer's address.
fn balancer_addr(ready: &str) -> SocketAddr {
    ready
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {ready:?}"))
}

/// The banner's "files" line names the temporary directory.
fn files_dir(line: &str) -> PathBuf {
    let rest = line
        .trim()
        .strip_prefix("files")
        .expect("files line")
        .trim();
    PathBuf::from(rest.split(" (").next().unwrap())
}

fn client_config(dir: &Path) -> Arc<ClientConfig> {
    let cert = CertificateDer::from_pem_file(dir.join("localhost.crt")).expect("demo cert");
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The default resumption store is an in-memory session cache shared by every connection
    // made with this config: that is what a browser or curl keeps between connections.
    Arc::new(cfg)
}

struct Answer {
    local: SocketAddr,
    handshake: Option<HandshakeKind>,
    body: String,
}

/// One HTTPS request from 127.0.0.2 to the balancer, verifying the demo's certificate.
async fn get(balancer: SocketAddr, cfg: Arc<ClientConfig>) -> Answer {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(CLIENT_IP), 0))
        .unwrap();
    let tcp = sock
        .connect(balancer)
        .await
        .expect("connect to the balancer");
    let local = tcp.local_addr().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let fut = async {
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let handshake = tls.get_ref().1.handshake_kind();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Read to the end (it also takes in the TLS 1.3 tickets), at most 64 KiB.
        let mut buf = Vec::new();
        let mut limited = (&mut tls).take(64 << 10);
        if let Err(e) = limited.read_to_end(&mut buf).await {
            assert!(!buf.is_empty(), "read failed before any answer: {e}");
        }
        (handshake, buf)
    };
    let (handshake, buf) = tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("answer within the deadline");
    let text = String::from_utf8(buf).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{text}");
    Answer {
        local,
        handshake,
        body: body.to_string(),
    }
}

fn edge_of(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("edge:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no edge line in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_both_edges_resumes_across_them_and_cleans_up() {
    let edge_port = free_edge_port().to_string();
    let mut demo = Demo::start(&["--port", "0", "--edge-port", &edge_port, "--print-config"]);
    let ready = demo.wait_line("sluice demo ready:");
    let balancer = balancer_addr(&ready);
    assert_eq!(balancer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dir = files_dir(&demo.wait_line("    files     "));
    assert!(dir.join("localhost.crt").is_file(), "{dir:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the directory holding the keys is owner-only");
    }
    demo.wait_line("curl -k --interface 127.0.0.2 https://");

    // The printed configuration is what runs: `sluice check` accepts it as a file.
    let start = demo
        .seen
        .iter()
        .position(|l| l.starts_with("# ---- ") && l.ends_with(".toml ----"))
        .expect("config start marker");
    let end = demo
        .seen
        .iter()
        .position(|l| l == "# ---- end of configuration ----")
        .expect("config end marker");
    let toml = demo.seen[start + 1..end].join("\n");
    assert!(toml.contains("send_proxy = \"v2\""), "{toml}");
    let check_dir = tempfile::tempdir().unwrap();
    let check_file = check_dir.path().join("demo.toml");
    std::fs::write(&check_file, &toml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&check_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice check refused the printed config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (3 frontends, 3 backends"));

    let cfg = client_config(&dir);
    let first = get(balancer, cfg.clone()).await;
    let second = get(balancer, cfg.clone()).await;
    for a in [&first, &second] {
        assert!(a.body.starts_with("hello from sluice demo\n"), "{}", a.body);
        // The real client address, port included, crossed the balancer in the PROXY header.
        let want = format!("client:   {}\n", a.local);
        assert!(a.body.contains(&want), "want {want:?} in\n{}", a.body);
    }
    let (e1, e2) = (edge_of(&first.body), edge_of(&second.body));
    let mut both = [e1, e2];
    both.sort();
    assert_eq!(both, ["edge-a", "edge-b"], "roundrobin over both edges");
    assert_eq!(first.handshake, Some(HandshakeKind::Full));
    // The other edge resumed a session the first edge issued: shared ticket keys.
    assert_eq!(second.handshake, Some(HandshakeKind::Resumed));

    // Each request is logged with the real client address.
    for a in [&first, &second] {
        demo.wait_line(&format!("GET / client={}", a.local));
    }
    let stderr = demo.stderr();
    assert!(
        stderr.contains(&format!("{} - - [", CLIENT_IP)),
        "no access line with the client address:\n{stderr}"
    );

    demo.signal(rustix::process::Signal::TERM);
    let status = demo.wait_exit();
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        demo.stderr()
    );
    demo.wait_line(&format!("removed {}", dir.display()));
    assert!(!dir.exists(), "{dir:?} still exists after SIGTERM");

    // What the app was told about TLS (SSL_PROTOCOL / SSL_SESSION_REUSED from the edge)
    // matches what the client saw.
    for (a, resumed) in [(&first, "no"), (&second, "yes")] {
        let want = format!("tls:      TLSv1.3, session resumed: {resumed}\n");
        assert!(a.body.contains(&want), "want {want:?} in\n{}", a.body);
    }
}

#[test]
fn taken_ports_are_named_with_the_flag_to_change_them() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let edge_port = free_edge_port().to_string();
    let mut demo = Demo::start(&["--port", &port, "--edge-port", &edge_port]);
    let status = demo.wait_exit();
    assert!(!status.success());
    let err = demo.stderr();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--port"), "{err}");
    drop(taken);

    let edge_port = free_edge_port();
    let taken = TcpListener::bind(("127.0.0.12", edge_port)).unwrap();
    let mut demo = Demo::start(&["--port", "0", "--edge-port", &edge_port.to_string()]);
    let status = demo.wait_exit();
    assert!(!status.success());
    let err = demo.stderr();
    assert!(err.contains(&format!("127.0.0.12:{edge_port}")), "{err}");
    assert!(err.contains("--edge-port"), "{err}");
    drop(taken);

    let mut demo = Demo::start(&["--edge-port", "0"]);
    assert!(!demo.wait_exit().success());
    assert!(demo.stderr().contains("--edge-port 0"), "{}", demo.stderr());
}

/// The banner's curl commands do what it says they do.
#[test]
fn the_banners_curl_commands_work() {
    let curl = Path::new("/usr/bin/curl");
    if !curl.exists() {
        assert!(
            !interop_required(),
            "curl not found and SLUICE_REQUIRE_INTEROP=1"
        );
        eprintln!("SKIP: curl not found");
        return;
    }
    let edge_port = free_edge_port().to_string();
    let mut demo = Demo::start(&["--port", "0", "--edge-port", &edge_port]);
    let balancer = balancer_addr(&demo.wait_line("sluice demo ready:"));
    let url = format!("https://{balancer}/");
    let run = |args: &[&str]| {
        let out = Command::new(curl)
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let body = run(&["-k", "--interface", "127.0.0.2", &url]);
    assert!(body.contains("client:   127.0.0.2:"), "{body}");
    assert!(body.contains("request:  GET / HTTP/2.0"), "{body}");

    let two = run(&["-k", "--http1.1", "-H", "Connection: close", &url, &url]);
    let answers: Vec<&str> = two.split("hello from sluice demo\n").skip(1).collect();
    assert_eq!(answers.len(), 2, "{two}");
    assert_ne!(edge_of(answers[0]), edge_of(answers[1]), "{two}");
    assert!(answers[0].contains("session resumed: no"), "{two}");
    assert!(answers[1].contains("session resumed: yes"), "{two}");

    demo.signal(rustix::process::Signal::INT); // Ctrl-C
    assert!(demo.wait_exit().success(), "{}", demo.stderr());
    demo.wait_line("sluice demo stopped; removed ");
}

/// A port free on `ip` right now (bound to port 0 and released).
fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `--listen`, `--edge` (three of them, each on its own port) and `--source` move the whole
/// demo off 127.0.0.1 and 127.0.0.11/12: the banner and the config name the new addresses,
/// requests from 127.0.0.2 reach every edge in turn with the real client address, and the
/// banner's curl line works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_the_addresses_it_is_given() {
    let edges: Vec<String> = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
        .iter()
        .map(|ip| format!("{ip}:{}", free_port_on(ip)))
        .collect();
    let mut args = vec!["--listen", "127.0.0.3:0", "--source", "127.0.0.20"];
    for e in &edges {
        args.extend(["--edge", e.as_str()]);
    }
    args.push("--print-config");
    let mut demo = Demo::start(&args);
    let balancer = balancer_addr(&demo.wait_line("sluice demo ready:"));
    assert_eq!(balancer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    assert_ne!(balancer.port(), 0);
    for (e, name) in edges.iter().zip(["edge-a", "edge-b", "edge-c"]) {
        let line = demo.wait_line(&format!("edge      {name} on {e} "));
        assert!(line.contains("PROXY trusted from 127.0.0.20/32"), "{line}");
    }
    demo.wait_line("PROXY v2 from 127.0.0.20)");
    let url = format!("https://{balancer}/");
    demo.wait_line(&format!("curl -k {url}"));
    demo.wait_line(&format!("curl -k --interface 127.0.0.2 {url}"));
    assert!(demo.seen.iter().any(|l| l == "source = \"127.0.0.20\""));
    let dir = files_dir(&demo.wait_line("    files     "));

    let cfg = client_config(&dir);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = get(balancer, cfg.clone()).await;
        let want = format!("client:   {}\n", a.local);
        assert!(a.body.contains(&want), "want {want:?} in\n{}", a.body);
        let edge = edge_of(&a.body).to_string();
        let line = a.body.lines().find(|l| l.starts_with("edge:")).unwrap();
        let i = ["edge-a", "edge-b", "edge-c"]
            .iter()
            .position(|n| *n == edge)
            .unwrap_or_else(|| panic!("unknown edge in {line}"));
        assert!(line.contains(&edges[i]), "{line} is not at {}", edges[i]);
        seen.push(edge);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["edge-a", "edge-b", "edge-c"],
        "roundrobin over 3 edges"
    );

    let curl = Path::new("/usr/bin/curl");
    if curl.exists() {
        let out = Command::new(curl)
            .args(["-sS", "--max-time", "20", "-k", &url])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.starts_with("hello from sluice demo\n"), "{body}");
        assert!(body.contains("client:   127.0.0."), "{body}");
    } else {
        assert!(
            !interop_required(),
            "curl not found and SLUICE_REQUIRE_INTEROP=1"
        );
        eprintln!("SKIP: curl not found (the rest of the test ran)");
    }

    demo.signal(rustix::process::Signal::TERM);
    assert!(demo.wait_exit().success(), "{}", demo.stderr());
    demo.wait_line(&format!("removed {}", dir.display()));
}

/// What the address flags refuse, with the flag named; nothing starts.
#[test]
fn address_flags_refuse_what_cannot_work() {
    let port = free_port_on("127.0.0.21").to_string();
    let edge = format!("127.0.0.21:{port}");
    let cases: [(&[&str], &str); 5] = [
        (&["--listen", "127.0.0.3:0", "--port", "0"], "--port"),
        (&["--edge", &edge, "--edge-port", "9000"], "--edge-port"),
        (&["--edge", "127.0.0.21:0"], "--edge 127.0.0.21:0: port 0"),
        (&["--edge", &edge, "--edge", &edge], "given twice"),
        (
            &["--edge", "[::1]:9", "--source", "127.0.0.20"],
            "one family",
        ),
    ];
    for (args, want) in cases {
        let mut demo = Demo::start(args);
        assert!(!demo.wait_exit().success(), "{args:?} started");
        let err = demo.stderr();
        assert!(err.contains(want), "{args:?}: want {want:?} in\n{err}");
    }

    // A taken edge address names --edge.
    let taken = TcpListener::bind("127.0.0.22:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let mut demo = Demo::start(&[
        "--listen",
        "127.0.0.3:0",
        "--edge",
        &edge,
        "--edge",
        &taken_addr,
    ]);
    assert!(!demo.wait_exit().success());
    let err = demo.stderr();
    assert!(err.contains(&taken_addr), "{err}");
    assert!(err.contains("with --edge"), "{err}");
}
