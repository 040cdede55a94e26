//! The demo's topology as ordinary sluice configuration: the addresses (balancer, edges, the
//! balancer's source address), the files it needs (a self-signed certificate for `localhost`,
//! two nginx-format ticket keys) written into a directory, and the TOML text of one config
//! holding the balancer and every edge. It binds nothing and runs nothing; `demo::run` loads
//! this text like `sluice run` would.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Default address the balancer connects from; the only one the edges trust for PROXY headers.
pub const BALANCER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// The default edges' IPs (both on the same port, `--edge-port`).
pub const EDGE_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12)];
/// At most this many edges (`--edge` repeated): named edge-a .. edge-p.
pub const MAX_EDGES: usize = 16;
/// Frontend and backend names of the balancer tier.
pub const BALANCER: &str = "balancer";
pub const EDGES_BACKEND: &str = "edges";

/// Where everything listens and where its files are.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The balancer's listening address (port 0 = any free port).
    pub balancer: SocketAddr,
    /// The edges, in order (the balancer's servers); each has its own app.
    pub edges: Vec<Edge>,
    /// The balancer's source address towards the edges, the one they trust for PROXY headers.
    pub source: IpAddr,
    pub files: Files,
}

/// One edge: its name (`edge-a`, ...) and listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub name: String,
    pub addr: SocketAddr,
}

/// Names the edges at `addrs` edge-a, edge-b, ... in order.
pub fn edges_at(addrs: &[SocketAddr]) -> Vec<Edge> {
    addrs
        .iter()
        .zip('a'..='z')
        .map(|(addr, c)| Edge {
            name: format!("edge-{c}"),
            addr: *addr,
        })
        .collect()
}

/// The default edges: 127.0.0.11 and 127.0.0.12 on `port`.
pub fn default_edges(port: u16) -> Vec<Edge> {
    let addrs: Vec<SocketAddr> = EDGE_IPS
        .iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(*ip), port))
        .collect();
    edges_at(&addrs)
}

/// The files the config names, all inside one directory.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ticket_keys: [PathBuf; 2],
    /// The generated configuration itself.
    pub config: PathBuf,
}

impl Files {
    /// The paths inside `dir` (nothing is written).
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            cert: dir.join("localhost.crt"),
            key: dir.join("localhost.key"),
            ticket_keys: [dir.join("ticket-1.key"), dir.join("ticket-2.key")],
            config: dir.join("sluice-demo.toml"),
        }
    }

    /// The uwsgi socket of the app behind edge `name`.
    pub fn app_socket(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }
}

impl Topology {
    /// The network the edges trust PROXY headers from: the source address alone.
    pub fn trusted(&self) -> String {
        match self.source {
            IpAddr::V4(ip) => format!("{ip}/32"),
            IpAddr::V6(ip) => format!("{ip}/128"),
        }
    }
}

/// Writes a fresh self-signed certificate for `localhost` (and 127.0.0.1, ::1) with its key,
/// and two ticket keys of 80 random bytes (nginx `ssl_session_ticket_key` format).
pub fn write_material(files: &Files) -> io::Result<()> {
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| io::Error::other(format!("cannot generate a certificate: {e}")))?;
    write_private(&files.cert, ck.cert.pem().as_bytes())?;
    write_private(&files.key, ck.key_pair.serialize_pem().as_bytes())?;
    for path in &files.ticket_keys {
        let mut key = [0u8; 80];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| io::Error::other(format!("the system random generator failed: {e}")))?;
        write_private(path, &key)?;
    }
    Ok(())
}

/// Creates `path` readable by the owner only (keys are secrets, even a demo's).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A TOML basic string (quotes and backslashes escaped; paths may contain anything).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn p(path: &Path) -> String {
    q(&path.display().to_string())
}

