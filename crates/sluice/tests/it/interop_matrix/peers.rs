//! Peers for the interop matrix: the real uWSGI running the seed Flask app, TLS edges (real
//! nginx or the sluice binary, each its own process, stoppable and restartable on the same
//! port), a balancer in front (the sluice binary or real HAProxy), curl and `openssl s_client`
//! from 127.0.0.2. Starts, stops and observes; the rows' assertions live in interop_matrix.rs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The name the edges' certificate is for (curl resolves it to the balancer).
pub const HOST: &str = "app.test";
/// The balancer's source address towards the edges; the only address the edges trust.
pub const LB_SOURCE: &str = "127.0.0.10";
/// The two edges play two hosts.
pub const EDGE_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)),
];
/// A peer program by name in /usr/sbin, /usr/bin or PATH (SKIP line / panic via `tool`).
pub fn need(name: &str) -> Option<PathBuf> {
    let (sbin, bin) = (format!("/usr/sbin/{name}"), format!("/usr/bin/{name}"));
    tool(name, &[&sbin, &bin, name])
}

// ---------------------------------------------------------------- uWSGI + Flask

/// uWSGI (python3 plugin) serving examples/seed/app.py on a unix socket.
pub struct App {
    _child: ChildGuard,
    pub sock: PathBuf,
}

impl App {
    /// None after a SKIP line when uwsgi, its python3 plugin or Flask is missing.
    pub async fn start(dir: &Path) -> Option<App> {
        let uwsgi = need("uwsgi")?;
        if !seed_app_available() {
            return None;
        }
        let sock = dir.join("app.sock");
        let args = seed_uwsgi_args(&sock);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = dir.join("uwsgi.log");
        let mut child = spawn_peer(&uwsgi, &args, &log);
        wait_ready("uwsgi", &mut child, &log, Probe::Unix(sock.clone())).await;
        Some(App {
            _child: child,
            sock,
        })
    }
}

// ---------------------------------------------------------------- certificates, keys

/// Self-signed certificate for `app.test` and a shared 80-byte nginx-format ticket key.
pub struct Secrets {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ticket_key: PathBuf,
}

impl Secrets {
    pub fn write(dir: &Path) -> Secrets {
        let ck = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let ticket_key = dir.join("ticket.key");
        let bytes: Vec<u8> = (0..80u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        std::fs::write(&ticket_key, bytes).unwrap();
        Secrets {
            cert,
            key,
            ticket_key,
        }
    }
}

// ---------------------------------------------------------------- edges

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// nginx: `listen ... ssl http2 proxy_protocol; real_ip_header proxy_protocol; uwsgi_pass`.
    Nginx,
    /// `sluice run` with a `mode = "http"` frontend; access log as `combined` or `json`.
    Sluice { json: bool },
}

/// A started edge process, held for its Drop (which kills and reaps it).
#[allow(dead_code)]
enum Running {
    Nginx(ChildGuard),
    Sluice(SluiceProcess),
}

/// One TLS edge on a fixed address (so a restart comes back on the same port).
pub struct Edge {
    pub name: String,
    pub kind: EdgeKind,
    pub addr: SocketAddr,
    pub access_log: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    program: PathBuf,
    running: Option<Running>,
}

impl Edge {
    /// Writes the edge's config under `dir/<name>/` (nothing is started yet).
    pub fn new(
        kind: EdgeKind,
        name: &str,
        ip: IpAddr,
        dir: &Path,
        secrets: &Secrets,
        app: &App,
        nginx: Option<&Path>,
    ) -> Edge {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let addr = SocketAddr::new(ip, free_port(ip));
        let access_log = dir.join("access.log");
        let (text, program) = match kind {
            EdgeKind::Nginx => (
                nginx_conf(&dir, addr, secrets, &app.sock, &access_log),
                nginx.expect("nginx path for an nginx edge").to_path_buf(),
            ),
            EdgeKind::Sluice { json } => (
                sluice_edge_conf(addr, secrets, &app.sock, &access_log, json),
                PathBuf::from(sluice_bin()),
            ),
        };
        let config = write_file(&dir, "edge.conf", &text);
        Edge {
            name: name.to_string(),
            kind,
            addr,
            access_log,
            dir,
            config,
            program,
            running: None,
        }
    }

    /// Starts the edge's process and waits until it accepts on its address.
    pub async fn start(&mut self) {
        assert!(self.running.is_none(), "{} already running", self.name);
        self.running = Some(match self.kind {
            EdgeKind::Nginx => {
                Running::Nginx(start_nginx(&self.program, &self.dir, &self.config, self.addr).await)
            }
            EdgeKind::Sluice { .. } => {
                let config = self.config.clone();
                let p = tokio::task::spawn_blocking(move || SluiceProcess::start(&config, 1))
                    .await
                    .expect("sluice edge start");
                assert_eq!(p.addrs[0].1, self.addr, "edge bound elsewhere");
                Running::Sluice(p)
            }
        });
    }

    /// Kills the edge's process (SIGKILL: the harshest way an edge goes away) and reaps it.
    pub fn stop(&mut self) {
        self.running.take().expect("edge running");
    }

    /// The access log line whose request carries `marker` (None when not there yet).
    pub fn logged(&self, marker: &str) -> Option<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains(marker))
            .map(str::to_owned)
    }

    /// True when `line` says the request came from 127.0.0.2 (and, for nginx, that the hop
    /// carrying it came from the balancer's source address).
    pub fn line_shows_client(&self, line: &str) -> bool {
        match self.kind {
            EdgeKind::Nginx => line.starts_with(&format!("127.0.0.2 via={LB_SOURCE} ")),
            EdgeKind::Sluice { json: false } => line.starts_with("127.0.0.2 - - ["),
            EdgeKind::Sluice { json: true } => line.contains("\"remote_addr\":\"127.0.0.2\""),
        }
    }

    /// Whether `line` says the TLS session was resumed (None: this log format does not say).
    pub fn line_shows_resumed(&self, line: &str) -> Option<bool> {
        let (yes, no) = match self.kind {
            EdgeKind::Nginx => ("reused=r", "reused=."),
            EdgeKind::Sluice { json: true } => ("\"tls_resumed\":true", "\"tls_resumed\":false"),
            EdgeKind::Sluice { json: false } => return None,
        };
        match (line.contains(yes), line.contains(no)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => panic!("cannot tell resumption from {line}"),
        }
    }
}

fn nginx_conf(dir: &Path, addr: SocketAddr, s: &Secrets, sock: &Path, log: &Path) -> String {
    let d = dir.display();
    let params: String = [
        ("QUERY_STRING", "$query_string"),
        ("REQUEST_METHOD", "$request_method"),
        ("CONTENT_TYPE", "$content_type"),
        ("CONTENT_LENGTH", "$content_length"),
        ("REQUEST_URI", "$request_uri"),
        ("PATH_INFO", "$document_uri"),
        ("DOCUMENT_ROOT", "$document_root"),
        ("SERVER_PROTOCOL", "$server_protocol"),
        ("REQUEST_SCHEME", "$scheme"),
        ("HTTPS", "$https if_not_empty"),
        ("REMOTE_ADDR", "$remote_addr"),
        ("REMOTE_PORT", "$remote_port"),
        ("SERVER_ADDR", "$server_addr"),
        ("SERVER_PORT", "$server_port"),
        ("SERVER_NAME", "$server_name"),
    ]
    .iter()
    .map(|(k, v)| format!("      uwsgi_param {k} {v};\n"))
    .collect();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 128; }}\n\
         http {{\n\
           log_format edge '$remote_addr via=$realip_remote_addr \"$request\" $status \
         reused=$ssl_session_reused';\n\
           access_log {log} edge;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
           uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen {addr} ssl http2 proxy_protocol;\n\
             server_name {HOST};\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n\
             ssl_session_ticket_key {ticket};\n\
             set_real_ip_from {LB_SOURCE}/32;\n\
             real_ip_header proxy_protocol;\n\
             location / {{\n{params}      uwsgi_pass unix:{sock};\n    }}\n\
           }}\n\
         }}\n",
        log = log.display(),
        cert = s.cert.display(),
        key = s.key.display(),
        ticket = s.ticket_key.display(),
        sock = sock.display(),
    )
}