/// The whole demo as one sluice configuration: a tcp-mode balancer (roundrobin, TLS health
/// checks, PROXY v2, from the source address) in front of the http-mode edges (TLS, PROXY
/// trusted from the source address only, shared ticket keys), each in front of its own uwsgi
/// app socket.
pub fn config_toml(t: &Topology) -> String {
    let f = &t.files;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# sluice demo: one process playing both tiers. Generated by `sluice demo`; the files it\n\
         # names live in {} and are removed when the demo stops.\n",
        f.dir.display()
    );
    s.push_str("[global]\nmax_connections = 1000\ngrace = \"2s\"\n\n");
    let _ = writeln!(
        s,
        "# Tier 1: the L4 balancer (what haproxy.cfg did).\n\
         [[frontend]]\n\
         name = {}\n\
         bind = [{}]\n\
         mode = \"tcp\"\n\
         backend = {}\n",
        q(BALANCER),
        q(&t.balancer.to_string()),
        q(EDGES_BACKEND),
    );
    let _ = writeln!(
        s,
        "[[backend]]\n\
         name = {}\n\
         balance = \"roundrobin\"\n\
         send_proxy = \"v2\"\n\
         source = {}\n\
         health = {{ kind = \"tls\", interval = \"1s\", timeout = \"1s\", rise = 2, fall = 2 }}\n\
         servers = [",
        q(EDGES_BACKEND),
        q(&t.source.to_string()),
    );
    for e in &t.edges {
        let _ = writeln!(
            s,
            "  {{ name = {}, addr = {} }},",
            q(&e.name),
            q(&e.addr.to_string())
        );
    }
    s.push_str("]\n\n# Tier 2: the TLS edges (what the nginx server block did).\n");
    let tickets = format!("[{}, {}]", p(&f.ticket_keys[0]), p(&f.ticket_keys[1]));
    for e in &t.edges {
        let name = e.name.as_str();
        let app = format!("app-{}", name.trim_start_matches("edge-"));
        let _ = writeln!(
            s,
            "[[frontend]]\n\
             name = {name}\n\
             bind = [{bind}]\n\
             mode = \"http\"\n\
             backend = {app}\n\
             proxy_protocol = {{ trusted = [{trusted}], timeout = \"5s\", untrusted = \"reject\" }}\n\
             [frontend.tls]\n\
             cert = {cert}\n\
             key = {key}\n\
             ticket_keys = {tickets}\n\
             \n\
             [[backend]]\n\
             name = {app}\n\
             protocol = \"uwsgi\"\n\
             servers = [{{ name = {app}, addr = {sock} }}]\n",
            name = q(name),
            bind = q(&e.addr.to_string()),
            app = q(&app),
            trusted = q(&t.trusted()),
            cert = p(&f.cert),
            key = p(&f.key),
            sock = q(&format!("unix:{}", f.app_socket(name).display())),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::config::{self, Balance, Mode, Protocol, SendProxy};

    fn topo(dir: &Path) -> Topology {
        Topology {
            balancer: "127.0.0.1:8443".parse().unwrap(),
            edges: default_edges(9443),
            source: IpAddr::V4(BALANCER_SOURCE),
            files: Files::in_dir(dir),
        }
    }

    #[test]
    fn the_generated_config_is_the_topology() {
        let t = topo(Path::new("/tmp/odd \"dir\\"));
        let text = config_toml(&t);
        let cfg = config::load_str_with(&text, "demo", &config::LoadOptions::content_only())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.frontends.len(), 3);
        let lb = &cfg.frontends[0];
        assert_eq!((lb.name.as_str(), lb.mode), (BALANCER, Mode::Tcp));
        assert_eq!(lb.bind, ["127.0.0.1:8443"]);
        let edges = &cfg.backends[0];
        assert_eq!(edges.balance, Balance::Roundrobin);
        assert_eq!(edges.send_proxy, SendProxy::V2);
        assert_eq!(edges.source.as_deref(), Some("127.0.0.10"));
        assert!(edges.health.is_some());
        let addrs: Vec<_> = edges.servers.iter().map(|s| s.addr.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.11:9443", "127.0.0.12:9443"]);
        for (i, name) in ["edge-a", "edge-b"].into_iter().enumerate() {
            let f = &cfg.frontends[i + 1];
            assert_eq!((f.name.as_str(), f.mode), (name, Mode::Http));
            let pp = f.proxy_protocol.as_ref().unwrap();
            assert_eq!(pp.trusted, ["127.0.0.10/32"]);
            let tls = f.tls.as_ref().unwrap();
            assert_eq!(tls.cert, "/tmp/odd \"dir\\/localhost.crt");
            assert_eq!(tls.ticket_keys.len(), 2);
            let app = cfg.backends.iter().find(|b| b.name == f.backend).unwrap();
            assert_eq!(app.protocol, Protocol::Uwsgi);
            assert_eq!(
                app.servers[0].addr,
                format!("unix:/tmp/odd \"dir\\/{name}.sock")
            );
        }
    }

    #[test]
    fn other_addresses_and_an_ipv6_source_are_in_the_config() {
        let mut t = topo(Path::new("/tmp/d"));
        t.balancer = "[::1]:0".parse().unwrap();
        let addrs: Vec<SocketAddr> = ["[::1]:7001", "[::1]:7002", "[::1]:7003"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        t.edges = edges_at(&addrs);
        t.source = "::1".parse().unwrap();
        let text = config_toml(&t);
        let cfg = config::load_str_with(&text, "demo", &config::LoadOptions::content_only())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.frontends.len(), 4);
        assert_eq!(cfg.frontends[0].bind, ["[::1]:0"]);
        let edges = &cfg.backends[0];
        assert_eq!(edges.source.as_deref(), Some("::1"));
        let servers: Vec<_> = edges.servers.iter().map(|s| s.addr.as_str()).collect();
        assert_eq!(servers, ["[::1]:7001", "[::1]:7002", "[::1]:7003"]);
        let names: Vec<_> = cfg.frontends[1..].iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["edge-a", "edge-b", "edge-c"]);
        for f in &cfg.frontends[1..] {
            assert_eq!(f.proxy_protocol.as_ref().unwrap().trusted, ["::1/128"]);
        }
    }

    #[test]
    fn material_passes_the_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let t = topo(dir.path());
        write_material(&t.files).unwrap();
        let a = std::fs::read(&t.files.ticket_keys[0]).unwrap();
        let b = std::fs::read(&t.files.ticket_keys[1]).unwrap();
        assert_eq!((a.len(), b.len()), (80, 80));
        assert_ne!(a, b);
        let opts = config::LoadOptions {
            check_files: true,
            check_fd_limit: false,
        };
        config::load_str_with(&config_toml(&t), "demo", &opts).unwrap();
        sluice::tls::TlsEdge::load(&sluice::spec::Tls {
            cert: t.files.cert.display().to_string(),
            key: t.files.key.display().to_string(),
            certs: vec![],
            ticket_keys: vec![t.files.ticket_keys[0].display().to_string()],
            ticket_secret: None,
            ticket_rotation: sluice::spec::DEFAULT_TICKET_ROTATION,
            session_cache: 10,
            client: None,
        })
        .unwrap();
    }
}