fn sluice_edge_conf(addr: SocketAddr, s: &Secrets, sock: &Path, log: &Path, json: bool) -> String {
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"edge\"\nbind = [\"{addr}\"]\nmode = \"http\"\nbackend = \"app\"\n\
         access_log = \"{log}\"\naccess_log_format = \"{fmt}\"\n\
         proxy_protocol = {{ trusted = [\"{LB_SOURCE}/32\"], untrusted = \"reject\" }}\n\
         [frontend.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nticket_keys = [\"{ticket}\"]\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n\
         servers = [ {{ name = \"flask\", addr = \"unix:{sock}\" }} ]\n",
        log = log.display(),
        fmt = if json { "json" } else { "combined" },
        cert = s.cert.display(),
        key = s.key.display(),
        ticket = s.ticket_key.display(),
        sock = sock.display(),
    )
}

// ---------------------------------------------------------------- balancers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// `sluice run`, `mode = "tcp"`, `send_proxy = "v1"|"v2"`, tls health checks.
    Sluice { v2: bool },
    /// HAProxy `mode tcp`, `send-proxy` or `send-proxy-v2 check-send-proxy`, tcp checks.
    Haproxy { v2: bool },
}

/// The balancer's process (killed and reaped on Drop) and where its log goes.
enum LbRun {
    Sluice(SluiceProcess),
    Haproxy(#[allow(dead_code)] ChildGuard, PathBuf),
}

/// The balancer on 127.0.0.1, connecting to the edges from 127.0.0.10, checking them every
/// 200ms (fall 2, rise 2).
pub struct Balancer {
    pub addr: SocketAddr,
    run: LbRun,
}

impl Balancer {
    pub async fn start(kind: LbKind, dir: &Path, edges: &[Edge], haproxy: Option<&Path>) -> Self {
        match kind {
            LbKind::Sluice { v2 } => {
                let servers: Vec<String> = edges
                    .iter()
                    .map(|e| format!("{{ name = \"{}\", addr = \"{}\" }}", e.name, e.addr))
                    .collect();
                let cfg = format!(
                    "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
                     [[frontend]]\nname = \"lb\"\nbind = [\"127.0.0.1:0\"]\nmode = \"tcp\"\n\
                     backend = \"edges\"\n\n\
                     [[backend]]\nname = \"edges\"\nbalance = \"roundrobin\"\n\
                     send_proxy = \"{}\"\nsource = \"{LB_SOURCE}\"\n\
                     timeouts = {{ connect = \"2s\", idle = \"30s\" }}\n\
                     health = {{ kind = \"tls\", interval = \"200ms\", timeout = \"1s\", \
                     rise = 2, fall = 2 }}\nservers = [ {} ]\n",
                    if v2 { "v2" } else { "v1" },
                    servers.join(", ")
                );
                let path = write_file(dir, "lb.toml", &cfg);
                let p = tokio::task::spawn_blocking(move || SluiceProcess::start(&path, 1))
                    .await
                    .expect("sluice balancer start");
                Balancer {
                    addr: p.addr("lb"),
                    run: LbRun::Sluice(p),
                }
            }
            LbKind::Haproxy { v2 } => {
                let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
                let send = if v2 {
                    "send-proxy-v2 check-send-proxy"
                } else {
                    "send-proxy"
                };
                let servers: String = edges
                    .iter()
                    .map(|e| format!("  server {} {}\n", e.name, e.addr))
                    .collect();
                let cfg = format!(
                    "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n\
                     \x20 timeout server 30s\n  timeout check 1s\n\n\
                     frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
                     backend be\n  balance roundrobin\n\
                     \x20 default-server check inter 200ms fall 2 rise 2 source {LB_SOURCE} {send}\n\
                     {servers}"
                );
                let program = haproxy.expect("haproxy path");
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                // The readiness probe is forwarded to an edge as an empty connection: harmless.
                let (child, out) = start_haproxy(program, dir, &cfg, addr).await;
                Balancer {
                    addr,
                    run: LbRun::Haproxy(child, out),
                }
            }
        }
    }

    /// Everything the balancer logged so far.
    pub fn log_text(&self) -> String {
        match &self.run {
            LbRun::Sluice(p) => p.stderr.lock().unwrap().join("\n"),
            LbRun::Haproxy(_, out) => std::fs::read_to_string(out).unwrap_or_default(),
        }
    }

    /// The log text of the balancer's health checks marking `server` up or down.
    fn transition(&self, server: &str, up: bool) -> String {
        let state = if up { "UP" } else { "DOWN" };
        match &self.run {
            LbRun::Sluice(_) => format!("server edges/{server} {state}"),
            LbRun::Haproxy(..) => format!("Server be/{server} is {state}"),
        }
    }

    /// Waits until the balancer has logged `server` going up (or down) `times` times.
    pub async fn wait_transition(&self, server: &str, up: bool, times: usize) {
        let want = self.transition(server, up);
        wait_until(&format!("{times}x '{want}' in the balancer's log"), || {
            self.log_text().matches(&want).count() >= times
        })
        .await;
    }

    /// How often `server` was marked up or down so far.
    pub fn transitions(&self, server: &str, up: bool) -> usize {
        self.log_text()
            .matches(&self.transition(server, up))
            .count()
    }
}

// ---------------------------------------------------------------- clients

/// What curl got: the body and `%{http_code} %{http_version}`.
pub struct Reply {
    pub body: String,
    pub status: String,
    pub http_version: String,
}

/// `curl -k --interface 127.0.0.2 https://app.test:<lb port>/?n=<marker>` (resolved to the
/// balancer). Panics with curl's error when the request fails.
pub async fn curl_get(curl: &Path, lb: SocketAddr, marker: &str, http2: bool) -> Reply {
    let url = format!("https://{HOST}:{}/?n={marker}", lb.port());
    let resolve = format!("{HOST}:{}:{}", lb.port(), lb.ip());
    let args = [
        "-sS",
        "-k",
        "--max-time",
        "10",
        "--interface",
        "127.0.0.2",
        if http2 { "--http2" } else { "--http1.1" },
        "--resolve",
        &resolve,
        "-w",
        "\n@@%{http_code} %{http_version}",
        &url,
    ]
    .map(str::to_owned);
    let curl = curl.to_path_buf();
    let out = tokio::task::spawn_blocking(move || Command::new(curl).args(args).output())
        .await
        .unwrap()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {url} failed ({}): {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, tail) = stdout.rsplit_once("\n@@").expect("curl -w output");
    let (status, version) = tail.split_once(' ').unwrap_or((tail, ""));
    Reply {
        body: body.to_string(),
        status: status.to_string(),
        http_version: version.to_string(),
    }
}

/// `openssl s_client` (TLS 1.3, SNI app.test) from 127.0.0.2 through the balancer, sending
/// one `GET /?n=<marker>` with `Connection: close`; `sess` is `-sess_out` or `-sess_in`.
/// Returns s_client's stdout (session summary and the HTTP response).
pub async fn s_client(
    openssl: &Path,
    lb: SocketAddr,
    sess_flag: &str,
    sess: &Path,
    marker: &str,
) -> String {
    let sess = sess.to_str().expect("session path");
    let args = [
        "-bind",
        "127.0.0.2:0",
        "-servername",
        HOST,
        "-tls1_3",
        sess_flag,
        sess,
    ];
    let req = format!("GET /?n={marker} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let out = crate::support::edge::s_client(openssl, lb, &args, req.as_bytes()).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "s_client failed ({}): {}{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
